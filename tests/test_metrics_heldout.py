"""The metrics against independent computations written from their definitions (plain numpy /
torch here, none of the metrics' helpers), on cases the other metric tests do not cover: frames
larger than the model's input and not square (48 × 80 through a 32 × 32 centre crop), several
output activations, units that do not divide the frame, more steps than units, one frame, ties and
blank maps, boxes vs masks, the pointing game's tolerance in frame pixels, seeded sampling, and
maps from a user's ``explain_fn`` that do not fit the clip."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from videoxai.errors import InputError
from videoxai.metrics import build

T, H, W = 3, 48, 80          # frames larger than the model's 32 × 32 input, and not square
LEFT = 16                    # shortest edge 48 → 32: the model sees columns 16 … 63, resized to 32²
GREY = 0.5


class Linear(nn.Module):
    """``z_k = Σ w_k · x`` on the model's (preprocessed) input ``(B, T, 3, 32, 32)``."""

    def __init__(self, weights: torch.Tensor) -> None:              # (K, T, 3, 32, 32)
        super().__init__()
        self.w = nn.Parameter(weights)

    def forward(self, x):
        return torch.einsum("bnchw,knchw->bk", x, self.w)


def cropped_model(k: int = 3, activation: str = "softmax", probabilities: bool = False, seed: int = 0):
    w = torch.randn(k, T, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 0.05
    net = Linear(w) if not probabilities else nn.Sequential(Linear(w), nn.Softmax(-1))
    return vx.wrap(net, num_frames=T, input_size=32, shortest_edge=32, layout="BTCHW", mean=(0, 0, 0),
                   std=(1, 1, 1), num_classes=k, activation=activation)


def frames(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, T, 3, H, W, generator=torch.Generator().manual_seed(seed))


def a_map(seed: int = 2) -> np.ndarray:
    """A tie-free map over the whole frame (a user's map need not be zero outside the crop)."""
    return np.random.default_rng(seed).random((T, H, W)).astype(np.float32) + 0.01


def as_explanation(spatial, temporal=None, target=0, k=3) -> vx.Explanation:
    spatial = np.asarray(spatial, np.float32)
    if temporal is None:
        temporal = spatial.reshape(len(spatial), -1).sum(1)
        temporal = temporal / temporal.sum() if temporal.sum() > 0 else np.full(len(spatial), 1 / len(spatial))
    return vx.Explanation(spatial=spatial, temporal=np.asarray(temporal, np.float32), target=target, label="c",
                          score=0.0, probs=np.zeros(k), method="test")


# -- the independent reference ------------------------------------------------------------------------
def probability(model, clips: torch.Tensor, target: int) -> np.ndarray:
    """What the docs say the curves follow: softmax of the outputs, their sigmoid (multi-label or
    one output), or the outputs themselves (activation "none")."""
    with torch.no_grad():
        z = model(clips).double()
    if model.activation == "none":
        p = z
    elif model.activation == "sigmoid" or z.shape[1] == 1:
        p = 1 / (1 + torch.exp(-z))
    else:
        p = torch.exp(z - z.max(1, keepdim=True).values)
        p = p / p.sum(1, keepdim=True)
    return p[:, target].numpy()


def unit_labels(unit: str, grid: int = 16) -> tuple[np.ndarray, int]:
    """Each pixel's unit in frame space, −1 outside the crop box (columns 16 … 63)."""
    labels = np.full((T, H, W), -1)
    if unit == "pixel":
        labels[:, :, LEFT:LEFT + 48] = np.arange(T * H * 48).reshape(T, H, 48)
        return labels, T * H * 48
    if unit == "frame":
        labels[:, :, LEFT:LEFT + 48] = np.arange(T)[:, None, None]
        return labels, T
    # patch: the crop box's rows and columns cut at ceil(c · 48 / grid), c = 0 … grid
    edges = [math.ceil(c * 48 / grid) for c in range(grid + 1)]
    cell = np.zeros(48, int)
    for c in range(grid):
        cell[edges[c]:edges[c + 1]] = c
    lattice = cell[:, None] * grid + cell[None, :]
    labels[:, :, LEFT:LEFT + 48] = np.arange(T)[:, None, None] * grid * grid + lattice
    return labels, T * grid * grid


def reference_curve(model, x, spatial, temporal, unit, deletes, n_steps, grid=16, target=0):
    """Petsiuk's curve from its definition: units ranked by the map's sum (frames: by the temporal
    scores), ``round(s·U/n)`` of them switched at step s (deletion: ``U − round((n − s)·U/n)``, the
    complement of insertion's step n − s), grey in frame space, pixels outside the crop as they
    start (the clip in deletion, grey in insertion)."""
    labels, count = unit_labels(unit, grid)
    if unit == "frame":
        scores = np.asarray(temporal, np.float64)
    else:
        scores = np.bincount(labels[labels >= 0], weights=spatial[labels >= 0].astype(np.float64), minlength=count)
    rank = np.empty(count, int)
    rank[np.argsort(-scores, kind="stable")] = np.arange(count)
    n = min(n_steps, count)
    clips = []
    for s in range(n + 1):
        # numpy's round: half to even, as documented
        k = count - int(np.round((n - s) * count / n)) if deletes else int(np.round(s * count / n))
        switched = torch.from_numpy((labels >= 0) & (rank[np.maximum(labels, 0)] < k))[:, None]
        start, end = (x[0], torch.full_like(x[0], GREY)) if deletes else (torch.full_like(x[0], GREY), x[0])
        clips.append(torch.where(switched, end, start))
    p = probability(model, torch.stack(clips), target)
    return p, (p.sum() - p[0] / 2 - p[-1] / 2) / n


#: float32 probabilities of the same clips computed in batches of another size: CPU kernels pick
#: their algorithm by the batch (an Intel Xeon's differed from an AMD EPYC's by 1.2e-6 at 0.51;
#: a wrong step, patch or order moves a curve point by 1e-3 or more)
BATCH_ROUNDING = 5e-6

@pytest.mark.parametrize("unit, opts", [("pixel", "n_steps=7"), ("patch", "grid=5"), ("patch", "grid=7, n_steps=500"),
                                        ("frame", "n_steps=100")])
@pytest.mark.parametrize("name", ["deletion", "insertion"])
def test_curves_on_cropped_frames_equal_a_frame_space_reference(name, unit, opts):
    model, x, m = cropped_model(), frames(), a_map()
    temporal = np.array([0.2, 0.5, 0.3])
    grid = int(opts.split("grid=")[1].split(",")[0]) if "grid" in opts else 16
    n_steps = int(opts.split("n_steps=")[1]) if "n_steps" in opts else 32
    score = build(f"{name}(unit={unit}, {opts})")(model, x, as_explanation(m, temporal))
    curve, auc = reference_curve(model, x, m, temporal, unit, name == "deletion", n_steps, grid)
    np.testing.assert_allclose(score.curve, curve, atol=BATCH_ROUNDING)
    assert score.value == pytest.approx(auc, abs=BATCH_ROUNDING)
    assert score.details["steps"] == len(curve) - 1 == min(n_steps, score.details["units"])


@pytest.mark.parametrize("unit, opts", [("frame", "n_steps=2"), ("patch", "grid=3, n_steps=2"), ("patch", "grid=5")])
def test_each_deletion_step_keeps_what_the_matching_insertion_step_restores(unit, opts):
    # where s·U/n is a half-integer (3 frames in 2 steps) one rounding for both curves switched 2
    # units at the midpoint of both: insertion-MoRF and deletion-LeRF differed by 0.05 of AUC
    model, x, m = cropped_model(), frames(), a_map()
    for first, second in (("insertion", "deletion"), ("deletion", "insertion")):
        a = build(f"{first}(unit={unit}, {opts})")(model, x, m, target=0)
        b = build(f"{second}(unit={unit}, {opts}, order=lerf)")(model, x, m, target=0)
        np.testing.assert_allclose(a.curve, b.curve[::-1], atol=BATCH_ROUNDING)
        assert a.value == pytest.approx(b.value, abs=BATCH_ROUNDING)


@pytest.mark.parametrize("k, activation, probabilities", [(2, "softmax", False), (1, "softmax", False),
                                                         (4, "sigmoid", False), (3, "none", True)])
def test_curves_follow_the_documented_probability_of_each_activation(k, activation, probabilities):
    model, x, m = cropped_model(k, activation, probabilities), frames(), a_map()
    target = k - 1
    score = build("deletion(unit=patch, grid=4, n_steps=8)")(model, x, m, target=target)
    curve, auc = reference_curve(model, x, m, None, "patch", True, 8, grid=4, target=target)
    np.testing.assert_allclose(score.curve, curve, atol=BATCH_ROUNDING)
    assert score.value == pytest.approx(auc, abs=BATCH_ROUNDING)


def test_a_bare_maps_frames_are_ranked_by_the_mass_the_model_sees():
    # a user's map with mass outside the crop: frame 0 holds the most in all, the least inside;
    # its temporal scores were the whole frames' sums, and frame-unit metrics ranked frame 0 first
    model, x = cropped_model(), frames()
    m = np.ones((T, H, W), np.float32)
    m[1, :, LEFT:LEFT + 48], m[2, :, LEFT:LEFT + 48] = 3.0, 2.0
    m[0, :, :LEFT] = 100.0
    inside = m[:, :, LEFT:LEFT + 48].sum((1, 2))
    score = build("deletion(unit=frame)")(model, x, m, target=0)
    curve, auc = reference_curve(model, x, m, inside, "frame", True, 32)
    np.testing.assert_allclose(score.curve, curve, atol=BATCH_ROUNDING)
    sample = SimpleNamespace(window=(0, 1), masks=None, boxes=None)
    assert build("temporal_grounding")(model, x, m, target=0, sample=sample).value == 0.0


def test_one_frame_curve_has_one_step():
    model = vx.wrap(Linear(torch.randn(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.05),
                    num_frames=1, input_size=32, shortest_edge=32, layout="BTCHW", mean=(0, 0, 0), std=(1, 1, 1),
                    num_classes=2)
    x = frames()[:, :1]
    grey = x.clone()
    grey[..., LEFT:LEFT + 48] = GREY
    p = probability(model, torch.cat([x, grey]), 0)
    score = build("deletion(unit=frame)")(model, x, a_map()[:1], target=0)
    np.testing.assert_allclose(score.curve, p, atol=BATCH_ROUNDING)
    assert score.value == pytest.approx(p.mean(), abs=BATCH_ROUNDING)


def test_faithfulness_on_cropped_frames_equals_the_definition():
    model, x, m = cropped_model(4), frames(), a_map()
    visible = np.zeros((T, H, W), bool)
    visible[:, :, LEFT:LEFT + 48] = True
    order = np.flatnonzero(visible)[np.argsort(-m[visible], kind="stable")]
    kept = np.zeros(T * H * W, bool)
    kept[order[:int(round(0.7 * visible.sum()))]] = True
    keep = torch.from_numpy(kept.reshape(T, H, W))[:, None]
    with torch.no_grad():
        z = model(torch.cat([x, torch.where(keep, x[0], torch.full_like(x[0], GREY))[None]])).double().numpy()
    norm = (z - z.min(1, keepdims=True)) / (z.max(1, keepdims=True) - z.min(1, keepdims=True) + 1e-8)
    expected = 1 - np.abs(norm[0] - norm[1]).mean()
    assert build("faithfulness")(model, x, m, target=0).value == pytest.approx(expected, abs=BATCH_ROUNDING)


def test_monotonicity_on_cropped_frames_equals_the_definition():
    from scipy.stats import kendalltau

    model, x, m = cropped_model(4), frames(), a_map()
    shares = [0.1, 0.3, 0.5, 0.9]
    order = np.argsort(-m[:, :, LEFT:LEFT + 48].reshape(-1), kind="stable")
    clips = [x[0]]
    for p in shares:
        kept = np.zeros(T * H * 48, bool)
        kept[order[:int(round(p * kept.size))]] = True
        keep = np.zeros((T, H, W), bool)
        keep[:, :, LEFT:LEFT + 48] = kept.reshape(T, H, 48)
        clips.append(torch.where(torch.from_numpy(keep)[:, None], x[0], torch.full_like(x[0], GREY)))
    with torch.no_grad():
        z = model(torch.stack(clips)).double().numpy()
    norm = (z - z.min(1, keepdims=True)) / (z.max(1, keepdims=True) - z.min(1, keepdims=True) + 1e-8)
    similarity = 1 - np.abs(norm[1:] - norm[:1]).mean(1)
    score = build("monotonicity(shares=[0.1, 0.3, 0.5, 0.9])")(model, x, m, target=0)
    np.testing.assert_allclose(score.curve, similarity, atol=1e-9)
    assert score.value == pytest.approx(kendalltau(shares, similarity).statistic)


class Margin(nn.Module):
    """Two outputs ``[Σ w · x − c, 0]``: class 0 wins once the kept evidence passes ``c``."""

    def __init__(self, w: torch.Tensor, c: float) -> None:
        super().__init__()
        self.register_buffer("w", w)
        self.c = c

    def forward(self, x):
        z = (x * self.w).flatten(1).sum(1) - self.c
        return torch.stack([z, torch.zeros_like(z)], 1)


@pytest.mark.parametrize("c, flips_after", [(-5.0, None), (0.5, 0.2)])
def test_monotonicity_of_two_outputs_ranks_the_prediction_not_the_normalisations_epsilon(c, flips_after):
    # with two outputs the similarity is ~1 while the prediction holds and 0 once it flips; the
    # + 1e-8 of the normalisation moved the "~1"s by 1e-9 and Kendall's τ ranked those
    w = torch.zeros(1, 2, 3, 8, 8)
    w[0, :, :, :4] = 1.0 / (2 * 3 * 32)                # evidence: the top half, Σ w = 1 over it
    model = vx.wrap(Margin(w[0], c), num_frames=2, input_size=8, layout="BTCHW", mean=(0, 0, 0), std=(1, 1, 1),
                    num_classes=2)
    x = torch.ones(1, 2, 3, 8, 8)
    m = w[0, :, 0].numpy() + np.random.default_rng(0).random((2, 8, 8)) * 1e-3   # the evidence first
    shares = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    score = build(f"monotonicity(baseline=black, shares={shares})")(model, x, m, target=0)
    if flips_after is None:                             # class 0 always wins: nothing to rank
        assert math.isnan(score.value) and "does not change" in score.details["undefined"]
    else:                                               # class 1 wins until the kept evidence (~2p) passes 0.5
        step = [0.0 if p <= flips_after else 1.0 for p in shares]
        np.testing.assert_allclose(score.curve, step, atol=BATCH_ROUNDING)
        from scipy.stats import kendalltau
        assert score.value == pytest.approx(kendalltau(shares, step).statistic)


def test_superpixels_are_slic_of_the_crop_split_per_frame():
    # the docs: SLICO (σ = 1) supervoxels of the visible part of the clip, one unit per (frame, segment)
    from skimage.segmentation import slic

    model, x, m = cropped_model(), frames(), a_map()
    crop = x[0, :, :, :, LEFT:LEFT + 48].permute(0, 2, 3, 1).double().numpy()
    seg = slic(crop, n_segments=40, sigma=1.0, slic_zero=True, channel_axis=-1, start_label=0)
    units = {(t, s) for t in range(T) for s in np.unique(seg[t])}
    scores = {u: float(m[u[0], :, LEFT:LEFT + 48][seg[u[0]] == u[1]].sum()) for u in units}
    ranked = sorted(units, key=lambda u: -scores[u])
    n = 6
    clips = []
    for step in range(n + 1):
        gone = np.zeros((T, H, W), bool)
        for t, s_ in ranked[:int(np.round(step * len(units) / n))]:
            gone[t, :, LEFT:LEFT + 48] |= seg[t] == s_
        clips.append(torch.where(torch.from_numpy(gone)[:, None], torch.full_like(x[0], GREY), x[0]))
    p = probability(model, torch.stack(clips), 0)
    score = build(f"deletion(unit=superpixel, segments=40, n_steps={n})")(model, x, m, target=0)
    assert score.details["units"] == len(units)
    np.testing.assert_allclose(score.curve, p, atol=BATCH_ROUNDING)


def test_frame_faithfulness_reads_the_map_inside_the_crop_and_the_outputs_as_probabilities():
    model, x, m = cropped_model(3, "none", probabilities=True), frames(), a_map()
    attribution = m[:, :, LEFT:LEFT + 48].astype(np.float64).sum((1, 2))
    faded = []
    for t in range(T):
        y = x[0].clone()
        y[t] = GREY
        faded.append(y)
    p = probability(model, torch.cat([x, torch.stack(faded)]), 1)
    expected = np.corrcoef(attribution, p[0] - p[1:])[0, 1]
    assert build("frame_faithfulness")(model, x, m, target=1).value == pytest.approx(expected, abs=BATCH_ROUNDING)


# -- localisation -----------------------------------------------------------------------------------
def box_truth():
    boxes = np.array([[10, 30, 20, 44], [-1, -1, -1, -1], [12, 34, 22, 50]])
    masks = np.zeros((T, H, W), bool)
    for t, (top, left, bottom, right) in enumerate(boxes):
        if top >= 0:
            masks[t, top:bottom, left:right] = True
    return boxes, masks


@pytest.mark.parametrize("spec", ["pointing_game", "pointing_game(tolerance=0)", "energy", "energy(scope=frames)",
                                  "iou", "iou(share=0.05)", "temporal_grounding"])
def test_boxes_and_box_shaped_masks_give_the_same_scores(spec):
    boxes, masks = box_truth()
    model, x = cropped_model(), frames()
    m = a_map()
    m[masks] += 0.3                                       # some evidence on the boxes
    exp = as_explanation(m)
    by_box = build(spec)(model, x, exp, sample=SimpleNamespace(boxes=boxes, masks=None, window=None))
    by_mask = build(spec)(model, x, exp, sample=SimpleNamespace(boxes=None, masks=masks, window=None))
    assert by_box.value == by_mask.value


@pytest.mark.parametrize("spec", ["iou", "temporal_grounding"])          # ground_truth, truth_window
def test_ground_truth_in_a_dict_is_read_from_its_keys(spec):
    # a dict was read as an object without attributes: "the sample has neither masks nor boxes"
    boxes, masks = box_truth()
    model, x = cropped_model(), frames()
    m = a_map()
    m[masks] += 0.3
    exp = as_explanation(m)
    for key, value in (("masks", masks), ("boxes", boxes)):
        expected = build(spec)(model, x, exp, sample=SimpleNamespace(**{"masks": None, "boxes": None, key: value}))
        assert build(spec)(model, x, exp, sample={key: value}).value == expected.value
    assert build("temporal_grounding")(model, x, as_explanation(m, [0.1, 0.2, 0.7]), sample={"window": (2, 3)}).value == 1
    with pytest.raises(vx.metrics.MissingGroundTruth, match="neither masks nor boxes|no window, masks or boxes"):
        build(spec)(model, x, exp, sample={"mask": masks})


@pytest.mark.parametrize("window", [(1.2, 2.5), (0, 1, 2), (True, 3)])
def test_a_window_that_is_not_two_frame_indices_is_refused(window):
    # (1.2, 2.5), a window in seconds, was truncated to frames (1, 2); (0, 1, 2) read as (0, 1)
    model, x = cropped_model(), frames()
    with pytest.raises(InputError, match=r"window must be \(start, end\) frame indices \(integers\), got"):
        build("temporal_grounding")(model, x, a_map(), target=0, sample={"window": window})
    assert build("temporal_grounding")(model, x, as_explanation(a_map(), [0.1, 0.7, 0.2]), target=0,
                                       sample={"window": (1.0, 2.0)}).value == 1


def test_energy_and_iou_by_hand_on_cropped_frames():
    _, masks = box_truth()
    model, x, m = cropped_model(), frames(), a_map()
    sample = SimpleNamespace(masks=masks, boxes=None, window=None)
    # energy: the map's mass on the annotation over the whole clip's mass (the docs' "clip" scope)
    assert build("energy")(model, x, m, target=0, sample=sample).value == pytest.approx(m[masks].sum() / m.sum(), rel=1e-6)
    # iou: the top |annotation| voxels *within the crop* against the annotation
    visible = np.zeros((T, H, W), bool)
    visible[:, :, LEFT:LEFT + 48] = True
    top = np.zeros(T * H * W, bool)
    top[np.flatnonzero(visible)[np.argsort(-m[visible], kind="stable")[:masks.sum()]]] = True
    top = top.reshape(T, H, W)
    expected = (top & masks).sum() / (top | masks).sum()
    assert build("iou")(model, x, m, target=0, sample=sample).value == pytest.approx(expected)


@pytest.mark.parametrize("scale", [1e-12, 1e-30, 1e12])
def test_maps_on_any_scale_score_as_the_definition_says(scale):
    # the metrics rank the map's values: its scale (gradients of 1e-12, a user's map of 1e12) is no
    # evidence. iou set unseen voxels to −1, which fixed the tie grid at 1e-6: a map below that was
    # all ties, its top k a seeded draw (0.048 where the definition gives 0.056)
    _, masks = box_truth()
    model, x = cropped_model(), frames()
    m = (a_map().astype(np.float64) * scale).astype(np.float32)
    sample = SimpleNamespace(masks=masks, boxes=None, window=(0, 2))
    visible = np.zeros((T, H, W), bool)
    visible[:, :, LEFT:LEFT + 48] = True
    top = np.zeros(T * H * W, bool)
    top[np.flatnonzero(visible)[np.argsort(-m[visible], kind="stable")[:masks.sum()]]] = True
    top = top.reshape(T, H, W)
    assert build("iou")(model, x, m, target=0, sample=sample).value == pytest.approx((top & masks).sum() / (top | masks).sum())
    for spec in ("pointing_game", "energy", "temporal_grounding", "sparseness", "deletion(n_steps=4)",
                 "faithfulness", "frame_faithfulness"):
        assert build(spec)(model, x, m, target=0, sample=sample).value == pytest.approx(
            build(spec)(model, x, a_map(), target=0, sample=sample).value, abs=1e-6), spec


def test_pointing_tolerance_is_a_fraction_of_the_original_frames_shorter_side():
    _, masks = box_truth()
    model, x = cropped_model(), frames()
    sample = SimpleNamespace(masks=masks, boxes=None, window=None)
    m = np.zeros((T, H, W), np.float32)
    m[0, 15, 46] = m[2, 17, 52] = 1.0                     # 3 frame pixels right of each box (2 model pixels)
    # 0.0625 × 48 = 3 frame pixels: a hit; at the model's 32 px it would have been 2 (a miss)
    assert build("pointing_game")(model, x, m, target=0, sample=sample).value == 1.0
    assert build("pointing_game(tolerance=0.06)")(model, x, m, target=0, sample=sample).value == 0.0   # 2.88 px
    m[2, 17, 52], m[2, 17, 53] = 0.0, 1.0                 # 4 px away in frame 2
    assert build("pointing_game")(model, x, m, target=0, sample=sample).value == 0.5


def test_pointing_game_takes_the_largest_seed():
    # each frame's ties are drawn with seed + frame: the largest seed overflowed the generator
    _, masks = box_truth()
    model, x = cropped_model(), frames()
    sample = SimpleNamespace(masks=masks, boxes=None, window=None)
    # every pixel of a frame a tie (a blank map, all equal, is undefined): the draw decides
    flat = np.broadcast_to(np.arange(1, T + 1, dtype=np.float32)[:, None, None], (T, H, W)).copy()
    values = [build("pointing_game", seed=seed)(model, x, flat, target=0, sample=sample).value
              for seed in (2 ** 64 - 1, 2 ** 64 - 1)]
    assert values[0] == values[1] and 0 <= values[0] <= 1


#: what each registered metric makes of a blank map (constant where the model sees: all zeros, or all
#: 0.5 here), as videoxai.metrics.base documents it: the metrics of the map's order are undefined
#: (BLANK), those of its values keep their definition's value, for (all zeros, all 0.5): a number, or
#: why it is undefined. A new metric must say here which it is.
BLANK = "the map is blank: it ranks nothing"
EMPTY = "the map is empty"
BLANK_MAP_SCORES = {
    "deletion": {"deletion": BLANK, "deletion(unit=frame, order=lerf)": BLANK},
    "insertion": {"insertion(unit=pixel)": BLANK, "insertion(unit=frame)": BLANK},
    "faithfulness": {"faithfulness": BLANK, "faithfulness(unit=frame)": BLANK},
    "monotonicity": {"monotonicity(unit=patch, grid=4)": BLANK},
    "frame_faithfulness": {"frame_faithfulness": BLANK, "frame_faithfulness(scores=temporal)": BLANK},
    "pointing_game": {"pointing_game(seed=5)": BLANK},
    "iou": {"iou": BLANK, "iou(share=0.1, seed=3)": BLANK},
    "temporal_grounding": {"temporal_grounding": BLANK, "temporal_grounding(k=2, seed=1)": BLANK},
    "randomisation": {"randomisation(stages=2, seeds=1)": BLANK},
    # the values: Spearman's ρ is of an order, SSIM of the values (of two blank maps: undefined)
    "class_sensitivity": {"class_sensitivity": BLANK,
                          "class_sensitivity(similarity=ssim)": ("a map is constant", "a map is constant")},
    # a share of the mass (no mass: none on the evidence), a Gini index (equal values: 0; no mass:
    # undefined), distances between maps (relative to an all-zero map: undefined), the cost
    "energy": {"energy": (0.0, "annotated share"), "energy(scope=frames)": (0.0, "annotated share of frames")},
    "sparseness": {"sparseness": (EMPTY, 0.0), "sparseness(of=temporal)": (0.0, 0.0)},
    "max_sensitivity": {"max_sensitivity(n_samples=1)": (EMPTY, 0.0)},
    "local_lipschitz": {"local_lipschitz(n_samples=1)": (0.0, 0.0)},
    "cost": {"cost(measure=forward_passes)": (3.0, 3.0)},
}


def test_every_metric_scores_a_blank_map_as_documented():
    """A blank map (extremal perturbation's "no evidence", a saturated model's gradients) has no
    order of voxels or frames: deletion, insertion, faithfulness and monotonicity scored a seeded
    random order as the map's (faithfulness 0.87, monotonicity 0.61 here), the pointing game, IoU
    and temporal grounding 0 for all zeros and a chance draw for all 0.5. They are undefined, without
    a forward pass or a re-run; the metrics of the map's values keep their definition's value."""
    from videoxai.cost import Cost
    from videoxai.metrics import available

    assert set(BLANK_MAP_SCORES) == set(available())
    _, masks = box_truth()
    model, x = cropped_model(), frames()
    sample = SimpleNamespace(masks=masks, boxes=None, window=(0, 2))
    passes, reruns = [], []
    model.net.register_forward_hook(lambda *a: passes.append(1))
    share = {"annotated share": masks.sum() / masks.size,
             "annotated share of frames": masks.sum() / (masks.any((1, 2)).sum() * H * W)}
    for value in (0.0, 0.5):
        blank = as_explanation(np.full((T, H, W), value, np.float32))
        blank.cost = Cost(seconds=0.25, forward_passes=3)

        def again(m, target=0, clip=None, blank=blank):
            reruns.append(m)
            return blank
        for spec, want in (item for specs in BLANK_MAP_SCORES.values() for item in specs.items()):
            metric = build(spec)
            passes.clear(), reruns.clear()
            score = metric(model, x, blank, sample=sample, **({"explain_fn": again} if metric.needs_explainer else {}))
            if want == BLANK:
                assert metric.ranks in ("voxels", "frames"), spec
                assert math.isnan(score.value) and score.details == {"undefined": BLANK}, (spec, value, score)
                assert passes == [] and reruns == [], spec               # nothing run for nothing to rank
                continue
            assert metric.ranks is None, spec
            want = want[value == 0.5]
            if isinstance(want, str) and want not in share:
                assert math.isnan(score.value) and score.details["undefined"] == want, (spec, value, score)
            else:
                assert score.value == pytest.approx(share.get(want, want), abs=1e-12), (spec, value, score)
    build("faithfulness(unit=frame)")(model, x, a_map(), target=0)          # a map that ranks: the model runs
    assert passes


def test_blank_means_equal_to_the_tie_tolerance_and_frames_rank_by_their_scores():
    _, masks = box_truth()
    model, x = cropped_model(), frames()
    window = SimpleNamespace(masks=masks, boxes=None, window=(0, 2))
    # rounding noise on a plateau (1e-8 of it) is no ranking: blank; 1e-4 of it is one
    noise = np.random.default_rng(0).random((T, H, W)).astype(np.float32)
    assert build("iou")(model, x, 0.5 + noise * 1e-8, target=0, sample=window).details == {"undefined": BLANK}
    assert 0 <= build("iou")(model, x, 0.5 + noise * 1e-4, target=0, sample=window).value <= 1
    # values the model never sees rank nothing: a map blank inside the crop box is blank
    outside = np.zeros((T, H, W), np.float32)
    outside[:, :, :LEFT] = noise[:, :, :LEFT]
    assert build("pointing_game")(model, x, outside, target=0, sample=window).details == {"undefined": BLANK}
    # frames are ranked by the temporal scores: a blank map with its own frame scores still ranks frames,
    # and a map with mass whose frames score alike ranks none
    ranked = as_explanation(np.zeros((T, H, W)), temporal=[0.1, 0.7, 0.2])
    assert build("temporal_grounding")(model, x, ranked, sample=window).value == 1.0
    assert 0 < build("deletion(unit=frame)")(model, x, ranked).value < 1
    assert build("deletion")(model, x, ranked).details == {"undefined": BLANK}
    alike = as_explanation(a_map(), temporal=[1 / 3] * 3)
    for spec in ("temporal_grounding", "insertion(unit=frame)", "frame_faithfulness(scores=temporal)"):
        assert build(spec)(model, x, alike, sample=window).details == {
            "undefined": "the frames' scores are all equal: they rank no frame"}, spec
    assert 0 <= build("pointing_game")(model, x, alike, sample=window).value <= 1


# -- bad maps ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    (np.where(a_map() > 0.9, np.nan, a_map()), "NaN or infinite"),
    (np.where(a_map() > 0.9, np.inf, a_map()), "NaN or infinite"),
    (a_map() - 0.5, "negative values .* absolute value or its positive part"),   # signed (IG without abs)
    (a_map()[:, :32, :32], r"does not match the clip's \(T, H, W\) = \(3, 48, 80\); it has the model's input "
                           r"size: .* videoxai.core.align.to_frames"),
    (a_map()[:, :32, :40], r"does not match the clip's \(T, H, W\) = \(3, 48, 80\)$"),
    (a_map()[:2], "2 frames, the clip 3"),
    # complex values lost their imaginary part with only numpy's ComplexWarning; text was numpy's
    # ValueError traceback; None was "must be (T, H, W), got shape (1,)"
    (a_map().astype(np.complex64), r"a \(T, H, W\) map of real numbers, got values of dtype complex64$"),
    (torch.from_numpy(a_map().astype(np.complex64)), "real numbers, got values of dtype complex64$"),
    (np.full((T, H, W), "0.5"), "real numbers, got values of dtype <U3$"),
    (None, "an explanation must be an Explanation or a .* got NoneType$"),
])
def test_bad_maps_are_one_clear_error(bad, message):
    model, x = cropped_model(), frames()
    for spec in ("deletion", "faithfulness", "pointing_game", "sparseness"):
        sample = SimpleNamespace(masks=box_truth()[1], boxes=None, window=None)
        with pytest.raises(InputError, match=message):
            build(spec)(model, x, bad, target=0, sample=sample)


