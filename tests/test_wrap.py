"""vx.wrap: any PyTorch video classifier behind the pixel-space interface."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import videoxai as vx
from videoxai.errors import InputError, UnsupportedModelError

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


class TinyCNN(nn.Module):
    """``(B, 3, T, H, W)`` → ``(B, classes)``: a 3D convolution, ReLU, global average pool, linear."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3, "channels must come second (BCTHW)"
        return self.fc(self.conv(x).relu().mean((2, 3, 4)))


class TinyBTCHW(nn.Module):
    """The same network taking ``(B, T, 3, H, W)``, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = TinyCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 3, "channels must come third (BTCHW)"
        return self.inner(x.transpose(1, 2))


def pixels(b: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def normalise(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, 3, h, w)`` by hand."""
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, T, 3, H, W)`` → ``(B, T, 3, *size)``, bilinear, antialiased when shrinking."""
    b, t = x.shape[:2]
    y = F.interpolate(x.flatten(0, 1), size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.view(b, t, 3, *size)


@pytest.mark.parametrize("layout, module", [("BCTHW", TinyCNN), ("BTCHW", TinyBTCHW)])
def test_forward_equals_module_on_hand_preprocessed_input(layout, module):
    net = module()
    to_layout = (lambda x: x.transpose(1, 2)) if layout == "BCTHW" else (lambda x: x)
    x = pixels(2, 4, 48, 64)
    cases = {
        # shorter side 48 → 24 (half): crop the central 48x48 (columns 8..56), then shrink
        "shortest_edge": (dict(input_size=24, shortest_edge=24), resize(x[..., :, 8:56], (24, 24))),
        # no shortest edge: the whole frame is resized, aspect ratio not kept
        "whole_frame": (dict(input_size=(24, 32)), resize(x, (24, 32))),
        # shorter side already 48: only the crop (rows 12..36, columns 20..44 of 48x64) acts
        "crop_only": (dict(input_size=24, shortest_edge=48), x[..., 12:36, 20:44]),
    }
    for case, (kwargs, by_hand) in cases.items():
        model = vx.wrap(net, num_frames=4, layout=layout, mean=MEAN, std=STD, **kwargs)
        with torch.no_grad():
            expected = net(to_layout(normalise(by_hand)))
            out = model(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6, msg=case)
    assert model.passes.forward == 2 and model.layout == layout


def test_forward_is_differentiable_in_pixel_space():
    model = vx.wrap(TinyCNN(), num_frames=4, input_size=24, shortest_edge=24)
    x = pixels(1, 4, 48, 64).requires_grad_()
    model(x)[0, 1].backward()
    grad = x.grad.abs().sum((0, 1, 2))  # (H, W)
    # pixels inside the central 48x48 crop matter, the columns cut away do not
    assert (grad[:, 8:56] > 0).all() and grad[:, :8].sum() == 0 and grad[:, 56:].sum() == 0
    assert model.passes.backward == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_network_in_double_or_half_precision_gets_its_dtype_and_gives_float32_logits(dtype):
    # the adapter fed float32 to every network: a .double() or .half() module failed in its first layer
    model = vx.wrap(TinyCNN().to(dtype), num_frames=4, input_size=24)
    x = pixels(1, 4, 24, 24)
    with torch.no_grad():
        expected = vx.wrap(TinyCNN(), num_frames=4, input_size=24)(x)
    out = model(x)
    assert model.dtype == dtype and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-2 if dtype == torch.float16 else 1e-5)
    exp = vx.explain(model, x[0].permute(0, 2, 3, 1).numpy(), "saliency")
    assert exp.spatial.dtype == np.float32 and np.isfinite(exp.spatial).all() and exp.spatial.max() == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_pixels_are_resized_and_scored_as_the_same_values_in_float32(dtype):
    # the antialiased resize has no bfloat16 kernel ("compute_index_ranges_weights" not implemented),
    # and float16 pixels were normalised at their own precision before the float32 network
    model = vx.wrap(TinyCNN(), num_frames=4, input_size=24, shortest_edge=24)
    x = pixels(2, 4, 30, 36).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.float()), rtol=0, atol=0)


def test_a_lazy_layer_not_yet_run_is_explained_and_its_flags_kept():
    # freezing the parameters called requires_grad_ on the lazy layer's uninitialised weights: ValueError
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model = vx.wrap(net, num_frames=4, input_size=8, num_classes=3)
    frames = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    exp = vx.explain(model, frames, "saliency")
    assert exp.spatial.shape == (4, 16, 16) and exp.spatial.max() == 1
    assert all(p.requires_grad for p in net.parameters())


def test_labels_and_num_classes():
    net = TinyCNN(classes=5)
    model = vx.wrap(net, num_frames=4, input_size=24)
    assert model.num_classes == 5 and model.labels == [f"class_{i}" for i in range(5)]  # from the last Linear
    labels = ["run", "jump", "swim", "walk", "sit"]
    assert vx.wrap(net, num_frames=4, input_size=24, labels=labels).labels == labels
    assert vx.wrap(net, num_frames=4, input_size=24, num_classes=5).num_classes == 5
    with pytest.raises(InputError, match="3 labels given but num_classes=5"):
        vx.wrap(net, num_frames=4, input_size=24, labels=labels[:3], num_classes=5)
    with pytest.raises(InputError, match="cannot infer the number of classes"):
        vx.wrap(nn.Sequential(nn.Conv3d(3, 5, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten()), num_frames=4,
                input_size=24)


def test_the_classes_of_a_network_with_a_pointwise_convolution_head_are_inferred():
    # torchvision's S3D classifies with a 1×1×1 Conv3d: vx.wrap(s3d()) was "cannot infer the
    # number of classes"; a Linear, where there is one, still decides (a 1×1 conv inside a block
    # of a network with a Linear head is not its classifier)
    from torchvision.models.video import s3d

    assert vx.wrap(s3d(num_classes=7), num_frames=16, input_size=64).num_classes == 7
    head = nn.Sequential(nn.Conv3d(3, 8, 3), nn.Conv3d(8, 5, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten())
    model = vx.wrap(head, num_frames=4, input_size=24)
    assert model.num_classes == 5 and model(torch.rand(2, 4, 3, 24, 24)).shape == (2, 5)
    both = nn.Sequential(nn.Conv3d(3, 8, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3))
    assert vx.wrap(both, num_frames=4, input_size=24).num_classes == 3


def test_wrap_rejects_bad_arguments():
    with pytest.raises(InputError, match="needs a torch.nn.Module, got function"):
        vx.wrap(lambda x: x, num_frames=4, input_size=24)
    with pytest.raises(InputError, match="layout must be"):
        vx.wrap(TinyCNN(), num_frames=4, input_size=24, layout="BTHWC")
    with pytest.raises(InputError, match="one value per RGB channel"):
        vx.wrap(TinyCNN(), num_frames=4, input_size=24, mean=(0.5,), std=(0.5,))
    with pytest.raises(InputError, match=r"std must be > 0 for every channel, got \[0.2, 0, 0.3\]"):
        vx.wrap(TinyCNN(), num_frames=4, input_size=24, std=(0.2, 0, 0.3))
    with pytest.raises(InputError, match="cam_layer 'layer4' is not a module of TinyCNN"):
        vx.wrap(TinyCNN(), num_frames=4, input_size=24, cam_layer="layer4")
    net = TinyCNN()
    assert vx.wrap(net, num_frames=4, input_size=24, cam_layer="conv").submodule("conv") is net.conv


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_size=0), "option input_size must be an integer ≥ 1 or a list of 2 integers ≥ 1, got 0"),
    (dict(input_size=(64,)), r"option input_size must be .* got \(64,\)"),
    (dict(input_size=24, shortest_edge=0), "option shortest_edge must be an integer ≥ 1 or none, got 0"),
    (dict(input_size=24, num_frames=0), "option num_frames must be an integer ≥ 1, got 0"),
    (dict(input_size=24, num_frames=-1), "option num_frames must be an integer ≥ 1, got -1"),
    (dict(input_size=24, num_classes=0), "option num_classes must be an integer ≥ 1 or none, got 0"),
    (dict(input_size=24, labels=[]), "labels is empty"),
])
def test_wrap_refuses_sizes_and_counts_below_one(kwargs, match):
    # refused where they enter, not at the first forward deep inside interpolate or the network
    with pytest.raises(InputError, match=f"vx.wrap: {match}"):
        vx.wrap(TinyCNN(), **{"num_frames": 4, **kwargs})


def test_labels_that_do_not_match_the_output_width_fail_at_the_first_forward():
    model = vx.wrap(TinyCNN(classes=4), num_frames=4, input_size=24, labels=["x", "y"])
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 24, 24, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="outputs 4 class scores but has 2 labels"):
        vx.explain(model, frames, "saliency")


def test_logits_shaped_b_c_1_name_the_expected_shape():
    class Trailing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = TinyCNN()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)[:, :, None]                        # (B, C, 1)

    model = vx.wrap(Trailing(), num_frames=4, input_size=24, num_classes=4)
    with pytest.raises(InputError, match=r"logits of shape \(1, 4, 1\), expected \(B, classes\) = \(1, 4\)"):
        model(pixels(1, 4, 24, 24))


def test_a_binary_classifier_returning_one_logit_per_clip_as_a_vector_is_explained_as_its_column():
    # a binary network trained with BCEWithLogitsLoss squeezes its logit to (B,): every method
    # failed on it ("logits of shape (1,), expected (B, classes) = (1, 1)")
    class Squeezed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = TinyCNN(classes=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)[:, 0]                             # (B,)

    squeezed = vx.wrap(Squeezed(), num_frames=4, input_size=24)
    column = vx.wrap(squeezed.net.net, num_frames=4, input_size=24)
    x = pixels(3, 4, 24, 24)
    assert torch.equal(squeezed(x), column(x)) and squeezed(x).shape == (3, 1)
    for method in ("saliency", "rise(n_samples=8)"):
        a, b = vx.explain(squeezed, x[:1], method), vx.explain(column, x[:1], method)
        assert np.array_equal(a.raw, b.raw) and a.raw.max() > 0
        assert a.score == b.score == pytest.approx(float(torch.sigmoid(column(x[:1]))))   # its probability


@pytest.mark.parametrize("bad, match", [
    (torch.rand(4, 3, 24, 24), r"shape \(B, T, 3, H, W\), got \(4, 3, 24, 24\)"),  # no batch axis
    (torch.rand(1, 4, 1, 24, 24), r"shape \(B, T, 3, H, W\), got \(1, 4, 1, 24, 24\)"),  # grey frames
    (torch.rand(1, 4, 24, 24, 3), r"got \(1, 4, 24, 24, 3\)"),  # channels last
    (torch.rand(1, 5, 3, 24, 24), "exactly 4 frames, got 5"),
    (torch.randint(0, 256, (1, 4, 3, 24, 24), dtype=torch.uint8), r"float in \[0, 1\], got dtype torch.uint8"),
    (np.zeros((1, 4, 3, 24, 24), dtype=np.float32), "expected a tensor"),
])
def test_bad_inputs_raise_input_error(bad, match):
    model = vx.wrap(TinyCNN(), num_frames=4, input_size=24, fixed_num_frames=True)
    with pytest.raises(InputError, match=match):
        model(bad)
    assert model.passes.forward == 0


def test_any_clip_length_unless_fixed():
    model = vx.wrap(TinyCNN(), num_frames=4, input_size=24)
    assert model(pixels(1, 7, 30, 30)).shape == (1, 4)


def test_staa_on_a_wrapped_cnn_is_unsupported():
    model = vx.wrap(TinyCNN(), num_frames=4, input_size=24)
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 24, 24, 3), dtype=np.uint8)
    with pytest.raises(UnsupportedModelError, match="attention"):
        vx.explain(model, vx.Clip.from_array(frames), method="staa")


# -- Grad-CAM on any wrapped network: the layer is found, named and recorded -----------------------
class C3DStyle(nn.Module):
    """A C3D-style network: conv blocks with max pooling, global average pooling, a classifier."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU()),       # features.0: conv1
            nn.MaxPool3d((1, 2, 2)),                                          # features.1: pool1
            nn.Sequential(nn.Conv3d(8, 12, 3, padding=1), nn.ReLU()),       # features.2: conv2
            nn.MaxPool3d((2, 2, 2)),                                          # features.3: pool2
            nn.Sequential(nn.Conv3d(12, 16, 3, padding=1), nn.ReLU()),      # features.4: last block
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _hooks(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in net.modules())


