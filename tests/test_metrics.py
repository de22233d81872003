"""Metrics pinned on cases with known answers: an analytic model whose true attribution is known,
hand-computed AUCs and scores, perfect vs random maps, and bad inputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from videoxai.errors import InputError
from videoxai.metrics import MissingGroundTruth, build, format_spec, gini, parse_spec

C, S = 0.05, 0.9   # the analytic model's p = C + S·evidence


class Evidence(nn.Module):
    """Analytic classifier: the evidence is e = Σ W · mean_rgb(x) with known weights W ≥ 0 (sum 1).

    ``mode="prob"``: logits log([p, 1 − p]) with p = C + S·e, so the softmax is exactly p.
    ``mode="logits"``: logits [3e, 2e, 1, 0] (class-normalised outputs depend on e in closed form).
    """

    def __init__(self, weights: torch.Tensor, mode: str = "prob") -> None:
        super().__init__()
        self.register_buffer("w", weights / weights.sum())
        self.mode = mode

    def forward(self, x):                                    # (B, T, 3, H, W), identity preprocessing
        e = (x.mean(2) * self.w).flatten(1).sum(1)
        if self.mode == "prob":
            p = C + S * e
            return torch.stack([p.log(), (1 - p).log()], 1)
        return torch.stack([3 * e, 2 * e, torch.ones_like(e), torch.zeros_like(e)], 1)


def analytic(weights, mode="prob"):
    t, h, w = weights.shape
    n = 2 if mode == "prob" else 4
    return vx.wrap(Evidence(torch.as_tensor(weights, dtype=torch.float32), mode), num_frames=t,
                   input_size=(h, w), layout="BTCHW", mean=(0, 0, 0), std=(1, 1, 1),
                   labels=[f"c{i}" for i in range(n)], fixed_num_frames=True)


def ones_clip(t, h, w):
    return vx.Clip.from_array(np.ones((t, h, w, 3), np.float32))


def explanation(spatial, temporal=None, target=0):
    spatial = np.asarray(spatial, np.float32)
    if temporal is None:
        mass = spatial.reshape(len(spatial), -1).sum(1)
        temporal = mass / mass.sum()
    return vx.Explanation(spatial=spatial, temporal=np.asarray(temporal, np.float32), target=target,
                          label="c0", score=0.0, probs=np.zeros(2), method="test")


# -- insertion / deletion ------------------------------------------------------------------------
FRAME_W = np.array([0.1, 0.4, 0.3, 0.2])


@pytest.fixture
def frame_case():
    w = np.broadcast_to(FRAME_W[:, None, None], (4, 6, 6)).copy()
    return analytic(w), ones_clip(4, 6, 6), explanation(w, temporal=FRAME_W)


@pytest.mark.parametrize("spec, curve, auc", [
    # removing frames 1, 2, 3, 0 takes away evidence 0.4, 0.3, 0.2, 0.1 (black baseline)
    ("deletion(unit=frame, baseline=black)", [0.95, 0.59, 0.32, 0.14, 0.05], 0.3875),
    ("insertion(unit=frame, baseline=black)", [0.05, 0.41, 0.68, 0.86, 0.95], 0.6125),
    ("deletion(unit=frame, baseline=black, order=lerf)", [0.95, 0.86, 0.68, 0.41, 0.05], 0.6125),
    ("insertion(unit=frame, baseline=black, order=lerf)", [0.05, 0.14, 0.32, 0.59, 0.95], 0.3875),
])
def test_frame_curves_and_auc_by_hand(frame_case, spec, curve, auc):
    model, clip, exp = frame_case
    score = build(spec)(model, clip, exp)
    # AUC = (Σp − p0/2 − pn/2)/n, e.g. deletion: (2.05 − 0.475 − 0.025)/4 = 0.3875
    np.testing.assert_allclose(score.curve, curve, atol=1e-6)
    assert score.value == pytest.approx(auc, abs=1e-6)
    assert score.details == {"units": 4, "steps": 4}


def test_direction_depends_on_order():
    assert not build("deletion").higher_is_better and build("deletion(order=lerf)").higher_is_better
    assert build("insertion").higher_is_better and not build("insertion(order=lerf)").higher_is_better


def region_case(unit_aligned=True):
    """Evidence uniform on a 4×4 square in frames 1–2 of a 4×8×8 clip: 32 of 256 voxels (1/8)."""
    w = np.zeros((4, 8, 8))
    w[1:3, 0:4, 4:8] = 1.0
    return analytic(w), ones_clip(4, 8, 8), w


@pytest.mark.parametrize("unit, opts", [("pixel", ""), ("patch", ", grid=4")])
def test_perfect_map_matches_closed_form_and_beats_random(unit, opts):
    model, clip, w = region_case()
    # perfect map: the evidence goes in the first 1/8 of the units, e(f) = max(0, 1 − 8f), and the
    # kink lies on the step grid, so the trapezoid is exact: AUC = C + S/16 (deletion) and
    # C + S·(1 − 1/16) (insertion, e(f) = min(1, 8f))
    deletion = build(f"deletion(unit={unit}, baseline=black, n_steps=32{opts})")
    insertion = build(f"insertion(unit={unit}, baseline=black, n_steps=32{opts})")
    perfect = explanation(w)
    assert deletion(model, clip, perfect).value == pytest.approx(C + S / 16, abs=1e-6)
    assert insertion(model, clip, perfect).value == pytest.approx(C + S * 15 / 16, abs=1e-6)
    # a random map removes evidence at the average rate: AUC ≈ C + S/2 either way
    rand = explanation(np.random.default_rng(0).random(w.shape))
    assert deletion(model, clip, rand).value == pytest.approx(C + S / 2, abs=0.12)
    assert insertion(model, clip, rand).value == pytest.approx(C + S / 2, abs=0.12)


def test_superpixel_units_follow_the_image_and_rank_perfect_first():
    w = np.zeros((4, 16, 16))
    w[1:3, 2:8, 8:14] = 1.0
    frames = 0.1 + 0.05 * np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    frames[w > 0] = 1.0                                 # the evidence is a visible white square
    clip = vx.Clip.from_array(frames)
    model = analytic(w)
    metric = build("deletion(unit=superpixel, baseline=black, segments=32)")
    perfect = metric(model, clip, explanation(w))
    random = metric(model, clip, explanation(np.random.default_rng(1).random(w.shape)))
    assert perfect.details["units"] >= 8
    assert perfect.value < random.value - 0.1


def test_insertion_morf_equals_deletion_lerf_with_ties_and_batches():
    model, clip, w = region_case()
    exp = explanation(np.round(np.random.default_rng(2).random(w.shape), 1))   # many ties
    ins = build("insertion(unit=pixel, n_steps=16, batch_size=3)")(model, clip, exp)
    dele = build("deletion(unit=pixel, n_steps=16, order=lerf, batch_size=64)")(model, clip, exp)
    np.testing.assert_allclose(ins.curve, dele.curve[::-1], atol=1e-6)
    assert ins.value == pytest.approx(dele.value, abs=1e-6)


def test_units_outside_the_crop_are_not_units():
    from videoxai.metrics import partition
    from videoxai.models.preprocess import Preprocess

    pre = Preprocess(size=(8, 8), shortest_edge=8)            # 8×12 frames → centre 8×8 crop
    part = partition("pixel", torch.rand(2, 3, 8, 12), pre)
    assert part.count == 2 * 8 * 8
    assert (part.labels[:, :, :2] == -1).all() and (part.labels[:, :, 10:] == -1).all()
    patches = partition("patch", torch.rand(2, 3, 8, 12), pre, grid=4)
    assert patches.count == 2 * 16 and set(patches.labels[patches.labels >= 0].unique().tolist()) == set(range(32))


# -- STAA faithfulness and monotonicity ------------------------------------------------------------
@pytest.fixture
def two_frames():
    w = np.full((2, 4, 4), 0.5)
    return analytic(w, "logits"), ones_clip(2, 4, 4), explanation(w, temporal=[0.7, 0.3])


def test_faithfulness_by_hand(two_frames):
    model, clip, exp = two_frames
    # clean: e = 1, logits [3, 2, 1, 0] → norm [1, 2/3, 1/3, 0]; keeping the top frame: e = 1/2,
    # logits [1.5, 1, 1, 0] → [1, 2/3, 2/3, 0]; similarity = 1 − (1/3)/4 = 11/12
    score = build("faithfulness(unit=frame, share=0.5, baseline=black)")(model, clip, exp)
    assert score.value == pytest.approx(11 / 12, abs=1e-6)
    assert build("faithfulness(unit=frame, share=1.0, baseline=black)")(model, clip, exp).value == pytest.approx(1.0)


def test_keeping_zero_units_keeps_nothing(two_frames):
    # the reference's argsort[-0:] kept everything (similarity 1); keeping nothing gives e = 0:
    # logits [0, 0, 1, 0] → [0, 0, 1, 0] vs [1, 2/3, 1/3, 0]: similarity 1 − (1 + 2/3 + 2/3)/4 = 5/12
    model, clip, exp = two_frames
    assert build("faithfulness(unit=frame, share=0.0, baseline=black)")(model, clip, exp).value == pytest.approx(5 / 12, abs=1e-6)


def test_monotonicity_of_a_perfect_map_is_one_and_undefined_on_a_constant_model():
    w = np.arange(1, 65, dtype=np.float64).reshape(1, 8, 8)
    model, clip = analytic(w, "logits"), ones_clip(1, 8, 8)
    score = build("monotonicity(baseline=black)")(model, clip, explanation(w))
    assert score.value == pytest.approx(1.0)
    assert np.all(np.diff(score.curve) > 0)
    constant = vx.wrap(nn.Sequential(nn.Flatten(), nn.Linear(192, 3)).requires_grad_(False), num_frames=1,
                       input_size=8, layout="BTCHW", num_classes=3)
    constant.net[1].weight.zero_()
    undefined = build("monotonicity")(constant, clip, explanation(w))
    assert math.isnan(undefined.value) and "undefined" in undefined.details


def test_faithfulness_and_monotonicity_are_undefined_for_a_single_output():
    # normalised over the classes (min to max), one logit is constant: every map scored a perfect
    # faithfulness of 1 and monotonicity had no curve to rank
    w = np.arange(1, 65, dtype=np.float64).reshape(1, 8, 8)
    clip = ones_clip(1, 8, 8)
    one = vx.wrap(nn.Sequential(nn.Flatten(), nn.Linear(192, 1)), num_frames=1, input_size=8, layout="BTCHW",
                  num_classes=1)
    for spec in ("faithfulness(baseline=black)", "monotonicity(baseline=black)"):
        score = build(spec)(one, clip, explanation(w))
        assert math.isnan(score.value) and "one output" in score.details["undefined"], spec


# -- localisation -----------------------------------------------------------------------------------
def truth_sample():
    masks = np.zeros((4, 16, 16), bool)
    masks[1:3, 4:8, 8:12] = True
    boxes = np.full((4, 4), -1)
    boxes[1:3] = (4, 8, 8, 12)
    return masks, boxes


LOCALISATION = ["pointing_game", "energy", "iou", "temporal_grounding"]


@pytest.mark.parametrize("kind", ["masks", "boxes"])
def test_perfect_map_localises_perfectly_and_a_far_map_not_at_all(kind):
    masks, boxes = truth_sample()
    sample = SimpleNamespace(masks=masks if kind == "masks" else None, boxes=boxes if kind == "boxes" else None,
                             window=None)
    model, clip = analytic(np.ones((4, 16, 16))), ones_clip(4, 16, 16)
    perfect = explanation(masks.astype(np.float32))
    far = np.zeros((4, 16, 16), np.float32)
    far[0, 8:16, 0:4] = 1.0                                # wrong place, wrong frame, as many voxels
    for name in LOCALISATION:
        assert build(name)(model, clip, perfect, sample=sample).value == pytest.approx(1.0), name
        assert build(name)(model, clip, explanation(far), sample=sample).value == pytest.approx(0.0), name


def test_random_map_scores_about_chance():
    masks, _ = truth_sample()
    sample = SimpleNamespace(masks=masks, boxes=None, window=(1, 3))
    model, clip = analytic(np.ones((4, 16, 16))), ones_clip(4, 16, 16)
    energies = [build("energy")(model, clip, explanation(np.random.default_rng(i).random((4, 16, 16))),
                                sample=sample).value for i in range(5)]
    assert np.mean(energies) == pytest.approx(masks.mean(), abs=0.01)     # 32 / 1024


def test_pointing_game_tolerance_in_pixels():
    masks, _ = truth_sample()
    sample = SimpleNamespace(masks=masks, boxes=None, window=None)
    model, clip = analytic(np.ones((4, 16, 16))), ones_clip(4, 16, 16)
    m = np.zeros((4, 16, 16), np.float32)
    m[1:3, 5, 14] = 1.0                                   # 3 px right of the box's last column (11)
    exp = explanation(m)
    assert build("pointing_game(tolerance=0)")(model, clip, exp, sample=sample).value == 0.0
    assert build("pointing_game(tolerance=0.125)")(model, clip, exp, sample=sample).value == 0.0   # 2 px
    assert build("pointing_game(tolerance=0.1875)")(model, clip, exp, sample=sample).value == 1.0  # 3 px


def test_energy_scopes_and_iou_share():
    masks, _ = truth_sample()
    sample = SimpleNamespace(masks=masks, boxes=None, window=None)
    model, clip = analytic(np.ones((4, 16, 16))), ones_clip(4, 16, 16)
    m = masks.astype(np.float32).copy()
    m[0] = 1.0 / 256 * 32                                  # frame 0 holds as much mass as the object
    exp = explanation(m)
    assert build("energy")(model, clip, exp, sample=sample).value == pytest.approx(0.5)
    assert build("energy(scope=frames)")(model, clip, exp, sample=sample).value == pytest.approx(1.0)
    # top 1/16 of 1024 voxels = 64: the 32 object voxels first, then 32 ties → IoU = 32/64
    assert build("iou(share=0.0625)")(model, clip, explanation(masks.astype(np.float32)), sample=sample).value \
        == pytest.approx(0.5)


def test_temporal_grounding_top_k():
    model, clip = analytic(np.ones((4, 16, 16))), ones_clip(4, 16, 16)
    exp = explanation(np.ones((4, 16, 16)), temporal=[0.1, 0.5, 0.15, 0.25])
    sample = SimpleNamespace(masks=None, boxes=None, window=(1, 3))
    assert build("temporal_grounding")(model, clip, exp, sample=sample).value == 1.0
    assert build("temporal_grounding(k=2)")(model, clip, exp, sample=sample).value == 0.5   # frames 1, 3


def test_localisation_bad_inputs():
    masks, boxes = truth_sample()
    model, clip = analytic(np.ones((4, 16, 16))), ones_clip(4, 16, 16)
    exp = explanation(masks.astype(np.float32))
    with pytest.raises(MissingGroundTruth, match="needs ground truth"):
        build("energy")(model, clip, exp)
    with pytest.raises(MissingGroundTruth, match="neither masks nor boxes"):
        build("energy")(model, clip, exp, sample=SimpleNamespace(masks=None, boxes=None, window=None))
    with pytest.raises(InputError, match="masks have shape"):
        build("energy")(model, clip, exp, sample=SimpleNamespace(masks=masks[:, :8], boxes=None))
    bad = boxes.copy()
    bad[1] = (8, 8, 4, 12)
    with pytest.raises(InputError, match="not \\[top, left, bottom, right\\)"):
        build("iou")(model, clip, exp, sample=SimpleNamespace(masks=None, boxes=bad))
    with pytest.raises(InputError, match="window"):
        build("temporal_grounding")(model, clip, exp, sample=SimpleNamespace(window=(3, 9)))


# -- sparseness ---------------------------------------------------------------------------------------
def test_gini_by_hand():
    assert gini([0, 0, 0, 1]) == pytest.approx(0.75)            # (n − 1)/n
    assert gini([2, 2, 2, 2]) == pytest.approx(0.0)
    # ((−3)·1 + (−1)·2 + 1·3 + 3·4) / (4 · 10) = 0.25
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)
    assert math.isnan(gini([0, 0]))
    with pytest.raises(InputError, match="^gini needs non-negative values$"):
        gini([1, -1])


def test_sparseness_metric_spatial_and_temporal():
    model, clip = analytic(np.ones((2, 2, 2))), ones_clip(2, 2, 2)
    m = np.zeros((2, 2, 2), np.float32)
    m[0, 0, 0] = 1
    assert build("sparseness")(model, clip, explanation(m)).value == pytest.approx(7 / 8)
    assert build("sparseness(of=temporal)")(model, clip, explanation(m, temporal=[0.5, 0.5])).value == 0.0


# -- randomisation sanity check -------------------------------------------------------------------------
class Linear3(nn.Module):
    def __init__(self, t, h, w):
        super().__init__()
        self.a = nn.Linear(3 * h * w * t, 16)
        self.b = nn.Linear(16, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x.flatten(1))))


def saliency(model, clip_t, target):
    x = clip_t.clone().requires_grad_(True)
    model(x)[0, target].backward()
    g = x.grad[0].abs().sum(1).detach().numpy()                # (T, H, W)
    return explanation(g / g.max(), target=target)


def test_randomisation_copies_the_model_and_separates_dependent_from_independent_maps():
    torch.manual_seed(0)
    model = vx.wrap(Linear3(2, 8, 8), num_frames=2, input_size=8, layout="BTCHW", num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clip = vx.Clip.from_array(np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32))
    x = clip.to_tensor()
    exp = saliency(model, x, 0)
    metric = build("randomisation(stages=2)")
    dependent = metric(model, clip, exp, explain_fn=lambda m: saliency(m, x, 0))
    fixed = metric(model, clip, exp, explain_fn=lambda m: exp)        # ignores the model
    assert fixed.value == pytest.approx(1.0) and fixed.curve.tolist() == [1.0, 1.0]
    assert abs(dependent.value) < 0.3
    assert not metric.higher_is_better
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_a_blank_rerun_map_shares_no_ranking_and_a_blank_original_has_none_to_share():
    """A method that answers "no evidence" on a randomised model (a constant map, as extremal
    perturbation's evidence test gives) has shown that its map depends on the weights: ρ = 0 for
    that stage. It was left undefined and dropped from the mean, so a method blank on 3 of 4
    re-runs scored the fourth's ρ alone (here 1.0 against 0.25)."""
    torch.manual_seed(0)
    model = vx.wrap(Linear3(2, 8, 8), num_frames=2, input_size=8, layout="BTCHW", num_classes=3)
    clip = vx.Clip.from_array(np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32))
    exp = saliency(model, clip.to_tensor(), 0)
    runs = []

    def blank_but_once(m, target=0, clip=None):      # the original map once, then blank
        runs.append(m)
        return exp if len(runs) == 1 else explanation(np.full_like(exp.spatial, 0.5))
    score = build("randomisation(stages=2, seeds=2)")(model, clip, exp, explain_fn=blank_but_once)
    assert score.value == pytest.approx(0.25) and score.details["blank_reruns"] == 3
    assert score.details["per_seed_stage"] == [[1.0, 0.0], [0.0, 0.0]]
    assert score.curve.tolist() == [0.5, 0.0] and score.details["per_seed"] == [0.5, 0.0]

    runs.clear()
    undefined = build("randomisation(stages=2, seeds=2)")(model, clip, np.zeros_like(exp.spatial), target=0,
                                                         explain_fn=blank_but_once)
    assert math.isnan(undefined.value) and undefined.details == {"undefined": "the map is blank: it ranks nothing"}
    assert runs == []

    other = build("class_sensitivity")(model, clip, exp, explain_fn=lambda m, target=0, clip=None: np.zeros_like(exp.spatial))
    assert other.value == 0.0


