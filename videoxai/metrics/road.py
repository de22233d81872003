"""ROAD's noisy linear imputation (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy
for Attribution Methods"), in space *and time*: the removal baseline for ``deletion`` and
``insertion`` with ``baseline="road"``.

A flat baseline (grey, black, blur) leaves removed regions with sharp edges and a colour the
model has never seen, so the probability can drop because the clip is out of distribution rather
than because evidence went; a map that merely outlines shapes can then score well. ROAD instead
fills every removed pixel with the weighted mean of its neighbours, solved jointly for all removed
pixels (a discrete harmonic interpolation: a linear ramp is filled exactly), and adds a little
Gaussian noise so that the fill itself does not reveal the removed shape.

Neighbours and weights are the reference's in each frame (``1/6`` for the 4 direct neighbours,
``1/12`` for the 4 diagonal ones) plus, for video, the same pixel in the previous and next frame
(``time_weight``, ``1/6`` by default; ``0`` imputes each frame on its own, as the 2-D reference
and pytorch-grad-cam do). With time, a whole removed frame is interpolated from its neighbours in
time. For each removed pixel ``i`` with neighbours ``j`` (inside the clip) of weight ``w_ij``:

    Σ_j w_ij (v_i − v_j) = 0      (v_j known where j is kept, unknown where j is removed)

which is symmetric positive definite; it is solved for each clip of a curve by
Jacobi-preconditioned conjugate gradients on the voxel grid (torch, on the clip's device), to a
residual far below the added noise, so that a clip's fill and noise do not depend on the clips
that share its batch. Pixels with no kept pixel connected to them (everything
removed) get the mean colour of the kept pixels (of the whole clip if none is kept); a ``1e-6``
pull towards that colour makes this well defined without changing the others measurably.
"""

from __future__ import annotations

from typing import Annotated, Sequence

import torch

from ..options import Configurable, Opt

#: (dy, dx), weight: the reference's 8-neighbourhood in a frame
SPATIAL_NEIGHBOURS = (((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
                      ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12))
_PULL = 1e-6


class NoisyLinearImputer(Configurable):
    """Fill removed pixels of a clip from their kept neighbours in space and time, plus noise.

    Args:
        noise: standard deviation of the Gaussian noise added to the filled pixels (0.01 as the
            reference; 0 for the plain linear imputation).
        time_weight: weight of the previous and next frame's pixel (0: each frame on its own).
        tolerance: the solver stops when every residual is below this (pixel units).
        max_iter: at most this many conjugate-gradient iterations.
    """

    kind = "imputer"
    name = "road"

    def __init__(self, noise: Annotated[float, Opt(ge=0)] = 0.01, time_weight: Annotated[float, Opt(ge=0)] = 1 / 6,
                 tolerance: Annotated[float, Opt(gt=0)] = 1e-5, max_iter: Annotated[int, Opt(ge=1)] = 5000) -> None:
        self.noise, self.time_weight = noise, time_weight
        self.tolerance, self.max_iter = tolerance, max_iter

    def neighbours(self) -> list[tuple[tuple[int, int, int], float]]:
        """``((dt, dy, dx), weight)`` of every neighbour."""
        out = [((0, dy, dx), w) for (dy, dx), w in SPATIAL_NEIGHBOURS]
        if self.time_weight > 0:
            out += [((1, 0, 0), self.time_weight), ((-1, 0, 0), self.time_weight)]
        return out

    def neighbour_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_j w_j x[i + d_j]`` at every voxel of ``x (..., T, H, W)``, neighbours outside the clip
        left out."""
        out = torch.zeros_like(x)
        t, h, w = x.shape[-3:]
        for (dt, dy, dx), wgt in self.neighbours():
            src = x[..., max(dt, 0):t + min(dt, 0), max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            out[..., max(-dt, 0):t + min(-dt, 0), max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] += wgt * src
        return out

    def _solve(self, v: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """The linear fill ``(1, C, T, H, W)`` of the pixels of ``v (1, C, T, H, W)`` where
        ``known (1, 1, T, H, W)`` is False (kept pixels: 0), by Jacobi-preconditioned conjugate
        gradients to ``tolerance``; ``iterations`` is how many it took."""
        unknown = (~known).double()
        # the colour disconnected pixels tend to: the mean of the kept pixels (of all, if none)
        n_known = known.double().sum((2, 3, 4), keepdim=True)                   # (1, 1, 1, 1, 1)
        sums = (v * known).sum((2, 3, 4), keepdim=True)
        fill = torch.where(n_known > 0, sums / n_known.clamp_min(1), v.mean((2, 3, 4), keepdim=True))
        degree = self.neighbour_sum(torch.ones_like(v[0, 0])) + _PULL            # (T, H, W)

        def apply(x: torch.Tensor) -> torch.Tensor:
            return unknown * (degree * x - self.neighbour_sum(x))

        rhs = unknown * (self.neighbour_sum(v * known) + _PULL * fill)           # (1, C, T, H, W)
        x = unknown * fill.expand(1, -1, *v.shape[2:])
        r = rhs - apply(x)
        z = r / degree
        p = z.clone()
        rz = (r * z).sum((2, 3, 4), keepdim=True)
        self.iterations = 0
        for self.iterations in range(self.max_iter):
            # each channel stops where its own residual is small enough
            active = r.abs().amax((2, 3, 4), keepdim=True) > self.tolerance          # (1, C, 1, 1, 1)
            if not bool(active.any()):
                break
            ap = apply(p)
            pap = (p * ap).sum((2, 3, 4), keepdim=True)
            alpha = torch.where(active & (pap > 0), rz / pap.clamp_min(1e-300), torch.zeros_like(pap))
            x = x + alpha * p
            r = r - alpha * ap
            z = r / degree
            rz_new = (r * z).sum((2, 3, 4), keepdim=True)
            beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
            p = z + beta * p
            rz = rz_new
        return x

    def __call__(self, clip: torch.Tensor, kept: torch.Tensor,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """``(B, T, 3, H, W)``: ``clip (T, 3, H, W)`` with the pixels where ``kept (B, T, H, W)``
        (or ``(T, H, W)``) is False imputed, one clip per mask.

        ``generator`` draws the noise: one for the whole batch, or one per clip (``B`` of them), so
        that a clip's noise does not depend on which clips share its batch."""
        if kept.ndim == 3:
            kept = kept.unsqueeze(0)
        # contiguous: a clip read from (T, H, W, 3) frames is channels-last, and the ten shifted
        # sums of every solver step ran about ten times slower on it
        v = clip.double().permute(1, 0, 2, 3).unsqueeze(0).contiguous()        # (1, C, T, H, W)
        known = kept.to(v.device).unsqueeze(1)                                   # (B, 1, T, H, W)
        unknown = (~known).double()
        b = known.shape[0]
        # one clip at a time: each clip's solve stops at its own residual, and a batch solved
        # together went on as long as its slowest clip (5x the work on a deletion curve's 16
        # steps); the fills are the same to the bit
        x = torch.cat([self._solve(v, known[i:i + 1]) for i in range(b)])     # (B, C, T, H, W)
        if self.noise > 0:
            if isinstance(generator, Sequence):
                if len(generator) != b:
                    raise ValueError(f"{len(generator)} noise generators for {b} clips")
                noise = torch.stack([torch.randn(x.shape[1:], generator=gi, dtype=x.dtype) for gi in generator])
            else:
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x + unknown * noise.to(x.device) * self.noise
        out = torch.where(known, v, x)                                           # (B, C, T, H, W)
        return out.permute(0, 2, 1, 3, 4).to(clip.dtype).contiguous()