def test_gradcam_finds_the_last_conv_block_and_gives_the_textbook_map():
    net = C3DStyle()
    model = vx.wrap(net, num_frames=4, input_size=16)
    frames = np.random.default_rng(3).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    exp = vx.explain(model, frames, "gradcam", target=2)
    assert exp.options["layer"] == "features.4" and _hooks(net) == 0

    # Grad-CAM by hand (Selvaraju et al.): A = the block's activation, w_c = mean of dy/dA_c over
    # (T', H', W'), map = ReLU(Σ_c w_c A_c)
    x = torch.from_numpy(frames).float().div(255).permute(0, 3, 1, 2)[None]
    acts = {}
    handle = net.features[4].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = acts["a"]
    (g,) = torch.autograd.grad(logits[0, 2], a)
    by_hand = torch.relu((g.mean((2, 3, 4), keepdim=True) * a).sum(1))[0].detach()
    assert by_hand.shape == (2, 4, 4) and by_hand.max() > 0
    np.testing.assert_allclose(exp.raw, by_hand.numpy(), rtol=1e-4, atol=1e-6)

    # the module object gives the same map and records its name; an explicit earlier block differs
    same = vx.explain(model, frames, "gradcam", target=2, layer=net.features[4])
    assert same.options["layer"] == "features.4"
    np.testing.assert_allclose(same.raw, exp.raw, rtol=1e-6)
    assert vx.explain(model, frames, "gradcam", target=2, layer="features.2").raw.shape == (4, 8, 8)