def test_randomisation_reruns_staa_on_a_copy_of_a_transformer():
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module

    model = from_hf_module(tiny_hf("timesformer"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clip = vx.Clip.from_array(np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32))
    exp = vx.explain(model, clip, "staa")
    score = build("randomisation(stages=3)")(model, clip, exp)
    assert score.curve.shape == (3,) and score.value < 0.9          # the map follows the weights
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert vx.explain(model, clip, "staa").spatial.tolist() == exp.spatial.tolist()


# -- cost, registry, specs and bad inputs ---------------------------------------------------------------
def test_cost_reads_the_measured_cost(frame_case):
    model, clip, exp = frame_case
    exp.cost = vx.Cost(seconds=1.5, forward_passes=7, backward_passes=2, peak_memory_mb=3.0)
    assert build("cost")(model, clip, exp).value == 1.5
    assert build("cost(measure=forward_passes)")(model, clip, exp).value == 7
    assert not build("cost").higher_is_better


def test_spec_grammar_round_trip_and_canonical_keys():
    assert parse_spec("deletion") == ("deletion", {})
    # values stay text (JSON quotes removed); the metric's declarations type them
    assert parse_spec("insertion( unit=frame , steps=64, baseline=\"blur\")") == \
        ("insertion", {"unit": "frame", "steps": "64", "baseline": "blur"})
    assert parse_spec("monotonicity(shares=[0.1, 0.5])") == ("monotonicity", {"shares": "[0.1, 0.5]"})
    assert build("monotonicity(shares=[0.1, 0.5])").options["shares"] == [0.1, 0.5]
    assert build("insertion(n_steps=64)").options["n_steps"] == 64
    assert format_spec("x", {"b": 2, "a": "blur"}) == "x(a=blur, b=2)"
    # defaults are left out of the key, so equivalent specs share one
    assert build("deletion(unit=patch, n_steps=64)").spec == "deletion(n_steps=64)"
    assert build("deletion").spec == "deletion"
    for spec in ("deletion(unit=frame, order=lerf)", "monotonicity(shares=[0.2, 0.4])", "iou(share=0.1)"):
        assert build(build(spec).spec).spec == build(spec).spec


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown metric 'nope'"),
    ("deletion(units=frame)", "metric 'deletion': no option 'units'"),
    ("deletion(unit=voxel)", "metric 'deletion': option unit must be one of pixel, patch, superpixel, frame, got 'voxel'"),
    ("deletion(n_steps=0)", "metric 'deletion': option n_steps must be an integer ≥ 1, got '0'"),
    ("deletion(n_steps=1e400)", "option n_steps must be an integer ≥ 1"),
    ("insertion(order=random)", "option order must be one of morf, lerf"),
    ("deletion(baseline=purple)", "unknown baseline"),
    ("faithfulness(share=1.5)", r"option share must be a number in \[0, 1\], got '1.5'"),
    ("faithfulness(share=nan)", "option share must be a number"),
    ("iou(share=0)", r"option share must be a number in \(0, 1\] or none"),
    ("monotonicity(shares=[0.5])", "at least two"),
    ("pointing_game(tolerance=-1)", "tolerance"),
    ("deletion(unit=frame", "missing '\\)'"),
    ("deletion(frame)", "not KEY=VALUE"),
])
def test_bad_specs_are_named(spec, message):
    with pytest.raises(InputError, match=message):
        build(spec)


