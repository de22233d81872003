"""Temporal SHAP, LIME, occlusion and RISE on analytic models whose true attribution is known."""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from videoxai.errors import InputError
from videoxai.options import OptionError
from videoxai.methods.lime import weighted_ridge
from videoxai.methods.segments import frame_segments, superpixels, window_starts
from videoxai.methods.shap_temporal import exact_shapley

T, S = 8, 32


# -- analytic models ------------------------------------------------------------------------------
class FrameSum(nn.Module):
    """logit_0 = Σ_t w_t · mean(x_t) (optionally through a ReLU threshold), logit_1 = 0.

    With a black baseline and ``output="logit"`` the game is additive: the Shapley value of a
    segment is Σ_{t ∈ segment} w_t · mean(x_t), exactly. The threshold makes it non-additive.
    """

    def __init__(self, weights, threshold: float | None = None, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("w", torch.as_tensor(weights, dtype=torch.float32))
        self.threshold, self.scale = threshold, scale

    def forward(self, x):                                   # (B, C, T, H, W), identity-normalised
        z = (x.mean((1, 3, 4)) * self.w).sum(1)
        if self.threshold is not None:
            z = torch.relu(z - self.threshold)
        z = self.scale * z
        return torch.stack([z, torch.zeros_like(z)], 1)


class BoxEvidence(nn.Module):
    """logit_0 = scale · mean intensity inside ``box`` of frames ``frames``, logit_1 = offset.

    Only the pixels of the box in those frames can change the output: the ground truth of
    every spatial method.
    """

    def __init__(self, box, frames, scale: float = 20.0, offset: float = 11.0) -> None:
        super().__init__()
        self.box, self.frames, self.scale, self.offset = box, frames, scale, offset
        self.conv = nn.Conv3d(3, 1, 1, bias=False)           # a real layer: mean over channels
        nn.init.constant_(self.conv.weight, 1 / 3)

    def forward(self, x):
        (t0, t1), (y0, y1, x0, x1) = self.frames, self.box
        v = self.conv(x)[:, 0, t0:t1, y0:y1, x0:x1].mean((1, 2, 3))
        return torch.stack([self.scale * v, torch.full_like(v, self.offset)], 1)


class OneLogit(BoxEvidence):
    """BoxEvidence as a binary classifier with a single logit, ``scale · v − offset``: its sigmoid
    is exactly BoxEvidence's softmax probability of class 0."""

    def forward(self, x):
        two = super().forward(x)
        return two[:, :1] - two[:, 1:]


def wrap(net, size=S, **kw):
    return vx.wrap(net, num_frames=T, input_size=size, num_classes=2, mean=(0, 0, 0), std=(1, 1, 1), **kw)


BOX, WINDOW = (10, 18, 12, 20), (2, 5)


@pytest.fixture(scope="module")
def box_case():
    """A clip with a bright square inside ``BOX`` in ``WINDOW``, and the model that looks there."""
    g = torch.Generator().manual_seed(0)
    frames = 0.2 + 0.1 * torch.rand(T, S, S, 3, generator=g)
    (t0, t1), (y0, y1, x0, x1) = WINDOW, BOX
    frames[t0:t1, y0:y1, x0:x1] = 0.9
    truth = np.zeros((T, S, S), bool)
    truth[t0:t1, y0:y1, x0:x1] = True
    return wrap(BoxEvidence(BOX, WINDOW)), vx.Clip.from_array(frames.numpy()), truth


def textured_clip(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, T, 3, S, S, generator=g)


# -- segments -------------------------------------------------------------------------------------
def test_frame_segments_cover_the_clip_in_order():
    b = frame_segments(8, 3)
    assert b.tolist() == [[0, 3], [3, 6], [6, 8]]
    assert frame_segments(8, 8).tolist() == [[i, i + 1] for i in range(8)]
    with pytest.raises(InputError, match="cannot be split into 9"):
        frame_segments(8, 9)


def test_window_starts_cover_every_position():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    with pytest.raises(InputError, match=r"^window 4 is longer than the axis \(3\)$"):
        window_starts(3, 4, 1)


def test_superpixels_label_each_frame_separately_or_the_volume():
    x = textured_clip()[0]
    per_frame = superpixels(x, 6, mode="frame")
    assert per_frame.shape == (T, S, S)
    labels = per_frame.unique()
    assert labels.tolist() == list(range(len(labels)))               # consecutive
    frames_of = [set(per_frame[t].unique().tolist()) for t in range(T)]
    assert all(not (a & b) for a, b in itertools.combinations(frames_of, 2))  # no label spans frames
    volume = superpixels(x, 24, mode="clip")
    spans = [(volume == v).any(-1).any(-1).sum().item() for v in volume.unique()]
    assert max(spans) > 1                                             # supervoxels span frames


@pytest.mark.parametrize("mode, n", [("clip", 96), ("frame", 48)])
def test_superpixels_survive_grain(mode, n):
    # a synthetic clip with pixel noise of σ 0.1 (grain on a real video): without pre-smoothing,
    # SLIC's connectivity step merges the fragments the noise makes into a few segments
    from videoxai.data.synthetic import SyntheticVideos

    clip = SyntheticVideos(1, split="val", seed=0)[0].clip.to_tensor()[0]
    grainy = (clip + 0.1 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    per = (lambda labels: (labels.max().item() + 1) / (1 if mode == "clip" else clip.shape[0]))
    assert per(superpixels(grainy, n, mode=mode, smoothing=0.0)) < n / 4
    assert per(superpixels(grainy, n, mode=mode, smoothing=1.0)) > n / 2
    smoothed = superpixels(grainy, n, mode=mode)  # "auto": smoothed because the plain cut collapsed
    assert torch.equal(smoothed, superpixels(grainy, n, mode=mode, smoothing=1.0))
    # ... and clean frames are cut as SLIC cuts them, without smoothing
    assert torch.equal(superpixels(clip, n, mode=mode), superpixels(clip, n, mode=mode, smoothing=0.0))
    if mode == "clip":  # smoothing is within frames: a supervoxel still follows the clip in time
        assert max((smoothed == v).any(-1).any(-1).sum().item() for v in smoothed.unique()) > 1


# -- temporal SHAP --------------------------------------------------------------------------------
def coalition_value(model, x, bounds, members, output, target=0):
    keep = torch.zeros(T)
    for i in members:
        keep[bounds[i, 0]:bounds[i, 1]] = 1
    xs = x * keep[None, :, None, None, None]                          # black baseline
    out = model(xs)
    return out[0, target].item() if output == "logit" else out.softmax(-1)[0, target].item()


def test_shap_equals_known_segment_values_on_an_additive_model():
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 2.0])
    model, x = wrap(FrameSum(w)), textured_clip()
    m = vx.methods.get("shap_temporal")(model, n_segments=4, baseline="black", output="logit")
    attr = m.attribute(x, target=0)
    frame_means = x[0].mean((1, 2, 3))
    known = (w * frame_means).reshape(4, 2).sum(1)
    phi = attr.extras["segment_values"][0]
    torch.testing.assert_close(phi, known, atol=1e-5, rtol=1e-5)
    assert attr.extras["segments"][0].tolist() == [[0, 2], [2, 4], [4, 6], [6, 8]]
    # per-frame values spread each segment's value evenly over its frames; temporal is their positive part
    torch.testing.assert_close(attr.extras["frame_values"][0], known.repeat_interleave(2) / 2, atol=1e-5, rtol=0)
    torch.testing.assert_close(attr.temporal[0], (known.repeat_interleave(2) / 2).clamp_min(0), atol=1e-5, rtol=0)