def test_saliency_tubes_takes_a_layer_or_finds_gradcams_on_a_wrapped_cnn():
    # no cam_layer given to vx.wrap: saliency_tubes reads the layer Grad-CAM finds, or the one named
    net = C3DStyle()
    model = vx.wrap(net, num_frames=4, input_size=16)
    frames = np.random.default_rng(3).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    found = vx.explain(model, frames, "saliency_tubes", target=2)
    named = vx.explain(model, frames, "saliency_tubes", target=2, layer="features")
    assert found.options["layer"] == "features.4" and named.options["layer"] == "features"
    np.testing.assert_allclose(named.raw, found.raw, rtol=1e-5)   # the block's output is the container's
    assert vx.methods.get("saliency_tubes").supports(model) and _hooks(net) == 0
    # a named layer whose pooled channels do not feed the head is refused on the forward it explains
    with pytest.raises(UnsupportedModelError, match="classifier takes 16 features but layer 'features.2' has 12"):
        vx.explain(model, frames, "saliency_tubes", layer="features.2")


def test_the_report_names_the_layer_used(tmp_path):
    from videoxai.viz.report import write_report

    model = vx.wrap(C3DStyle(), num_frames=4, input_size=16)
    frames = np.random.default_rng(3).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    html = write_report(tmp_path / "r.html", frames, vx.explain(model, frames, "gradcam")).read_text()
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", html)  # an image's payload may spell 'None' by chance
    assert "<tr><th>layer</th><td><code>features.4</code></td></tr>" in html and "None" not in text


