"""Clip, Explanation, cost meter and the explain() front door."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import videoxai as vx
from videoxai.cost import CostMeter
from videoxai.errors import InputError, UnknownMethodError, UnknownModelError


def test_clip_from_uint8_and_float_agree(rng):
    frames = rng.integers(0, 256, size=(4, 10, 12, 3), dtype=np.uint8)
    a = vx.Clip.from_array(frames)
    b = vx.Clip.from_array(frames.astype(np.float32) / 255)
    assert a.to_tensor().shape == (1, 4, 3, 10, 12)
    torch.testing.assert_close(a.to_tensor(), b.to_tensor())
    np.testing.assert_array_equal(b.uint8(), frames)
    assert list(a.indices) == [0, 1, 2, 3]


def test_a_pixel_batch_three_pixels_wide_is_read_channels_first(rng):
    # (1, T, 3, H, W) with W = 3 ended in 3 and was read channels-last: a (2, 3, 200) clip whose
    # maps every metric then refused, while to_tensor's own layout is channels-first
    batch = torch.from_numpy(rng.random((1, 2, 3, 200, 3), dtype=np.float32))
    clip = vx.Clip.from_array(batch)
    assert (clip.num_frames, clip.height, clip.width) == (2, 200, 3)
    torch.testing.assert_close(clip.to_tensor(), batch)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 10, 12)), "shape"),
    (np.zeros((0, 10, 12, 3)), "non-empty"),
    (np.full((2, 4, 4, 3), np.nan, dtype=np.float32), "NaN"),
    (np.full((2, 4, 4, 3), 3.0, dtype=np.float32), r"\[0, 1\]"),
    (np.zeros((2, 4, 4, 3), dtype=np.int64), "dtype"),
])
def test_clip_rejects_bad_frames(bad, match):
    with pytest.raises(InputError, match=match):
        vx.Clip.from_array(bad)


def test_a_list_of_frames_of_different_sizes_is_an_input_error():
    # numpy's "inhomogeneous shape" ValueError reached vx.explain's caller
    frames = [np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5, 3), np.uint8), np.zeros((6, 5, 3), np.uint8)]
    with pytest.raises(InputError, match=r"frames must all have one shape, got 2 different ones: \(4, 5, 3\), \(6, 5, 3\)"):
        vx.Clip.from_array(frames)


@pytest.mark.parametrize("fps, kept", [(25, 25.0), (np.float32(29.97), pytest.approx(29.97)), (0, None),
                                       (float("nan"), None), (-5, None), (float("inf"), None), (None, None)])
def test_clip_fps_unknown_when_zero_or_not_finite(fps, kept):
    # containers report 0 or NaN for an unknown rate; it must not divide time or print "nan fps"
    clip = vx.Clip.from_array(np.zeros((2, 4, 4, 3), np.uint8), fps=fps)
    assert clip.fps == kept and ("nan" not in repr(clip))
    with pytest.raises(InputError, match="Clip.fps must be a number"):
        vx.Clip.from_array(np.zeros((2, 4, 4, 3), np.uint8), fps="25")


def test_explanation_save_load_round_trip(tmp_path, rng):
    exp = vx.Explanation(spatial=rng.random((3, 5, 6)), temporal=np.array([0.2, 0.5, 0.3]), target=2,
                         label="jump", score=0.7, probs=np.array([0.1, 0.2, 0.7]), method="staa",
                         options={"layers": 1, "refine": {"threshold": "otsu"}},
                         cost=vx.Cost(seconds=0.5, forward_passes=1, backward_passes=0, peak_memory_mb=3.0),
                         raw=rng.random((3, 2, 2)), frame_indices=np.array([0, 10, 20]),
                         meta={"model": "demo"})
    path = exp.save(tmp_path / "e.npz")
    back = vx.Explanation.load(path)
    np.testing.assert_array_equal(back.spatial, exp.spatial.astype(np.float32))
    np.testing.assert_array_equal(back.temporal, exp.temporal.astype(np.float32))
    np.testing.assert_array_equal(back.raw, exp.raw.astype(np.float32))
    np.testing.assert_array_equal(back.probs, exp.probs.astype(np.float32))
    np.testing.assert_array_equal(back.frame_indices, [0, 10, 20])
    assert (back.target, back.label, back.score, back.method, back.options, back.meta) == \
        (2, "jump", 0.7, "staa", exp.options, {"model": "demo"})
    assert back.cost == exp.cost
    # every field is compared above: a field added to Explanation must be added here too
    assert set(vx.Explanation.__dataclass_fields__) == {
        "spatial", "temporal", "target", "label", "score", "probs", "method", "options", "cost", "raw",
        "frame_indices", "meta"}
    # the file holds no pickle: loading with allow_pickle=False must succeed (done above) and the
    # metadata is plain JSON
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(bytes(z["metadata"]).decode())["label"] == "jump"


def test_an_explanations_options_equal_those_of_its_saved_copy(tmp_path):
    # an occlusion window and RISE's cells were recorded as tuples, and came back from the file
    # as lists: Explanation.load(path).options != exp.options
    model = vx.load_model("demo-cnn")
    clip = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), np.uint8)
    for method, options in (("occlusion", {"window": (8, 32, 32)}), ("rise", {"n_samples": 2, "cells": [2, 2, 2]})):
        exp = vx.explain(model, clip, method, **options)
        back = vx.Explanation.load(exp.save(tmp_path / method))
        assert back.options == exp.options
    assert exp.options["cells"] == [2, 2, 2] and back.options["cells"] == [2, 2, 2]


def test_explanation_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(InputError, match="not a videoxai explanation"):
        vx.Explanation.load(p)
    with pytest.raises(InputError, match="no explanation file"):
        vx.Explanation.load(tmp_path / "missing.npz")
    # not a zip at all: numpy's message advised allow_pickle
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(InputError, match="junk.npz is not a videoxai explanation file: not an .npz archive$"):
        vx.Explanation.load(tmp_path / "junk.npz")
    # metadata but no map: was a bare KeyError
    np.savez(p, metadata=np.frombuffer(b'{"target": 0}', np.uint8))
    with pytest.raises(InputError, match="it has no 'spatial'"):
        vx.Explanation.load(p)


def _small_explanation(**changes) -> vx.Explanation:
    fields = dict(spatial=np.linspace(0, 1, 24, dtype=np.float16).reshape(2, 3, 4), temporal=np.array([0.4, 0.6]),
                  target=1, label="a", score=0.6, probs=np.array([0.4, 0.6]), method="rise",
                  raw=np.ones((2, 3, 4), np.float16))
    return vx.Explanation(**{**fields, **changes})


def test_explanation_metadata_keeps_numpy_booleans_unicode_and_float16_maps(tmp_path):
    # np.bool_ is not an np.integer: it was written as the text "False", which is truthy
    exp = _small_explanation(label="übung ✓ 日本", options={"flag": np.bool_(False), "n": np.int64(3), "pair": (1, 2)},
                             meta={"source": tmp_path / "clip.mp4", "ok": np.bool_(True)})
    back = vx.Explanation.load(exp.save(tmp_path / "e.npz"))
    assert back.label == "übung ✓ 日本" and back.options["flag"] is False and back.meta["ok"] is True
    assert back.options == {"flag": False, "n": 3, "pair": [1, 2]}      # JSON: a tuple comes back a list
    assert back.meta["source"] == str(tmp_path / "clip.mp4")
    assert exp.to_dict()["options"]["flag"] is False
    np.testing.assert_array_equal(back.spatial, exp.spatial)
    assert back.raw.dtype == np.float32 and np.array_equal(back.raw, exp.raw)


def test_explanation_save_refuses_nan_replaces_a_file_whole_and_names_a_parent_that_is_a_file(tmp_path):
    nan = _small_explanation(raw=np.full((2, 3, 4), np.nan, np.float32))
    with pytest.raises(InputError, match=r"cannot save the explanation to .*e\.npz: Explanation.raw holds NaN or infinite"):
        nan.save(tmp_path / "e.npz")
    assert not list(tmp_path.iterdir())
    first = _small_explanation().save(tmp_path / "new" / "e.npz")
    second = _small_explanation(target=0, label="b").save(first)
    assert second == first and vx.Explanation.load(first).label == "b"
    assert [p.name for p in first.parent.iterdir()] == ["e.npz"]        # no temporary file left beside it
    long = "x" * 250 + ".npz"                   # a name as long as a file name may be: written, not refused
    assert _small_explanation().save(tmp_path / long).name == long
    (tmp_path / "f").write_text("not a directory")
    # mkdir's own error was a FileExistsError traceback, "File exists"
    with pytest.raises(InputError, match=r"cannot save the explanation to .*: .*f is a file, not a directory$"):
        _small_explanation().save(tmp_path / "f" / "e.npz")


def test_explanation_load_names_a_truncated_archive_a_newer_format_and_nan_maps(tmp_path):
    path = _small_explanation().save(tmp_path / "e.npz")
    data = path.read_bytes()
    for n in (0, 10, len(data) // 2, len(data) - 30):   # zipfile's BadZipFile and numpy's EOFError escaped
        cut = tmp_path / "cut.npz"
        cut.write_bytes(data[:n])
        with pytest.raises(InputError, match=r"cut\.npz is a damaged or truncated \.npz archive \(.+\); save"):
            vx.Explanation.load(cut)
    with np.load(path) as z:
        arrays = dict(z)
    meta = json.loads(bytes(arrays["metadata"]).decode())
    arrays["metadata"] = np.frombuffer(json.dumps({**meta, "version": 2}).encode(), np.uint8)
    np.savez(tmp_path / "v2.npz", **arrays)          # a later format was read as if it were this one
    with pytest.raises(InputError, match=r"v2\.npz was written by a newer videoxai \(explanation format 2; "
                                         r"this one reads format 1\): upgrade"):
        vx.Explanation.load(tmp_path / "v2.npz")
    np.savez(tmp_path / "nan.npz", **{**arrays, "metadata": np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                     "temporal": np.array([np.nan, 1], np.float32)})
    with pytest.raises(InputError, match=r"nan\.npz is not a valid explanation: Explanation.temporal holds NaN"):
        vx.Explanation.load(tmp_path / "nan.npz")


def test_to_dict_is_json_with_a_methods_numpy_extras():
    # extras such as SHAP's segment values or LIME's R² are numpy arrays in meta: json.dumps failed
    exp = vx.Explanation(spatial=np.zeros((2, 2, 2)), temporal=np.array([0.5, 0.5]), target=0, label="a",
                         score=1.0, probs=np.array([1.0]), method="lime", options={"n_segments": np.int64(4)},
                         meta={"surrogate_r2": np.array([0.25], np.float32), "segments": np.arange(4).reshape(2, 2)})
    d = json.loads(json.dumps(exp.to_dict(maps=True)))
    assert d["meta"]["surrogate_r2"] == [0.25] and d["meta"]["segments"] == [[0, 1], [2, 3]]
    assert d["options"] == {"n_segments": 4} and isinstance(exp.meta["surrogate_r2"], np.ndarray)


def test_top_frames_refuses_a_negative_count():
    exp = vx.Explanation(spatial=np.zeros((3, 2, 2)), temporal=np.array([0.2, 0.5, 0.3]), target=0, label="a",
                         score=1.0, probs=np.array([1.0]), method="staa")
    assert list(exp.top_frames(2)) == [1, 2] and list(exp.top_frames(0)) == [] and len(exp.top_frames(9)) == 3
    with pytest.raises(InputError, match="k must be an integer ≥ 0, got -1"):
        exp.top_frames(-1)


def test_a_refine_setting_that_does_not_exist_is_named_with_the_ones_that_do():
    # the message was Python's "Refine.__init__() got an unexpected keyword argument 'focsu'"
    with pytest.raises(InputError, match="^refine has no setting 'focsu'; its settings are threshold, focus, "
                                         "spatial_sigma, temporal_sigma$"):
        vx.Refine.parse({"focus": 2, "focsu": 3})
    assert vx.Refine.parse({"focus": 3}) == vx.Refine(focus=3)


def test_refine_refuses_non_finite_settings_and_survives_a_huge_sigma():
    # focus=NaN made every map NaN; spatial_sigma=1e6 asked for a 786 GB pad
    from videoxai.core.refine import gaussian_blur_2d

    for bad in ({"focus": float("nan")}, {"spatial_sigma": float("inf")}, {"focus": "x"}, {"temporal_sigma": True}):
        with pytest.raises(InputError, match=f"refine {next(iter(bad))} must be a finite number"):
            vx.Refine.parse(bad)
    maps = torch.rand(1, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    for settings in ({"spatial_sigma": 1e6}, {"temporal_sigma": 1e6}):
        out = vx.Refine.parse(settings)(maps)
        assert out.shape == maps.shape and torch.isfinite(out).all() and float(out.max()) == 1
    out = gaussian_blur_2d(maps, 1e308)  # 3σ overflows to inf: the cap applies before rounding
    assert torch.isfinite(out).all()
    # a σ within 2.6 map lengths keeps its full 3σ radius: the result of the uncapped kernel
    x = torch.zeros(1, 1, 16, 16)
    x[..., 3, 5] = 1
    r = 3 * 13
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1.0) / 13) ** 2)
    k = k / k.sum()
    rows = torch.nn.functional.conv2d(torch.nn.functional.pad(x[0], (r, r, 0, 0), mode="replicate")[None], k.view(1, 1, 1, -1))
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(rows, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    torch.testing.assert_close(gaussian_blur_2d(x, 13.0), ref.view(1, 1, 16, 16))


def test_cost_meter_counts_passes():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    model = vx.wrap(net, num_frames=2, input_size=4, num_classes=3)
    x = torch.rand(5, 2, 3, 4, 4)
    model(x[:1])  # materialise the lazy layer outside the meter
    with CostMeter(model) as meter:
        with torch.no_grad():
            model(x)
        out = model(x[:2])
        out.sum().backward()
    assert meter.cost.forward_passes == 7
    assert meter.cost.backward_passes == 2
    assert meter.cost.seconds > 0


def test_a_misspelled_method_or_metric_name_is_answered_with_the_close_one():
    # '--methods salency' listed all nineteen methods and left the reader to find the typo
    with pytest.raises(UnknownMethodError, match=r"unknown method 'salency' \(did you mean 'saliency'\?\); "
                                                 r"available: .*staa"):
        vx.methods.get("salency")
    with pytest.raises(Exception, match=r"unknown metric 'randomization' \(did you mean 'randomisation'\?\)"):
        vx.metrics.get("randomization")
    with pytest.raises(UnknownMethodError, match=r"unknown method 'zzz'; available"):   # nothing close: no guess
        vx.methods.get("zzz")


def test_unknown_method_and_model_errors_name_the_problem():
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'.*staa"):
        vx.methods.get("nope")
    with pytest.raises(UnknownModelError, match="unknown model 'no/such/model'"):
        vx.load_model("no/such/model")


def test_method_rejects_unknown_option():
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module
    model = from_hf_module(tiny_hf("timesformer"))
    clip = vx.Clip.from_array(np.zeros((8, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match="method .staa.: no option .layer.; did you mean .layers.[?] its options are: layers"):
        vx.explain(model, clip, "staa", layer=3)


def test_explain_rejects_wrong_frame_count():
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module
    model = from_hf_module(tiny_hf("timesformer"))
    with pytest.raises(InputError, match="exactly 8 frames, got 5"):
        vx.explain(model, np.zeros((5, 32, 32, 3), np.float32))


@pytest.mark.parametrize("target, match", [
    (10 ** 20, "target 100000000000000000000 out of range for a model with 4 classes"),
    (-1, "target -1 out of range"),
    (1.5, r"target must be a class index \(an integer\) or a class name, got 1.5 \(float\)"),
    (2.0, r"got 2.0 \(float\)"),
    (True, r"got True \(bool\)"),
    (np.bool_(True), r"got np.True_ \(bool\)|got True \(bool_?\)"),
])
def test_explain_refuses_targets_that_are_no_class_index(target, match):
    # torch overflowed on 10**20 ("Overflow when unpacking long long") and truncated 1.5 and True to class 1
    model = vx.load_model("demo-cnn")
    with pytest.raises(InputError, match=match):
        vx.explain(model, np.zeros((8, 64, 64, 3), np.uint8), "saliency", target=target)


def test_explain_takes_numpy_and_tensor_class_indices():
    model = vx.load_model("demo-cnn")
    clip = np.zeros((8, 64, 64, 3), np.uint8)
    assert vx.explain(model, clip, "saliency", target=np.int64(2)).target == 2
    assert vx.explain(model, clip, "saliency", target=torch.tensor(3)).target == 3
    # a 0-d array (np.array(1), an argmax kept as an array) was refused where the tensor is taken
    assert vx.explain(model, clip, "saliency", target=np.array(1)).target == 1
    assert vx.explain(model, clip, "saliency", target=np.array([2], np.uint8)).target == 2
    for no_index in (np.array(1.0), np.array([1, 2]), np.array(True)):
        with pytest.raises(InputError, match="target must be a class index"):
            vx.explain(model, clip, "saliency", target=no_index)


def test_explain_takes_a_method_class_with_its_options():
    # a class was looked up as a name: "unknown method <class 'videoxai.methods.rise.RISE'>"
    model = vx.load_model("demo-cnn")
    clip = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), np.uint8)
    by_class = vx.explain(model, clip, vx.methods.get("rise"), n_samples=4, cells=[2, 2, 2])
    by_name = vx.explain(model, clip, "rise", n_samples=4, cells=[2, 2, 2])
    assert by_class.method == "rise" and by_class.options == by_name.options
    assert by_class.meta["spec"] == by_name.meta["spec"] and np.array_equal(by_class.spatial, by_name.spatial)


def test_seeds_outside_what_the_generators_take_are_refused_by_name():
    model = vx.load_model("demo-cnn")
    clip = np.zeros((8, 64, 64, 3), np.uint8)
    for seed in (2 ** 70, -1):
        with pytest.raises(InputError, match=rf"method 'rise': option seed must be an integer in "
                                             rf"\[0, 18446744073709551615\], got {seed}"):
            vx.explain(model, clip, "rise", n_samples=2, seed=seed)
        with pytest.raises(InputError, match="metric 'deletion': option seed must be an integer in"):
            vx.metrics.get("deletion")(seed=seed)
    top = 2 ** 64 - 1                                      # the largest: accepted, and reproducible
    a = vx.explain(model, clip, "rise", n_samples=2, seed=top)
    np.testing.assert_array_equal(a.raw, vx.explain(model, clip, "rise", n_samples=2, seed=top).raw)
    from videoxai.metrics.class_sensitivity import other_class
    assert other_class(0, 4, top) in (1, 2, 3)                # numpy's RandomState takes 32-bit words
    assert vx.metrics.get("max_sensitivity")(seed=top).perturb(torch.zeros(1, 2, 3, 4, 4), 1).shape == (1, 2, 3, 4, 4)


def test_read_video_takes_a_bytes_path(tmp_path):
    from videoxai.data.video import write_video

    path = write_video(np.zeros((3, 16, 16, 3), np.uint8), tmp_path / "v.mp4", fps=4)
    clip = vx.read_video(bytes(path))
    assert clip.num_frames == 3 and clip.source == str(path)
    with pytest.raises(vx.VideoReadError, match="/nope.mp4: no such file"):
        vx.read_video(b"/nope.mp4")
    with pytest.raises(vx.VideoReadError, match="a video path must be a str, bytes or os.PathLike, got int"):
        vx.read_video(3)


class Deaf(torch.nn.Module):
    """A classifier whose output does not depend on its input: no method can rank anything."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.ones(x.shape[0], 4)) + 0 * self.conv(x).mean((2, 3, 4)).sum(1, keepdim=True)


