"""Resizing for display: reports and timelines shrink huge frames and enlarge tiny ones before
drawing (anti-aliased when shrinking, nearest when enlarging, so tiny synthetic clips stay crisp)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` → ``(T, h, w, 3)``: anti-aliased when shrinking, nearest when enlarging
    (tiny synthetic clips stay crisp instead of blurring)."""
    if frames.shape[1:3] == tuple(size):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = _resize(x, size)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float ``(T, H, W)`` → ``(T, h, w)`` with the same rule as :func:`resize_frames`."""
    if maps.shape[1:3] == tuple(size):
        return maps
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return _resize(x, size)[:, 0].clamp(0, 1).numpy()


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if size[0] >= x.shape[-2] and size[1] >= x.shape[-1]:
        return F.interpolate(x, size=size, mode="nearest-exact")
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
