"""A transformer's token grid: how its token sequence lies on the (time, row, col) volume.

Read by every method that lays tokens out as a map (attention methods, Grad-CAM on a
transformer's blocks); :mod:`videoxai.core.token_layout` places such maps on the input frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import InputError


@dataclass(frozen=True)
class TokenGrid:
    """How a transformer's token sequence maps onto the (time, row, col) volume of its input.

    Attributes:
        frames, rows, cols: grid size ``T' × H' × W'``.
        tubelet: input frames per token frame (2 for VideoMAE/ViViT, 1 for TimeSformer).
        patch: ``(ph, pw)`` input pixels per token.
        prefix_tokens: leading non-patch tokens (1 for a CLS token, 0 for mean pooling).
        order: the order of the patch tokens, e.g. ``"thw"`` (VideoMAE, ViViT) or ``"hwt"``
            (TimeSformer stores each patch position's frames next to each other).
        readout: which tokens the classifier reads: ``"first"`` the first token (a CLS token, or
            VideoMAE's first *patch* token with ``use_mean_pooling=False``), ``"mean"`` the mean
            of all tokens (VideoMAE's default). Attention methods follow that token's row, or
            the attention every token receives.
        centred: ``(frame, row, col)``, the input index the first token is centred on, the
            others following ``tubelet`` frames and ``patch`` pixels apart; ``None`` (default):
            each token centred on the middle of the tubelet and patch it covers, as a patch
            embedding of stride = kernel makes it. A padded embedding or a padded pooling moves
            it: MViT's tokens sit on frame ``2·t`` and pixel ``32·o`` (:data:`~videoxai.models.torchvision_zoo.MVIT_GRID`).
    """

    frames: int
    rows: int
    cols: int
    tubelet: int = 1
    patch: tuple[int, int] = (16, 16)
    prefix_tokens: int = 0
    order: str = "thw"
    readout: Literal["first", "mean"] = "first"
    centred: tuple[float, float, float] | None = None

    @property
    def num_patches(self) -> int:
        return self.frames * self.rows * self.cols

    def to_volume(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` tokens (prefix tokens included) → ``(B, D, T', H', W')``."""
        if tokens.ndim != 3:
            raise InputError(f"expected tokens (B, N, D), got shape {tuple(tokens.shape)}")
        b, n, d = tokens.shape
        if n != self.prefix_tokens + self.num_patches:
            raise InputError(f"expected {self.prefix_tokens + self.num_patches} tokens for grid "
                             f"{self.frames}x{self.rows}x{self.cols}, got {n}")
        sizes = {"t": self.frames, "h": self.rows, "w": self.cols}
        x = tokens[:, self.prefix_tokens:].reshape(b, *(sizes[a] for a in self.order), d)
        perm = [0, 4] + [1 + self.order.index(a) for a in "thw"]
        return x.permute(*perm).contiguous()

    def scores_to_volume(self, scores: torch.Tensor) -> torch.Tensor:
        """``(B, N_patches)`` per-patch scores (no prefix) → ``(B, T', H', W')``."""
        b = scores.shape[0]
        sizes = {"t": self.frames, "h": self.rows, "w": self.cols}
        x = scores.reshape(b, *(sizes[a] for a in self.order))
        return x.permute(0, *[1 + self.order.index(a) for a in "thw"]).contiguous()
