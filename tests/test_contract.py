"""The plug-in contract, generated from the registries: every method on every kind of model, every
metric on a fixed map. A new method or metric file is covered without editing this test.

For each (method, model): either ``supports(model)`` is False and explaining raises
``UnsupportedModelError``, or the method runs on a short clip with the contract's shapes and
ranges, gives the same map twice (seeded), its recorded options survive a round trip through the
canonical spec, and the model is left as it was (parameters, gradient flags, mode, hooks).
Slow options are reduced by *name* (``n_samples``, ``iterations``, …) so new methods that use the
conventional names are fast too.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from videoxai.errors import InputError, UnsupportedModelError
from videoxai.explain import explanation_spec, parse_explanation_spec
from videoxai.methods import available as method_names
from videoxai.methods import get as get_method
from videoxai.metrics import MissingGroundTruth
from videoxai.metrics import available as metric_names
from videoxai.metrics import get as get_metric
from videoxai.options import OptionError, format_spec, parse_spec

#: conventional option names → a cheap value (applied when the method or metric declares them)
FAST = {"n_samples": 3, "iterations": 2, "n_steps": 2, "levels": 2, "steps": 3, "stages": 1,
        "max_exact_players": 4, "n_segments": 4, "segments": 16, "grid": 4, "strides": 1000,
        "shares": [0.3, 0.6], "areas": [0.1]}


class _WrappedCNN(nn.Module):
    """A user's 3D CNN for ``vx.wrap``: conv features, global pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, C, T, H, W)
        return self.head(self.features(x).mean((2, 3, 4)))


def _hf_directory(family: str, path) -> "vx.VideoModel":
    """A tiny random Hugging Face classifier of ``family`` as a user brings one: 4 frames, 2 heads,
    saved with ``save_pretrained`` and loaded back through ``vx.load_model(directory)``."""
    import transformers as tf

    torch.manual_seed(0)
    kw = dict(num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64, num_labels=3)
    net = {"timesformer": lambda: tf.TimesformerForVideoClassification(tf.TimesformerConfig(patch_size=8, **kw)),
           "videomae": lambda: tf.VideoMAEForVideoClassification(tf.VideoMAEConfig(patch_size=8, tubelet_size=2, **kw)),
           "vivit": lambda: tf.VivitForVideoClassification(tf.VivitConfig(tubelet_size=[2, 8, 8], **kw)),
           "vjepa2": lambda: tf.VJEPA2ForVideoClassification(tf.VJEPA2Config(  # its own names
               frames_per_clip=4, crop_size=32, patch_size=8, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
               num_attention_heads=2, mlp_ratio=2.0, num_labels=3, num_pooler_layers=1, pred_hidden_size=16,
               pred_num_hidden_layers=1, pred_num_attention_heads=2)),
           "videoprism": lambda: tf.VideoPrismForVideoClassification(tf.VideoPrismVisionConfig(  # factorised
               num_frames=4, image_size=32, tubelet_size=[1, 8, 8], hidden_size=32, num_spatial_layers=2,
               num_temporal_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3))}[family]()
    net.save_pretrained(path)
    return vx.load_model(str(path))


def _models(tmp) -> dict:
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module

    return {**{f"{f}-dir": _hf_directory(f, tmp / f) for f in ("timesformer", "videomae", "vivit", "vjepa2",
                                                                                "videoprism")},
        "demo": vx.load_model("demo"),
        "demo-cnn": vx.load_model("demo-cnn"),
        "demo-stabn": vx.load_model("demo-stabn"),
        "wrapped": vx.wrap(_WrappedCNN(), num_frames=8, input_size=24, cam_layer="features.1",
                           labels=["a", "b", "c"]),
        "token": from_hf_module(tiny_hf("timesformer")),
    }


#: tiny clips: one intra-op thread (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return _models(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    return vx.Clip.from_array(rng.random((8, 32, 32, 3), dtype=np.float32))


@pytest.fixture(scope="module")
def short_clip(clip):
    """The clip's first 4 frames, for the models that take exactly 4."""
    return vx.Clip.from_array(clip.frames[:4])


#: options that belong to one ``unit`` of the unit metrics, which refuse them under another
UNIT_OPTIONS = {"grid": "patch", "segments": "superpixel"}


def fast_options(cls) -> dict:
    declared = cls.declared_options()
    unit = declared["unit"].default if "unit" in declared else None
    return {k: v for k, v in FAST.items()
            if k in declared and (unit is None or UNIT_OPTIONS.get(k, unit) == unit)}


