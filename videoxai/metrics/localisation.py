"""Localisation against ground truth: does the explanation point where (and when) the evidence is?

Ground truth comes from ``sample``: per-frame ``masks (T, H, W)`` bool, or per-frame ``boxes
(T, 4)`` ``[top, left, bottom, right)`` in pixels with ``-1`` rows where nothing is annotated, and
for the temporal metric a ``window = (start, end)`` of frames (or, without one, the frames that
have an annotation). All four are higher-is-better rates in [0, 1]. Annotations and tolerances are
in the clip's original pixels, and are read as given: an object partly or wholly outside the
model's crop box (where no map of ``vx.explain`` has mass) counts there too.

* **pointing game** (per frame): the peak of the frame's map is a hit if it lies within
  ``tolerance`` (a fraction of the frame's shorter side; 0.0625 ≈ the reference's 7 px at 112²)
  of the annotated region, Euclidean distance. Scored over the frames with an annotation; a
  frame whose map is empty (in a map that is not blank) is a miss. Several equal maxima: one is drawn (seeded), not the first
  in raster order.
* **energy**: share of the map's mass on the annotated voxels. ``scope="clip"`` divides by the
  mass of the whole clip, so mass on frames without the evidence counts against the map;
  ``"frames"`` only looks at the annotated frames (a purely spatial score).
* **iou**: the top ``k`` voxels of the map vs the annotated voxels; ``k`` is the annotation's own
  size by default (so a perfect map scores 1), or ``share`` of the visible voxels.
* **temporal grounding**: share of the ``k`` most important frames (by the explanation's
  temporal scores) that lie inside the annotated window; ``k = 1`` is the reference's hit test.

A **blank** map (constant where the model looks: all zeros, or all equal) has no peak and no top
voxels, and equal temporal scores have no top frame: the pointing game, IoU and temporal
grounding are then undefined (:func:`~videoxai.metrics.base.blank_reason`; they scored a blank
map 0, a constant one a seeded draw's chance hit). Energy reads the map's values: a constant map
scores the annotation's share of its mass, an all-zero map 0 (no energy on the evidence).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch

from ..options import Opt, OptionError
from .base import Metric, Score, Seed, descending_order, register, view_mask
from .truth import boxes_to_masks, ground_truth, truth_window  # noqa: F401  (public here since 0.1)


def _in_window(window, frames: np.ndarray) -> np.ndarray:
    if isinstance(window, tuple):
        return (frames >= window[0]) & (frames < window[1])
    return window[frames]


@register
class PointingGame(Metric):
    """Per-frame pointing game: share of annotated frames whose map peak is on the annotation.

    Options:
        tolerance: allowed distance from the annotated region, as a fraction of the frame's
            shorter side (0.0625 ≈ 7 px at 112², the reference's).
        seed: which of several equal maxima is taken.
    """

    name = "pointing_game"
    family = "localisation"
    ranks = "voxels"     # its peak: a blank map has none (undefined)
    bounds = (0.0, 1.0)
    requires = ("ground_truth",)

    def __init__(self, *, tolerance: Annotated[float, Opt(ge=0)] = 0.0625, seed: Seed = 0) -> None:
        self.tolerance, self.seed = tolerance, seed

    def compute(self, model, x, explanation, target, sample) -> Score:
        from scipy.ndimage import distance_transform_edt

        t, h, w = explanation.spatial.shape
        truth = ground_truth(sample, (t, h, w))
        tol = self.tolerance * min(h, w)
        frames = np.flatnonzero(truth.reshape(t, -1).any(1))
        if frames.size == 0:
            return Score.undefined("no frame has an annotation")
        hits = []
        for f in frames:
            m = torch.from_numpy(explanation.spatial[f])
            if float(m.max()) <= 0:
                hits.append(False)
                continue
            # modulo 2⁶⁴, the generator's range: the largest seed plus a frame overflowed it
            peak = int(descending_order(m.reshape(-1), (self.seed + int(f)) % 2 ** 64)[0])
            y, x_ = divmod(peak, w)
            dist = distance_transform_edt(~truth[f]) if tol > 0 else None
            hits.append(bool(truth[f, y, x_]) or (dist is not None and dist[y, x_] <= tol))
        return Score(float(np.mean(hits)), details={"frames": int(frames.size), "hits": int(sum(hits))})


@register
class Energy(Metric):
    """Share of the map's mass on the annotated voxels.

    Options:
        scope: ``"clip"`` (whole clip's mass in the denominator) or ``"frames"`` (annotated frames only).
    """

    name = "energy"
    family = "localisation"
    ranks = None         # a share of the mass: a constant map's is the annotation's share of it; no mass: 0
    bounds = (0.0, 1.0)
    requires = ("ground_truth",)

    def __init__(self, *, scope: Literal["clip", "frames"] = "clip") -> None:
        self.scope = scope

    def compute(self, model, x, explanation, target, sample) -> Score:
        s = explanation.spatial.astype(np.float64)
        truth = ground_truth(sample, s.shape)
        if self.scope == "frames":
            annotated = truth.reshape(truth.shape[0], -1).any(1)
            s, truth = s[annotated], truth[annotated]
        total = s.sum()
        if truth.sum() == 0:
            return Score.undefined("no voxel is annotated")
        # an empty map puts no energy anywhere, so none on the evidence
        return Score(float(s[truth].sum() / total) if total > 0 else 0.0)


@register
class TopShareIoU(Metric):
    """IoU between the map's top voxels (within the model's view) and the annotated voxels.

    Options:
        share: fraction of the visible voxels taken as the top; ``None`` takes as many as are
            annotated (a perfect map scores 1).
        seed: order among voxels of equal relevance.
    """

    name = "iou"
    family = "localisation"
    ranks = "voxels"     # its top k: a blank map has none (undefined)
    bounds = (0.0, 1.0)
    requires = ("ground_truth",)

    def __init__(self, *, share: Annotated[float | None, Opt(gt=0, le=1)] = None, seed: Seed = 0) -> None:
        self.share, self.seed = share, seed

    def compute(self, model, x, explanation, target, sample) -> Score:
        t, h, w = explanation.spatial.shape
        truth = torch.from_numpy(ground_truth(sample, (t, h, w)))
        visible = view_mask(model, t, h, w)
        scores = torch.from_numpy(explanation.spatial).double()
        n_truth = int(truth.sum())
        if n_truth == 0:
            return Score.undefined("no voxel is annotated")
        # > 0: a map blank where the model looks (all zero there) is undefined before this (Metric.ranks);
        # it scored 0, and a constant one k seeded random voxels' chance IoU
        peak = float(scores[visible].max())
        # never pick unseen voxels: below every seen one on the map's own scale, since ties are
        # values within TIE_TOLERANCE of the largest |score|; a fixed -1 set that scale, and a map
        # whose values are below 1e-6 (gradients, a user's map) became all ties, its top k a draw
        scores = torch.where(visible, scores, torch.full_like(scores, -peak))
        k = n_truth if self.share is None else max(1, int(round(self.share * int(visible.sum()))))
        top = torch.zeros(t * h * w, dtype=torch.bool)
        top[descending_order(scores.reshape(-1), self.seed)[:k]] = True
        top = top.view(t, h, w)
        inter, union = int((top & truth).sum()), int((top | truth).sum())
        return Score(inter / union, details={"top": k, "annotated": n_truth})


@register
class TemporalGrounding(Metric):
    """Share of the ``k`` most important frames that lie inside the annotated window.

    Options:
        k: number of top frames (1: the reference's hit test).
        seed: order among frames of equal score.
    """

    name = "temporal_grounding"
    family = "localisation"
    ranks = "frames"     # its top frames: equal frame scores have none (undefined)
    bounds = (0.0, 1.0)
    requires = ("window",)

    def __init__(self, *, k: Annotated[int, Opt(ge=1)] = 1, seed: Seed = 0) -> None:
        self.k, self.seed = k, seed

    def compute(self, model, x, explanation, target, sample) -> Score:
        t = explanation.num_frames
        if self.k > t:
            raise OptionError(f"{self._owner()}: option k={self.k} is more than the clip's {t} frames; "
                              f"choose k ≤ {t}")
        window = truth_window(sample, t)
        # equal frame scores (a blank map's) have no top frame: undefined before this (Metric.ranks); a
        # blank map scored a miss (0), equal scores of a map with mass a seeded draw, a chance hit
        scores = np.asarray(explanation.temporal, dtype=np.float64)
        top = descending_order(torch.from_numpy(scores), self.seed)[:self.k].numpy()
        inside = _in_window(window, top)
        return Score(float(inside.mean()), details={"top_frames": top.tolist()})