@pytest.mark.parametrize("spec", ["deletion", "insertion(unit=frame)", "faithfulness", "pointing_game", "energy",
                                  "iou", "sparseness", "frame_faithfulness"])
def test_a_map_of_any_real_dtype_scores_as_its_float32_values(spec):
    """float16, float64, integer, boolean and object maps, numpy or torch, score as the float32
    map of the same values (a float16 map is compared with its own values, not the float32 map
    it was rounded from)."""
    model, x = cropped_model(), frames()
    sample = SimpleNamespace(masks=box_truth()[1], boxes=None, window=None)
    quantised = (a_map() * 100).round()           # integers: exact in every dtype below
    score = lambda m: build(spec)(model, x, m, target=0, sample=sample).value  # noqa: E731
    want = score(quantised.astype(np.float32))
    for m in (quantised.astype(np.float16), quantised.astype(np.float64), quantised.astype(np.int64),
              quantised.astype(np.uint8), quantised.astype(object), torch.from_numpy(quantised).half(),
              torch.from_numpy(quantised).to(torch.int32)):
        assert score(m) == want, (type(m), m.dtype)
    binary = a_map() > 0.5
    assert score(binary) == score(binary.astype(np.float32))


@pytest.mark.parametrize("temporal, spatial, message", [
    ([0.5, 0.5], None, r"explanation.temporal must be one score per frame, shape \(3,\), got shape \(2,\)$"),
    ([[0.2, 0.5, 0.3]], None, r"explanation.temporal must be one score per frame, shape \(3,\), got shape \(1, 3\)$"),
    (None, a_map()[None], r"an explanation map must be \(T, H, W\), got shape \(1, 3, 48, 80\)$"),
])
def test_an_explanation_whose_arrays_do_not_fit_the_clip_is_one_clear_error(temporal, spatial, message):
    # two temporal scores for three frames: frame units were a RuntimeError traceback ("shape
    # mismatch") and temporal_grounding ranked the two frames it had; a (1, T, H, W) map was
    # "explanation has 1 frames, the clip 3"
    model, x = cropped_model(), frames()
    exp = as_explanation(a_map())
    if temporal is not None:
        exp.temporal = np.asarray(temporal, np.float32)
    if spatial is not None:
        exp.spatial = spatial
    sample = SimpleNamespace(masks=box_truth()[1], boxes=None, window=(1, 3))
    for spec in ("deletion(unit=frame)", "temporal_grounding", "sparseness(of=temporal)", "energy"):
        with pytest.raises(InputError, match=message):
            build(spec)(model, x, exp, sample=sample)


