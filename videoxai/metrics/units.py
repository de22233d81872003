"""Units that perturbation metrics switch on and off: pixels, patches, superpixels, frames.

A :class:`Partition` labels every pixel of a clip ``(T, H, W)`` with the unit it belongs to, and
``-1`` for pixels the model never sees (outside its crop box): switching those would change
nothing but the length of the curve, so they are not units at all. Units are ranked by the
explanation's relevance; the ``k`` most relevant are then a mask ``position < k`` over pixels,
which builds a batch of perturbed clips in one comparison.

* ``pixel``: every visible pixel of every frame.
* ``patch``: each frame's crop box cut into a ``grid × grid`` lattice of cells (the reference's
  ``cm_16``: 7 × 7 cells of a 112² frame, 16 × 16 per frame). Row ``i`` of an ``h``-pixel box is in
  cell ``⌊i · grid / h⌋`` (columns alike), so cells differ by a pixel where ``grid`` does not divide
  the box; a ``grid`` larger than the box's side gives one cell per pixel along that side.
* ``superpixel``: SLIC supervoxels of the whole clip (about ``segments`` in total, SLICO, σ = 1),
  split per frame, so that a unit is a region of one frame (the reference's ``scm_256``).
* ``frame``: whole frames, ranked by the explanation's temporal scores rather than by the mass of
  its spatial map, so that methods with their own temporal estimate are judged on it.

Pixel, patch and superpixel units are ranked by the **sum** of the map over the unit, as in the
reference code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np
import torch

from ..errors import InputError
from ..options import OptionError
from ..explanation import Explanation
from ..models.base import VideoModel
from ..models.preprocess import Preprocess
from .base import Metric, Unit, descending_order

UNITS: tuple[str, ...] = get_args(Unit)


@dataclass
class Partition:
    """Units of one clip.

    Attributes:
        labels: long ``(T, H, W)``, the unit of each pixel, ``-1`` outside the model's view.
        count: number of units ``U`` (labels are ``0 … U-1``).
        kind: the unit kind.
    """

    labels: torch.Tensor
    count: int
    kind: str

    def scores(self, explanation: Explanation) -> torch.Tensor:
        """Relevance of each unit ``(U,)``: the temporal score for frames, else the map's sum."""
        dev = self.labels.device
        if self.kind == "frame":
            return torch.as_tensor(explanation.temporal, dtype=torch.float64, device=dev)
        spatial = torch.as_tensor(explanation.spatial, dtype=torch.float64, device=dev)
        inside = self.labels >= 0
        return torch.zeros(self.count, dtype=torch.float64, device=dev).index_add_(
            0, self.labels[inside], spatial[inside])

    def positions(self, scores: torch.Tensor, seed: int, most_relevant_first: bool = True) -> torch.Tensor:
        """Long ``(T, H, W)``: each pixel's unit's place in the switching order, ``U`` outside the view.

        Least-relevant-first is exactly the reverse of most-relevant-first (ties included), so that
        insertion MoRF and deletion LeRF switch the same sets of units.
        """
        order = descending_order(scores, seed)                    # unit ids, most relevant first
        place = torch.empty(self.count, dtype=torch.long, device=scores.device)
        place[order] = torch.arange(self.count, device=scores.device)
        if not most_relevant_first:
            place = self.count - 1 - place
        out = torch.full_like(self.labels, self.count)
        inside = self.labels >= 0
        out[inside] = place[self.labels[inside]]
        return out