def test_bad_call_inputs(frame_case):
    model, clip, exp = frame_case
    metric = build("deletion(unit=frame)")
    with pytest.raises(InputError, match="does not match"):
        metric(model, clip, explanation(np.ones((4, 5, 6))))
    with pytest.raises(InputError, match="negative"):
        metric(model, clip, explanation(-np.ones((4, 6, 6))))
    with pytest.raises(InputError, match="NaN"):
        metric(model, clip, explanation(np.full((4, 6, 6), np.nan)))
    with pytest.raises(InputError, match="give target"):
        metric(model, clip, np.ones((4, 6, 6)))
    with pytest.raises(InputError, match="out of range"):
        metric(model, clip, exp, target=5)
    with pytest.raises(InputError, match="videoxai model"):
        metric(torch.nn.Identity(), clip, exp)
    with pytest.raises(InputError, match="a clip is one video; got a batch of 2 clips"):
        metric(model, torch.zeros(2, 4, 3, 6, 6), exp)
    # a bare map with a target works, and agrees with the same map as an Explanation
    bare = metric(model, clip, exp.spatial, target=0)
    assert bare.value == pytest.approx(metric(model, clip, explanation(exp.spatial)).value)


def test_seed_help_says_what_the_seed_draws():
    """`videoxai metrics NAME` shows each option's help: where the seed draws noise, a class or
    random weights, it must not read as the tie order of the localisation and curve metrics."""
    from videoxai.metrics.base import METRICS

    def seed_help(name: str) -> str:
        return METRICS.get(name).declared_options()["seed"].help

    assert "noise" in seed_help("max_sensitivity") and "noise" in seed_help("local_lipschitz")
    assert "class" in seed_help("class_sensitivity")
    assert "re-initialisation" in seed_help("randomisation")
    assert "tied" in seed_help("deletion")


