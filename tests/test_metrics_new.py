"""The metrics of issue 13 on known answers: class sensitivity, robustness, Li et al.'s per-frame
faithfulness, ROAD imputation, the randomisation check over seeds, and exact constant maps."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_metrics import FRAME_W, S, analytic, explanation, ones_clip
from torch import nn

import videoxai as vx
from videoxai.errors import InputError
from videoxai.core import baselines
from videoxai.core.align import to_frames
from videoxai.metrics import build
from videoxai.metrics.base import descending_order
from videoxai.metrics.class_sensitivity import other_class
from videoxai.metrics.road import NoisyLinearImputer
from videoxai.models.preprocess import Preprocess


class ClassWeights(nn.Module):
    """Linear classifier ``z_k = Σ W_k · x`` with one known weight map per class (no preprocessing)."""

    def __init__(self, weights: torch.Tensor) -> None:          # (K, T, 3, H, W)
        super().__init__()
        self.register_buffer("w", weights)

    def forward(self, x):                                       # (B, T, 3, H, W)
        return torch.einsum("bnchw,knchw->bk", x, self.w)


def linear_model(weights: torch.Tensor) -> vx.VideoModel:
    k, t, _, h, w = weights.shape
    return vx.wrap(ClassWeights(weights), num_frames=t, input_size=(h, w), layout="BTCHW", mean=(0, 0, 0),
                   std=(1, 1, 1), num_classes=k, fixed_num_frames=True)


def gradient_map(model, clip: torch.Tensor, target: int) -> vx.Explanation:
    """|∂z_target/∂x| summed over colour: for the linear model, |W_target| whatever the clip."""
    x = clip.clone().requires_grad_(True)
    model(x)[0, target].backward()
    return explanation(x.grad[0].abs().sum(1).numpy(), target=target)


# -- class sensitivity ------------------------------------------------------------------------------
def test_other_class_is_quantus_draw_and_never_the_target():
    for seed in range(5):
        np.random.seed(seed)                      # Quantus RandomLogit: seed, randint over the others
        idx = np.random.randint(0, 4 - 1, 1)[0]
        assert other_class(2, 4, seed) == [0, 1, 3][idx]
    assert all(other_class(t, 5, s) != t for t in range(5) for s in range(10))


def test_class_sensitivity_known_answers():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(3, 2, 3, 6, 6, generator=g)
    model = linear_model(w)
    clip = torch.rand(1, 2, 3, 6, 6, generator=g)
    exp = gradient_map(model, clip, 0)
    metric = build("class_sensitivity")
    score = metric(model, clip, exp, explain_fn=lambda m, target=0, **_: gradient_map(m, clip, target))
    other = score.details["other_class"]
    # by hand: Spearman of the two classes' |W| summed over colour
    from scipy.stats import spearmanr
    expected = spearmanr(w[0].sum(1).reshape(-1), w[other].sum(1).reshape(-1)).statistic
    assert score.value == pytest.approx(expected, abs=1e-6)
    # a map that ignores the class is as similar as can be; lower is better
    same = metric(model, clip, exp, explain_fn=lambda m, target=0, clip=None: exp)
    assert same.value == pytest.approx(1.0) and not metric.higher_is_better
    ssim = build("class_sensitivity(similarity=ssim)")(model, clip, exp, explain_fn=lambda m, target=0, clip=None: exp)
    assert ssim.value == pytest.approx(1.0)


def test_staa_is_class_agnostic_and_its_gradient_weighted_variant_is_not():
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module

    model = from_hf_module(tiny_hf("timesformer"))
    clip = vx.Clip.from_array(np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32))
    metric = build("class_sensitivity")
    plain = metric(model, clip, vx.explain(model, clip, "staa"))
    weighted = metric(model, clip, vx.explain(model, clip, "staa", gradient_weighted=True))
    assert plain.value == pytest.approx(1.0, abs=1e-9)           # attention does not read the target
    assert weighted.value < 0.99


# -- Li et al.'s per-frame faithfulness -----------------------------------------------------------------
def test_frame_faithfulness_by_hand():
    w = np.broadcast_to(FRAME_W[:, None, None], (4, 6, 6)).copy()
    model, clip = analytic(w), ones_clip(4, 6, 6)
    metric = build("frame_faithfulness(baseline=black)")
    # removing frame t alone takes away evidence FRAME_W[t]: drop = S·FRAME_W[t], an affine map
    perfect = metric(model, clip, explanation(w))
    np.testing.assert_allclose(perfect.details["drops"], S * FRAME_W, atol=1e-6)
    assert perfect.value == pytest.approx(1.0)
    other = np.array([0.1, 0.2, 0.3, 0.4])
    swapped = metric(model, clip, explanation(np.broadcast_to(other[:, None, None], (4, 6, 6)).copy()))
    assert swapped.value == pytest.approx(np.corrcoef(other, FRAME_W)[0, 1], abs=1e-6)   # 0.01 / 0.05 by hand
    assert swapped.value == pytest.approx(0.2, abs=1e-6)
    # scores=temporal reads the explanation's own per-frame scores instead of the map's sums
    temporal = build("frame_faithfulness(baseline=black, scores=temporal)")(
        model, clip, explanation(np.ones((4, 6, 6)), temporal=FRAME_W))
    assert temporal.value == pytest.approx(1.0)
    flat = metric(model, clip, explanation(np.ones((4, 6, 6))))
    assert math.isnan(flat.value) and "undefined" in flat.details
    with pytest.raises(InputError, match="scores must be"):
        build("frame_faithfulness(scores=mass)")


# -- robustness ---------------------------------------------------------------------------------------
def red_channel(m, target=0, clip=None):
    """An explanation that is the clip's red channel: e(x') − e(x) is the red channel of the noise."""
    return explanation(clip[0, :, 0].numpy(), target=target)


def test_robustness_known_answers():
    model = linear_model(torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    clip = torch.full((1, 4, 3, 16, 16), 0.5)
    exp = red_channel(model, clip=clip)
    r = 0.02
    sens = build(f"max_sensitivity(radius={r})")(model, clip, exp, explain_fn=red_channel)
    lip = build(f"local_lipschitz(radius={r})")(model, clip, exp, explain_fn=red_channel)
    # uniform noise on [−r, r] has RMS r/√3: ‖δ_red‖/‖x_red‖ ≈ (r/√3)/0.5, never above r/0.5
    assert 2 * r / math.sqrt(3) <= sens.value * 1.06 and sens.value <= 2 * r
    # ‖δ_red‖/‖δ‖ over i.i.d. channels ≈ 1/√3
    assert lip.value == pytest.approx(1 / math.sqrt(3), rel=0.06)
    assert len(sens.details["per_sample"]) == 5 and not build("max_sensitivity").higher_is_better
    # a method whose map does not depend on the clip (saliency of a linear model): exactly 0
    sal = vx.explain(model, vx.Clip.from_array(clip[0].permute(0, 2, 3, 1).numpy()), "saliency")
    assert build("max_sensitivity(n_samples=2)")(model, clip, sal).value == pytest.approx(0.0, abs=1e-6)
    # seeded: the same value twice, another seed another value
    again = build(f"max_sensitivity(radius={r})")(model, clip, exp, explain_fn=red_channel)
    other = build(f"max_sensitivity(radius={r}, seed=1)")(model, clip, exp, explain_fn=red_channel)
    assert again.value == sens.value != other.value
    with pytest.raises(InputError, match="radius"):
        build("max_sensitivity(radius=0)")


# -- randomisation over seeds ---------------------------------------------------------------------------
def test_randomisation_reports_every_seed_and_stage():
    from test_metrics import Linear3, saliency

    torch.manual_seed(0)
    model = vx.wrap(Linear3(2, 8, 8), num_frames=2, input_size=8, layout="BTCHW", num_classes=3)
    clip = vx.Clip.from_array(np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32))
    x = clip.to_tensor()
    exp = saliency(model, x, 0)
    rerun = lambda m, target=0, clip=None: saliency(m, x, 0)          # noqa: E731
    score = build("randomisation(stages=2, seeds=3)")(model, clip, exp, explain_fn=rerun)
    table = np.array(score.details["per_seed_stage"])
    assert table.shape == (3, 2) and score.curve.shape == (2,)
    np.testing.assert_allclose(score.curve, table.mean(0))
    assert score.value == pytest.approx(table.mean())
    assert score.details["seed_std"] == pytest.approx(np.std(table.mean(1), ddof=1))
    # seed k of the three is the single-seed check with seed=k
    for k in range(3):
        single = build(f"randomisation(stages=2, seeds=1, seed={k})")(model, clip, exp, explain_fn=rerun)
        np.testing.assert_allclose(single.curve, table[k])
    fixed = build("randomisation(stages=2)")(model, clip, exp, explain_fn=lambda m: exp)
    assert fixed.value == 1.0 and fixed.details["seed_std"] == 0.0
    with pytest.raises(InputError, match="seeds"):
        build("randomisation(seeds=0)")


# -- ROAD -----------------------------------------------------------------------------------------------
def test_road_equals_pytorch_grad_cam_imputer_in_one_frame():
    ref_cls = pytest.importorskip("pytorch_grad_cam.metrics.road").NoisyLinearImputer
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(1, 3, 12, 10, generator=g)
    kept = torch.rand(1, 12, 10, generator=g) > 0.5
    ours = NoisyLinearImputer(noise=0, time_weight=0, tolerance=1e-10)(frame, kept)[0, 0]
    ref = ref_cls(noise=0)(frame[0], kept[0].float())
    torch.testing.assert_close(ours, ref, atol=3e-6, rtol=0)


def test_road_fills_ramps_exactly_and_frames_from_their_neighbours():
    t, h, w = 5, 8, 9
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    ramp = (0.1 + 0.05 * tt + 0.03 * yy + 0.02 * xx).float()                # linear: harmonic
    clip = ramp.unsqueeze(1).expand(t, 3, h, w).contiguous()
    kept = torch.ones(t, h, w, dtype=torch.bool)
    kept[1:4, 2:6, 3:7] = False                                              # a hole in space and time
    out = NoisyLinearImputer(noise=0, tolerance=1e-9)(clip, kept)[0]
    torch.testing.assert_close(out, clip, atol=1e-5, rtol=0)
    # a whole removed frame between frames of 0.2 and 0.6 is their mean, 0.4
    steps = torch.tensor([0.2, 0.9, 0.6]).view(3, 1, 1, 1).expand(3, 3, h, w).contiguous()
    gone = torch.ones(3, h, w, dtype=torch.bool)
    gone[1] = False
    filled = NoisyLinearImputer(noise=0, tolerance=1e-9)(steps, gone)[0]
    torch.testing.assert_close(filled[1], torch.full((3, h, w), 0.4), atol=1e-5, rtol=0)
    # nothing kept: the clip's mean colour; noise only on imputed pixels, seeded
    colours = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1).expand(t, 3, h, w)
    none = NoisyLinearImputer(noise=0)(colours, torch.zeros(t, h, w, dtype=torch.bool))[0]
    torch.testing.assert_close(none, colours.float(), atol=1e-6, rtol=0)
    noisy = [NoisyLinearImputer()(clip, kept, torch.Generator().manual_seed(3))[0] for _ in range(2)]
    assert torch.equal(noisy[0], noisy[1]) and torch.equal(noisy[0][kept.unsqueeze(1).expand_as(clip)],
                                                            clip[kept.unsqueeze(1).expand_as(clip)])
    assert 0.005 < float((noisy[0] - clip).abs().max()) < 0.06


def test_road_deletion_beats_random_on_the_analytic_model():
    # evidence is a bright square: ROAD fills it from the dark surroundings, so deleting it first
    # removes the evidence (an imputation that copied the clip would change nothing)
    w = np.zeros((2, 8, 8))
    w[:, 2:5, 2:5] = 1.0
    frames = np.full((2, 8, 8, 3), 0.1, np.float32)
    frames[:, 2:5, 2:5] = 0.9
    model, clip = analytic(w), vx.Clip.from_array(frames)
    metric = build("deletion(unit=pixel, baseline=road, n_steps=8)")
    perfect = metric(model, clip, explanation(w))
    random = metric(model, clip, explanation(np.random.default_rng(0).random(w.shape)))
    assert perfect.value < random.value - 0.1
    assert metric(model, clip, explanation(w)).value == perfect.value            # seeded noise


# -- fixes: constant maps, near-ties, the named baselines -----------------------------------------------
def test_constant_maps_are_expanded_exactly_and_ties_are_not_peaks():
    pre = Preprocess(size=(16, 16), shortest_edge=16)
    frame_scores = torch.tensor([0.3, 0.7, 0.1]).view(1, 3, 1, 1)            # shap_temporal-like 1×1 maps
    out = to_frames(frame_scores, space="crop", preprocess=pre, frame_size=(16, 20), num_frames=3)[0]
    crop = out[:, :, 2:18]
    assert torch.equal(crop, frame_scores[0].expand(3, 16, 16))
    assert float(out[:, :, :2].abs().max()) == 0.0
    # values within the tolerance of each other are ties: the drawn peak lands anywhere
    noisy = torch.full((16 * 16,), 0.5, dtype=torch.float64) + torch.linspace(0, 1e-7, 256, dtype=torch.float64)
    peaks = np.array([int(descending_order(noisy, seed)[0]) for seed in range(200)])
    rows = peaks // 16
    assert rows.min() < 4 and rows.max() > 12 and abs(rows.mean() - 7.5) < 1.5
    assert int(descending_order(torch.tensor([0.5, 0.5 + 1e-3, 0.1]), 0)[0]) == 1     # a real maximum


def test_pointing_game_on_a_constant_map_is_chance_not_a_corner():
    masks = np.zeros((4, 16, 16), bool)
    masks[:, 0:8, 0:8] = True                                                # the top-left quadrant
    sample = SimpleNamespace(masks=masks, boxes=None, window=None)
    model, clip = analytic(np.ones((4, 16, 16))), ones_clip(4, 16, 16)
    # per-frame constant map as the library now makes it (frames of their own scores: all equal would be
    # blank, undefined), plus 1e-7 rounding noise of the old upsampling; largest: bottom-right
    m = np.arange(1, 5)[:, None, None] * (np.ones((4, 16, 16)) + np.linspace(0, 1e-7, 256).reshape(16, 16))
    hits = [build(f"pointing_game(tolerance=0, seed={s})")(model, clip, explanation(m), sample=sample).value
            for s in range(30)]
    assert 0.1 < np.mean(hits) < 0.45                                        # chance: a quarter


def test_mean_colour_baseline_and_fade_is_grey():
    x = torch.rand(1, 3, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    mc = baselines.get("mean_colour")(x)
    torch.testing.assert_close(mc[0, 1, :, 2, 3], x[0].permute(1, 0, 2, 3).reshape(3, -1).mean(1))
    assert float(mc.std((1, 3, 4)).max()) < 1e-7
    assert torch.equal(baselines.get("fade")(x), torch.full_like(x, 0.5))


def test_new_metrics_are_registered_and_in_the_suite():
    from videoxai.metrics import SUITE, available

    for name in ("class_sensitivity", "frame_faithfulness", "max_sensitivity", "local_lipschitz"):
        assert name in available()
    names = {s.split("(")[0] for s in SUITE}
    assert {"class_sensitivity", "frame_faithfulness", "max_sensitivity"} <= names


def test_class_sensitivity_equals_quantus_random_logit():
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(4)
    w = torch.rand(4, 1, 3, 8, 8, generator=g)
    model = linear_model(w)
    clip = torch.rand(1, 1, 3, 8, 8, generator=g)

    class Image(nn.Module):                       # the same classifier on images, for Quantus
        def forward(self, x):
            return model.net(x.unsqueeze(1))

    def explain_func(model, inputs, targets, **kwargs):
        return np.stack([np.abs(w[int(t), 0].numpy()).sum(0, keepdims=True) for t in np.atleast_1d(targets)])

    exp = gradient_map(model, clip, 2)
    for seed in (0, 1, 2):
        ours = build(f"class_sensitivity(similarity=ssim, seed={seed})")(
            model, clip, exp, explain_fn=lambda m, target=2, **_: gradient_map(m, clip, target))
        ref = quantus.RandomLogit(num_classes=4, seed=seed, similarity_func=quantus.similarity_func.ssim,
                                  normalise=False, abs=False, disable_warnings=True)(
            model=Image().eval(), x_batch=clip[:, 0].numpy(), y_batch=np.array([2]),
            a_batch=explain_func(None, None, [2]), explain_func=explain_func, channel_first=True, device="cpu")
        assert ours.value == pytest.approx(float(ref[0]), abs=3e-6)


def test_road_solves_each_clip_of_a_curve_only_as_long_as_it_needs(monkeypatch):
    # solved as one batch, every clip went on for as many iterations as the slowest (a deletion
    # curve's clean first step needs none): 4-5x the work of solving them one by one, same fills
    clip = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    easy = torch.ones(4, 16, 16, dtype=torch.bool)                    # nothing removed
    hard = easy.clone()
    hard[:, 2:14, 2:14] = False                                       # a block: many iterations
    work = []
    real = NoisyLinearImputer.neighbour_sum
    monkeypatch.setattr(NoisyLinearImputer, "neighbour_sum", lambda self, x: work.append(x.numel()) or real(self, x))
    imputer = NoisyLinearImputer(noise=0)
    alone = imputer(clip, hard)
    hard_work, work[:] = sum(work), []
    both = imputer(clip, torch.stack([easy, hard, easy]))
    assert sum(work) < 1.2 * hard_work
    assert torch.equal(both[1], alone[0]) and torch.equal(both[0], clip) and torch.equal(both[2], clip)
