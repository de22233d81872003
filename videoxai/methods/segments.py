"""Players of the perturbation games: frame segments, superpixels, supervoxels, windows.

A perturbation method asks "what if this part of the clip were absent?"; the parts are defined
here, independent of how their absence is simulated:

* :func:`frame_segments` — contiguous runs of frames (temporal SHAP's players),
* :func:`superpixels` — SLIC superpixels per frame, or supervoxels over the whole clip (LIME),
* :func:`window_starts` — the positions of a sliding window along one axis (occlusion).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def frame_segments(num_frames: int, n_segments: int) -> torch.Tensor:
    """Split ``num_frames`` frames into ``n_segments`` contiguous, near-equal segments.

    Returns ``(n_segments, 2)`` long ``[start, end)`` bounds. When the split is not even, the
    first ``num_frames % n_segments`` segments get one frame more.

    >>> frame_segments(8, 3).tolist()
    [[0, 3], [3, 6], [6, 8]]
    """
    if n_segments < 1:
        raise InputError(f"n_segments must be ≥ 1, got {n_segments}")
    if num_frames < n_segments:
        raise InputError(f"a clip of {num_frames} frames cannot be split into {n_segments} "
                         f"segments; choose n_segments ≤ {num_frames}")
    base, extra = divmod(num_frames, n_segments)
    lengths = torch.full((n_segments,), base, dtype=torch.long)
    lengths[:extra] += 1
    ends = lengths.cumsum(0)
    return torch.stack([ends - lengths, ends], dim=1)


def segment_membership(bounds: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(n, 2)`` segment bounds → ``(n, T)`` bool, True where frame t belongs to segment i."""
    t = torch.arange(num_frames)
    return (t[None] >= bounds[:, :1]) & (t[None] < bounds[:, 1:])


def superpixels(frames: torch.Tensor, n_segments: int, *, mode: str = "frame",
                compactness: float = 10.0, temporal_spacing: float = 1.0,
                smoothing: float | str = "auto") -> torch.Tensor:
    """SLIC superpixels of ``frames`` ``(T, 3, h, w)`` in [0, 1] → labels ``(T, h, w)`` long.

    Args:
        n_segments: superpixels per frame (``mode="frame"``) or supervoxels in the clip
            (``mode="clip"``); SLIC returns roughly this many.
        mode: ``"frame"`` segments each frame on its own (every label lives in one frame);
            ``"clip"`` segments the (T, h, w) volume, so a supervoxel can span several frames.
        compactness: SLIC's balance of colour against position (higher: more square).
        temporal_spacing: for ``"clip"``, the distance between two frames in pixels (SLIC's
            ``spacing`` along time); larger values make supervoxels shorter in time.
        smoothing: σ in pixels of the Gaussian SLIC applies to each frame before clustering
            (SLIC's ``sigma``; never across frames), or ``"auto"``: none, unless the
            segmentation comes back with fewer than half the segments asked for, then 1, then 2.
            Without it, pixel noise splits every segment into fragments that SLIC's
            connectivity step merges again: on grainy frames (noise σ 0.1) a clip asked for 96
            supervoxels gets 2–7, a random-noise clip one. On clean frames smoothing rounds
            the segments off small objects, so ``"auto"`` leaves clean frames as SLIC cuts them.

    Labels are consecutive from 0 across the whole clip, so they index a feature vector.
    """
    return slic_segments(frames, n_segments, mode=mode, compactness=compactness,
                         temporal_spacing=temporal_spacing, smoothing=smoothing)[0]


def slic_segments(frames: torch.Tensor, n_segments: int, *, mode: str = "frame",
                  compactness: float = 10.0, temporal_spacing: float = 1.0,
                  smoothing: float | str = "auto") -> tuple[torch.Tensor, float]:
    """:func:`superpixels`, and the smoothing σ it cut them with: ``(labels (T, h, w), σ)``
    (``"auto"``'s choice, so that a record of the run can give it explicitly)."""
    if mode not in ("frame", "clip"):
        raise InputError(f"superpixel mode must be 'frame' or 'clip', got {mode!r}")
    if n_segments < 1:
        raise InputError(f"n_segments must be ≥ 1, got {n_segments}")
    img = frames.detach().permute(0, 2, 3, 1).double().cpu().numpy()               # (T, h, w, 3)
    if smoothing == "auto":
        wanted = n_segments * (len(img) if mode == "frame" else 1)
        for sigma in (0.0, 1.0, 2.0):
            labels = _slic(img, n_segments, mode, compactness, temporal_spacing, sigma)
            if len(np.unique(labels)) >= wanted / 2:
                break
    else:
        side = max(img.shape[1:3])
        if float(smoothing) > side:
            # SciPy sizes the kernel from σ (8σ taps): a huge σ costs memory and time, and any σ
            # beyond the frame already blurs it to one colour, leaving SLIC nothing to cut
            raise InputError(f"smoothing σ {smoothing:g} px is larger than the frames SLIC cuts "
                             f"({img.shape[2]}x{img.shape[1]} px): it would blur each to one colour")
        sigma = float(smoothing)
        labels = _slic(img, n_segments, mode, compactness, temporal_spacing, sigma)
    _, consecutive = np.unique(labels, return_inverse=True)
    return torch.from_numpy(consecutive.reshape(labels.shape).astype(np.int64)), sigma


def _slic(img: np.ndarray, n_segments: int, mode: str, compactness: float, temporal_spacing: float,
          sigma: float) -> np.ndarray:
    """SLIC labels of ``img`` ``(T, h, w, 3)``: per frame (offset to be unique) or over the volume."""
    from skimage.segmentation import slic

    if mode == "frame":
        labels = np.stack([slic(f, n_segments=n_segments, compactness=compactness, start_label=0,
                                sigma=sigma, channel_axis=-1) for f in img])
        return labels + (np.arange(len(img)) * (labels.reshape(len(img), -1).max(1).max() + 1))[:, None, None]
    return slic(img, n_segments=n_segments, compactness=compactness, start_label=0,
                spacing=np.array([temporal_spacing, 1.0, 1.0]), sigma=np.array([0.0, sigma, sigma]),
                channel_axis=-1)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start positions of a ``window`` sliding by ``stride`` over ``length``, the last one flush
    with the end so that every position is covered at least once."""
    if window > length:
        raise InputError(f"window {window} is longer than the axis ({length})")
    if stride < 1:
        raise InputError(f"stride must be ≥ 1, got {stride}")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts
