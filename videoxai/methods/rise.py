"""RISE with 3D random masks (Petsiuk et al. 2018, carried to video).

``n_samples`` binary grids of ``cells = (frames, rows, cols)`` cells, each cell kept with
probability ``p_keep``, are upsampled trilinearly to one cell more than the clip and cropped at a
random sub-cell shift (RISE's recipe, with time as a third axis), giving smooth masks M_i over
the model's input grid. The model scores each masked clip (kept pixels from the clip, the rest
from the baseline), and the map is

    S(v) = 1/(N·p) · Σ_i (s_i − s̄) · M_i(v)

the RISE estimator ``Σ s_i M_i / (N p)`` minus its constant floor ``s̄ · Σ M_i / (N p)`` — an
estimate of how much keeping voxel v raises the score. Subtracting the floor with each voxel's
own mask coverage, instead of a constant, removes the noise that uneven random coverage would
otherwise paint into the map; the ranking of voxels is RISE's in expectation. Negative values
(voxels whose presence lowers the score) are clipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from typing import Annotated

from ..core.batching import batched
from ..options import Opt, OptionError, triple
from .base import BaselineName, BatchSize, Output, Seed, register
from .perturbation import Canvas, ClipResult, PerturbationMethod, check_fits


#: masks summed into the map at a time (:meth:`RISE.explain_clip`)
ACCUMULATE = 8


def random_masks(n: int, cells: tuple[int, int, int], size: tuple[int, int, int], p_keep: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The random draws of RISE: ``(n, *cells)`` bool grids and ``(n, 3)`` long shifts.

    Drawn all at once (tiny) so that the masks do not depend on how they are batched.
    """
    # float32 draws whatever the default dtype: float64 ones are other numbers from the same seed
    grids = torch.rand(n, *cells, generator=generator, dtype=torch.float32) < p_keep
    cell = [math.ceil(s / c) for s, c in zip(size, cells)]
    shifts = torch.stack([torch.randint(0, c, (n,), generator=generator) for c in cell], dim=1)
    return grids, shifts


def upsample_masks(grids: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Smooth masks ``(n, T, h, w)`` from grids ``(n, ct, ch, cw)`` and shifts ``(n, 3)``."""
    cells = grids.shape[1:]
    cell = [math.ceil(s / c) for s, c in zip(size, cells)]
    up = [(c + 1) * k for c, k in zip(cells, cell)]
    big = F.interpolate(grids[:, None].float(), size=up, mode="trilinear", align_corners=False)[:, 0]
    # float32, not the default dtype: a caller's torch.set_default_dtype(torch.float64) made the
    # masks float64, and their sum with the float32 scores failed ('expected scalar type Double')
    out = torch.empty(len(grids), *size, device=grids.device, dtype=torch.float32)
    for i, (a, b, c) in enumerate(shifts.tolist()):
        out[i] = big[i, a:a + size[0], b:b + size[1], c:c + size[2]]
    return out


@register
class RISE(PerturbationMethod):
    """Randomised input sampling with 3D masks; see the module docstring.

    Args:
        n_samples: number of random masks (forward passes), at least 2; 1000 by default.
        cells: ``(frames, rows, cols)`` of the random grid (one integer: as many along each
            axis, as occlusion's ``window``); ``None`` → ``(T/2, 7, 7)``, with at
            least 2 frames' cells on a clip of 2 or 3 frames (one cell would keep or drop every
            frame at once, and the map would say nothing about when) and at most one cell a
            frame or grid pixel. More cells than frames (or grid pixels) is an error.
        p_keep: probability that a cell is kept (RISE's 0.5).
        baseline: what masked pixels show (a :mod:`~videoxai.core.baselines` name, or a function
            ``(B, T, 3, H, W) → same``); black,
            as in RISE (on 12 validation clips of the synthetic benchmark with the bundled 3D
            CNN, top frame in the window / peak on the object: black 0.83 / 0.84, blur
            0.83 / 0.78, mean 0.75 / 0.88).
        output: ``"probability"`` or ``"logit"`` of the target.
        batch_size: masked clips per forward pass.
        seed: seeds the masks.
    """

    name = "rise"
    paper = ('Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box '
             'Models, BMVC 2018')

    def __init__(self, model, n_samples: Annotated[int, Opt(ge=1)] = 1000,
                 cells: Annotated[int | tuple[int, int, int] | None, Opt(ge=1, normalise=triple)] = None,
                 p_keep: Annotated[float, Opt(gt=0, lt=1)] = 0.5, baseline: BaselineName = "black",
                 output: Output = "probability", batch_size: BatchSize = 8, seed: Seed = 0) -> None:
        super().__init__(model)
        if n_samples < 2:
            # the map centres the scores on their mean: one mask's score is its own mean, and its
            # map was 0 everywhere, with a warning that blamed the model for not reacting
            raise OptionError(f"{self._owner()}: option n_samples must be at least 2 (the map weighs each mask by "
                              f"its score minus the masks' mean score; one mask's map is 0 everywhere), got {n_samples}")
        self._setup(batch_size=batch_size, output=output, seed=seed, baseline=baseline)
        self.n_samples, self.cells, self.p_keep = n_samples, cells, p_keep

    def forward_passes(self, num_frames: int) -> int:
        check_fits(self._owner(), "cells", "mask grid", self.cells_for(num_frames, *self.model.input_size),
                   (num_frames, *self.model.input_size))
        return self.n_samples + 1

    def blank_map_reason(self, extras: dict) -> str | None:
        if self.cells is not None and tuple(self.cells) == (1, 1, 1):
            return "one cell (cells=1) keeps or drops the whole clip at once, so every voxel gets the same value"
        return None

    def cells_for(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """The random grid on a ``t × h × w`` clip: ``cells``, or the default (see the class)."""
        # the default fits any clip: a 3-frame clip got one temporal cell (a map the same on every
        # frame), a model of fewer than 7 pixels an error about the option nobody had given
        return self.cells or (min(t, max(2, t // 2)), min(7, h), min(7, w))

    def explain_clip(self, canvas: Canvas, target: int, generator: torch.Generator) -> ClipResult:
        t, (h, w) = canvas.num_frames, canvas.grid
        cells = self.cells_for(t, h, w)
        check_fits(self._owner(), "cells", "mask grid", cells, (t, h, w))
        grids, shifts = random_masks(self.n_samples, cells, (t, h, w), self.p_keep, generator)
        device = canvas.pixels.device
        grids = grids.to(device)
        fill = self.baseline(canvas)

        def make(sl: slice) -> torch.Tensor:
            return canvas.compose(upsample_masks(grids[sl], shifts[sl], (t, h, w)), fill)

        s = self.scores(make, self.n_samples, target, f"{self.n_samples} masks")
        # centred about the first score: equal scores (a model the masks do not move) give exactly
        # 0, where s.mean() of equal values is off by a rounding error that painted the masks'
        # uneven coverage as a full-contrast map
        s = (s - s[0] - (s - s[0]).mean()).float()
        sal = torch.zeros(t, h, w, device=device, dtype=torch.float32)
        # masks rebuilt a fixed number at a time: memory stays small, and the order of the sum (so
        # its rounding) is the same whatever batch_size (chunks of batch_size changed the map's
        # last bits with it, on a network whose outputs do not depend on the batch)
        for sl in batched(self.n_samples, ACCUMULATE):
            m = upsample_masks(grids[sl], shifts[sl], (t, h, w))
            sal += torch.einsum("n,nthw->thw", s[sl], m)
        sal /= self.n_samples * self.p_keep
        return ClipResult(maps=sal.clamp_min(0), resolved={"cells": cells})
