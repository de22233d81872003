"""Ground truth of a clip: annotated voxels and frames, read from any ``sample``.

A sample is anything with ``masks (T, H, W)`` bool, or ``boxes (T, 4)`` ``[top, left, bottom,
right)`` in pixels (``-1`` rows where nothing is annotated), and/or a ``window = (start, end)`` of
frames (e.g. :class:`~videoxai.data.datasets.EvalSample`), as attributes or as the keys of a dict.
This module is below every metric: the metric base checks samples with it and the localisation
metrics score against it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from ..errors import InputError, VideoXAIError


class MissingGroundTruth(VideoXAIError):
    """A localisation metric was asked to score a clip that has no annotation of the needed kind."""


def sample_field(sample, name: str):
    """``sample.name`` (``masks``, ``boxes`` or ``window``), or ``sample[name]`` for a dict; ``None``
    where it has none."""
    # a dict of ground truth was read as an object without attributes: "the sample has neither
    # masks nor boxes", of a dict that had both
    if isinstance(sample, Mapping):
        return sample.get(name)
    return getattr(sample, name, None)


def ground_truth(sample, shape: tuple[int, int, int]) -> np.ndarray:
    """Annotated voxels ``(T, H, W)`` bool from ``sample.masks``, else ``sample.boxes``."""
    t, h, w = shape
    masks = sample_field(sample, "masks")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (t, h, w):
            raise InputError(f"ground-truth masks have shape {masks.shape}, the clip is {(t, h, w)}")
        return masks.astype(bool)
    boxes = sample_field(sample, "boxes")
    if boxes is None:
        raise MissingGroundTruth("the sample has neither masks nor boxes")
    return boxes_to_masks(boxes, (t, h, w))


def boxes_to_masks(boxes, shape: tuple[int, int, int]) -> np.ndarray:
    """``(T, 4)`` ``[top, left, bottom, right)`` (``-1`` rows: none) → ``(T, H, W)`` bool."""
    t, h, w = shape
    boxes = checked_boxes(boxes, t)
    out = np.zeros((t, h, w), dtype=bool)
    for i, (top, left, bottom, right) in enumerate(boxes):
        if top < 0 and bottom < 0:
            continue
        if bottom < top or right < left:
            raise InputError(f"box {boxes[i].tolist()} of frame {i} is not [top, left, bottom, right)")
        y0, x0 = max(0, int(math.floor(top))), max(0, int(math.floor(left)))
        y1, x1 = min(h, int(math.ceil(bottom))), min(w, int(math.ceil(right)))
        out[i, y0:y1, x0:x1] = True
    return out


def checked_boxes(boxes, num_frames: int) -> np.ndarray:
    """``boxes`` as a finite ``(num_frames, 4)`` array; :class:`InputError` otherwise."""
    boxes = np.asarray(boxes)
    if boxes.shape != (num_frames, 4):
        raise InputError(f"ground-truth boxes must have shape ({num_frames}, 4), got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise InputError("ground-truth boxes contain NaN or infinite values")
    return boxes


def truth_window(sample, num_frames: int) -> tuple[int, int] | np.ndarray:
    """The annotated frames: ``sample.window`` as ``(start, end)``, else a bool ``(T,)`` of the
    frames that have a mask or a box."""
    window = sample_field(sample, "window")
    if window is not None:
        # frame indices: a window in seconds (1.2, 2.5) or any other non-integer pair was truncated
        # to frames (1, 2) and scored without a word
        pair = np.asarray(window, dtype=object).reshape(-1)
        if pair.size != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                                     and math.isfinite(v) and float(v).is_integer() for v in pair):
            raise InputError(f"window must be (start, end) frame indices (integers), got {window!r}")
        start, end = int(pair[0]), int(pair[1])
        if not 0 <= start < end <= num_frames:
            raise InputError(f"window {tuple(window)} is not a non-empty [start, end) within {num_frames} frames")
        return start, end
    masks, boxes = sample_field(sample, "masks"), sample_field(sample, "boxes")
    if masks is None and boxes is None:
        raise MissingGroundTruth("the sample has no window, masks or boxes")
    # checked as ground_truth() checks them: a (16, H, W) mask or (4, 4) boxes of another clip
    # were reshaped or indexed to this clip's frames and scored without a word
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[0] != num_frames:
            raise InputError(f"ground-truth masks have shape {masks.shape}, the clip has {num_frames} frames "
                             f"(masks are (T, H, W) = ({num_frames}, H, W))")
        present = masks.reshape(num_frames, -1).any(1)
    else:
        present = checked_boxes(boxes, num_frames)[:, 2] >= 0
    if not present.any():
        raise MissingGroundTruth("the sample's annotation is empty in every frame")
    return present
