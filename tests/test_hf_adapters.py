"""Hugging Face adapters: loading from a saved directory, preprocessing, crop-box alignment."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, tiny_hf

import videoxai as vx
from videoxai.core.align import to_frames
from videoxai.models.preprocess import Preprocess
from videoxai.models.hf import from_hf_module, preprocess_from_config

PP = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
      "do_normalize": True, "image_mean": [0.45, 0.45, 0.45], "image_std": [0.225, 0.225, 0.225]}


def _save(net, tmp_path, pp=PP):
    net.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pp))
    return tmp_path


def test_a_directory_with_broken_weights_or_preprocessor_is_a_one_line_model_error(tmp_path):
    # a corrupt model.safetensors raised SafetensorError, a corrupt preprocessor config a JSONDecodeError
    from videoxai.errors import UnknownModelError

    path = _save(tiny_hf("timesformer"), tmp_path)
    (path / "preprocessor_config.json").write_text("{bad")
    with pytest.raises(UnknownModelError, match="cannot read the preprocessor config of"):
        vx.load_model(str(path))
    (path / "model.safetensors").write_text("junk")
    with pytest.raises(UnknownModelError, match="cannot load the weights of .*: SafetensorError"):
        vx.load_model(str(path))
    (path / "model.safetensors").unlink()
    with pytest.raises(UnknownModelError, match="cannot load the weights of .*: OSError"):
        vx.load_model(str(path))


def test_load_from_directory_matches_module(hf_family, tmp_path, rng):
    net = tiny_hf(hf_family)
    path = _save(net, tmp_path)
    model = vx.load_model(str(path))
    assert model.family == hf_family and model.num_frames == 8 and model.num_classes == 5
    assert model.preprocess == Preprocess(size=(32, 32), shortest_edge=32, mean=(0.45,) * 3, std=(0.225,) * 3,
                                          crop_offset="floor")
    x = torch.from_numpy(rng.random((2, 8, 3, 40, 56), dtype=np.float32))
    # by hand, as Hugging Face's processor does: scale the short side to 32 (56 → int(44.8) = 44
    # columns), centre-crop 32x32 from column 6 (floor of 12 / 2), normalise; HF layout (B, T, C, H, W)
    ref_in = F.interpolate(x.reshape(16, 3, 40, 56), size=(32, 44), mode="bilinear", align_corners=False,
                           antialias=True)[..., 6:38]
    ref_in = ((ref_in - 0.45) / 0.225).reshape(2, 8, 3, 32, 32)
    with torch.no_grad():
        ref = net(**{"pixel_values_videos" if hf_family in ("vjepa2", "videoprism") else "pixel_values": ref_in}).logits
        ref = ref.reshape(2, -1)   # VideoPrism's pooling head keeps its query's axis: (B, 1, classes)
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    # also through the "hf:" prefix
    assert vx.load_model(f"hf:{path}").family == hf_family


def test_timesformer_attention_types(tmp_path, rng):
    # joint_space_time (one attention over all tokens a layer) was refused at load, so no method
    # could explain it; it is read like ViViT's joint attention now
    from videoxai.errors import UnknownModelError

    model = vx.load_model(str(_save(tiny_hf("timesformer", attention_type="joint_space_time"), tmp_path / "joint")))
    assert model.attention.kinds() == ("joint",) and model.token_grid.prefix_tokens == 1
    clip = rng.random((8, 32, 32, 3), dtype=np.float32)
    for method in ("staa", "rollout", "gradcam"):
        exp = vx.explain(model, clip, method)
        assert exp.spatial.shape == (8, 32, 32) and exp.spatial.max() > 0
    # space_only: Hugging Face's model gives a row of logits per frame, not per clip
    net = tiny_hf("timesformer", attention_type="space_only")
    assert net(pixel_values=torch.rand(2, 8, 3, 32, 32)).logits.shape[0] == 16
    with pytest.raises(UnknownModelError, match="attention_type 'space_only' is not supported: .*one row of "
                                                "logits per frame"):
        vx.load_model(str(_save(net, tmp_path / "space")))


def test_videomae_reading_its_first_token_is_explained_from_that_token(rng):
    # use_mean_pooling=False: the head reads patch token 0 of the last layer, so Grad-CAM takes that
    # layer's input (as for a CLS token) and the attention methods start from token 0's row
    # (their references: tests/test_staa.py and test_gradient_methods.py, "videomae_first")
    model = from_hf_module(tiny_hf("videomae", use_mean_pooling=False))
    assert model.token_grid.readout == "first" and model.cam_layer == "videomae.encoder.layer.0"
    assert from_hf_module(tiny_hf("videomae")).token_grid.readout == "mean"
    assert from_hf_module(tiny_hf("videomae", use_mean_pooling=False, num_hidden_layers=1)).cam_layer == \
        "videomae.embeddings"
    exp = vx.explain(model, rng.random((8, 32, 32, 3), dtype=np.float32), "gradcam")
    assert exp.options["layer"] == "videomae.encoder.layer.0" and exp.spatial.max() > 0


def test_a_model_configured_with_return_dict_false_is_explained(hf_family, rng):
    # its network returns a tuple then; the adapter read .logits of it (AttributeError), and
    # VideoMAE and ViViT fail inside Hugging Face's own forward even when the call asks for a
    # dict (transformers 5.x): the adapter sets the config for its call and puts it back
    clip = rng.random((8, 32, 32, 3), dtype=np.float32)
    net = tiny_hf(hf_family, return_dict=False)
    model = from_hf_module(net)
    expected = vx.explain(from_hf_module(tiny_hf(hf_family)), clip, "staa")
    exp = vx.explain(model, clip, "staa")
    assert exp.target == expected.target
    np.testing.assert_allclose(exp.spatial, expected.spatial, atol=1e-5)
    assert net.config.return_dict is False  # the user's config as it was


def test_vivit_offset_rescale_folded_into_mean_std():
    from transformers import VivitConfig
    pp = {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
          "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
          "rescale_factor": 1 / 127.5, "offset": True}
    pre = preprocess_from_config(pp, VivitConfig())
    # HF: x_uint8 / 127.5 - 1, then (· - 0.5) / 0.5; ours takes p = x_uint8 / 255
    p = torch.tensor([0.0, 0.3, 1.0])
    hf = ((p * 255 / 127.5 - 1) - 0.5) / 0.5
    ours = (p - pre.mean[0]) / pre.std[0]
    torch.testing.assert_close(ours, hf)
    assert pre.shortest_edge == 256 and pre.size == (224, 224)


def test_crop_box_of_non_square_frames():
    pre = Preprocess(size=(224, 224), shortest_edge=224)
    box = pre.crop_box(720, 1280)  # a 16:9 frame: the model sees the central 720x720 square
    assert box.as_ints(720, 1280) == (0, 280, 720, 720)
    pre = Preprocess(size=(224, 224), shortest_edge=256)  # resize 256 then crop 224 → a smaller box
    top, left, h, w = pre.crop_box(720, 1280).as_ints(720, 1280)
    assert (h, w) == (630, 630) and top == 45 and left == 325  # the exact centre
    # as torchvision: 1280 columns → int(455.1) = 455, the crop from column round(115.5) = 116 of them;
    # as Hugging Face: from column 115
    rounded = Preprocess(size=(224, 224), shortest_edge=256, crop_offset="round")
    assert rounded.crop_box(720, 1280).as_ints(720, 1280) == (45, 326, 630, 630)
    floored = Preprocess(size=(224, 224), shortest_edge=256, crop_offset="floor")
    assert floored.crop_box(720, 1280).as_ints(720, 1280) == (45, 324, 630, 630)


def test_crop_space_map_lands_inside_the_crop_box():
    pre = Preprocess(size=(32, 32), shortest_edge=32)
    maps = torch.zeros(1, 4, 4, 4)
    maps[0, 2, 0, 3] = 1.0  # top-right token of map frame 2
    out = to_frames(maps, space="crop", preprocess=pre, frame_size=(40, 80), num_frames=8, time_align="repeat")
    assert out.shape == (1, 8, 40, 80)
    # crop box of a 40x80 frame: columns 20..60; the top-right token covers rows 0..10, cols 50..60
    assert out[0, :, :, :20].abs().max() == 0 and out[0, :, :, 60:].abs().max() == 0
    assert out[0, 4].sum() > 0 and out[0, 5].sum() > 0 and out[0, [0, 1, 2, 3, 6, 7]].sum() == 0
    r, c = np.unravel_index(out[0, 4].argmax().item(), (40, 80))
    assert 0 <= r < 10 and 50 <= c < 60


def test_staa_explanation_aligned_with_original_frames(hf_family, rng):
    model = from_hf_module(tiny_hf(hf_family), preprocess=Preprocess(size=(32, 32), shortest_edge=32))
    clip = vx.Clip.from_array(rng.random((8, 36, 72, 3), dtype=np.float32))
    exp = vx.explain(model, clip, "staa")
    assert exp.spatial.shape == (8, 36, 72) and exp.spatial.dtype == np.float32
    assert exp.temporal.shape == (8,) and abs(exp.temporal.sum() - 1) < 1e-5
    assert exp.spatial.min() >= 0 and exp.spatial.max() == pytest.approx(1.0)
    # nothing outside the crop box (columns 18..54 of a 72-wide frame)
    assert exp.spatial[:, :, :18].max() == 0 and exp.spatial[:, :, 54:].max() == 0
    assert exp.spatial[:, :, 18:54].max() > 0
    assert exp.probs.shape == (5,) and exp.label == model.labels[exp.target]
    assert exp.cost.forward_passes == 1 and exp.cost.backward_passes == 0


def test_timesformer_uses_the_fused_attention_only_inside_the_adapter(monkeypatch):
    net = tiny_hf("timesformer")
    model = from_hf_module(net)
    x = torch.rand(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))
    with torch.no_grad():
        eager = net(pixel_values=model.preprocess(x)).logits        # the network itself: HF's eager code
        assert not calls
        logits = model(x)
    assert len(calls) == 2 * net.config.num_hidden_layers                # temporal + spatial per layer
    assert torch.allclose(logits, eager, atol=1e-5)
    # nothing is left on the network, also after a forward that raises
    assert not any("forward" in m.__dict__ for m in net.modules())
    def fail(*_):
        raise RuntimeError("a forward that raises")
    # (a double clip no longer fails: the adapter casts it to the network's dtype)
    handle = net.classifier.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="a forward that raises"):
        model(torch.rand(1, 8, 3, 32, 32).requires_grad_())
    handle.remove()
    assert not any("forward" in m.__dict__ for m in net.modules())
    # gradients flow through the fused kernel as through the eager one
    xg = x.clone().requires_grad_()
    model(xg)[:, 0].sum().backward()
    xe = x.clone().requires_grad_()
    net(pixel_values=model.preprocess(xe)).logits[:, 0].sum().backward()
    assert torch.allclose(xg.grad, xe.grad, atol=1e-5)


def test_a_self_attention_with_a_forward_of_its_own_keeps_it():
    # a user's patch (or accelerate's offloading hook) on one self-attention module was replaced
    # by the fused forward for the call, then deleted
    import types

    net = tiny_hf("timesformer")
    model = from_hf_module(net)
    sa = next(m for m in net.modules() if type(m).__name__ == "TimesformerSelfAttention")
    calls = []

    def own(self, hidden_states, output_attentions=False):
        calls.append(1)
        return type(self).forward(self, hidden_states, output_attentions)

    sa.forward = types.MethodType(own, sa)
    patch = sa.forward
    with torch.no_grad():
        model(torch.rand(1, 8, 3, 32, 32))
    assert calls == [1] and sa.__dict__["forward"] == patch
    others = [m for m in net.modules() if type(m).__name__ == "TimesformerSelfAttention" and m is not sa]
    assert others and not any("forward" in m.__dict__ for m in others)


def test_a_model_of_other_than_three_channels_is_refused_at_load(hf_family, tmp_path):
    # it loaded, and every explanation failed in its patch embedding: "weight of size [32, 1, 8, 8],
    # expected input[8, 3, 32, 32] to have 1 channels" (TimeSformer, ViViT) or "Make sure that the
    # channel dimension of the pixel values match…" (VideoMAE)
    from videoxai.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match=f"{hf_family} model with num_channels=1 is not supported: "
                                                r"videoxai feeds it RGB frames \(3 channels\)"):
        vx.load_model(str(_save(tiny_hf(hf_family, num_channels=1), tmp_path)))


@pytest.mark.parametrize("spec", ["/no/such/dir", "./missing", "a/b/c", "~/no-such-videoxai-model"])
def test_a_missing_directory_is_named_as_one_not_as_a_bad_hub_id(spec):
    """Hugging Face would answer "Repo id must use alphanumeric chars…" for a mistyped path."""
    import videoxai as vx
    from videoxai.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match=f"no such model directory: '{re.escape(spec)}'"):
        vx.load_model(f"hf:{spec}")


def test_a_label_map_with_a_gap_names_the_missing_class_by_its_index(tmp_path, caplog):
    # id2label {0, 1, 2, 3, 7} for 5 outputs failed the load with "KeyError: 4"
    path = _save(tiny_hf("vivit"), tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["id2label"] = {"0": "a", "1": "b", "2": "c", "3": "d", "7": "e"}
    cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    (path / "config.json").write_text(json.dumps(cfg))
    model = vx.load_model(str(path))
    assert model.num_classes == 5 and model.labels == ["a", "b", "c", "d", "class_4"]
    assert "id2label names classes [7], but the model has 5 outputs" in caplog.text


def test_an_attention_implementation_the_model_lacks_is_named_in_one_line(tmp_path):
    # flash_attention_2 without its package raised a bare ImportError; TimeSformer has no sdpa
    # and was reported as unreadable weights
    from videoxai.errors import UnknownModelError

    path = str(_save(tiny_hf("vivit"), tmp_path / "vivit"))
    with pytest.raises(UnknownModelError, match=r"cannot load .* with attn_implementation='flash_attention_2': "
                                                r"ImportError: .*FlashAttention"):
        vx.load_model(path, attn_implementation="flash_attention_2")
    path = str(_save(tiny_hf("timesformer"), tmp_path / "timesformer"))
    with pytest.raises(UnknownModelError, match=r"with attn_implementation='sdpa': ValueError: .*does not support"):
        vx.load_model(path, attn_implementation="sdpa")
    assert vx.load_model(path, attn_implementation="eager").family == "timesformer"


def test_a_videomae_with_a_non_square_image_size_is_loaded_and_explained(tmp_path, rng):
    # VideoMAE's patch embedding takes image_size and patch_size as (H, W) pairs; the adapter's
    # token grid divided the pair by an int ("unsupported operand type(s) for //: 'list' and 'int'")
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    torch.manual_seed(0)
    net = VideoMAEForVideoClassification(VideoMAEConfig(
        num_frames=8, image_size=[32, 48], patch_size=8, tubelet_size=2, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3)).eval()
    pp = {**PP, "size": {"height": 32, "width": 48}, "crop_size": {"height": 32, "width": 48}}
    model = vx.load_model(str(_save(net, tmp_path, pp)))
    grid = model.token_grid
    assert (grid.frames, grid.rows, grid.cols) == (4, 4, 6) and grid.patch == (8, 8)
    x = torch.from_numpy(rng.random((1, 8, 3, 32, 48), dtype=np.float32))
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(pixel_values=(x - 0.45) / 0.225).logits, rtol=1e-4, atol=1e-4)
    clip = rng.random((8, 32, 48, 3), dtype=np.float32)
    for method in ("staa", "gradcam"):
        exp = vx.explain(model, clip, method)
        assert exp.spatial.shape == (8, 32, 48) and exp.spatial.max() > 0


@pytest.mark.parametrize("family", ["videomae", "timesformer"])
def test_a_checkpoint_without_a_classifier_is_refused_not_given_a_random_one(family, tmp_path):
    # a backbone (VideoMAEModel, or a pre-training checkpoint such as MCG-NJU/videomae-base) loaded
    # into the classification class: Hugging Face drew the classifier at random and only printed a
    # load report; every prediction and map was a random layer's, another one at each load
    from transformers import TimesformerConfig, TimesformerModel, VideoMAEConfig, VideoMAEModel

    from videoxai.errors import UnknownModelError

    if family == "videomae":
        VideoMAEModel(VideoMAEConfig(num_frames=4, image_size=16, patch_size=8, **TINY)).save_pretrained(tmp_path)
    else:
        TimesformerModel(TimesformerConfig(num_frames=2, image_size=16, patch_size=8, **TINY)).save_pretrained(tmp_path)
    arch = "VideoMAEModel" if family == "videomae" else "TimesformerModel"
    with pytest.raises(UnknownModelError, match=rf"is no video classifier: its weights hold no classifier.bias, "
                                                rf"classifier.weight \(saved from {arch}, a backbone"):
        vx.load_model(str(tmp_path))


def test_a_class_name_that_a_config_gives_to_two_outputs_is_refused_as_a_target(tmp_path):
    # Hugging Face's id2label may name two outputs alike; target="a" explained the first of them
    from videoxai.errors import InputError

    tiny_hf("vivit", num_labels=3, id2label={0: "a", 1: "a", 2: "b"}).save_pretrained(tmp_path)
    model = vx.load_model(str(tmp_path))
    assert model.labels == ["a", "a", "b"] and model.class_index("b") == 2 and model.class_index(1) == 1
    with pytest.raises(InputError, match=r"^class 'a' names classes 0, 1 of .*; give the class index$"):
        vx.explain(model, np.zeros((8, 32, 32, 3), np.float32), "rollout", target="a")
    with pytest.raises(InputError, match=r"^class 'a' names classes 0, 1 "):   # the command line's reading
        model.class_from_text("a")