def _state(model) -> tuple:
    net = model.net if hasattr(model, "net") else model
    params = {k: v.detach().clone() for k, v in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules())
    return params, flags, net.training, hooks


MODEL_NAMES = ["demo", "demo-cnn", "demo-stabn", "wrapped", "token", "timesformer-dir", "videomae-dir", "vivit-dir",
               "vjepa2-dir", "videoprism-dir"]


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("name", method_names())
def test_every_method_on_every_model(models, clip, short_clip, name, model_name):
    model, cls = models[model_name], get_method(name)
    clip = short_clip if model.num_frames == 4 else clip
    options = fast_options(cls)
    if not cls.supports(model):
        reason = cls.unsupported(model)
        assert reason and "\n" not in reason
        with pytest.raises(UnsupportedModelError) as refused:
            vx.explain(model, clip, name, **options)
        assert str(refused.value) == reason  # the one line that says why, not a later failure
        return
    before = _state(model)
    exp = vx.explain(model, clip, name, **options)
    t, h, w = clip.num_frames, clip.height, clip.width
    assert exp.spatial.shape == (t, h, w) and exp.temporal.shape == (t,)
    assert np.isfinite(exp.spatial).all() and exp.spatial.min() >= 0 and exp.spatial.max() <= 1
    assert np.isfinite(exp.temporal).all() and exp.temporal.min() >= 0
    assert exp.temporal.sum() == pytest.approx(1, abs=1e-5)
    # a map that ranks nothing (these random models, the fast options) says so in a warning
    warned = " ".join(exp.meta.get("warnings", []))
    assert np.ptp(exp.spatial) > 0 or "map is constant" in warned
    assert np.ptp(exp.temporal) > 0 or "map is constant" in warned or "same on every frame" in warned
    assert 0 <= exp.target < model.num_classes
    # determinism: the same input and seed give the same map
    again = vx.explain(model, clip, name, **options)
    np.testing.assert_allclose(again.spatial, exp.spatial, atol=1e-5)
    # options: Explanation.options (the method's, refine, working_size) → spec → the same options
    assert set(exp.options) == set(cls.declared_options()) | {"refine", "working_size"}
    spec = explanation_spec(name, exp.options)
    assert parse_explanation_spec(spec) == (name, exp.options)
    assert spec == cls.spec_for({k: v for k, v in exp.options.items() if k in cls.declared_options()})
    # the model is left as it was
    after = _state(model)
    assert after[1:] == before[1:]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])


@pytest.mark.parametrize("refine, working_size", [(False, "full"), (True, "model"),
                                                   ({"threshold": "mean", "focus": 1.5}, "full")])
def test_refine_and_working_size_round_trip_through_the_spec(models, clip, refine, working_size):
    exp = vx.explain(models["demo-cnn"], clip, "gradcam", refine=refine, working_size=working_size)
    spec = explanation_spec("gradcam", exp.options)
    assert ("working_size=full" in spec) == (working_size == "full")
    assert parse_explanation_spec(spec) == ("gradcam", exp.options)
    name, options = parse_explanation_spec(spec)
    again = vx.explain(models["demo-cnn"], clip, name, **options)  # the spec remakes the map
    np.testing.assert_allclose(again.spatial, exp.spatial, atol=1e-6)
    assert exp.meta["spec"] == spec  # recorded with the explanation, and explain() reads it as is
    direct = vx.explain(models["demo-cnn"], clip, exp.meta["spec"])
    np.testing.assert_allclose(direct.spatial, exp.spatial, atol=1e-6)
    assert direct.options == exp.options


def test_no_spec_is_recorded_for_a_baseline_given_as_a_function_or_a_tensor(models, clip):
    # their repr went into meta["spec"], a spec that neither parses back nor makes the same map
    model = models["demo-cnn"]
    for baseline in (lambda x: x * 0, torch.zeros(1, 1, 3, 1, 1)):
        exp = vx.explain(model, clip, "integrated_gradients", n_steps=2, baseline=baseline)
        assert exp.meta["spec"] is None
    named = vx.explain(model, clip, "integrated_gradients", n_steps=2, baseline="blur")
    assert named.meta["spec"] == "integrated_gradients(baseline=blur, n_steps=2)"


