"""Occlusion with spatio-temporal windows (Zeiler & Fergus, carried to video as in Captum).

A box of ``window = (frames, rows, cols)`` voxels of the model's input grid slides over the clip
with ``strides``; at each position the box is replaced by the baseline and the drop of the
target's score, ``v(clip) − v(occluded)``, is credited to every voxel of the box. A voxel's
attribution is the mean drop over the windows that cover it (Captum's ``Occlusion`` divides by
the same count). Window positions include one flush with the end of each axis, so every voxel is
covered even when the stride does not tile the clip (unless the stride is longer than the
window: the voxels between two windows get 0). The map keeps the positive part; the method
is deterministic, so it takes no seed.
"""

from __future__ import annotations

import itertools
import math

import torch

from typing import Annotated

from ..options import Opt, triple
from .base import BaselineName, BatchSize, Output, register
from .perturbation import Canvas, ClipResult, PerturbationMethod, check_fits
from .segments import window_starts


#: a box size on the model grid, one int for a cube: ``4`` and ``[4, 4, 4]`` are the same option
Box = Annotated[int | tuple[int, int, int] | None, Opt(ge=1, normalise=triple)]


@register
class Occlusion(PerturbationMethod):
    """Sliding spatio-temporal occlusion; see the module docstring.

    Args:
        window: ``(frames, rows, cols)`` of the occluding box, in frames and pixels of the model's
            input grid (one integer: a cube), at most the clip's ``T × h × w`` there;
            ``None`` → ``(max(1, T/4), h/4, w/4)``, a box of 1/64 of the clip.
        strides: ``(frames, rows, cols)`` the box moves by, same units (one integer: all
            three); ``None`` → half the window (at least 1).
        baseline: what the box shows (a :mod:`~videoxai.core.baselines` name, or a function
            ``(B, T, 3, H, W) → same``); ``"blur"``
            by default (on 12 validation clips of the synthetic benchmark with the bundled 3D
            CNN, top frame in the window / peak on the object: blur 0.83 / 0.22, black
            0.67 / 0.25, mean 0.75 / 0.12, fade 0.75 / 0.09).
        output: ``"probability"`` or ``"logit"`` of the target.
        batch_size: occluded clips per forward pass.
    """

    name = "occlusion"
    paper = 'Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014'

    def __init__(self, model, window: Box = None, strides: Box = None, baseline: BaselineName = "blur",
                 output: Output = "probability", batch_size: BatchSize = 8) -> None:
        super().__init__(model)
        self._setup(batch_size=batch_size, output=output, baseline=baseline)
        self.window, self.strides = window, strides

    def _starts(self, t: int, h: int, w: int) -> tuple[tuple[int, int, int], tuple[int, int, int], list[list[int]]]:
        """The box and its strides on a ``t × h × w`` grid, and its start positions along each axis."""
        window = self.window or (max(1, t // 4), max(1, h // 4), max(1, w // 4))
        check_fits(self._owner(), "window", "window", window, (t, h, w))
        strides = self.strides or tuple(max(1, k // 2) for k in window)
        return window, strides, [window_starts(n, k, s) for n, k, s in zip((t, h, w), window, strides)]

    def forward_passes(self, num_frames: int) -> int:
        # counted, not listed: window 1 / stride 1 on a large grid has millions of positions
        *_, starts = self._starts(num_frames, *self.model.input_size)
        return math.prod(len(s) for s in starts) + 2

    def explain_clip(self, canvas: Canvas, target: int, generator: torch.Generator) -> ClipResult:
        t, (h, w) = canvas.num_frames, canvas.grid
        window, strides, starts = self._starts(t, h, w)
        positions = list(itertools.product(*starts))
        kt, kh, kw = window
        device = canvas.pixels.device
        fill = self.baseline(canvas)

        def boxes(sl: slice) -> torch.Tensor:
            # the pixels' dtype, not the default one (a caller's float64 default made every
            # occluded clip float64, and the map other bits than the same call's without it)
            keep = torch.ones(sl.stop - sl.start, t, h, w, device=device, dtype=canvas.pixels.dtype)
            for j, (a, b, c) in enumerate(positions[sl]):
                keep[j, a:a + kt, b:b + kh, c:c + kw] = 0
            return keep

        def make(sl: slice) -> torch.Tensor:
            if sl.start == 0:  # the unoccluded clip first: the reference score
                if sl.stop == 1:
                    return canvas.pixels
                return torch.cat([canvas.pixels, canvas.compose(boxes(slice(0, sl.stop - 1)), fill)])
            return canvas.compose(boxes(slice(sl.start - 1, sl.stop - 1)), fill)

        scores = self.scores(make, len(positions) + 1, target, f"{len(positions)} windows")
        drops = (scores[0] - scores[1:]).float()
        total = torch.zeros(t, h, w, device=device, dtype=torch.float32)
        count = torch.zeros(t, h, w, device=device, dtype=torch.float32)
        for d, (a, b, c) in zip(drops, positions):
            total[a:a + kt, b:b + kh, c:c + kw] += d
            count[a:a + kt, b:b + kh, c:c + kw] += 1
        return ClipResult(maps=(total / count.clamp_min(1)).clamp_min(0),
                          resolved={"window": window, "strides": strides})