def test_an_explanation_without_a_target_asks_for_one():
    # an Explanation made by hand with target=None was a TypeError ("'<=' not supported")
    model, x = cropped_model(), frames()
    exp = as_explanation(a_map(), target=None)
    with pytest.raises(InputError, match=r"^the explanation names no class \(its target is None\): give target=, "
                                         r"the class the map explains$"):
        build("deletion(unit=frame)")(model, x, exp)
    assert build("deletion(unit=frame)")(model, x, exp, target=1).value == \
        build("deletion(unit=frame)")(model, x, as_explanation(a_map(), target=1)).value


def test_a_flipped_map_is_scored_as_its_copy():
    # a view with negative strides (np.flip, [..., ::-1]), bare or in an Explanation, was a ValueError
    # traceback from torch.from_numpy inside the unit and localisation metrics
    model, x = cropped_model(), frames()
    sample = SimpleNamespace(masks=box_truth()[1], boxes=None, window=(1, 3))
    flipped = a_map()[:, :, ::-1]
    views = as_explanation(flipped, temporal=np.float32([0.2, 0.5, 0.3])[::-1])
    copies = as_explanation(flipped.copy(), temporal=np.float32([0.3, 0.5, 0.2]))
    assert views.spatial.strides[2] < 0 and views.temporal.strides[0] < 0
    for spec in ("deletion(unit=patch, grid=4, n_steps=4)", "insertion(unit=frame)", "monotonicity(unit=pixel)",
                 "pointing_game", "iou", "temporal_grounding"):
        for given, copy in ((flipped, flipped.copy()), (views, copies)):
            score = build(spec)(model, x, given, target=0, sample=sample).value
            assert score == build(spec)(model, x, copy, target=0, sample=sample).value and math.isfinite(score)


