"""Where a transformer's token maps lie on its input: frames and pixels the tokens cover.

A patch embedding drops what does not fill a whole token: the 9th of 9 frames with tubelets of
2, the last 4 rows and columns of a 36-pixel input in 8-pixel patches. A map on the token grid
stretched over the whole input (linear interpolation of 4 token frames over 9 frames, a 4×4 grid
over 36 pixels) shifts every token's evidence; these functions lay each token on exactly what it
covers, zero on what the model never saw. Used by every method whose map lives on the token grid
(the attention methods, Grad-CAM on tokens).

A grid whose tokens are centred elsewhere than the middle of what they cover (``TokenGrid.centred``:
MViT's padded embedding and poolings put token ``o`` on pixel ``32·o``, not ``32·o + 15.5``) is
laid on those centres and interpolated linearly between them, as a CNN's grid is
(:mod:`videoxai.core.footprint`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .align import align_time, interpolation_weights

if TYPE_CHECKING:  # the core layer sits below models
    from ..models.token_grid import TokenGrid


def token_frames_on_input(values: torch.Tensor, grid: "TokenGrid", num_frames: int) -> torch.Tensor:
    """Per token frame ``(B, T', …)`` → per input frame ``(B, T, …)``.

    Token frame k covers input frames ``k·tubelet … k·tubelet + tubelet − 1``; the frames past
    the last whole tubelet get zero. A grid whose tubelet does not describe the input (more than
    a tubelet short, or longer) is spread over it as :func:`~videoxai.core.align.align_time` does.
    """
    extra = num_frames - values.shape[1] * grid.tubelet
    along = _centred_weights(grid, 0, values.shape[1], num_frames)
    if along is not None:                 # (T, T'): each token frame on the frame it is centred on
        return torch.einsum("bk...,tk->bt...", values.float(), along.to(values.device))
    if not 0 <= extra < grid.tubelet:
        b, t = values.shape[:2]
        spread = align_time(values.reshape(b, t, -1, 1), num_frames, "repeat")
        return spread.reshape(b, num_frames, *values.shape[2:])
    out = values.repeat_interleave(grid.tubelet, dim=1)
    return F.pad(out, (0, 0) * (values.ndim - 2) + (0, extra))


def token_maps_on_input(maps: torch.Tensor, grid: "TokenGrid", input_size: tuple[int, int],
                        num_frames: int) -> torch.Tensor:
    """Token-grid maps ``(B, T', rows, cols)`` → maps the ``"repeat"`` alignment and the crop box
    place right.

    Where the tokens tile the model's ``input_size`` and ``num_frames`` (the usual case) the maps
    are returned as they are. Where the frames fall short of the last tubelet they become
    ``(B, T, …)`` over the input frames (:func:`token_frames_on_input`); where the patches fall
    short of the input by less than a patch, ``(B, T, H, W)`` at the input's pixel size, zero on
    the rows and columns past the last whole patch. A grid whose patch size does not describe the
    input stays spread over the crop.
    """
    (h, w), (ph, pw) = input_size, grid.patch
    rows, cols = _centred_weights(grid, 1, maps.shape[2], h), _centred_weights(grid, 2, maps.shape[3], w)
    if rows is not None and cols is not None:
        maps = token_frames_on_input(maps, grid, num_frames)
        return torch.einsum("bthw,yh,xw->btyx", maps.float(), rows.to(maps.device), cols.to(maps.device))
    if 0 < num_frames - maps.shape[1] * grid.tubelet < grid.tubelet:
        maps = token_frames_on_input(maps, grid, num_frames)
    seen = (grid.rows * ph, grid.cols * pw)
    if seen == (h, w) or not (0 <= h - seen[0] < ph and 0 <= w - seen[1] < pw):
        return maps
    maps = F.interpolate(maps, size=seen, mode="bilinear", align_corners=False)
    return F.pad(maps, (0, w - seen[1], 0, h - seen[0]))


def _centred_weights(grid: "TokenGrid", axis: int, tokens: int, n: int) -> torch.Tensor | None:
    """``(n, tokens)`` weights laying a :attr:`~videoxai.models.token_grid.TokenGrid.centred`
    grid's tokens along ``axis`` (0 time, 1 rows, 2 cols) on the input indices they are centred
    on; None where the grid gives no centres or its tubelet or patch does not tile the ``n``
    input indices (less than one step left over)."""
    if grid.centred is None:
        return None
    step = (grid.tubelet, *grid.patch)[axis]
    if not 0 <= n - tokens * step < step:
        return None
    return interpolation_weights(grid.centred[axis] + step * torch.arange(tokens, dtype=torch.float64), n)