def test_an_explanation_and_its_report_say_when_the_score_is_not_a_softmax_share(tmp_path):
    from videoxai.viz.report import write_report

    frames = np.random.default_rng(3).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    plain = vx.explain(vx.wrap(C3DStyle(), num_frames=4, input_size=16), frames, "saliency")
    assert "activation" not in plain.meta
    html = write_report(tmp_path / "plain.html", frames, plain).read_text()
    assert "sigmoid" not in html
    multi = vx.explain(vx.wrap(C3DStyle(), num_frames=4, input_size=16, activation="sigmoid"), frames, "saliency")
    assert multi.meta["activation"] == "sigmoid" and multi.probs.sum() != pytest.approx(1.0)
    html = write_report(tmp_path / "multi.html", frames, multi).read_text()
    assert "sigmoid of each class" in html
    binary = vx.wrap(C3DStyle(classes=1), num_frames=4, input_size=16, num_classes=1)
    assert vx.explain(binary, frames, "saliency").meta["activation"] == "sigmoid"


def test_gradcam_layer_errors_name_the_valid_layers():
    net = C3DStyle()
    model = vx.wrap(net, num_frames=4, input_size=16)
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match=r"no layer 'features.9'; did you mean 'features.4', .*'features.0'\?"):
        vx.explain(model, frames, "gradcam", layer="features.9")
    with pytest.raises(InputError, match="layer Conv3d is not a module of custom"):
        vx.explain(model, frames, "gradcam", layer=nn.Conv3d(3, 3, 1))
    # a network without any (T', H', W') output says what to do
    flat = vx.wrap(nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 8 * 8, 2)), num_frames=4, input_size=8,
                   layout="BTCHW")
    with pytest.raises(UnsupportedModelError, match="^method 'gradcam' reads a layer with a .*: no layer of custom outputs a"):
        vx.explain(flat, np.zeros((4, 8, 8, 3), np.uint8), "gradcam")
    assert not vx.methods.get("gradcam").supports(flat)  # videoxai methods --model and the evaluation runner
    assert _hooks(flat.net) == 0