def test_a_target_is_a_class_index_or_a_class_name_as_vx_explain_takes_it():
    # a name was int("dog"): a ValueError traceback; True and 1.5 were silently class 1
    w = torch.randn(3, T, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.05
    model = vx.wrap(Linear(w), num_frames=T, input_size=32, shortest_edge=32, layout="BTCHW", mean=(0, 0, 0),
                    std=(1, 1, 1), labels=["cat", "dog", "eel"])
    x, m = frames(), a_map()
    metric = build("deletion(unit=frame)")
    dog = metric(model, x, m, target=1).value
    assert dog != metric(model, x, m, target=0).value
    assert metric(model, x, m, target="dog").value == dog == metric(model, x, m, target="DOG").value
    e = as_explanation(m, target=0)
    assert metric(model, x, e, target="dog").value == metric(model, x, e, target=1).value != metric(model, x, e).value
    for bad, message in ((True, "got True"), (1.5, "got 1.5"), ("dgo", "no class 'dgo'; close matches: 'dog'")):
        with pytest.raises(InputError, match=message):
            metric(model, x, m, target=bad)


def test_an_option_in_the_spec_and_as_an_argument_is_refused_as_vx_explain_refuses_it():
    # the argument silently replaced the spec's value: evaluate("deletion(unit=frame)", …, unit="pixel")
    # scored pixel units
    model, x, m = cropped_model(), frames(), a_map()
    with pytest.raises(InputError, match="metric 'deletion': option unit given both in the spec and as an argument"):
        vx.metrics.evaluate("deletion(unit=frame)", model, x, m, 0, unit="pixel")
    assert build("deletion(unit=frame)", n_steps=2).spec == "deletion(n_steps=2, unit=frame)"


def test_a_clip_tensor_is_taken_in_every_layout_vx_explain_takes():
    # (T, H, W, 3) and uint8 tensors, which vx.explain explains, were refused by every metric
    model, m = cropped_model(), a_map()
    pixels = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (T, H, W, 3), dtype=np.uint8))
    metric = build("deletion(unit=patch, grid=4, n_steps=4)")
    expected = metric(model, pixels.numpy(), m, target=0).value
    for clip in (pixels, pixels.float() / 255, pixels.permute(0, 3, 1, 2), pixels.permute(0, 3, 1, 2)[None]):
        assert metric(model, clip, m, target=0).value == pytest.approx(expected, abs=1e-7)
    with pytest.raises(InputError, match="a clip is one video; got a batch of 2 clips"):
        metric(model, torch.rand(2, T, 3, H, W), m, target=0)