def test_shap_uses_shapley_weights_not_equal_weights():
    """A thresholded (non-additive) game: compare with Shapley values by brute force over orders."""
    w = torch.ones(T)
    x = textured_clip(1)
    total = (w * x[0].mean((1, 2, 3))).sum().item()
    model = wrap(FrameSum(w, threshold=0.6 * total, scale=4.0))
    n = 4
    bounds = frame_segments(T, n)
    brute = torch.zeros(n, dtype=torch.float64)
    for order in itertools.permutations(range(n)):
        for k, i in enumerate(order):
            brute[i] += (coalition_value(model, x, bounds, order[:k + 1], "logit")
                         - coalition_value(model, x, bounds, order[:k], "logit"))
    brute /= math.factorial(n)
    m = vx.methods.get("shap_temporal")(model, n_segments=n, baseline="black", output="logit")
    phi = m.attribute(x, target=0).extras["segment_values"][0].double()
    torch.testing.assert_close(phi, brute, atol=1e-4, rtol=1e-4)
    # the reference's unweighted (Banzhaf) average differs on this game: the test can tell
    codes = range(2 ** n)
    v = torch.tensor([coalition_value(model, x, bounds, [i for i in range(n) if c >> i & 1], "logit")
                      for c in codes], dtype=torch.float64)
    banzhaf = torch.tensor([sum(v[c | 1 << i] - v[c] for c in codes if not c >> i & 1) / 2 ** (n - 1)
                            for i in range(n)])
    assert (banzhaf - brute).abs().max() > 1e-2
    torch.testing.assert_close(exact_shapley(v, n), brute, atol=1e-9, rtol=0)


def test_shap_efficiency_and_symmetry_with_probabilities():
    w = torch.tensor([1.0, 1.0, 2.0, 2.0, 1.0, 1.0, -1.0, 0.5])
    x = textured_clip(2)
    x[:, 4:6] = x[:, 0:2]                                   # segments 0 and 2: same frames, same weights
    model = wrap(FrameSum(w, scale=3.0))
    m = vx.methods.get("shap_temporal")(model, n_segments=4, baseline="black", batch_size=5)
    attr = m.attribute(x, target=0)
    phi = attr.extras["segment_values"][0].double()
    v_full = model(x).softmax(-1)[0, 0].item()
    v_empty = model(torch.zeros_like(x)).softmax(-1)[0, 0].item()
    assert phi.sum().item() == pytest.approx(v_full - v_empty, abs=1e-6)
    assert attr.extras["value_full"][0].item() == pytest.approx(v_full, abs=1e-6)
    assert phi[0].item() == pytest.approx(phi[2].item(), abs=1e-6)          # symmetry
    assert abs(phi[0].item() - phi[1].item()) > 1e-3                        # and not trivially equal


def test_exact_shap_evaluates_every_coalition_once():
    model, x = wrap(FrameSum(torch.ones(T))), textured_clip()
    clip = vx.Clip.from_array(x[0].permute(0, 2, 3, 1).numpy())
    exp = vx.explain(model, clip, method="shap_temporal", n_segments=5, batch_size=7)
    assert exp.cost.forward_passes == 2 ** 5 + 1                            # + the clean clip
    assert exp.meta["segment_values"].shape == (1, 5)                       # (batch, segments)
    assert exp.temporal.shape == (T,) and exp.spatial.shape == (T, S, S)