@pytest.mark.parametrize("method", ["occlusion", "shap_temporal", "saliency", "rise"])
def test_a_constant_map_carries_a_warning_whatever_the_method(method):
    model = vx.wrap(Deaf(), num_frames=4, input_size=16)
    clip = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), np.uint8)
    exp = vx.explain(model, clip, method, **({"n_samples": 4} if method == "rise" else {}))
    assert np.all(exp.spatial == exp.spatial.flat[0]) and np.allclose(exp.temporal, 0.25)
    assert any(f"the {method} map is constant" in w and "ranks no pixel or frame" in w
               for w in exp.meta["warnings"]), exp.meta.get("warnings")



def test_a_cam_of_one_cell_is_said_to_be_one_cell_not_a_deaf_model():
    # gradcam at demo-cnn's global pooling makes a 1 x 1 x 1 map: the warning blamed the model's output
    clip = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), np.uint8)
    exp = vx.explain(vx.load_model("demo-cnn"), clip, "gradcam", layer="pool")
    assert exp.raw.shape == (1, 1, 1)
    (warning,) = exp.meta["warnings"]
    assert "map is constant" in warning and "a single cell, 1 x 1 x 1" in warning and "model's output" not in warning


def test_a_map_that_ranks_has_no_constant_map_warning():
    clip = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), np.uint8)
    assert "warnings" not in vx.explain(vx.load_model("demo-cnn"), clip, "saliency").meta


@pytest.mark.parametrize("text", ["9" * 5000, "-" + "1" * 30])
def test_a_target_text_of_thousands_of_digits_is_an_input_error(text):
    # int("9" * 5000) raised Python's own ValueError ("Exceeds the limit (4300 digits) ...")
    model = vx.load_model("demo-cnn")
    with pytest.raises(InputError, match=rf"target {text[:12]}\.\.\. \({len(text.lstrip('-'))} digits\) is not a "
                                         r"class index or name of demo-cnn: an index is 0 to \d+"):
        model.class_from_text(text)
    assert model.class_from_text("3") == 3