def test_a_clip_tensor_outside_0_1_is_refused_as_vx_explain_refuses_it():
    model = cropped_model()
    with pytest.raises(InputError, match=r"must lie in \[0, 1\], got values in \[0\.0\d+, 25\d\.?\d*\]; divide 0–255"):
        build("deletion")(model, frames() * 255, a_map(), target=0)


# -- metrics that sample: seeded, and the global generators left alone --------------------------------
def grey_level(model, target=0, clip=None):
    """A map that is the clip's grey level inside the crop (a map that follows the input)."""
    c = frames() if clip is None else clip
    sp = c[0].mean(1).clone()
    sp[..., :LEFT] = sp[..., LEFT + 48:] = 0
    return as_explanation(sp.numpy(), target=target)


class Wiggly(nn.Module):
    """``z = Σ w · sin(300 x)``: 0.01 of noise on a pixel moves it by half a period."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        return torch.einsum("bnchw,knchw->bk", torch.sin(300 * x), self.w)


def test_road_curve_does_not_depend_on_the_batch_size():
    # ROAD's noise came from one generator for the whole curve, drawn batch by batch, and the
    # solver stopped every clip of a batch when the last converged: the score moved by 3e-4
    # with batch_size on a model sensitive to small changes
    w = torch.randn(2, 3, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 0.05
    model = vx.wrap(Wiggly(w), num_frames=3, input_size=12, layout="BTCHW", mean=(0, 0, 0), std=(1, 1, 1),
                    num_classes=2)
    x = torch.rand(1, 3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    m = np.random.default_rng(0).random((3, 12, 12))
    values = [build(f"deletion(baseline=road, unit=patch, grid=3, n_steps=8, batch_size={b})")(model, x, m, target=0).value
              for b in (1, 4, 16)]
    # (the bug moved it by 3e-4; batches of other sizes round float32 differently: 2.4e-8 on a Xeon)
    assert values[0] == pytest.approx(values[1], abs=1e-6) and values[0] == pytest.approx(values[2], abs=1e-6)
    other_seed = build("deletion(baseline=road, unit=patch, grid=3, n_steps=8, seed=1)")(model, x, m, target=0).value
    assert other_seed != values[0]


@pytest.mark.parametrize("spec", ["max_sensitivity(n_samples=2)", "local_lipschitz(n_samples=2)",
                                  "randomisation(stages=2, seeds=2)", "class_sensitivity",
                                  "deletion(baseline=road, unit=frame)", "iou(share=0.1)"])
def test_sampling_metrics_are_seeded_and_leave_the_global_generators_alone(spec):
    model, x = cropped_model(), frames()

    def gradient(m, target=0, clip=None):
        xx = (x if clip is None else clip).clone().requires_grad_(True)
        m(xx)[0, target].backward()
        return as_explanation(xx.grad[0].abs().sum(1).numpy(), target=target)

    fn = grey_level if "sensitivity" in spec or "lipschitz" in spec else gradient
    exp = fn(model)
    metric = build(spec)
    kwargs = {"explain_fn": fn} if metric.needs_explainer else {}
    if "iou" in spec:
        kwargs = {"sample": SimpleNamespace(masks=box_truth()[1], boxes=None, window=None)}
    torch.manual_seed(5)
    np.random.seed(5)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    first = metric(model, x, exp, **kwargs).value
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and np.random.get_state()[2] == np_state[2]
    torch.manual_seed(6)
    np.random.seed(6)
    assert metric(model, x, exp, **kwargs).value == first
    assert all(p.requires_grad for p in model.parameters())   # the user's model untouched


def test_local_lipschitz_measures_the_input_change_where_the_model_looks():
    # the map is the grey level inside the crop: ‖e(x') − e(x)‖ is the grey level of the noise there;
    # the noise outside the crop changes nothing the model sees, and counting it in ‖x' − x‖ scored
    # 48 × 80 frames √(48/80) lower than the same view cut to 48 × 48
    model = cropped_model()
    x = 0.3 + 0.4 * frames()                              # no clamping at 0 or 1
    seen = []

    def recording(m, target=0, clip=None):
        if clip is not None:
            seen.append(clip.clone())
        return grey_level(m, target, clip if clip is not None else x)

    score = build("local_lipschitz(n_samples=3, radius=0.01)")(model, x, recording(model), explain_fn=recording)
    e0 = x[0].mean(1)[..., LEFT:LEFT + 48]
    expected = max(float(torch.linalg.vector_norm(xi[0].mean(1)[..., LEFT:LEFT + 48] - e0)
                         / torch.linalg.vector_norm((xi - x)[..., LEFT:LEFT + 48])) for xi in seen)
    assert len(seen) == 3 and score.value == pytest.approx(expected, rel=1e-5)
    assert score.value == pytest.approx(1 / 3, rel=0.05)   # the mean of 3 i.i.d. channels: σ/√3 over √3 σ


@pytest.mark.parametrize("spec", ["max_sensitivity(n_samples=1)", "local_lipschitz(n_samples=1)",
                                  "class_sensitivity", "randomisation(stages=1, seeds=1)"])
def test_a_rerun_map_that_does_not_fit_the_clip_is_one_clear_error(spec):
    model, x = cropped_model(), frames()
    exp = grey_level(model)
    at_model_size = lambda m, target=0, clip=None: np.ones((T, 32, 32))   # noqa: E731
    with pytest.raises(InputError, match=r"explain_fn returned a map of shape \(3, 32, 32\)"):
        build(spec)(model, x, exp, explain_fn=at_model_size)
    with pytest.raises(InputError, match="explain_fn returned a map with NaN"):
        build(spec)(model, x, exp, explain_fn=lambda m, target=0, clip=None: np.full((T, H, W), np.nan))
    # a bare (T, H, W) map is taken as the re-run's map
    assert math.isfinite(build(spec)(model, x, exp, explain_fn=lambda m, target=0, clip=None: a_map()).value)


@pytest.mark.parametrize("spec", ["max_sensitivity(n_samples=2)", "local_lipschitz(n_samples=2)",
                                  "class_sensitivity", "randomisation(stages=1, seeds=1)"])
def test_a_metric_that_re_explains_refuses_a_target_other_than_the_explanations(spec):
    # the re-run maps were of target=, the map of the explained class: on a linear model, whose
    # saliency is |w_target| on every clip, max_sensitivity was the distance between two classes'
    # maps (0.54, not 0), and class_sensitivity could draw the map's own class as "the other"
    model, x = cropped_model(), frames()
    exp = vx.explain(model, x[0], "saliency")
    other = (exp.target + 1) % 3
    assert build(spec)(model, x, exp, target=exp.target).value == build(spec)(model, x, exp).value
    if spec.startswith(("max_sensitivity", "local_lipschitz")):
        assert build(spec)(model, x, exp).value == pytest.approx(0, abs=1e-6)   # the map ignores the clip
    with pytest.raises(InputError, match=rf"^metric '{spec.split('(')[0]}' re-explains the explanation's class "
                                         rf"{exp.target} and compares the maps; target={other} names another class: "
                                         rf"leave target out, or explain class {other}$"):
        build(spec)(model, x, exp, target=other)


class DividesByTheBrightest(nn.Module):
    """:class:`Linear` on the clip divided by its brightest value: a black clip is 0 / 0."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.linear = Linear(weights)

    def forward(self, x):
        return self.linear(x / x.amax((1, 2, 3, 4), keepdim=True))