def test_a_spec_passed_to_explain_sets_options_once(models, clip):
    exp = vx.explain(models["demo-cnn"], clip, "occlusion(window=[2, 4, 4], strides=[2, 4, 4], refine=false)")
    assert tuple(exp.options["window"]) == (2, 4, 4) and exp.options["refine"] is False
    assert exp.meta["spec"] == "occlusion(strides=[2, 4, 4], window=[2, 4, 4])"  # refine=false is its default
    with pytest.raises(InputError, match="window given both in the spec and as an argument"):
        vx.explain(models["demo-cnn"], clip, "occlusion(window=4)", window=4)
    with pytest.raises(InputError, match="refine given both"):
        vx.explain(models["demo-cnn"], clip, "occlusion(refine=true)", refine=False)
    with pytest.raises(OptionError, match="option window"):
        vx.explain(models["demo-cnn"], clip, "occlusion(window=abc)")
    # an option the spec does not give may come as an argument (a default is not "given")
    both = vx.explain(models["demo-cnn"], clip, "occlusion(window=[2, 4, 4])", strides=[2, 4, 4])
    assert both.meta["spec"] == exp.meta["spec"]


# -- metrics on a fixed map -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixed_case(models):
    model = models["demo-cnn"]
    rng = np.random.default_rng(1)
    frames = rng.random((8, 32, 32, 3), dtype=np.float32)
    masks = np.zeros((8, 32, 32), bool)
    masks[2:6, 8:20, 10:22] = True
    sample = SimpleNamespace(masks=masks, boxes=None, window=(2, 6))
    exp = vx.explain(model, vx.Clip.from_array(frames), "gradcam")
    return model, vx.Clip.from_array(frames), exp, sample


@pytest.mark.parametrize("name", metric_names())
def test_every_metric_on_a_fixed_map(fixed_case, name):
    model, clip, exp, sample = fixed_case
    cls = get_metric(name)
    options = fast_options(cls)
    metric = cls(**options)
    if cls.requires:
        bare = SimpleNamespace(masks=None, boxes=None, window=None)
        assert not cls.supports(bare)
        with pytest.raises(MissingGroundTruth):
            metric(model, clip, exp, sample=bare)
    assert cls.supports(sample)
    before = _state(model)
    score = metric(model, clip, exp, sample=sample)
    value = score.value
    assert np.isfinite(value) or "undefined" in score.details
    assert metric(model, clip, exp, sample=sample).value == pytest.approx(value, nan_ok=True)
    assert isinstance(metric.higher_is_better, bool)
    # options round trip through the canonical spec
    assert get_metric(name)(**parse_spec(metric.spec)[1]).options == metric.options
    assert metric.spec == format_spec(name, cls.canonical_options(metric.options))
    after = _state(model)
    assert after[1:] == before[1:] and all(torch.equal(before[0][k], after[0][k]) for k in before[0])