@pytest.mark.parametrize("spec, message", [
    # a baseline name (was an UnknownNameError naming neither the metric nor the option)
    ("deletion(baseline=purple)", "metric 'deletion': unknown baseline 'purple'; option baseline must be one of "
                                  "black, blur, fade, freeze, mean, mean_colour, road"),
    ("faithfulness(baseline=road)", "metric 'faithfulness': unknown baseline 'road'; option baseline must be one "
                                    "of black, blur, fade, freeze, mean, mean_colour"),
    ("frame_faithfulness(baseline=purple)", "metric 'frame_faithfulness': unknown baseline 'purple'"),
    ("monotonicity(shares=[0.5])", "metric 'monotonicity': option shares must list at least two different "
                                   "fractions, got [0.5]"),
    # the same share twice: τ was undefined on every clip, "output does not change with the kept share"
    ("monotonicity(shares=[0.5, 0.5])", "metric 'monotonicity': option shares must list at least two different "
                                        "fractions, got [0.5, 0.5]"),
])
def test_bad_option_values_are_option_errors_naming_the_metric(spec, message):
    import re

    from videoxai.options import OptionError

    with pytest.raises(OptionError, match=re.escape(message)):
        build(spec)


@pytest.mark.parametrize("name", ["deletion", "insertion", "faithfulness", "monotonicity"])
def test_an_option_of_another_unit_is_refused_naming_it_and_the_unit(name):
    """``deletion(unit=frame, grid=3)`` was accepted and scored whole frames, as
    ``deletion(unit=frame)``, under a key of its own: one curve twice in the report."""
    import re

    from videoxai.options import OptionError

    for option, value, owner in (("grid", 3, "patch"), ("segments", 40, "superpixel")):
        for unit in ("pixel", "patch", "superpixel", "frame"):
            spec = f"{name}(unit={unit}, {option}={value})"
            if unit == owner:   # its own unit takes it, and it is part of the key
                assert f"{option}={value}" in build(spec).spec
                continue
            with pytest.raises(OptionError, match=re.escape(
                    f"metric '{name}': option {option}={value} applies to unit={owner} only; unit={unit} "
                    f"ignores it (drop it, or use unit={owner})")):
                build(spec)
        # the default value changes nothing, whatever the unit (the key leaves it out)
        assert build(f"{name}(unit=frame, {option}={build(name).options[option]})").spec == \
            build(f"{name}(unit=frame)").spec


def test_a_count_larger_than_the_clip_names_the_metric_and_the_range(frame_case):
    from videoxai.options import OptionError

    model, clip, exp = frame_case
    with pytest.raises(OptionError, match="^metric 'temporal_grounding': option k=5 is more than the clip's 4 "
                                          "frames; choose k ≤ 4$"):
        build("temporal_grounding(k=5)")(model, clip, exp, sample=SimpleNamespace(window=(0, 2)))