def test_sampled_shap_is_exactly_efficient_and_unbiased_on_additive_games():
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 2.0])
    x = textured_clip(3)
    additive = wrap(FrameSum(w))
    exact = vx.methods.get("shap_temporal")(additive, n_segments=8, baseline="black", output="logit")
    sampled = vx.methods.get("shap_temporal")(additive, n_segments=8, baseline="black", output="logit",
                                               max_exact_players=4, n_samples=6)
    # on an additive game every ordering gives the exact values
    torch.testing.assert_close(sampled.attribute(x, 0).extras["segment_values"],
                               exact.attribute(x, 0).extras["segment_values"], atol=1e-5, rtol=0)
    # on a non-additive game each ordering's gains still add up to v(N) − v(∅)
    total = (w.clamp_min(0) * x[0].mean((1, 2, 3))).sum().item()
    game = wrap(FrameSum(w.clamp_min(0), threshold=0.5 * total, scale=5.0))
    m = vx.methods.get("shap_temporal")(game, n_segments=8, baseline="black", max_exact_players=4,
                                        n_samples=7, seed=3)
    a = m.attribute(x, 0)
    phi = a.extras["segment_values"][0].double()
    gap = phi.sum() - (a.extras["value_full"][0] - a.extras["value_empty"][0]).double()
    assert abs(gap.item()) < 1e-6
    again = vx.methods.get("shap_temporal")(game, n_segments=8, baseline="black", max_exact_players=4,
                                            n_samples=7, seed=3).attribute(x, 0)
    other = vx.methods.get("shap_temporal")(game, n_segments=8, baseline="black", max_exact_players=4,
                                            n_samples=7, seed=4).attribute(x, 0)
    assert torch.equal(again.extras["segment_values"], a.extras["segment_values"])
    assert not torch.equal(other.extras["segment_values"], a.extras["segment_values"])
    true_phi = vx.methods.get("shap_temporal")(game, n_segments=8, baseline="black").attribute(x, 0)
    assert (a.extras["segment_values"] - true_phi.extras["segment_values"]).abs().max() < 0.1


def test_shap_rejects_more_segments_than_frames():
    model = wrap(FrameSum(torch.ones(T)))
    with pytest.raises(InputError, match="8 frames cannot be split into 12 segments"):
        vx.methods.get("shap_temporal")(model, n_segments=12).attribute(textured_clip())


# -- LIME, occlusion, RISE on the box model ----------------------------------------------------------
def assert_localises(exp, truth, min_share):
    """Every frame of the window has its peak inside the box; the window holds the temporal peak;
    the box holds ``min_share`` of the map's mass (it is 2.3 % of the clip's voxels)."""
    t0, t1 = WINDOW
    for t in range(t0, t1):
        assert truth[t].ravel()[exp.spatial[t].argmax()], f"frame {t}: peak outside the box"
    assert t0 <= int(exp.temporal.argmax()) < t1
    share = exp.spatial[truth].sum() / exp.spatial.sum()
    assert share > min_share, share


def test_lime_recovers_the_box(box_case):
    model, clip, truth = box_case
    exp = vx.explain(model, clip, method="lime", target=0, n_samples=300, superpixels="frame",
                     n_segments=12)
    assert_localises(exp, truth, min_share=0.35)
    assert exp.meta["surrogate_r2"] > 0.5
    # supervoxels over the clip localise too
    exp = vx.explain(model, clip, method="lime", target=0, n_samples=300, superpixels="clip",
                     n_segments=60)
    assert_localises(exp, truth, min_share=0.3)


def test_occlusion_recovers_the_box(box_case):
    model, clip, truth = box_case
    exp = vx.explain(model, clip, method="occlusion", target=0, window=(1, 4, 4), strides=(1, 4, 4),
                     baseline="black")
    assert_localises(exp, truth, min_share=0.6)
    t = [0, 1, 5, 6, 7]                                     # frames the model never looks at
    assert exp.spatial[t].max() == 0
    n = 8 * 8 * 8
    assert exp.cost.forward_passes == n + 1 + 1             # windows + reference + clean logits


@pytest.mark.parametrize("method, options", [("occlusion", {"window": (1, 4, 4), "strides": (1, 4, 4)}),
                                             ("rise", {"n_samples": 16}), ("lime", {"n_samples": 16}),
                                             ("shap_temporal", {"n_segments": 4})])
def test_a_baseline_given_as_a_function_is_used_as_captum_takes_one(box_case, method, options):
    # a function of the pixels (as IG and Captum take one) was refused: "must be a string"
    model, clip, _ = box_case
    named = vx.explain(model, clip, method, target=0, baseline="black", **options)
    zeros = vx.explain(model, clip, method, target=0, baseline=torch.zeros_like, **options)
    np.testing.assert_array_equal(zeros.spatial, named.spatial)
    assert zeros.meta["spec"] is None  # a function is no text: no spec to store or replay
    np.testing.assert_array_equal(zeros.temporal, named.temporal)
    grey = vx.explain(model, clip, method, target=0, baseline=lambda x: torch.full_like(x, 0.5), **options)
    assert not (np.array_equal(grey.spatial, named.spatial) and np.array_equal(grey.temporal, named.temporal))
    with pytest.raises(InputError, match=rf"^method '{method}': baseline returned \(1, 8, 3\), expected a tensor "
                                         r"of shape \(1, 8, 3, 32, 32\)"):
        vx.explain(model, clip, method, target=0, baseline=lambda x: x[..., 0, 0], **options)
    # a NaN baseline made NaN maps, and the error blamed "an option far out of scale" or the model
    with pytest.raises(InputError, match=rf"^method '{method}': baseline returned NaN or infinite values$"):
        vx.explain(model, clip, method, target=0, baseline=lambda x: torch.full_like(x, float("nan")), **options)