def partition(unit: str, pixels: torch.Tensor, preprocess: Preprocess, *, grid: int = 16,
              segments: int = 256) -> Partition:
    """Units of ``pixels`` ``(T, 3, H, W)`` in [0, 1] as the model with ``preprocess`` sees them."""
    if unit not in UNITS:
        raise InputError(f"unknown unit {unit!r}; choose from {', '.join(UNITS)}")
    t, _, h, w = pixels.shape
    dev = pixels.device
    top, left, ch, cw = preprocess.crop_box(h, w).as_ints(h, w)
    labels = torch.full((t, h, w), -1, dtype=torch.long, device=dev)
    view = labels[:, top:top + ch, left:left + cw]
    if unit == "pixel":
        view.copy_(torch.arange(t * ch * cw, device=dev).view(t, ch, cw))
        return Partition(labels, t * ch * cw, unit)
    if unit == "frame":
        view.copy_(torch.arange(t, device=dev).view(t, 1, 1).expand(t, ch, cw))
        return Partition(labels, t, unit)
    if unit == "patch":
        gy, gx = min(grid, ch), min(grid, cw)
        rows = torch.arange(ch, device=dev) * gy // ch
        cols = torch.arange(cw, device=dev) * gx // cw
        cell = rows[:, None] * gx + cols[None, :]
        view.copy_(torch.arange(t, device=dev).view(t, 1, 1) * (gy * gx) + cell)
        return Partition(labels, t * gy * gx, unit)
    # superpixel: SLIC supervoxels of the visible part of the clip, one unit per (frame, segment)
    from skimage.segmentation import slic

    crop = pixels[:, :, top:top + ch, left:left + cw].permute(0, 2, 3, 1).double().cpu().numpy()
    # SLICO (adaptive compactness) with σ = 1, as the reference: plain SLIC's fixed compactness
    # collapses to one segment on noisy or flat clips
    seg = slic(crop, n_segments=int(segments), sigma=1.0, slic_zero=True, channel_axis=-1,
               start_label=0)                                                # (T, ch, cw)
    per_frame = seg.astype(np.int64) + (seg.max() + 1) * np.arange(t)[:, None, None]
    _, dense = np.unique(per_frame, return_inverse=True)
    dense = dense.reshape(per_frame.shape)
    view.copy_(torch.from_numpy(dense).to(dev))
    return Partition(labels, int(dense.max()) + 1, unit)


class UnitMetric(Metric):
    """Base of the metrics that switch units of the clip off or on in the explanation's order
    (deletion, insertion, faithfulness, monotonicity): they share the options that say what a
    unit is and how ties are ordered, and :meth:`unit_order`.

    Options (of every unit metric):
        unit: what is switched: ``"pixel"``, ``"patch"`` (a ``grid × grid`` lattice of each
            frame), ``"superpixel"`` (SLIC, about ``segments`` in the clip) or ``"frame"`` (ranked
            by the explanation's temporal scores, not its map).
    """

    unit: str
    grid: int
    segments: int
    batch_size: int
    seed: int

    def _units(self, unit: str, grid: int, segments: int, batch_size: int, seed: int) -> None:
        """Store the unit options (parsed and range-checked from the subclass's declarations).

        An option of another unit is refused: ``deletion(unit=frame, grid=3)`` scored whole frames
        as ``deletion(unit=frame)`` does, under a key of its own, so the report showed one curve
        twice, as if the lattice had been tried and had changed nothing.
        """
        declared = self.declared_options()
        for option, value, owner in (("grid", grid, "patch"), ("segments", segments, "superpixel")):
            if unit != owner and value != declared[option].default:
                raise OptionError(f"{self._owner()}: option {option}={value} applies to unit={owner} only; "
                                  f"unit={unit} ignores it (drop it, or use unit={owner})")
        self.unit, self.grid, self.segments, self.batch_size, self.seed = unit, grid, segments, batch_size, seed

    @property
    def ranks(self) -> str:
        """Frames are ranked by the temporal scores, other units by the map (a blank one, or equal
        frame scores, leave the metric undefined: :func:`~videoxai.metrics.base.blank_reason`)."""
        return "frames" if self.unit == "frame" else "voxels"

    def unit_order(self, model: VideoModel, clip: torch.Tensor, explanation: Explanation,
                   most_relevant_first: bool = True) -> tuple[torch.Tensor, int]:
        """``(place (T, H, W), U)``: each pixel's unit's place in the switching order (``U``
        outside the model's view, see :meth:`Partition.positions`) for ``clip (T, 3, H, W)``, and
        the number of units."""
        part = partition(self.unit, clip, model.preprocess, grid=self.grid, segments=self.segments)
        return part.positions(part.scores(explanation), self.seed, most_relevant_first), part.count
