"""The terms of the extremal-perturbation energy E: the reward, L_area and STEP's L_K."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import InputError
from ...models.base import Activation, class_log_probabilities

#: π/6, the share of an ellipsoid in its bounding box, as the recipe writes it
ELLIPSOID_SHARE = 0.5236


def area_loss(padded: torch.Tensor, areas: torch.Tensor, per_frame: bool,
              order: torch.Tensor | None = None, frame_caps: torch.Tensor | None = None) -> torch.Tensor:
    """L_area of padded masks ``(A, T, Ho, Wo)`` for target areas ``(A,)`` → ``(A,)``.

    ``mean((sort(m) − r)²)`` with r = (1 − a)·V zeros then ones, over the whole volume
    (V = T·Ho·Wo) or, ``per_frame``, over each frame (V = Ho·Wo) and then averaged over frames.
    ``order`` (a permutation of the flattened elements) is applied before sorting so that ties
    are broken at random, as in the reference.

    ``frame_caps`` ``(A,)`` (over the volume only; the option ``max_frame_area``): the most of
    any one frame, as a share of its Ho·Wo voxels, that an area's ones may take. The a·V voxels
    pulled to 1 are still the volume's largest, as above, except those beyond the cap in their
    frame, whose places go to the next largest voxels of other frames; the rest are pulled to 0.
    A cap of 1 is the loss above; a cap equal to the area puts a·Ho·Wo ones in every frame, the
    per-frame loss (2D-EP's); in between, a mask of k frames' caps spreads over at least k frames.
    """
    a_, t = padded.shape[:2]
    if frame_caps is not None and not per_frame:
        return _capped_area_loss(padded, areas, frame_caps, order)
    flat = padded.reshape(a_, t, -1) if per_frame else padded.reshape(a_, 1, -1)
    if order is not None:
        flat = flat[..., order]
    v = flat.shape[-1]
    zeros = (v * (1 - areas)).long()                                           # int(V·(1−a))
    ref = (torch.arange(v, device=padded.device)[None] >= zeros[:, None]).to(padded.dtype)
    return ((flat.sort(-1).values - ref[:, None]) ** 2).mean(-1).mean(-1)


def _capped_area_loss(padded: torch.Tensor, areas: torch.Tensor, caps: torch.Tensor,
                      order: torch.Tensor | None) -> torch.Tensor:
    """:func:`area_loss` over the volume with at most ``caps`` ``(A,)`` of each frame among the ones."""
    a_, t = padded.shape[:2]
    flat = padded.reshape(a_, -1)
    v = flat.shape[-1]
    per = v // t
    frame = torch.arange(t, device=padded.device).repeat_interleave(per)          # (V,) each voxel's frame
    if order is not None:
        flat, frame = flat[:, order], frame[order]
    # descending and stable: after the shuffle, ties fall in a random order, as in the plain loss
    values, idx = flat.sort(dim=-1, descending=True, stable=True)
    frames = frame[idx]                                                             # (A, V)
    # rank of each voxel among its frame's (1 for the frame's largest): the running count of its frame
    rank = F.one_hot(frames, t).cumsum(1).gather(2, frames[..., None])[..., 0]
    ones = v - (v * (1 - areas)).long()                                             # as above: V − int(V·(1−a))
    cap = per - (per * (1 - caps)).long()
    allowed = rank <= cap[:, None]
    ref = (allowed & (allowed.cumsum(1) <= ones[:, None])).to(padded.dtype)
    return ((values - ref) ** 2).mean(-1)


def ellipsoid_kernel(frames: int, rows: int, cols: int, shape: str = "ellipsoid",
                     grid: str = "ends") -> torch.Tensor:
    """The binary L_K kernel ``(frames, rows, cols)``: 1 where √(v₁² + v₂² + v₃²) ≤ 1
    (``"cylinder"``: the temporal coordinate is ignored).

    ``grid="ends"`` samples each v on ``linspace(−1, 1)`` as the recipe does: the first and last
    frame then lie on the ellipsoid's poles and hold one voxel each (a 2-frame kernel is two
    voxels). ``"centres"`` samples the centres of n equal cells of [−1, 1]
    (±(1 − 1/n), …), so every frame of the kernel holds a disc of about its share.
    """
    if shape not in ("ellipsoid", "cylinder"):
        raise InputError(f"kernel_shape must be 'ellipsoid' or 'cylinder', got {shape!r}")
    if grid not in ("ends", "centres"):
        raise InputError(f"kernel_grid must be 'ends' or 'centres', got {grid!r}")

    def axis(n: int) -> torch.Tensor:
        if grid == "ends" or n == 1:
            return torch.linspace(-1, 1, n, dtype=torch.float64)
        return torch.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=torch.float64)

    v1, v2, v3 = torch.meshgrid(axis(frames), axis(rows), axis(cols), indexing="ij")
    r2 = v2 ** 2 + v3 ** 2 + (v1 ** 2 if shape == "ellipsoid" else 0)
    return (r2.sqrt() <= 1).float()


def tube_count(area: float, volume: int, kernel: torch.Tensor, rule: str = "recipe") -> int:
    """How many L_K windows a mask of ``area`` × ``volume`` voxels should fill.

    ``"recipe"``: ``ceil(a·V / int(K_t·k·k·0.5236))``, the nominal ellipsoid's share of its box.
    ``"kernel"``: ``max(1, round(a·V / ΣK))``, the voxels the discrete kernel really holds, to the
    nearest whole tube. The recipe's rule was made for areas of many tubes; for areas of one or
    two it overshoots (ceil turns 1.2 tubes into 2), and the nominal share undercounts an
    ``"ends"`` kernel's voxels (ΣK = 52 against 102 at 4 × 7 × 7).
    """
    kt, kh, kw = kernel.shape
    if rule == "recipe":
        return math.ceil(area * volume / int(kt * kh * kw * ELLIPSOID_SHARE))
    if rule == "kernel":
        return max(1, round(area * volume / float(kernel.sum())))
    raise InputError(f"tubes must be 'recipe' or 'kernel', got {rule!r}")


def smoothness_loss(padded: torch.Tensor, areas: torch.Tensor, kernel: torch.Tensor,
                    order: torch.Tensor | None = None, tubes: str = "recipe",
                    norm: str = "parts") -> torch.Tensor:
    """STEP's L_K of padded masks ``(A, T, Ho, Wo)`` → ``(A,)``.

    ĉ = conv3d(m, K, stride (1, k, k)) / ΣK; with ``top`` = :func:`tube_count` (the recipe's
    ``ceil(a·T·Ho·Wo / int(K_t·k·k·0.5236))`` by default), L_K = mean over the ``top`` largest ĉ
    of (ĉ − 1)² + mean over the rest of ĉ² (``norm="parts"``, the recipe's; an empty part
    contributes 0, where the reference would produce NaN), or ``norm="windows"``: the same
    squared errors summed over all N windows and divided by N.
    """
    a_, t, ho, wo = padded.shape
    kt, kh, kw = kernel.shape
    c = F.conv3d(padded[:, None], kernel[None, None].to(padded), stride=(1, kh, kw))
    c = c.reshape(a_, -1) / kernel.sum()
    if order is not None:  # shuffled before sorting: ties broken at random, as in the reference
        c = c[:, order]
    c = c.sort(-1, descending=True).values
    out = []
    for i, a in enumerate(areas.tolist()):
        top = min(tube_count(a, t * ho * wo, kernel, tubes), c.shape[1])
        if norm == "windows":  # every window weighs 1/N, as every voxel weighs 1/V in L_area
            out.append((((c[i, :top] - 1) ** 2).sum() + (c[i, top:] ** 2).sum()) / c.shape[1])
            continue
        on = ((c[i, :top] - 1) ** 2).mean() if top > 0 else c.new_zeros(())
        off = (c[i, top:] ** 2).mean() if top < c.shape[1] else c.new_zeros(())
        out.append(on + off)
    return torch.stack(out)


def log_reward(logits: torch.Tensor, target: int, game: str, activation: Activation = "softmax") -> torch.Tensor:
    """``(K,)`` −log p (``"preserve"``) or −log(1 − p) (``"delete"``) of the target, computed stably."""
    log_p, log_not_p = class_log_probabilities(logits.float(), target, activation)
    return -log_p if game == "preserve" else -log_not_p