@pytest.mark.parametrize("method", ["occlusion(window=[1, 4, 4], strides=[1, 4, 4])", "rise(n_samples=32)",
                                    "lime(n_samples=32)", "shap_temporal(n_segments=4)"])
def test_a_single_logit_binary_classifier_is_read_through_its_sigmoid(box_case, method):
    # a softmax over one output is 1 for every clip: the perturbation methods saw a model that
    # never changes and returned blank maps, and the score said 100 %
    _, clip, truth = box_case
    two = vx.explain(wrap(BoxEvidence(BOX, WINDOW)), clip, method, target=0)
    model = vx.wrap(OneLogit(BOX, WINDOW), num_frames=T, input_size=S, num_classes=1, mean=(0, 0, 0), std=(1, 1, 1))
    assert model.num_classes == 1
    one = vx.explain(model, clip, method, target=0)
    assert one.score == pytest.approx(two.score, rel=1e-5) and one.score < 1 - 1e-4  # softmax said 1
    np.testing.assert_allclose(one.spatial, two.spatial, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(one.temporal, two.temporal, rtol=1e-4, atol=1e-5)
    assert one.spatial.max() > 0 and not one.meta.get("warnings")


def test_a_single_logit_binary_classifier_in_the_extremal_games_and_the_curves(box_case):
    from videoxai.metrics import build

    _, clip, truth = box_case
    two_model = wrap(BoxEvidence(BOX, WINDOW))
    one_model = vx.wrap(OneLogit(BOX, WINDOW), num_frames=T, input_size=S, num_classes=1, mean=(0, 0, 0),
                        std=(1, 1, 1))
    # the delete game's −log(1 − p) and the preserve game's −log p, through the logit's sigmoid
    one = vx.explain(one_model, clip, "ep3d(iterations=10, areas=[0.05])", target=0)
    two = vx.explain(two_model, clip, "ep3d(iterations=10, areas=[0.05])", target=0)
    np.testing.assert_allclose(one.spatial, two.spatial, rtol=1e-3, atol=1e-4)
    assert one.spatial.max() > 0
    # deletion reads the target's probability along its curve: the same curve for both models
    deletion = build("deletion(unit=frame, n_steps=8)")
    a, b = deletion(one_model, clip, one), deletion(two_model, clip, one)
    np.testing.assert_allclose(a.curve, b.curve, rtol=1e-5)
    assert a.curve[0] > a.curve[-1]


class TwoLabels(OneLogit):
    """A multi-label classifier: label 0 is OneLogit's, label 1 reads the whole clip."""

    def forward(self, x):
        return torch.cat([super().forward(x), 5 * x.mean((1, 2, 3, 4))[:, None]], 1)


def test_a_multi_label_classifier_reads_each_label_through_its_own_sigmoid(box_case):
    # activation="sigmoid": label 0's probability is sigmoid(logit 0) whatever label 1 does, so
    # its RISE map is the one-logit model's; a softmax would mix label 1's whole-clip evidence in
    _, clip, truth = box_case
    kw = dict(num_frames=T, input_size=S, mean=(0, 0, 0), std=(1, 1, 1))
    one = vx.explain(vx.wrap(OneLogit(BOX, WINDOW), num_classes=1, **kw), clip, "rise(n_samples=64)", target=0)
    multi = vx.wrap(TwoLabels(BOX, WINDOW), num_classes=2, activation="sigmoid", **kw)
    assert multi.activation == "sigmoid"
    sig = vx.explain(multi, clip, "rise(n_samples=64)", target=0)
    np.testing.assert_allclose(sig.spatial, one.spatial, rtol=1e-4, atol=1e-5)
    assert sig.probs.sum() > 1.5  # both labels present: probabilities of their own, not a share
    soft = vx.explain(vx.wrap(TwoLabels(BOX, WINDOW), num_classes=2, **kw), clip, "rise(n_samples=64)", target=0)
    assert not np.allclose(soft.spatial, one.spatial, atol=1e-3)
    with pytest.raises(InputError, match="activation must be one of softmax, sigmoid, none, got 'relu'"):
        vx.wrap(TwoLabels(BOX, WINDOW), num_classes=2, activation="relu", **kw)


def test_a_network_that_returns_probabilities_is_read_as_it_is(box_case):
    # activation="none": the network ends in a softmax; read again through one, a 0.999 became
    # 0.73 and every perturbation's effect was squashed
    _, clip, truth = box_case
    kw = dict(num_frames=T, input_size=S, num_classes=2, mean=(0, 0, 0), std=(1, 1, 1))
    logits = vx.wrap(BoxEvidence(BOX, WINDOW), **kw)
    probs = vx.wrap(nn.Sequential(BoxEvidence(BOX, WINDOW), nn.Softmax(-1)), activation="none", **kw)
    for method in ("rise(n_samples=32)", "occlusion(window=[1, 4, 4], strides=[1, 4, 4])",
                   "ep3d(iterations=10, areas=[0.05])"):
        a = vx.explain(logits, clip, method, target=0)
        b = vx.explain(probs, clip, method, target=0)
        assert b.score == pytest.approx(a.score, rel=1e-5)
        # to float32: the network's own softmax rounds probabilities near 1 (p = 0.999, a drop of
        # 6e-4 known to ~1e-4 of itself), which the maps' normalisation and ep3d's ten optimisation
        # steps carry to ~1e-2
        np.testing.assert_allclose(b.spatial, a.spatial, atol=2e-2)
    with pytest.warns(UserWarning, match="its outputs are probabilities .* wrap it with activation='none'"):
        twice = vx.explain(vx.wrap(nn.Sequential(BoxEvidence(BOX, WINDOW), nn.Softmax(-1)), **kw), clip, "saliency")
    assert twice.score < 0.75  # what the default makes of probabilities: a softmax of them
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # logits are not taken for probabilities
        vx.explain(logits, clip, "saliency")


def test_a_hugging_face_multi_label_model_uses_the_sigmoid():
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module

    assert from_hf_module(tiny_hf("videomae")).activation == "softmax"
    model = from_hf_module(tiny_hf("videomae", problem_type="multi_label_classification"))
    assert model.activation == "sigmoid"
    x = torch.rand(1, 8, 3, 32, 32)
    torch.testing.assert_close(model.predict(x), model(x).sigmoid())


def test_occlusion_maps_back_through_the_crop_box():
    """A wide video and a centre-cropping model: the map lands where the model looked."""
    model = wrap(BoxEvidence(BOX, WINDOW), shortest_edge=S)
    h, w = 48, 60                                           # crop box: rows 0-48, cols 6-54, scale 2/3
    g = torch.Generator().manual_seed(0)
    frames = 0.2 + 0.1 * torch.rand(T, h, w, 3, generator=g)
    y0, y1, x0, x1 = (round(v * 1.5) for v in BOX)          # the box in original pixels
    x0, x1 = x0 + 6, x1 + 6
    frames[WINDOW[0]:WINDOW[1], y0:y1, x0:x1] = 0.9
    exp = vx.explain(model, vx.Clip.from_array(frames.numpy()), method="occlusion", target=0,
                     window=(1, 4, 4), strides=(1, 4, 4), baseline="black")
    assert exp.spatial.shape == (T, h, w)
    for t in range(*WINDOW):
        r, c = np.unravel_index(exp.spatial[t].argmax(), (h, w))
        assert y0 <= r < y1 and x0 <= c < x1, (t, r, c)
    assert exp.spatial[:, :, :6].max() == 0 and exp.spatial[:, :, 54:].max() == 0


def test_rise_recovers_the_box(box_case):
    model, clip, truth = box_case
    exp = vx.explain(model, clip, method="rise", target=0, n_samples=400, cells=(8, 4, 4), seed=1)
    assert_localises(exp, truth, min_share=0.1)      # smooth masks: a blurred map
    assert exp.cost.forward_passes == 400 + 1


def test_rise_with_one_mask_is_refused_not_a_blank_map(box_case):
    # the map is the masks weighed by their scores minus the mean score: with one mask it was 0
    # everywhere, and the warning blamed a model whose output the masks do not move
    model, clip, _ = box_case
    with pytest.raises(OptionError, match=r"^method 'rise': option n_samples must be at least 2 .*got 1$"):
        vx.explain(model, clip, method="rise", target=0, n_samples=1)
    exp = vx.explain(model, clip, method="rise", target=0, n_samples=2)
    assert exp.options["n_samples"] == 2 and np.isfinite(exp.spatial).all()
    # cells as one integer, as occlusion's window: it was refused ("must be a list of 3 integers")
    cube = vx.explain(model, clip, method="rise", target=0, n_samples=4, cells=2)
    assert cube.options["cells"] == [2, 2, 2] and cube.meta["spec"] == "rise(cells=[2, 2, 2], n_samples=4)"
    np.testing.assert_array_equal(cube.spatial, vx.explain(model, clip, "rise(n_samples=4, cells=[2, 2, 2])", 0).spatial)


@pytest.mark.parametrize("method,opts,why", [
    ("lime", {"n_segments": 2, "n_samples": 8}, r"SLIC cut the clip into one segment \(n_segments=2\)"),
    ("shap_temporal", {"n_segments": 1}, r"one segment \(n_segments=1\) holds every frame"),
    ("rise", {"cells": 1, "n_samples": 4}, r"one cell \(cells=1\) keeps or drops the whole clip"),
])
def test_a_map_blank_because_of_one_segment_says_so_not_that_the_model_does_not_react(box_case, method, opts, why):
    # SLIC's regular seed grid leaves one seed for 2 segments asked for; one SHAP player holds every
    # frame: either map is one value everywhere on a model that does react, and the warning said
    # "the model's output may not change under what the method varies"
    model, clip, _ = box_case
    exp = vx.explain(model, clip, method=method, target=0, **opts)
    assert np.ptp(exp.temporal) == 0
    (warning,) = exp.meta["warnings"]
    assert re.search(f"map is constant .*{why}", warning) and "model's output" not in warning, warning


@pytest.mark.parametrize("method,opts", [("shap_temporal", {"n_segments": 2}), ("integrated_gradients", {"n_steps": 2})])
def test_a_still_clip_against_its_mean_frame_gives_no_map_of_rounding_noise(method, opts):
    # float32's mean of 8 equal frames is off by ~1e-7, so the "mean" baseline (shap_temporal's
    # default) differed from a still clip everywhere, and that rounding came out as a full-contrast
    # map and frame scores (0.25, 0.25, 0.25, 0.25, 0, …) without a warning
    from videoxai.core import baselines

    still = torch.rand(1, 1, 3, S, S, generator=torch.Generator().manual_seed(0)).repeat(1, T, 1, 1, 1)
    assert torch.equal(baselines.get("mean")(still), still) and torch.equal(
        baselines.get("mean_colour")(torch.full_like(still, 0.3)), torch.full_like(still, 0.3))
    frames = np.repeat(np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), np.uint8), 8, axis=0)
    exp = vx.explain(vx.load_model("demo-cnn"), frames, method, baseline="mean", **opts)
    assert exp.raw.max() == 0 and "map is constant" in " ".join(exp.meta["warnings"])