@pytest.mark.parametrize("spec, clips", [("deletion(unit=frame, baseline=black)", 4),
                                         ("insertion(unit=patch, grid=2, n_steps=3, baseline=black)", 4),
                                         ("monotonicity(unit=frame, baseline=black)", 10),
                                         ("faithfulness(share=0, baseline=black)", 2)])
def test_a_model_that_gives_nan_on_a_perturbed_clip_is_one_clear_error_not_a_nan_score(spec, clips):
    # the curve's AUC (monotonicity's τ) was NaN with no reason: "undefined: no finite value" in a report
    w = torch.randn(3, T, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.05
    model = vx.wrap(DividesByTheBrightest(w), num_frames=T, input_size=32, shortest_edge=32, layout="BTCHW",
                    mean=(0, 0, 0), std=(1, 1, 1), num_classes=3)
    with pytest.raises(InputError, match=rf"^metric '{spec.split('(')[0]}': custom gave NaN or infinite outputs on 1 "
                                         rf"of the {clips} perturbed clips it scores; removed units become "
                                         r"baseline=black: try another$"):
        build(spec)(model, frames(), a_map(), target=0)
    assert math.isfinite(build(spec.replace("black", "fade"))(model, frames(), a_map(), target=0).value)


def test_cost_of_an_unmeasured_explanation_is_undefined_not_free():
    # a bare map (or an Explanation made by hand) carries the zero Cost: it scored 0 s and
    # 0 passes, and ranked first on cost
    model, x = cropped_model(), frames()
    for spec in ("cost", "cost(measure=forward_passes)"):
        for exp in (a_map(), as_explanation(a_map())):
            score = build(spec)(model, x, exp, target=0)
            assert math.isnan(score.value) and "not measured" in score.details["undefined"]
    measured = vx.explain(model, x[0], "saliency")
    assert build("cost")(model, x, measured).value == measured.cost.seconds > 0


def test_a_map_shrunk_onto_smaller_frames_keeps_its_evidence():
    # frames smaller than the model's input (10 × 10 frames, 30 × 30 model): a pixel-level map at
    # the model's size is shrunk 3× into the crop box. Plain bilinear read 2 × 2 of each 3 × 3
    # block's pixels, so evidence on the others vanished from the map every metric reads
    from videoxai.core.align import to_frames
    from videoxai.models.preprocess import Preprocess

    rng = np.random.default_rng(0)
    maps = torch.zeros(1, 2, 30, 30)
    maps.view(-1)[torch.from_numpy(rng.choice(1800, 60, replace=False))] = 1.0      # sparse evidence
    out = to_frames(maps, space="crop", preprocess=Preprocess(size=(30, 30), shortest_edge=30), frame_size=(10, 10),
                    num_frames=2)[0]
    blocks = maps[0].reshape(2, 10, 3, 10, 3).sum((2, 4))                    # evidence per 3 × 3 block
    assert (out[blocks > 0] > 0).all()
    assert float(out.sum()) * 9 == pytest.approx(float(maps.sum()), rel=0.1)    # mass kept, ×9 for the area


def test_ssim_class_sensitivity_of_a_view_smaller_than_its_window_is_undefined():
    # SSIM slides a 7-voxel window: a 2 × 2 one-frame clip raised skimage's "win_size exceeds image extent"
    model = vx.wrap(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), num_frames=1, input_size=2, layout="BTCHW",
                    num_classes=3)
    x = torch.rand(1, 1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    score = build("class_sensitivity(similarity=ssim)")(model, x, np.array([[[1.0, 2], [3, 4]]]), target=0,
                                                         explain_fn=lambda m, target=0, clip=None: np.array([[[4.0, 1], [2, 3]]]))
    assert math.isnan(score.value) and "window is 7 voxels" in score.details["undefined"]


def test_randomisation_leaves_the_cuda_generators_alone(monkeypatch):
    # each re-initialisation called torch.manual_seed, which re-seeds every CUDA device (or queues
    # the seed for when CUDA starts) and fork_rng(devices=[]) did not restore it: a GPU user's
    # CUDA generator was left at the last stage's seed
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(seed))
    model, x = cropped_model(), frames()
    exp = grey_level(model)
    again = as_explanation(a_map())
    score = build("randomisation(stages=2, seeds=1)")(model, x, exp, explain_fn=lambda m, target=0, clip=None: again)
    assert math.isfinite(score.value) and seeded == []


class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv3d(3, 6, 3, padding=1), nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3, 4)))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_randomisation_of_a_torchscript_network_re_runs_a_gradient_method():
    # the deep copy of a scripted network had non-leaf parameters: the saliency re-run on it failed
    # freezing them ('you can only change requires_grad flags of leaf variables')
    torch.manual_seed(0)
    net = torch.jit.script(Conv3dNet().eval())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = vx.wrap(net, num_frames=T, input_size=(20, 28), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=3)
    clip = vx.Clip.from_array(np.random.default_rng(0).random((T, 21, 29, 3)).astype(np.float32))
    exp = vx.explain(model, clip, method="saliency")
    score = build("randomisation(stages=2, seeds=1)")(model, clip, exp)
    assert -1 <= score.value < 0.9 and score.details["first_module_per_stage"] == ["fc", "conv"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.is_leaf and p.requires_grad for p in net.parameters())


class HeadFirst(nn.Module):
    """Registers its classifier before the convolution it runs first (as a Hugging Face TimeSformer
    layer registers its spatial attention before the temporal one)."""

    def __init__(self):
        super().__init__()
        self.head, self.conv = nn.Linear(6, 3), nn.Conv3d(3, 6, 3, padding=1)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3, 4)))


def test_randomisation_cascades_from_the_output_in_the_order_the_network_runs():
    # registration order was taken for the forward order: the first stage re-drew the convolution,
    # the input end, and left the classifier
    torch.manual_seed(1)      # not the seed of the first re-draw: a re-drawn layer differs from its original
    net = HeadFirst().eval()
    model = vx.wrap(net, num_frames=T, input_size=(20, 28), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=3)
    clip = vx.Clip.from_array(np.random.default_rng(0).random((T, 21, 29, 3)).astype(np.float32))
    changed = []

    def explain_fn(randomised, target=0, clip=None):
        changed.append([name for name in ("head", "conv") if not torch.equal(getattr(randomised.net, name).weight,
                                                                             getattr(net, name).weight)])
        return a_map()[:, :21, :29]

    score = build("randomisation(stages=2, seeds=1)")(model, clip, a_map()[:, :21, :29], target=0,
                                                     explain_fn=explain_fn)
    assert score.details["first_module_per_stage"] == ["head", "conv"]
    assert changed == [["head"], ["head", "conv"]]


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout)
        self.conv2, self.bn2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout)
        self.shortcut = nn.Conv3d(cin, cout, 1, bias=False)

    def forward(self, x):
        # the shortcut runs first here, though it is registered last
        skip = self.shortcut(x)
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + skip)


class Residual3d(nn.Module):
    """A small 3D CNN with a residual block; its classifier head is registered before the stem."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.stem = nn.Conv3d(3, 4, 3, padding=1)
        self.block = ResidualBlock(4, 6)
        with torch.no_grad():                        # batch norms as trained (a re-draw sets weight 1, bias 0)
            for bn in (self.block.bn1, self.block.bn2):
                bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.1, 0.1), bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.head(self.block(torch.relu(self.stem(x))).mean((2, 3, 4)))


class TokenNet(nn.Module):
    """timm style: the root owns the class token and position table it adds after the patch
    embedding, and its transformer layer's attention uses ``out_proj`` without calling it."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv3d(3, 8, (1, 7, 7), stride=(1, 7, 7))
        self.cls = nn.Parameter(torch.randn(1, 1, 8) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 1 + T * 3 * 4, 8) * 0.02)
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], 1) + self.pos
        return self.head(self.layer(tokens)[:, 0])


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_randomisation_of_a_wrapped_residual_cnn_goes_from_the_head_to_the_stem_and_leaves_it_as_it_was():
    torch.manual_seed(1)
    net = Residual3d().eval()
    model = vx.wrap(net, num_frames=T, input_size=(20, 28), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=3)
    clip = vx.Clip.from_array(np.random.default_rng(0).random((T, 21, 29, 3)).astype(np.float32))
    before = weights(net)
    order = ["head", "block.bn2", "block.conv2", "block.bn1", "block.conv1", "block.shortcut", "stem"]
    redrawn = []

    def explain_fn(randomised, target=0, clip=None):
        redrawn.append([name for name in order if not torch.equal(randomised.net.get_submodule(name).weight,
                                                                  net.get_submodule(name).weight)])
        return a_map()[:, :21, :29]

    score = build("randomisation(stages=None, seeds=1)")(model, clip, a_map()[:, :21, :29], target=0,
                                                        explain_fn=explain_fn)
    assert score.details["first_module_per_stage"] == order
    assert redrawn == [order[:k] for k in range(1, len(order) + 1)]
    # four stages: the head first, the stem in the last
    four = build("randomisation(stages=4, seeds=1)")(model, clip, a_map()[:, :21, :29], target=0,
                                                    explain_fn=lambda m, target=0, clip=None: a_map()[:, :21, :29])
    assert four.details["first_module_per_stage"][0] == "head" and redrawn[-1][-1] == "stem"
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_randomisation_places_a_modules_own_parameters_where_the_pass_uses_them():
    # the order a module's call ended in put the root's class token and positions (added at the
    # input end) in the first stage, as if they were the classifier, and the attention's out_proj,
    # which nn.MultiheadAttention uses without calling it, in the last, after the patch embedding
    torch.manual_seed(0)
    net = TokenNet().eval()
    model = vx.wrap(net, num_frames=T, input_size=(21, 28), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=3)
    clip = vx.Clip.from_array(np.random.default_rng(0).random((T, 21, 29, 3)).astype(np.float32))
    score = build("randomisation(stages=None, seeds=1)")(model, clip, a_map()[:, :21, :29], target=0,
                                                        explain_fn=lambda m, target=0, clip=None: a_map()[:, :21, :29])
    assert score.details["first_module_per_stage"] == [
        "head", "layer.norm2", "layer.linear2", "layer.linear1", "layer.norm1", "layer.self_attn.out_proj",
        "layer.self_attn", "", "patch"]


