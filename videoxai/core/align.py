"""Bring a method's map back onto the clip's original frames.

A map at model resolution covers the model's *crop box*, not the whole frame, so it is resized
to the box and pasted there (zero elsewhere); the reference STAA code stretched it over the whole
frame, which misplaces evidence on any non-square video. Time is aligned first, at low resolution:
token frames that each cover ``tubelet`` input frames are repeated, feature maps with fewer frames
are interpolated between their centres. Everything stays on the tensor's device.

A frame whose map is constant (a method that scores whole frames gives a ``1 × 1`` map) is
expanded exactly: bilinear resizing leaves float rounding noise of ~1e-7 on it, which metrics
that rank pixels would read as a peak (always in the same corner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # only its crop_box is called: the core layer sits below models
    from ..models.preprocess import Preprocess


def align_time(maps: torch.Tensor, num_frames: int, mode: str = "repeat") -> torch.Tensor:
    """``(B, T', h, w)`` → ``(B, T, h, w)``."""
    t_in = maps.shape[1]
    if t_in == num_frames:
        return maps
    if mode == "repeat" and num_frames % t_in == 0:
        return maps.repeat_interleave(num_frames // t_in, dim=1)
    b, _, h, w = maps.shape
    x = maps.permute(0, 2, 3, 1).reshape(b, h * w, t_in)
    x = F.interpolate(x, size=num_frames, mode="linear", align_corners=False)
    return x.reshape(b, h, w, num_frames).permute(0, 3, 1, 2)


def interpolation_weights(centres: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """``(n, K)`` float: the weights that interpolate values at ``centres`` ``(K,)`` (increasing, in
    input indices) linearly at each input index ``0 … n − 1``, held constant beyond the first and
    last centre; None where ``centres`` is None or not increasing."""
    if centres is None:
        return None
    c = centres.double()
    k = c.numel()
    if k == 1:
        return torch.ones(n, 1)
    if not bool((c[1:] > c[:-1]).all()):
        return None
    x = torch.arange(n, dtype=torch.float64).clamp(float(c[0]), float(c[-1]))
    seg = (torch.searchsorted(c, x, right=True) - 1).clamp(0, k - 2)      # c[seg] <= x <= c[seg + 1]
    frac = (x - c[seg]) / (c[seg + 1] - c[seg])
    weights = torch.zeros(n, k, dtype=torch.float64)
    rows = torch.arange(n)
    weights[rows, seg] = 1 - frac
    weights[rows, seg + 1] += frac
    return weights.float()


def to_frames(maps: torch.Tensor, *, space: str, preprocess: Preprocess, frame_size: tuple[int, int],
              num_frames: int, time_align: str = "repeat") -> torch.Tensor:
    """Align ``(B, T', h, w)`` with ``(B, T, H, W)`` original frames.

    ``space="crop"``: the ``h × w`` grid covers ``preprocess.crop_box``; ``"frame"``: the whole frame.
    """
    maps = align_time(maps.float(), num_frames, time_align)
    b, t, h, w = maps.shape
    fh, fw = frame_size
    if space == "frame":
        if (h, w) == (fh, fw):
            return maps
        return _resize_into(maps, maps.new_empty(b, t, fh, fw))
    if space != "crop":
        raise ValueError(f"unknown map space {space!r}")
    top, left, ch, cw = preprocess.crop_box(fh, fw).as_ints(fh, fw)
    out = maps.new_zeros(b, t, fh, fw)
    _resize_into(maps, out[:, :, top:top + ch, left:left + cw])
    return out


def _resize_into(maps: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Bilinear ``(B, T, h, w)`` → ``out`` ``(B, T, H, W)`` (may be a view), a frame at a time.

    Frame by frame because the output is large (a 4K map is 33 MB a frame) and a batched resize
    would hold a second copy of it; frames with a constant map are filled exactly. Antialiased
    when shrinking by more than 2× (frames much smaller than the model's input): plain bilinear
    reads 2 × 2 pixels of the map for each output pixel, which covers every pixel up to 2× (at 2×
    it is their exact mean), but a pixel-level map shrunk 3× kept one pixel in 9 of its evidence
    (the rest vanished, whatever the metric).
    """
    h, w = out.shape[-2:]
    shrink = 2 * h < maps.shape[-2] or 2 * w < maps.shape[-1]
    for i, clip in enumerate(maps):
        for j, frame in enumerate(clip):
            if frame.amax() == frame.amin():
                out[i, j] = frame[0, 0]
            else:
                out[i, j] = F.interpolate(frame[None, None], size=(h, w), mode="bilinear", align_corners=False,
                                          antialias=shrink)[0, 0]
    return out


def crop_mask(preprocess: Preprocess, frame_size: tuple[int, int], device=None) -> torch.Tensor:
    """Boolean ``(H, W)``: the pixels the model sees."""
    fh, fw = frame_size
    top, left, ch, cw = preprocess.crop_box(fh, fw).as_ints(fh, fw)
    m = torch.zeros(fh, fw, dtype=torch.bool, device=device)
    m[top:top + ch, left:left + cw] = True
    return m