def test_a_lime_kernel_that_weighs_no_perturbed_sample_is_refused(box_case):
    # kernel_width=1e-5: every perturbed sample's weight underflowed to 0, the surrogate fitted the
    # intact clip alone, and its zero coefficients made a blank map whose warning blamed the model
    model, clip, _ = box_case
    with pytest.raises(OptionError, match=r"^method 'lime': option kernel_width: 1e-05 gives every perturbed sample "
                                          r"weight 0 \(the nearest is at cosine distance .*\); choose kernel_width ≥"):
        vx.explain(model, clip, method="lime", target=0, n_samples=8, kernel_width=1e-5)
    assert np.ptp(vx.explain(model, clip, method="lime", target=0, n_samples=8, kernel_width=0.1).spatial) > 0


def test_rises_default_grid_fits_short_clips_and_small_models():
    # a 3-frame clip got one temporal cell: every mask kept or dropped all frames at once, and the
    # map was the same on every frame; a 5-pixel model got 7 x 7 cells and an error about "cells"
    # (an option the user never gave)
    model = vx.wrap(BoxEvidence((0, 5, 0, 5), (0, 1)), num_frames=3, input_size=5, num_classes=2,
                    mean=(0, 0, 0), std=(1, 1, 1))
    clip = np.full((3, 5, 5, 3), 0.9, np.float32)
    exp = vx.explain(model, clip, method="rise", target=0, n_samples=64)
    assert exp.meta["resolved_options"] == {"cells": [2, 5, 5]}
    assert "warnings" not in exp.meta
    # the evidence is in the first frame only (two cells over three frames: the middle one shares)
    assert exp.temporal[0] > exp.temporal[1] > exp.temporal[2] and exp.temporal[0] > 1.5 * exp.temporal[2]


@pytest.mark.parametrize("method,opts", [("lime", {"n_samples": 40}), ("rise", {"n_samples": 40}),
                                         ("shap_temporal", {"max_exact_players": 2, "n_samples": 4})])
def test_random_methods_are_deterministic_under_a_seed(box_case, method, opts):
    model, clip, _ = box_case
    x = clip.to_tensor()
    m = vx.methods.get(method)
    a = m(model, seed=5, batch_size=16, **opts).attribute(x, 0).maps
    b = m(model, seed=5, batch_size=7, **opts).attribute(x, 0).maps        # batching changes nothing
    c = m(model, seed=6, **opts).attribute(x, 0).maps
    torch.testing.assert_close(a, b)
    if method != "shap_temporal":                                          # its map is per frame only
        assert not torch.allclose(a, c)


@pytest.mark.parametrize("method,opts,chosen", [
    ("occlusion", {"strides": (4, 16, 16)}, {"window": [2, 8, 8]}),          # T/4 × h/4 × w/4
    ("occlusion", {"window": (4, 16, 16)}, {"strides": [2, 8, 8]}),          # half the window
    ("rise", {"n_samples": 20}, {"cells": [4, 7, 7]}),
    ("lime", {"n_samples": 20, "superpixels": "frame"}, {"n_segments": 48}),
    ("shap_temporal", {"max_exact_players": 2, "n_samples": 2}, {"n_segments": 8}),
])
def test_options_chosen_from_the_clip_are_recorded_and_replay_the_map(box_case, tmp_path, method, opts, chosen):
    # Explanation.options said None for them: what was run could not be read back
    from videoxai.viz.report import _options

    model, clip, _ = box_case
    exp = vx.explain(model, clip, method=method, target=0, **opts)
    resolved = exp.meta["resolved_options"]
    assert {k: resolved[k] for k in chosen} == chosen
    # exactly the options recorded as left to the method, and only those
    assert set(resolved) == {k for k, v in exp.options.items() if v is None or v == "auto"}
    assert all(exp.options[k] in (None, "auto") for k in resolved)        # options stay the spec as given
    again = vx.explain(model, clip, method=method, target=0, **opts, **resolved)
    np.testing.assert_array_equal(again.raw, exp.raw)
    assert "resolved_options" not in again.meta                           # nothing left to choose
    assert vx.Explanation.load(exp.save(tmp_path / "e.npz")).meta["resolved_options"] == resolved
    key = next(iter(chosen))
    assert f"<th>{key}</th><td><code>None</code> → <code>{json.dumps(chosen[key])}</code>" in _options(exp)


def test_lime_records_the_smoothing_auto_chose(box_case):
    model, _, _ = box_case
    grainy = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((T, S, S, 3)), 0, 1).astype(np.float32)
    exp = vx.explain(model, grainy, method="lime", target=0, n_samples=20)
    sigma = exp.meta["resolved_options"]["smoothing"]
    assert sigma in (1.0, 2.0)                     # the plain cut of grain collapses: auto smoothed it
    again = vx.explain(model, grainy, method="lime", target=0, n_samples=20, smoothing=sigma)
    np.testing.assert_array_equal(again.raw, exp.raw)
    assert again.meta["resolved_options"] == {"n_segments": exp.meta["resolved_options"]["n_segments"]}


class PixelPair(nn.Module):
    """logit_0 = 3·x[0, 1, 5, 7] + 2·x[1, 2, 9, 3] (channel, frame, row, col), logit_1 = −logit_0:
    elementwise, so each clip's logits are the same bits whatever batch it is run in."""

    def forward(self, x):
        v = 3 * x[:, 0, 1, 5, 7] + 2 * x[:, 1, 2, 9, 3]
        return torch.stack([v, -v], 1)


@pytest.mark.parametrize("method,opts", [("occlusion", {"baseline": "black"}), ("rise", {"n_samples": 64}),
                                         ("lime", {"n_samples": 16}), ("shap_temporal", {"baseline": "black"})])
def test_batch_size_changes_no_bit_of_the_map(method, opts):
    # RISE summed its masks in chunks of batch_size: the map's last bits changed with it
    model = vx.wrap(PixelPair(), num_frames=4, input_size=16, num_classes=2, mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.rand(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    maps = [vx.methods.get(method)(model, batch_size=b, **opts).attribute(x, 0).maps for b in (1, 5, 64)]
    assert float(maps[0].max()) > 0
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[0], maps[2])


def test_batch_of_clips_equals_clips_one_by_one(box_case):
    model, clip, _ = box_case
    x = clip.to_tensor()
    x2 = torch.cat([x, x.flip(-1)])
    m = vx.methods.get("rise")(model, n_samples=30)
    both = m.attribute(x2, target=0).maps
    torch.testing.assert_close(both[1:], m.attribute(x2[1:], target=0).maps)


def test_clear_errors_for_bad_options_and_short_clips(box_case):
    model, clip, _ = box_case
    x = clip.to_tensor()
    with pytest.raises(InputError, match="unknown baseline"):
        vx.methods.get("lime")(model, baseline="purple")
    with pytest.raises(InputError, match="batch_size"):
        vx.methods.get("rise")(model, batch_size=0)
    with pytest.raises(InputError, match="output"):
        vx.methods.get("occlusion")(model, output="odds")
    with pytest.raises(InputError, match="window spans 12 frames"):
        vx.methods.get("occlusion")(model, window=(12, 4, 4)).attribute(x)
    with pytest.raises(InputError, match="spans 9 frames"):
        vx.methods.get("rise")(model, cells=(9, 4, 4)).attribute(x)


def test_weighted_ridge_matches_the_normal_equations():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (50, 6), generator=g).double()
    beta_true = torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    y = x @ beta_true + 0.7
    w = torch.rand(50, generator=g, dtype=torch.float64)
    beta, b, r2 = weighted_ridge(x, y, w, alpha=0.0)                  # no penalty: exact fit
    torch.testing.assert_close(beta, beta_true)
    assert b.item() == pytest.approx(0.7) and r2.item() == pytest.approx(1.0)
    beta1, _, _ = weighted_ridge(x, y, w, alpha=5.0)                  # penalty shrinks
    assert beta1.norm() < beta_true.norm()


def test_lime_of_equal_scores_has_no_coefficients():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randint(0, 2, (500, 40), generator=g).double(), torch.rand(500, generator=g, dtype=torch.float64)
    beta, _, _ = weighted_ridge(x, torch.full((500,), 0.6652409557748219, dtype=torch.float64), w, 1.0)
    assert torch.equal(beta, torch.zeros(40, dtype=torch.float64))


@pytest.mark.parametrize("method", ["lime", "rise"])
def test_a_model_the_samples_do_not_move_gets_a_blank_map_and_the_warning(method):
    # scores all equal: their (weighted) mean was off by a rounding error, and the 1e-17 (RISE)
    # or 1e-32 (LIME's coefficients) left over were drawn as a full-contrast map, with no warning
    class Constant(nn.Module):
        def forward(self, x):
            return torch.tensor([[0.1, 0.0, -1.0]]).expand(x.shape[0], 3)

    model = vx.wrap(Constant(), num_frames=4, input_size=16, num_classes=3)
    exp = vx.explain(model, np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32), method=method)
    assert exp.spatial.max() == 0 and "constant" in exp.meta["warnings"][0]


def test_weighted_ridge_with_more_features_than_samples_solves_the_small_dual():
    # the F x F Gram matrix of 20 000 superpixels took 3.2 GB (100 000: the process was killed);
    # with more features than samples the N x N dual gives the same coefficients
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (12, 40), generator=g).double()
    y = torch.randn(12, generator=g, dtype=torch.float64)
    w = torch.rand(12, generator=g, dtype=torch.float64)
    beta, b, r2 = weighted_ridge(x, y, w, alpha=1.0)
    xm, ym = (w[:, None] * x).sum(0) / w.sum(), (w * y).sum() / w.sum()
    xc, yc = x - xm, y - ym                                           # the primal, by hand
    primal = torch.linalg.solve(xc.T @ (w[:, None] * xc) + torch.eye(40, dtype=torch.float64), xc.T @ (w * yc))
    torch.testing.assert_close(beta, primal)
    assert b.item() == pytest.approx((ym - xm @ primal).item())
    exact, _, r2_exact = weighted_ridge(x, y, w, alpha=0.0)           # minimum-norm interpolation
    torch.testing.assert_close(x @ exact + (ym - xm @ exact), y)
    assert r2_exact.item() == pytest.approx(1.0)