def test_a_randomisation_check_that_fails_midway_leaves_the_model_as_it_was():
    torch.manual_seed(1)
    net = Residual3d().eval()
    for p in net.stem.parameters():
        p.requires_grad_(False)                      # a frozen stem stays frozen
    model = vx.wrap(net, num_frames=T, input_size=(20, 28), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=3)
    clip = vx.Clip.from_array(np.random.default_rng(0).random((T, 21, 29, 3)).astype(np.float32))
    exp = vx.explain(model, clip, method="saliency")
    before, calls = weights(net), []

    def explain_fn(randomised, target=0, clip=None):
        calls.append(1)
        if len(calls) == 3:                          # stage 3 of 4: the head and the block partly re-drawn
            raise RuntimeError("out of memory")
        return a_map()[:, :21, :29]

    with pytest.raises(RuntimeError, match="out of memory"):
        build("randomisation(stages=4, seeds=2)")(model, clip, exp, explain_fn=explain_fn)
    after = net.state_dict()
    assert after.keys() == before.keys()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert [p.requires_grad for p in net.parameters()] == [True, True, False, False] + [True] * 7
    assert not any(m.training for m in net.modules())
    assert vx.explain(model, clip, method="saliency").spatial.tolist() == exp.spatial.tolist()


def test_randomisation_follows_a_hugging_face_timesformer_layer_in_the_order_it_runs():
    # a TimeSformer layer runs temporal attention, then spatial attention, then the MLP, but
    # registers the spatial attention and the MLP first
    from conftest import tiny_hf
    from videoxai.metrics.sanity import parameter_modules
    from videoxai.models.hf import from_hf_module

    model = from_hf_module(tiny_hf("timesformer"))
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    names = [n for n, _ in parameter_modules(model.net, lambda: model(x))]
    last = "timesformer.encoder.layer.1."
    assert names[:2] == ["classifier", "timesformer.layernorm"]
    assert [n[len(last):] for n in names[2:12]] == [
        "output.dense", "intermediate.dense", "layernorm_after", "attention.output.dense", "attention.attention.qkv",
        "layernorm_before", "temporal_dense", "temporal_attention.output.dense", "temporal_attention.attention.qkv",
        "temporal_layernorm"]
    assert names[-2:] == ["timesformer.embeddings", "timesformer.embeddings.patch_embeddings.projection"]