# -- a model left in training mode ------------------------------------------------------------------
class _TrainingNet(nn.Module):
    """A user's network with batch norm and dropout, whose train/eval mode changes its output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 4)

    def forward(self, x):  # (B, C, T, H, W)
        return self.head(self.drop(torch.relu(self.bn(self.conv(x))).mean((2, 3, 4))))


@pytest.mark.parametrize("name", ["saliency", "gradcam", "rise", "ep3d"])
def test_a_model_in_training_mode_is_explained_in_eval_mode_and_left_in_it(clip, name):
    # a user fine-tuning their network explains it before model.eval(): dropout made every map
    # random and every forward pass moved batch norm's running statistics (explaining changed
    # the model); a frozen batch-norm layer in a training network keeps its own mode
    model = vx.wrap(_TrainingNet(), num_frames=8, input_size=16)
    model.train()
    model.net.bn.eval()
    before = _state(model)
    options = fast_options(get_method(name))
    exp = vx.explain(model, clip, name, **options)
    again = vx.explain(model, clip, name, **options)
    np.testing.assert_allclose(again.spatial, exp.spatial, atol=1e-6)
    model.eval()
    np.testing.assert_allclose(vx.explain(model, clip, name, **options).spatial, exp.spatial, atol=1e-6)
    model.train()
    model.net.bn.eval()
    score = vx.metrics.Deletion(unit="frame")(model, clip, exp)
    # (undefined for ep3d's map here, whose frame scores are equal: a blank ranking, d57be4d)
    np.testing.assert_equal(score.value, vx.metrics.Deletion(unit="frame")(model, clip, exp).value)
    after = _state(model)
    assert after[1:] == before[1:] and all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert [m.training for m in model.modules()] == [m is not model.net.bn for m in model.modules()]


def test_modes_are_put_back_when_an_explanation_fails(clip):
    model = vx.wrap(_TrainingNet(), num_frames=8, input_size=16)
    model.train()
    with pytest.raises(InputError, match="baseline"):  # raised inside the method's attribute
        vx.explain(model, clip, "rise", n_samples=3, baseline=lambda x: x[:, :1])
    with pytest.raises(InputError, match="nope"):  # raised while the method is built
        vx.explain(model, clip, "gradcam", layer="nope")
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("name, model_name", [("saliency", "wrapped"), ("gradcam", "wrapped"), ("ep3d", "wrapped"),
                                              ("attention_relevance", "token"), ("rise", "wrapped")])
def test_methods_run_under_torch_inference_mode(models, clip, name, model_name):
    # a serving loop's usual guard: torch.enable_grad() inside a method does not leave inference
    # mode, and every backward pass failed with autograd's "element 0 of tensors does not require grad"
    model = models[model_name]
    options = fast_options(get_method(name))
    expected = vx.explain(model, clip, name, **options)
    with torch.inference_mode():
        exp = vx.explain(model, clip, name, **options)
        pixels = clip.to_tensor()  # an inference tensor, which autograd refuses to record
        attr = get_method(name)(model, **options).attribute(pixels, target=torch.tensor([expected.target]))
    np.testing.assert_allclose(exp.spatial, expected.spatial, atol=1e-6)
    assert attr.maps.shape[0] == 1 and torch.isfinite(attr.maps).all()


@pytest.mark.parametrize("name", ["randomisation", "max_sensitivity", "deletion"])
def test_metrics_run_under_torch_inference_mode(fixed_case, name):
    # the randomisation check re-initialised its copies of the model under inference mode, and
    # the method it re-ran could not differentiate their inference-tensor parameters
    model, clip, exp, sample = fixed_case
    cls = get_metric(name)
    metric = cls(**fast_options(cls))
    expected = metric(model, clip, exp, sample=sample).value
    with torch.inference_mode():
        assert metric(model, clip, exp, sample=sample).value == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize("name", [n for n in metric_names() if get_metric(n).requires])
@pytest.mark.parametrize("truth", ["masks of 16 frames", "masks of one frame", "boxes of 4 frames", "one box"])
def test_ground_truth_of_another_shape_is_refused_by_every_localisation_metric(fixed_case, name, truth):
    # temporal_grounding reshaped a (16, H, W) mask to the clip's 8 frames, indexed (4, 4) boxes as
    # if they were 8, and scored both; a flat box was an IndexError
    model, clip, exp, _ = fixed_case
    t, h, w = exp.spatial.shape
    masks = {"masks of 16 frames": np.ones((2 * t, h, w), bool), "masks of one frame": np.ones((h, w), bool)}
    boxes = {"boxes of 4 frames": np.tile([2.0, 2, 10, 10], (t // 2, 1)), "one box": np.array([2.0, 2, 10, 10])}
    sample = SimpleNamespace(masks=masks.get(truth), boxes=boxes.get(truth), window=None)
    with pytest.raises(InputError, match="shape"):
        get_metric(name)()(model, clip, exp, sample=sample)


class _TimeCollapsingCNN(nn.Module):
    """A 3D CNN whose last feature map keeps ``8 / time_stride`` frames of the clip's 8, which read
    all 8 between them (r3d_18 on 8 frames keeps one, which reads them all). (A kernel of 3 frames,
    padded by 1, strided by 8 read frames 0 and 1 only: its maps are laid on those since 25d226e.)"""

    def __init__(self, time_stride: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(3, 8, (time_stride, 3, 3), padding=(0, 1, 1),
                                                stride=(time_stride, 1, 1)), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, C, T, H, W)
        return self.head(self.features(x).mean((2, 3, 4)))


@pytest.mark.parametrize("method", ["gradcam", "gradcam_pp"])
def test_a_cam_of_one_feature_frame_warns_that_it_says_nothing_about_when(clip, method):
    # r3d_18 / r2plus1d_18 on an 8-frame clip: layer4 has one frame, so the map is the same on every
    # frame and the frame scores are uniform, which read as "every frame matters equally"
    one = vx.wrap(_TimeCollapsingCNN(8), num_frames=8, input_size=32, cam_layer="features.1")
    exp = vx.explain(one, clip, method)
    assert exp.raw.shape[0] == 1 and np.ptp(exp.spatial) > 0
    np.testing.assert_allclose(exp.temporal, 1 / 8, atol=1e-7)
    assert any("has one frame for the clip's 8" in w for w in exp.meta["warnings"])
    two = vx.wrap(_TimeCollapsingCNN(4), num_frames=8, input_size=32, cam_layer="features.1")
    exp = vx.explain(two, clip, method)
    assert exp.raw.shape[0] == 2 and np.ptp(exp.temporal) > 0
    assert not any("same on every frame" in w for w in exp.meta.get("warnings", []))


def test_an_occlusion_window_as_long_as_the_clip_warns_that_the_map_says_nothing_about_when(models, clip):
    # each box hid all 8 frames at once: the map was the same on every frame, its frame scores
    # uniform, and nothing said why
    model = models["demo-cnn"]
    exp = vx.explain(model, clip, "occlusion", window=[8, 8, 8], strides=[8, 8, 8])
    assert np.ptp(exp.spatial) > 0 and np.allclose(exp.spatial, exp.spatial[:1])
    np.testing.assert_allclose(exp.temporal, 1 / 8, atol=1e-7)
    assert any("same on every frame (what the method varies covers every frame at once)" in w
               for w in exp.meta.get("warnings", []))
    exp = vx.explain(model, clip, "occlusion", window=[2, 8, 8], strides=[2, 8, 8])
    assert np.ptp(exp.temporal) > 0 and not exp.meta.get("warnings")


#: the cheapest configuration of each option on a torchvision network (a 112-pixel input whatever the
#: clip: every pass costs ~0.1 s on a CPU): one optimisation step and area, one sample (LIME's
#: surrogate and RISE's centred scores need two), four occluded boxes, two frame segments
TORCHVISION_FAST = {**FAST, "iterations": 1, "levels": 2, "areas": [0.1], "n_samples": 1, "n_segments": 2,
                    "window": [8, 56, 56], "strides": [1000, 1000, 1000]}
TORCHVISION_FAST_PER_METHOD = {"lime": {"n_samples": 2}, "rise": {"n_samples": 2}}


@pytest.fixture(scope="module")
def r3d():
    torch.manual_seed(0)
    return vx.load_model("torchvision:r3d_18", weights=None)


@pytest.mark.parametrize("name", method_names())
def test_every_method_on_a_torchvision_network(r3d, clip, name):
    # r3d_18 (random weights) on an 8-frame clip: its layer4 keeps one frame of the 8, so the CAM
    # methods' frame scores are uniform and say so; the attention methods refuse in one line
    cls = get_method(name)
    options = {k: v for k, v in TORCHVISION_FAST.items() if k in cls.declared_options()}
    options.update(TORCHVISION_FAST_PER_METHOD.get(name, {}))
    if not cls.supports(r3d):
        with pytest.raises(UnsupportedModelError, match=f"{name}.*r3d"):
            vx.explain(r3d, clip, name, **options)
        return
    exp = vx.explain(r3d, clip, name, **options)
    assert exp.spatial.shape == (8, 32, 32) and exp.temporal.shape == (8,)
    assert np.isfinite(exp.spatial).all() and np.isfinite(exp.temporal).all()
    assert {k: np.asarray(exp.options[k]).tolist() for k in options} == {k: np.asarray(v).tolist() for k, v in options.items()}
    warned = " ".join(exp.meta["warnings"])
    assert "RANDOM weights" in warned
    assert np.ptp(exp.spatial) > 0 or "map is constant" in warned
    assert np.ptp(exp.temporal) > 0 or "map is constant" in warned or "same on every frame" in warned


def test_a_method_with_an_option_named_like_an_explain_argument_is_refused_when_it_registers():
    """vx.explain takes ``refine``, ``target``, … itself: a method option of that name was taken by
    explain before the method saw it and recorded as explain's value, without a word (found
    when an extremal option was first called ``refine``)."""
    import inspect

    from videoxai.methods import base
    from videoxai.methods.saliency import Saliency

    assert base.EXPLAIN_ARGUMENTS == set(inspect.signature(vx.explain).parameters) - {"model", "options"}

    class Refining(Saliency):
        name = "refining_saliency"

        def __init__(self, model, refine: bool = False) -> None:
            super().__init__(model)

    with pytest.raises(ValueError, match=r"method 'refining_saliency': option 'refine' is also an argument of "
                                         r"vx\.explain"):
        base.register(Refining)
    assert "refining_saliency" not in method_names()