def test_lime_kernel_width_and_smoothing_out_of_scale():
    model = vx.load_model("demo-cnn")
    clip = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), np.uint8)
    # an infinitely wide kernel weighs every sample 1 (kernel_width ** 2 overflowed a Python float)
    wide = vx.explain(model, clip, "lime", n_samples=12, kernel_width=1e308)
    flat = vx.explain(model, clip, "lime", n_samples=12, kernel_width=1e6)
    np.testing.assert_allclose(wide.spatial, flat.spatial, atol=1e-6)
    with pytest.raises(InputError, match=r"smoothing σ 1e\+308 px is larger than the frames SLIC cuts \(64x64 px\)"):
        vx.explain(model, clip, "lime", n_samples=5, smoothing=1e308)


def test_lime_refuses_more_segments_than_the_clip_has_pixels():
    model = vx.load_model("demo-cnn")
    clip = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), np.uint8)
    with pytest.raises(InputError, match=r"lime: n_segments=100000 is more than the 32768 voxels in the clip "
                                         r"\(8 x 64 x 64\) on the model's grid; choose n_segments ≤ 32768"):
        vx.explain(model, clip, "lime", n_samples=5, n_segments=100_000)
    with pytest.raises(InputError, match="n_segments=5000 is more than the 4096 pixels in a 64x64 frame"):
        vx.methods.get("lime")(model, superpixels="frame", n_segments=5000).forward_passes(8)
    # up to the limit it runs, in the memory of a few copies of the (samples x features) design
    exp = vx.explain(model, clip, "lime", n_samples=5, n_segments=20_000)
    assert int(exp.meta["n_features"][0]) > 10_000 and np.isfinite(exp.spatial).all()


@pytest.mark.parametrize("interpolation,antialias", [("bilinear", False), ("bicubic", True)])
def test_a_full_resolution_canvas_gets_the_models_own_prediction(interpolation, antialias):
    """Perturbing at full resolution, the clip is first scaled down to a canvas whose crop box is
    at the model's scale. It was always scaled with antialiased bilinear resampling, so a model
    whose own preprocessing does not antialias (torchvision's presets) or resamples bicubically
    (a Hugging Face ``resample=3``) saw another input on the intact canvas than on the clip."""
    from videoxai.methods.perturbation import Canvas
    from videoxai.models.preprocess import Preprocess

    net = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))
    model = vx.wrap(net.eval(), num_frames=2, input_size=16, layout="BCTHW")
    model.preprocess = Preprocess(size=(16, 16), resize=(20, 30), interpolation=interpolation,
                                  crop_offset="round", antialias=antialias)
    clip = torch.rand(1, 2, 3, 90, 160, generator=torch.Generator().manual_seed(0))  # shrunk: 90x160 → 20x30
    canvas = Canvas.of(model, clip)
    assert canvas.pixels.shape[-2:] == (20, 30)
    with torch.no_grad():
        torch.testing.assert_close(model(canvas.pixels), model(clip), rtol=0, atol=1e-5)


class FlatCornerIsNaN(nn.Module):
    """Logits NaN where frame 0's top-left corner is flat, as a network that divides by a
    region's contrast gives them: the noisy clip itself is fine, its perturbations (a flat,
    blurred or dimmed region) are not."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        flat = x[:, :, 0, : S // 4, : S // 4].flatten(1).std(1) < 0.9   # noise: 1.33 (normalised)
        return torch.where(flat[:, None], torch.nan, self.fc(x.mean((2, 3, 4))))


@pytest.mark.parametrize("method,options", [("occlusion", {}), ("lime", {"n_samples": 32}),
                                            ("shap_temporal", {}), ("rise", {"n_samples": 32})])
def test_a_model_not_finite_on_perturbed_clips_is_named_not_drawn_as_a_blank_map(method, options):
    # the map's non-finite check could only guess ("an option far out of scale (such as
    # p_keep=1e-300) or a model whose outputs are not finite"); the scores say which and how many
    model = vx.wrap(FlatCornerIsNaN().eval(), num_frames=T, input_size=S)
    clip = np.random.default_rng(0).integers(0, 256, (T, S, S, 3), dtype=np.uint8)
    assert np.isfinite(vx.explain(model, clip, "saliency", target=0).probs).all()   # the clip itself is fine
    with pytest.raises(InputError, match=rf"^method '{method}': the model's probability for class 0 is not finite on \d+ of "
                                         r"the \d+ perturbed clips \(.*\): its output on perturbed input is NaN"):
        vx.explain(model, clip, method, target=0, **options)


@pytest.mark.parametrize("method, opts", [("ep3d", {"iterations": 2, "areas": [0.1]}), ("rise", {"n_samples": 8})])
def test_pixels_computed_in_the_callers_graph_are_explained_as_their_values(box_case, method, opts):
    # a clip made from tensors that require grad: the extremal methods' backward passes ran on into
    # the caller's graph ("backward through the graph a second time", or its .grad filled)
    model, clip, _ = box_case
    leaf = clip.to_tensor().requires_grad_(True)
    m = vx.methods.get(method)(model, **opts)
    expected = m.attribute(leaf.detach(), 0).maps
    for x in (leaf, leaf * 1.0):
        maps = m.attribute(x, 0).maps
        assert leaf.grad is None and not maps.requires_grad
        assert torch.equal(maps, expected)