class Locked(nn.Module):
    """Holds a lock, which copy.deepcopy cannot copy."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lock = nn.Linear(3, 3), threading.Lock()

    def forward(self, x):
        with self.lock:
            return self.fc(x.mean((2, 3, 4)))


def test_randomisation_of_a_network_that_cannot_be_copied_names_why():
    # was TypeError "cannot pickle '_thread.lock' object" from deep inside copy.py
    model = vx.wrap(Locked().eval(), num_frames=T, input_size=8, num_classes=3)
    with pytest.raises(InputError, match=r"copy of custom, which cannot be copied \(copy.deepcopy: cannot pickle "
                                         r"'_thread.lock' object\); give that attribute a __deepcopy__"):
        build("randomisation(stages=1, seeds=1)")(model, torch.rand(1, T, 3, 8, 8), a_map()[:, :8, :8], target=0,
                                                  explain_fn=lambda m, target=0, clip=None: a_map()[:, :8, :8])


# -- issue 13 review: robustness noise that changes nothing, signed re-run maps ----------------------------
@pytest.mark.parametrize("name", ["max_sensitivity", "local_lipschitz"])
def test_noise_below_the_pixels_resolution_is_undefined_not_perfect_robustness(name):
    # 1e-9 added to a float32 pixel near 0.5 rounds back to it: no input changed, so nothing was
    # measured; max_sensitivity scored 0.0 (perfectly robust) and local_lipschitz's 0 / 0 was "the map is empty"
    model, x = cropped_model(), 0.3 + 0.4 * frames()
    calls = []

    def recording(m, target=0, clip=None):
        calls.append(clip)
        return grey_level(m, target, x if clip is None else clip)

    score = build(f"{name}(n_samples=2, radius=1e-9)")(model, x, grey_level(model, clip=x), explain_fn=recording)
    assert math.isnan(score.value) and not calls
    assert score.details["undefined"] == ("noise of radius=1e-09 changed no pixel the model sees (pixels are float32 "
                                          "in [0, 1]): choose a larger radius")
    # a radius the pixels resolve is measured as before
    assert math.isfinite(build(f"{name}(n_samples=1, radius=1e-4)")(model, x, grey_level(model, clip=x),
                                                                     explain_fn=recording).value)


@pytest.mark.parametrize("spec", ["max_sensitivity(n_samples=1)", "local_lipschitz(n_samples=1)",
                                  "class_sensitivity", "randomisation(stages=1, seeds=1)"])
def test_a_signed_rerun_map_is_refused_as_a_signed_explanation_is(spec):
    # the explanation must be non-negative (metrics rank relevance); a user's explain_fn returning raw,
    # signed gradients was compared with the absolute original: the score measured the sign convention
    model, x = cropped_model(), frames()
    exp = grey_level(model)
    signed = lambda m, target=0, clip=None: a_map() - 0.5          # noqa: E731
    with pytest.raises(InputError, match=rf"^{spec.split('(')[0]}: explain_fn returned a map with negative values "
                                         r"\(a signed attribution\?\)"):
        build(spec)(model, x, exp, explain_fn=signed)


def test_metrics_help_states_each_metrics_direction_and_range_and_insertions_order_help_is_its_own():
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.metrics import available, get

    expected = {"deletion": ("lower (order=morf)", "[0, 1]"), "insertion": ("higher (order=morf)", "[0, 1]"),
                "faithfulness": ("higher", "[0, 1]"), "monotonicity": ("higher", "[-1, 1]"),
                "frame_faithfulness": ("higher", "[-1, 1]"), "pointing_game": ("higher", "[0, 1]"),
                "energy": ("higher", "[0, 1]"), "iou": ("higher", "[0, 1]"), "temporal_grounding": ("higher", "[0, 1]"),
                "sparseness": ("higher", "[0, 1]"), "randomisation": ("lower", "[-1, 1]"),
                "class_sensitivity": ("lower", "[-1, 1]"), "max_sensitivity": ("lower", "[0, ∞)"),
                "local_lipschitz": ("lower", "[0, ∞)"), "cost": ("lower", "[0, ∞)")}
    assert set(available()) == set(expected)
    runner = CliRunner()
    for name, (better, values) in expected.items():
        out = runner.invoke(app, ["metrics", name], env={"COLUMNS": "200"}).output
        assert f"\nbetter: {better}\nrange: {values}\n" in out, (name, out)
        assert better.startswith("higher") == get(name)().higher_is_better
    # the order option's help was deletion's ("morf … lower AUC is better") under insertion, whose
    # MoRF curve is better high
    def squash(text: str) -> str:   # the table wraps its cells: compare without spaces and rules
        return "".join(c for c in text if not c.isspace() and c != "│")

    out = squash(runner.invoke(app, ["metrics", "insertion"]).output)
    assert squash("lower AUC is better) or") not in out
    assert squash("Lower AUC is better for deletion-MoRF and insertion-LeRF, higher for insertion-MoRF and "
                  "deletion-LeRF") in out


def _road_by_sparse_solve(clip: np.ndarray, kept: np.ndarray, time_weight: float) -> np.ndarray:
    """ROAD's linear fill written from the paper: for every removed voxel i, Σ_j w_ij (v_i − v_j) = 0 over
    its neighbours inside the clip (1/6 direct, 1/12 diagonal in the frame, time_weight the same pixel
    one frame before and after), assembled voxel by voxel and solved exactly by scipy."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    t, c, h, w = clip.shape
    nb = [((0, dy, dx), 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
          for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    nb += [((dt, 0, 0), time_weight) for dt in (-1, 1)] if time_weight else []
    removed = np.argwhere(~kept)
    index = np.full(kept.shape, -1)
    index[~kept] = np.arange(len(removed))
    a, b = sp.lil_matrix((len(removed), len(removed))), np.zeros((len(removed), c))
    for n, (i, y, x) in enumerate(removed):
        for (dt, dy, dx), wt in nb:
            j, yy, xx = i + dt, y + dy, x + dx
            if 0 <= j < t and 0 <= yy < h and 0 <= xx < w:
                a[n, n] += wt
                if kept[j, yy, xx]:
                    b[n] += wt * clip[j, :, yy, xx]
                else:
                    a[n, index[j, yy, xx]] -= wt
    out = clip.copy()
    out.transpose(0, 2, 3, 1)[~kept] = spsolve(a.tocsc(), b).reshape(len(removed), c)
    return out


@pytest.mark.parametrize("time_weight", [0.0, 1 / 6, 0.5])
def test_road_fill_equals_an_exact_sparse_solve_in_space_and_time_and_its_noise_is_as_documented(time_weight):
    from videoxai.metrics.road import NoisyLinearImputer

    rng = np.random.default_rng(3)
    clip = rng.random((3, 3, 9, 11)).astype(np.float32)
    kept = rng.random((3, 9, 11)) > 0.6
    kept[1, 2:7, 3:9] = False                                      # a hole wider than one voxel
    fill = NoisyLinearImputer(noise=0, time_weight=time_weight, tolerance=1e-9)(torch.from_numpy(clip),
                                                                                torch.from_numpy(kept))[0]
    expected = _road_by_sparse_solve(clip.astype(np.float64), kept, time_weight)
    # (to the documented 1e-6 pull towards the mean colour: a few 1e-6 here, far below the noise)
    np.testing.assert_allclose(fill.double().numpy(), expected, atol=1e-5, rtol=0)
    # the reference's noise: N(0, 0.01²) added to every removed value and only to them
    noisy = NoisyLinearImputer(time_weight=time_weight, tolerance=1e-9)(
        torch.from_numpy(clip), torch.from_numpy(kept), torch.Generator().manual_seed(0))[0]
    diff = (noisy - fill).double().numpy().transpose(0, 2, 3, 1)
    assert np.abs(diff[kept]).max() == 0
    assert diff[~kept].std() == pytest.approx(0.01, rel=0.08) and abs(diff[~kept].mean()) < 0.002


@pytest.mark.parametrize("name, quantus_name", [("max_sensitivity", "MaxSensitivity"),
                                                ("local_lipschitz", "LocalLipschitzEstimate")])
def test_robustness_equals_quantus_on_the_same_noisy_clips(name, quantus_name):
    # Quantus draws its own noise: it is given the noisy clips ours drew, and computes the ratios
    # (Frobenius ‖Δe‖/‖e‖; Euclidean ‖Δe‖/‖Δx‖) and their maximum itself; the frame is the model's view
    quantus = pytest.importorskip("quantus")
    from test_metrics_new import linear_model

    g = torch.Generator().manual_seed(0)
    model = linear_model(torch.rand(3, 1, 3, 12, 12, generator=g))
    x = 0.2 + 0.6 * torch.rand(1, 1, 3, 12, 12, generator=g)

    def squared_grey(inputs: np.ndarray) -> np.ndarray:            # (B, 3, H, W) → (B, 1, H, W)
        return np.asarray(inputs).mean(1, keepdims=True) ** 2

    seen = []

    def explain_fn(m, target=0, clip=None):
        seen.append(clip[:, 0].numpy().reshape(1, -1).copy())
        return as_explanation(squared_grey(clip[:, 0].numpy())[:, 0], target=target)

    ours = build(f"{name}(n_samples=4, radius=0.05, seed=3)")(
        model, x, as_explanation(squared_grey(x[:, 0].numpy())[:, 0]), explain_fn=explain_fn)
    replay = iter(seen)

    class Image(nn.Module):
        def forward(self, images):
            return model.net(images.unsqueeze(1))

    ref = getattr(quantus, quantus_name)(
        nr_samples=4, perturb_func=lambda arr, indices, **_: next(replay).astype(arr.dtype), normalise=False,
        abs=False, disable_warnings=True)(
        model=Image().eval(), x_batch=x[:, 0].numpy(), y_batch=np.array([0]), a_batch=squared_grey(x[:, 0].numpy()),
        explain_func=lambda model, inputs, targets, **_: squared_grey(inputs), channel_first=True, device="cpu")
    assert len(seen) == 4 and ours.value == pytest.approx(float(ref[0]), rel=1e-6)


def test_pointing_game_energy_and_sparseness_equal_quantus_frame_by_frame():
    # Quantus scores images: each frame of a clip the model sees whole (no crop) is one image;
    # tie-free maps (Quantus counts a hit on any maximum) and Quantus' + 1e-7 in the Gini index
    quantus = pytest.importorskip("quantus")
    from test_metrics_new import linear_model

    t, h, w = 3, 10, 12
    g = torch.Generator().manual_seed(2)
    model = linear_model(torch.rand(3, t, 3, h, w, generator=g))
    x = torch.rand(1, t, 3, h, w, generator=g)
    rng = np.random.default_rng(2)
    maps = rng.random((t, h, w)).astype(np.float32)
    maps[0, 1, 1] = 5                                     # frame 0 peaks on the object, 1 and 2 not
    masks = np.zeros((t, h, w), bool)
    masks[:, 0:4, 0:5] = True
    maps[1:, 0:4, 0:5] *= 0.5
    sample = SimpleNamespace(masks=masks, boxes=None, window=None)
    exp = as_explanation(maps)
    images, a, s = x[0].numpy(), maps[:, None], masks[:, None]
    kwargs = dict(model=None, x_batch=images, y_batch=np.zeros(t, int), a_batch=a, s_batch=s, channel_first=True)
    hits = quantus.PointingGame(disable_warnings=True)(**kwargs)
    assert build("pointing_game(tolerance=0)")(model, x, exp, sample=sample).value == pytest.approx(np.mean(hits))
    assert np.mean(hits) == pytest.approx(1 / 3)
    inside = quantus.AttributionLocalisation(disable_warnings=True)(**kwargs)
    sparse = quantus.Sparseness(disable_warnings=True)(**{k: v for k, v in kwargs.items() if k != "s_batch"})
    for f in range(t):                                    # one frame: energy's ratio is Quantus' per image
        one = dict(model=linear_model(torch.rand(3, 1, 3, h, w, generator=g)), clip=x[:, f:f + 1],
                   explanation=as_explanation(maps[f:f + 1]))
        assert build("energy")(**one, sample=SimpleNamespace(masks=masks[f:f + 1], boxes=None,
                                                             window=None)).value == pytest.approx(inside[f], rel=1e-6)
        assert build("sparseness")(**one).value == pytest.approx(sparse[f], abs=1e-6)


class FrameAverage(nn.Module):
    """A 2-D conv per frame, averaged over the frames: every frame counts alike."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)

    def forward(self, x):                                          # (B, T, 3, H, W)
        b, t = x.shape[:2]
        return self.fc(torch.relu(self.conv(x.flatten(0, 1))).mean((2, 3)).view(b, t, -1).mean(1))


def test_frame_faithfulness_of_drops_equal_but_for_rounding_is_undefined_not_a_correlation_of_noise():
    # a still clip through a model that treats every frame alike: removing any one frame drops the
    # probability by the same amount, to ~1e-9 of float32 rounding; Pearson's r of that noise with the
    # map was anywhere in [-1, 1] (0.28, -0.67, 0.11 for three random maps)
    torch.manual_seed(0)
    model = vx.wrap(FrameAverage().eval(), num_frames=8, input_size=16, layout="BTCHW", num_classes=4)
    frame = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    still = vx.Clip.from_array(np.repeat(frame[None], 8, 0))
    for seed in range(3):
        score = build("frame_faithfulness")(model, still, np.random.default_rng(seed).random((8, 16, 16)), target=0)
        drops = np.array(score.details["drops"])
        assert 0 < np.ptp(drops) < 1e-6 * np.abs(drops).max()        # the same drop, to rounding
        assert math.isnan(score.value) and score.details["undefined"] == ("the attribution or the drop is the "
                                                                          "same for every frame")
    # frames that differ are scored as before: r of the map's frame sums and the drops, by numpy
    moving = vx.Clip.from_array(np.random.default_rng(1).random((8, 16, 16, 3), dtype=np.float32))
    m = np.random.default_rng(2).random((8, 16, 16))
    score = build("frame_faithfulness")(model, moving, m, target=0)
    assert score.value == pytest.approx(np.corrcoef(m.reshape(8, -1).sum(1), score.details["drops"])[0, 1])
    # a map whose frames' sums agree to float32 rounding (per-frame normalised) attributes alike too
    same = np.random.default_rng(3).random((16, 16)).astype(np.float32)
    near = np.stack([same * np.float32(1 + 1e-7 * k) for k in range(8)])
    assert math.isnan(build("frame_faithfulness")(model, moving, near, target=0).value)
