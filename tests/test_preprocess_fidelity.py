"""videoxai feeds a model what its own library would: Hugging Face's processors and torchvision's
presets, run as independent implementations on real frames (720p, portrait, square, tiny).

Tolerances were measured (torch 2.14, transformers 5.25, torchvision 0.29):

* Hugging Face, in normalised units: mean |Δ| ≤ 0.01 and max ≤ 0.072 (bicubic on a tiny frame;
  0.02 otherwise): the processor resizes uint8 images with Pillow, videoxai floats with torch; the
  tiny random models' logits then differ by ≤ 7 % of their largest (1.2 % but bicubic on a tiny
  frame). The geometry defects these tests were written for gave a mean of 0.09 (a 16:9 frame,
  shortest edge) and 0.28 (a ``{"height", "width"}`` size read as a squeeze of the whole frame);
  cropping the box on whole original pixels before shrinking left a max of 0.28.
* torchvision: equal to 1e-5. Shrinking is not antialiased, as the preset hard-codes
  (antialiased, the input was 0.10 off on average and 1.75 at most), and the whole frame is
  resized before the crop, as the preset does (cropping first left up to 1.3 on sharp edges).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import videoxai as vx
from videoxai.core.align import to_frames
from videoxai.models.preprocess import Preprocess
from videoxai.models.torchvision_zoo import preprocess_from_weights

from conftest import tiny_hf

VIDEO = Path(__file__).parent / "data" / "bigbuckbunny.mp4"


@pytest.fixture(scope="module")
def frames() -> dict[str, torch.Tensor]:
    """Real frames ``(T, 3, H, W)`` uint8 of several shapes."""
    full = torch.from_numpy(vx.read_video(str(VIDEO), 8).frames).permute(0, 3, 1, 2).contiguous()
    return {"720p": full, "portrait": full[..., :, 200:605].contiguous(),
            "square": full[..., :, 280:1000].contiguous(),
            "tiny": F.interpolate(full.float(), size=(20, 28), mode="area").round().to(torch.uint8)}


def _processor(kind: str):
    from transformers import (LlavaOnevisionVideoProcessor, VideoMAEImageProcessor, VivitImageProcessor,
                              VivitVideoProcessor, VJEPA2VideoProcessor)

    crop = {"crop_size": {"height": 32, "width": 32}}
    stats = {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.25]}
    return {
        # (family, processor): what VideoMAE and TimeSformer checkpoints use, with non-ImageNet statistics
        "shortest_edge": ("videomae", VideoMAEImageProcessor(size={"shortest_edge": 36}, **crop, **stats)),
        "height_width": ("timesformer", VideoMAEImageProcessor(size={"height": 40, "width": 48}, **crop)),
        "no_crop": ("videomae", VideoMAEImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)),
        "bicubic": ("timesformer", VideoMAEImageProcessor(size={"shortest_edge": 32}, **crop, resample=3)),
        "vivit_offset": ("vivit", VivitImageProcessor(size={"shortest_edge": 36}, **crop)),
        # one mean and std for all channels, as the processors allow (the load failed on tuple(0.3))
        "scalar_stats": ("videomae", VideoMAEImageProcessor(size={"shortest_edge": 36}, **crop, image_mean=0.3,
                                                            image_std=0.2)),
        # saved as video_preprocessor_config.json, no "offset" key, rescale to [-1, 1] all the same
        "vivit_video": ("vivit", VivitVideoProcessor(size={"shortest_edge": 36}, **crop)),
        # V-JEPA 2's: a shortest edge of 256/224 of the crop, as its checkpoints (292 for 256)
        "vjepa2_video": ("vjepa2", VJEPA2VideoProcessor(size={"shortest_edge": 36}, **crop)),
        # VideoPrism's: LLaVA-OneVision's video processor with VideoPrism's settings (the whole frame
        # resized, bicubic, no normalisation)
        "videoprism_video": ("videoprism", LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32},
                                                                        do_normalize=False)),
    }[kind]


def _hf_pixel_values(proc, video: torch.Tensor) -> torch.Tensor:
    """The processor's own ``pixel_values`` ``(T, 3, h, w)`` for uint8 frames ``(T, 3, H, W)``."""
    from transformers import VivitImageProcessor

    if isinstance(proc, VivitImageProcessor):  # numpy / PIL processor: HWC arrays
        return proc([f.permute(1, 2, 0).numpy() for f in video], return_tensors="pt")["pixel_values"][0]
    if type(proc).__name__.endswith("VideoProcessor"):  # V-JEPA 2's names its output pixel_values_videos
        out = proc(video, return_tensors="pt")
        return out["pixel_values_videos" if "pixel_values_videos" in out else "pixel_values"][0]
    return proc(list(video), return_tensors="pt")["pixel_values"][0]


@pytest.mark.parametrize("kind", ["shortest_edge", "height_width", "no_crop", "bicubic", "vivit_offset",
                                  "vivit_video", "vjepa2_video", "videoprism_video", "scalar_stats"])