class _TinyVideoViT(nn.Module):
    """Tubelet embedding (the network's only 5-D output), a CLS token, one encoder block."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv3d(3, 16, (2, 4, 4), (2, 4, 4))
        self.cls = nn.Parameter(torch.zeros(1, 1, 16))
        self.block = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.block(torch.cat([self.cls.expand(len(t), -1, -1), t], 1))[:, 0])


def test_the_layer_search_does_not_return_a_transformers_patch_embedding():
    # a wrapped video transformer's only grid is its patch embedding: Grad-CAM there maps the
    # pixels' first projection; the search returned it without a word
    torch.manual_seed(0)
    clip = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    vit = vx.wrap(_TinyVideoViT(), num_frames=4, input_size=16)
    with pytest.raises(UnsupportedModelError, match=r"is 'embed', the patch embedding of a transformer: later layers "
                                         r"\(block\.self_attn, .*\) carry its 32 cells as a token sequence"):
        vx.explain(vit, clip, "gradcam")
    assert _hooks(vit.net) == 0
    # the search's refusal is the default layer's: a layer named by the caller is read
    assert vx.explain(vit, clip, "gradcam", layer="embed").options["layer"] == "embed"

    def tokens(out):   # (B, 1 + 2·4·4, 16) → (B, 16, 2, 4, 4)
        return out[:, 1:].reshape(len(out), 2, 4, 4, 16).permute(0, 4, 1, 2, 3)

    # with the layout of its tokens the search finds the block
    assert vx.explain(vx.wrap(_TinyVideoViT(), num_frames=4, input_size=16, cam_reshape=tokens),
                      clip, "gradcam").options["layer"] == "block"
    # a CNN whose last block feeds a token head keeps that block
    hybrid = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 16, (2, 4, 4), (2, 4, 4)),
                           nn.Flatten(2), _Transpose(), nn.TransformerEncoderLayer(16, 2, 32, batch_first=True),
                           _MeanTokens(), nn.Linear(16, 3))
    assert vx.explain(vx.wrap(hybrid, num_frames=4, input_size=16), clip, "gradcam").options["layer"] == "2"


class _Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class _MeanTokens(nn.Module):
    def forward(self, x):
        return x.mean(1)


def test_layer_search_removes_its_hooks_when_the_forward_fails():
    net = TinyCNN()
    model = vx.wrap(net, num_frames=4, input_size=24, layout="BTCHW")  # TinyCNN asserts BCTHW
    with pytest.raises(InputError, match="It runs on BCTHW input"):  # its AssertionError, named
        model.locate_cam_layer()
    assert _hooks(net) == 0
    right = vx.wrap(net, num_frames=4, input_size=24)
    assert right.locate_cam_layer() == "conv" and _hooks(net) == 0


def test_the_layer_search_runs_once_per_model_not_once_per_explanation():
    # vx.explain works on a view of the model (at_model_size, a copy per call): the search's
    # result was stored on the view, so every explanation ran the search's forward pass again
    model = vx.wrap(C3DStyle(), num_frames=4, input_size=16)
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 24, 20, 3), dtype=np.uint8)  # not the model's size
    vx.explain(model, frames, "gradcam")
    searches = []
    model.net.register_forward_pre_hook(lambda *_: searches.append(1))
    vx.explain(model, frames, "gradcam")
    assert len(searches) == 1, "one forward for Grad-CAM itself, none for a second search"


class Returns(nn.Module):
    """TinyCNN whose forward returns ``make(logits, features)``: a tuple, a dict, …"""

    def __init__(self, make) -> None:
        super().__init__()
        self.inner, self.make = TinyCNN(), make

    def forward(self, x):
        features = self.inner.conv(x).relu()
        return self.make(self.inner.fc(features.mean((2, 3, 4))), features)


def test_logits_found_in_a_tuple_or_dict_output_or_named_with_output():
    """Networks that return (logits, features) or a dict work as wrapped, with the same logits as
    the plain network; where two parts could be the logits the error asks for ``output=``."""
    x = torch.rand(2, 8, 3, 16, 16)
    plain = vx.wrap(TinyCNN(), num_frames=8, input_size=16)(x)
    for make, output in [(lambda y, f: (y, f), None), (lambda y, f: [f, y], None),
                         (lambda y, f: {"scores": y, "features": f}, None), (lambda y, f: {"logits": y}, None),
                         (lambda y, f: (y, y * 2), 0), (lambda y, f: {"a": y * 2, "b": y}, "b"),
                         (lambda y, f: (y * 2, y), lambda out: out[1])]:
        model = vx.wrap(Returns(make), num_frames=8, input_size=16, num_classes=4, output=output)
        torch.testing.assert_close(model(x), plain)
    assert vx.explain(vx.wrap(Returns(lambda y, f: (y, f)), num_frames=8, input_size=16, num_classes=4),
                      torch.rand(8, 3, 16, 16), "saliency").spatial.shape == (8, 16, 16)
    two = vx.wrap(Returns(lambda y, f: (y, y * 2)), num_frames=8, input_size=16, num_classes=4)
    with pytest.raises(InputError, match=r"returned a tuple with 2 parts shaped \(B, 4\): 0, 1; say where its "
                                         r"logits are: vx.wrap\(..., output=0\)"):
        two(x)
    with pytest.raises(InputError, match=r"no part shaped \(B, 4\)"):
        vx.wrap(Returns(lambda y, f: (f,)), num_frames=8, input_size=16, num_classes=4)(x)
    with pytest.raises(InputError, match="output='logits' selects nothing in the network's tuple output"):
        vx.wrap(Returns(lambda y, f: (y, f)), num_frames=8, input_size=16, num_classes=4, output="logits")(x)


def _conv_net() -> nn.Module:
    """A 3D CNN taking ``(B, 3, T, H, W)`` that fails like real ones do (a RuntimeError)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                         nn.Flatten(), nn.Linear(6, 4))


