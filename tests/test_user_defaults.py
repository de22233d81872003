"""Defaults a new user meets: the working size, targets by class name, untrained weights said out loud."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import videoxai as vx
from videoxai.errors import InputError

from test_wrap import C3DStyle, TinyCNN

SAMPLE = Path(__file__).parent / "data" / "bigbuckbunny.mp4"


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


# -- working size ------------------------------------------------------------------------------------
def test_methods_work_on_the_models_view_and_paste_the_map_back():
    net = TinyCNN()
    model = vx.wrap(net, num_frames=4, input_size=24, shortest_edge=24)  # 48x64 frames: crop 48x48 at col 8
    frames = _frames(4, 48, 64)
    pre = model.preprocess
    exp = vx.explain(model, frames, "saliency", target=1)
    assert exp.meta["working_frame"] == [24, 24] and exp.options["working_size"] == "model"
    assert exp.raw.shape == (4, 24, 24) and exp.spatial.shape == (4, 48, 64)
    assert exp.spatial[:, :, :8].max() == 0 and exp.spatial[:, :, 56:].max() == 0
    assert exp.spatial[:, :, 8:56].max() == 1.0
    assert model.preprocess is pre  # the model itself is never changed

    # the same as explaining, at full size, the model's view of the clip (crop, then resize) with a
    # model that only normalises it
    box = torch.from_numpy(frames[:, :, 8:56]).float().div(255).permute(0, 3, 1, 2)
    view = F.interpolate(box, size=(24, 24), mode="bilinear", align_corners=False, antialias=True)
    plain = vx.wrap(net, num_frames=4, input_size=24)
    by_hand = vx.explain(plain, view.permute(0, 2, 3, 1).numpy(), "saliency", target=1)
    np.testing.assert_allclose(exp.raw, by_hand.raw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(exp.probs, by_hand.probs, rtol=1e-6)

    full = vx.explain(model, frames, "saliency", target=1, working_size="full")
    assert full.raw.shape == (4, 48, 64) and full.meta["working_frame"] == [48, 64]
    np.testing.assert_allclose(full.probs, exp.probs, rtol=1e-5)  # the network saw the same input
    with pytest.raises(InputError, match="working_size must be 'model' or 'full', got 'half'"):
        vx.explain(model, frames, "saliency", working_size="half")


def test_clips_at_model_size_are_explained_unchanged():
    # the synthetic benchmark's clips are 64x64 for 64-pixel models: nothing to shrink
    model = vx.load_model("demo-cnn")
    frames = _frames(8, 64, 64, seed=1)
    a = vx.explain(model, frames, "grad_x_input")
    b = vx.explain(model, frames, "grad_x_input", working_size="full")
    assert a.meta["working_frame"] == [64, 64]
    np.testing.assert_array_equal(a.raw, b.raw)


def test_a_constructed_method_runs_at_the_working_size_and_keeps_its_model():
    model = vx.wrap(C3DStyle(), num_frames=4, input_size=16, shortest_edge=16)
    method = vx.methods.get("gradcam")(model)
    exp = vx.explain(model, _frames(4, 32, 48), method)
    assert exp.meta["working_frame"] == [16, 16] and method.model is model


def _minmax_reference(maps: np.ndarray) -> np.ndarray:
    """The normalisation of ``Explanation.spatial`` as one whole-clip formula (float32)."""
    nz = maps > 0
    if not nz.any():
        return np.zeros_like(maps)
    lo, hi = np.float32(maps[nz].min()), np.float32(maps.max())
    if hi - lo > 1e-12:
        y = np.where(nz, (maps - lo) / max(hi - lo, np.float32(1e-12)), 0).astype(np.float32).clip(0, 1)
    else:
        y = nz.astype(np.float32)
    return y / max(y.max(), np.float32(1e-12))


@pytest.mark.parametrize("case", ["random", "sparse", "flat", "zero", "one pixel"])
def test_maps_are_normalised_frame_by_frame_exactly_as_over_the_whole_clip(case):
    from videoxai.explain import _minmax_nonzero_

    rng = np.random.default_rng(3)
    maps = rng.random((2, 5, 17, 23), dtype=np.float32)
    if case == "sparse":
        maps[maps < 0.7] = 0
    elif case == "flat":
        maps[:] = 0.25
        maps[:, 2] = 0
    elif case == "zero":
        maps[:] = 0
    elif case == "one pixel":
        maps[:] = 0
        maps[0, 3, 4, 5] = 2.0
        maps[1, 1, 0, 0] = 1e-30
    x = torch.from_numpy(maps.copy())
    assert _minmax_nonzero_(x) is x  # in place: at 4K a map is 33 MB a frame
    for got, clip in zip(x.numpy(), maps):
        np.testing.assert_allclose(got, _minmax_reference(clip), rtol=1e-6, atol=0)
        assert got.max() in (0.0, 1.0)


def test_the_raw_maps_are_not_normalised_in_place_with_the_spatial_ones():
    # at the model's own size the spatial map starts as the raw map itself: it must be a copy
    model = vx.load_model("demo-cnn")
    exp = vx.explain(model, _frames(8, 64, 64, seed=2), "saliency", refine=False)
    assert exp.raw.shape == exp.spatial.shape and exp.raw.max() != 1.0
    np.testing.assert_allclose(exp.spatial, _minmax_reference(exp.raw), rtol=1e-6, atol=0)


# -- targets by class name ---------------------------------------------------------------------------
def test_target_by_class_name():
    model = vx.load_model("demo-cnn")
    frames = _frames(8, 64, 64)
    assert vx.explain(model, frames, "saliency", target="blue square").target == 2
    assert vx.explain(model, frames, "saliency", target="BLUE Square").target == 2
    with pytest.raises(InputError) as e:
        vx.explain(model, frames, "saliency", target="blu sqare")
    assert str(e.value) == "demo-cnn has no class 'blu sqare'; close matches: 'blue square', 'red square'"
    with pytest.raises(InputError, match="its 4 classes start with 'red square'"):
        vx.explain(model, frames, "saliency", target="zebra")
    with pytest.raises(InputError, match=r"target 7 out of range for a model with 4 classes"):
        vx.explain(model, frames, "saliency", target=7)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videoxai", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={"VIDEOXAI_PROGRESS": "0", "COLUMNS": "200", "PATH": "/usr/bin:/bin",
                                        "PYTHONPATH": str(Path(vx.__file__).parent.parent)})


def test_cli_target_by_name_and_full_resolution(tmp_path):
    from videoxai.data.synthetic import SyntheticVideos
    from videoxai.data.video import write_video

    clip = SyntheticVideos(1, split="test", seed=0)[0]
    video = write_video(clip.frames, tmp_path / "clip.mp4", fps=8)
    r = _run("explain", str(video), "--model", "demo-cnn", "--method", "saliency", "--target", "Blue Triangle",
             "--full-resolution", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    exp = vx.Explanation.load(tmp_path / "out" / "saliency.npz")
    assert exp.target == 3 and exp.label == "blue triangle" and exp.options["working_size"] == "full"
    r = _run("explain", str(video), "--model", "demo-cnn", "--target", "blue sqare", "--out", "o", cwd=tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "close matches: 'blue square'" in lines[0], r.stderr


# -- random weights ----------------------------------------------------------------------------------
def test_random_weights_are_said_in_meta_and_in_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))  # weights="default" finds nothing
    for weights in (None, "default"):
        model = vx.load_model("torchvision:r2plus1d_18", weights=weights, num_frames=4)
        assert model.weights_source == "random"
    clip = vx.Clip.from_array(_frames(4, 120, 160))
    exp = vx.explain(model, clip, "saliency")
    assert exp.meta["weights"] == "random" and "RANDOM weights" in exp.meta["warnings"][0]
    assert vx.Explanation.load(exp.save(tmp_path / "e.npz")).meta["weights"] == "random"
    assert "weights" not in vx.explain(vx.load_model("demo-cnn"), _frames(8, 64, 64), "saliency").meta

    from conftest import headless_chrome
    from videoxai.viz.report import write_report

    page = write_report(tmp_path / "report.html", clip, exp)
    browser = headless_chrome()
    try:
        browser.get(page.as_uri())
        banner = browser.find_element("css selector", "header .warning")
        assert banner.is_displayed() and "torchvision:r2plus1d_18 has RANDOM weights" in banner.text
        chips = browser.find_element("css selector", "header .chips").text
        assert "weights random" in chips
    finally:
        browser.quit()