def test_hf_model_input_and_logits_equal_the_processors(kind, frames, tmp_path, one_thread):
    family, proc = _processor(kind)
    net = tiny_hf(family)
    if family == "videoprism":
        # conftest sharpens every query and key, the pooling head's too: its one-hot pooling then
        # moved the logits by 4 % for half a level of noise on the pixels; the head as initialised
        with torch.no_grad():
            net.head.q_proj.weight.div_(25.0)
            net.head.k_proj.weight.div_(25.0)
    net.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    model = vx.load_model(str(tmp_path))
    for shape, video in frames.items():
        if kind == "no_crop" and shape != "square":
            continue  # Hugging Face then squeezes the frame as we do; checked on one shape
        ref = _hf_pixel_values(proc, video)
        pixels = video.float().div(255)[None]
        ours = model.preprocess(pixels)[0]
        assert ours.shape == ref.shape, (kind, shape)
        diff = (ours - ref).abs()
        assert diff.mean() < 0.015 and diff.max() < 0.1, (kind, shape, float(diff.mean()), float(diff.max()))
        with torch.no_grad():
            videos = family in ("vjepa2", "videoprism")
            expected = net(**{"pixel_values_videos" if videos else "pixel_values": ref[None]}).logits.reshape(1, -1)
            got = model(pixels)
        scale = float(expected.abs().max())
        assert float((got - expected).abs().max()) < 0.1 * scale, (kind, shape)


def test_a_known_square_lands_on_its_place_in_the_map_after_a_fixed_size_resize():
    # size={"height": 40, "width": 48}, crop 32: a 72x128 frame is stretched to 40x48 and its
    # centre cropped, i.e. the model sees rows 7.2..64.8 and columns 21.3..106.7, not the whole
    # frame. A square of the input, found where the processor put it and pasted back through the
    # crop box, must land on itself.
    from transformers import VideoMAEConfig, VideoMAEImageProcessor

    from videoxai.models.hf import preprocess_from_config

    proc = VideoMAEImageProcessor(size={"height": 40, "width": 48}, crop_size={"height": 32, "width": 32})
    pre = preprocess_from_config(json.loads(proc.to_json_string()), VideoMAEConfig(image_size=32))
    frame = torch.zeros(1, 3, 72, 128, dtype=torch.uint8)
    frame[..., 30:48, 70:100] = 255
    seen = _hf_pixel_values(proc, frame)[0, 0]                           # (32, 32): where the model has it
    maps = (seen > seen.min() + (seen.max() - seen.min()) / 2).float()[None, None]
    back = to_frames(maps, space="crop", preprocess=pre, frame_size=(72, 128), num_frames=1)[0, 0] > 0.5
    truth = torch.zeros(72, 128, dtype=torch.bool)
    truth[30:48, 70:100] = True
    iou = (back & truth).sum() / (back | truth).sum()
    assert iou > 0.75, float(iou)  # 0.85 measured (edges within a model pixel, 2.7 frame pixels); 0.45 squeezed
    rows, cols = back.nonzero().float().mean(0).tolist()
    assert abs(rows - 38.5) < 1.5 and abs(cols - 84.5) < 1.5, (rows, cols)


TV_WEIGHTS = ["R3D_18_Weights", "S3D_Weights", "MViT_V2_S_Weights", "Swin3D_T_Weights"]


@pytest.mark.parametrize("weights", TV_WEIGHTS)
def test_torchvision_input_equals_the_presets(weights, frames, one_thread):
    from torchvision.models import video as tv_video

    w = getattr(tv_video, weights).DEFAULT
    pre = preprocess_from_weights(w)
    assert not pre.antialias  # the preset's resize hard-codes antialias=False
    for shape, video in frames.items():
        x = video[:2].float().div(255)[None]                           # (1, T, 3, H, W)
        ref = w.transforms()(x)                                        # (1, 3, T, h, w)
        ours = pre(x).transpose(1, 2)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5, msg=lambda m: f"{weights} {shape}: {m}")