class _FramesFirst(nn.Module):
    """The same network taking ``(B, T, 3, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _conv_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 2, 1, 3, 4))


@pytest.mark.parametrize("module, wrong, right", [(_conv_net, "BTCHW", "BCTHW"),
                                                  (_FramesFirst, "BCTHW", "BTCHW")])
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_a_wrong_layout_is_named_with_the_one_that_works(module, wrong, right, method):
    net = module()
    model = vx.wrap(net, num_frames=4, input_size=24, layout=wrong)
    with pytest.raises(InputError, match=rf"laid out as {wrong} \(1x.*channels.*runs on {right} input: "
                                         rf"wrap it with vx.wrap\(\.\.\., layout='{right}'\)"):
        vx.explain(model, pixels(1, 4, 24, 24)[0], method)
    # the probe left nothing behind, and the advice is right
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())
    exp = vx.explain(vx.wrap(net, num_frames=4, input_size=24, layout=right), pixels(1, 4, 24, 24)[0], method)
    assert np.isfinite(exp.spatial).all()


def test_a_network_that_fails_in_both_layouts_keeps_its_own_error():
    # 4 frames in, but the network needs 7 (a Linear over the flattened volume): no layout helps,
    # nor a common clip length
    net = nn.Sequential(nn.Conv3d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 7 * 24 * 24, 4))
    model = vx.wrap(net, num_frames=4, input_size=24, num_classes=4)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        model(pixels(1, 4, 24, 24))
    # one that needs 8 frames is told so, with its own message
    net = nn.Sequential(nn.Conv3d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 8 * 24 * 24, 4))
    model = vx.wrap(net, num_frames=4, input_size=24, num_classes=4)
    with pytest.raises(InputError, match=r"^custom failed on a clip of 4 frames: mat1 and mat2 shapes cannot be "
                                         r"multiplied .* It runs on clips of 8 frames: wrap it with "
                                         r"vx\.wrap\(\.\.\., num_frames=8\)"):
        model(pixels(1, 4, 24, 24))