def test_torchvision_logits_equal_the_presets_on_a_16_by_9_clip(frames, one_thread):
    # 16:9 frames are stretched to 128x171 as the preset does (they were cropped square before,
    # a different part of the frame); an enlarged clip leaves no antialiasing difference. (MC3 and
    # R(2+1)D share R3D's preset.)
    from torchvision.models import video as tv_video

    model = vx.load_model("torchvision:r3d_18", weights=None)
    x = F.interpolate(frames["720p"][:4].float().div(255), size=(72, 128), mode="area")[None]
    with torch.no_grad():
        expected = model.net(tv_video.R3D_18_Weights.DEFAULT.transforms()(x))
        got = model(x)
    assert model.preprocess.resize == (128, 171)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_preprocess_geometry_follows_the_libraries_arithmetic():
    # the longer side truncated (1280·256/720 = 455.1 → 455), the crop's odd margin rounded
    # (torchvision) or floored (Hugging Face); a fixed resize scales each axis on its own; videoxai's
    # own models (crop_offset="centre") take the exact centre
    assert Preprocess(size=(224, 224), shortest_edge=256).crop_box(720, 1280).left == 325
    box = Preprocess(size=(224, 224), shortest_edge=256, crop_offset="round").crop_box(720, 1280)
    assert box.left == pytest.approx(116 * 1280 / 455) and box.width == pytest.approx(224 * 1280 / 455)
    box = Preprocess(size=(224, 224), shortest_edge=256, crop_offset="floor").crop_box(720, 1280)
    assert box.left == pytest.approx(115 * 1280 / 455)
    box = Preprocess(size=(112, 112), resize=(128, 171), crop_offset="round").crop_box(720, 1280)
    assert (box.top, box.height) == pytest.approx((8 * 720 / 128, 112 * 720 / 128))
    assert (box.left, box.width) == pytest.approx((30 * 1280 / 171, 112 * 1280 / 171))
    assert Preprocess(size=(112, 112), resize=(128, 171)).at_model_size().crop_box(112, 112).as_ints(112, 112) \
        == (0, 0, 112, 112)
    np.testing.assert_array_equal(  # a clip already at the model's size passes through untouched
        Preprocess(size=(4, 4), resize=(8, 8), mean=(0, 0, 0), std=(1, 1, 1)).at_model_size()(
            torch.ones(1, 1, 3, 4, 4)).numpy(), np.ones((1, 1, 3, 4, 4)))


def test_a_tiny3d_model_keeps_its_preprocessing_through_save_and_load(tmp_path):
    # the stretch, the filter and the crop rounding were dropped on save: the model read back
    # cropped a different part of each frame
    from videoxai.models.tiny3d import Tiny3DCNN, Tiny3DConfig

    pre = Preprocess(size=(32, 32), resize=(40, 48), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25),
                     interpolation="bicubic", crop_offset="floor")
    Tiny3DCNN(Tiny3DConfig(num_classes=2, input_size=32)).save_pretrained(tmp_path, ["a", "b"], pre)
    assert vx.load_model(f"tiny3d:{tmp_path}").preprocess == pre


def test_a_resize_smaller_than_the_crop_still_gives_the_models_input_size():
    # torchvision and Hugging Face pad such a crop with zeros; videoxai stretches the frame to the
    # input instead (the resized-then-cropped path sliced past the frame: a view error)
    plain = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))   # the output is the pixels themselves
    ramp = torch.linspace(0.1, 0.9, 10).expand(1, 2, 3, 10, 10)   # brighter to the right
    for pre, size in ((Preprocess(size=(32, 32), resize=(20, 20), crop_offset="round", **plain), (32, 32)),
                      (Preprocess(size=(32, 48), shortest_edge=32, crop_offset="floor", **plain), (32, 48))):
        assert pre(torch.rand(1, 2, 3, 10, 10)).shape == (1, 2, 3, *size)
        # a grey frame stays grey everywhere: no zero padding at the edges
        torch.testing.assert_close(pre(torch.full((1, 2, 3, 10, 10), 0.5)), torch.full((1, 2, 3, *size), 0.5))
        # the whole frame, stretched: the ramp spans the output's width from its first to its last column
        row = pre(ramp)[0, 0, 0, 0]
        assert bool((row[1:] >= row[:-1] - 1e-6).all()) and float(row[0]) < 0.15 and float(row[-1]) > 0.85


def test_a_misspelt_crop_offset_or_interpolation_is_named():
    from videoxai.errors import InputError

    with pytest.raises(InputError, match=r"crop_offset='center': expected one of 'centre', 'round', 'floor'"):
        Preprocess(size=(32, 32), shortest_edge=32, crop_offset="center")
    with pytest.raises(InputError, match=r"interpolation='linear'"):
        Preprocess(size=(32, 32), interpolation="linear")


def test_a_hf_network_without_a_preprocessor_config_keeps_the_exact_centre():
    # no processor to follow (vx.models.hf.from_hf_module(net)): the box is the geometric centre
    from videoxai.models.hf import from_hf_module

    model = from_hf_module(tiny_hf("videomae"))
    assert model.preprocess.crop_box(36, 44) == vx.models.CropBox(0.0, 4.0, 36.0, 36.0)


def test_configs_videoxai_cannot_follow_exactly_are_warned_about(caplog):
    # do_resize=false (a raw centre crop) and a shortest-edge resize without a crop (a non-square
    # input) are not what videoxai feeds the network: said at load, not silently different
    from transformers import TimesformerConfig

    from videoxai.models.hf import preprocess_from_config

    cfg = TimesformerConfig(image_size=32)
    with caplog.at_level("WARNING", logger="videoxai.models.hf"):
        preprocess_from_config({"do_resize": False, "size": {"shortest_edge": 32},
                                "crop_size": {"height": 32, "width": 32}}, cfg)
        preprocess_from_config({"do_center_crop": False, "size": {"shortest_edge": 32}}, cfg)
    assert "do_resize=false" in caplog.text and "shortest_edge resize and no centre crop" in caplog.text
