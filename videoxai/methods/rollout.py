"""Attention rollout (Abnar & Zuidema, 2020) for video transformers, divided attention included.

Each attention operation mixes tokens with a row-stochastic matrix ``A`` (heads fused by
``head_fusion``); with the residual connection the token flow of one operation is
``Â = (A + I) / rowsum(A + I)`` (= ``½(A + I)`` for a mean over heads). Rollout multiplies them over
the network, ``R = Â_L ⋯ Â_1``, and reads the row of the pooled output: the CLS token's row, or,
for models that average their tokens (VideoMAE), the mean of all rows.

**Divided space-time attention** (TimeSformer) has two operations per layer, temporal then spatial,
on tokens ``[CLS] + (patch p, frame t)``:

* temporal: token ``(p, t)`` reads ``(p, t')`` with weight ``Tₚ[t, t']``; the CLS token takes no part,
  so its row of ``Â`` is the identity;
* spatial: in frame t, token ``(q, t)`` reads the CLS token and the patches ``(p, t)`` with weights
  ``Sₜ[q, ·]``; the CLS token reads each frame's CLS and patches and is averaged over frames, so its
  row holds ``Sₜ[0, 0] / T`` summed over t for itself and ``Sₜ[0, p] / T`` for ``(p, t)``.

Their product per layer is the ``W[i, j, p, q] = S[i, j, p] · T[p, j, q]`` composition of the
TimesFormer rolled-attention notebooks. We never build the ``N × N`` matrices
(``N = 1 + T·P``, 1569 for TimeSformer-base): only one row is wanted, so the row vector is pushed
through the operations from the last to the first (``r ← r Â``), each applied in its factored
form at ``O(N · (P + T))`` per layer. One forward pass; the model keeps its fast attention
kernels (queries and keys are read by :class:`~videoxai.models.attention.AttentionTap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from ..errors import UnsupportedModelError
from ..models.attention import AttentionRecord, AttentionTap
from ..models.token_grid import TokenGrid
from .attention import AttentionMethod, Layers
from .base import Attribution, Target, register
from .gradients import check_pixels

HeadFusion = Literal["mean", "max", "min"]

_FUSE = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}


class TokenMixing(Protocol):
    """One attention operation as a linear map on the model's token sequence ``(B, N)``."""

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        """``r @ M`` for row vectors ``r`` ``(B, N)``: where the rows' mass came from."""

    def row_sums(self) -> torch.Tensor:
        """``M @ 1``, ``(B, N)``."""


@dataclass
class JointMixing:
    """Full attention over all tokens, ``a`` ``(B, N, N)`` (ViViT, VideoMAE)."""

    a: torch.Tensor

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bi,bij->bj", r, self.a)

    def row_sums(self) -> torch.Tensor:
        return self.a.sum(-1)


@dataclass
class _Factored:
    """Tokens ``[prefix] + patches``; patches viewed as ``(B, P, T)`` whatever the grid's order."""

    grid: TokenGrid

    def split(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, g = self.grid.prefix_tokens, self.grid
        patches = r[:, k:]
        if g.order == "hwt":
            patches = patches.reshape(r.shape[0], g.rows * g.cols, g.frames)
        elif g.order == "thw":
            patches = patches.reshape(r.shape[0], g.frames, g.rows * g.cols).transpose(1, 2)
        else:
            raise UnsupportedModelError(f"divided attention with token order {g.order!r} is not supported")
        return r[:, :k], patches

    def join(self, prefix: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        if self.grid.order == "thw":
            patches = patches.transpose(1, 2)
        return torch.cat([prefix, patches.reshape(prefix.shape[0], -1)], 1)


@dataclass
class TemporalMixing(_Factored):
    """Divided temporal attention ``a`` ``(B, P, T, T)``: each patch position over its frames.
    Prefix (CLS) tokens take no part: their rows and columns are zero."""

    a: torch.Tensor

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        prefix, patches = self.split(r)
        return self.join(torch.zeros_like(prefix), torch.einsum("bpt,bpts->bps", patches, self.a))

    def row_sums(self) -> torch.Tensor:
        b = self.a.shape[0]
        return self.join(self.a.new_zeros(b, self.grid.prefix_tokens), self.a.sum(-1))


@dataclass
class SpatialMixing(_Factored):
    """Divided spatial attention ``a`` ``(B, T, k + P, k + P)``: per frame over the prefix tokens
    and that frame's patches. The prefix tokens' outputs are averaged over frames (TimeSformer)."""

    a: torch.Tensor

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        prefix, patches = self.split(r)
        t, k = self.grid.frames, self.grid.prefix_tokens
        rows = torch.cat([prefix[:, None, :].expand(-1, t, -1) / t, patches.transpose(1, 2)], -1)
        out = torch.einsum("bti,btij->btj", rows, self.a)                 # (B, T, k + P)
        return self.join(out[:, :, :k].sum(1), out[:, :, k:].transpose(1, 2))

    def row_sums(self) -> torch.Tensor:
        s = self.a.sum(-1)                                                 # (B, T, k + P)
        k = self.grid.prefix_tokens
        return self.join(s[:, :, :k].mean(1), s[:, :, k:].transpose(1, 2))


def layer_mixings(tap: AttentionTap, layer: int, grid: TokenGrid, batch: int,
                  weigh=lambda rec: _FUSE["mean"](rec.full())) -> list[TokenMixing]:
    """A layer's attention operations in the order the layer runs them.

    Args:
        tap: a finished :class:`AttentionTap` over ``layer``.
        weigh: ``AttentionRecord → (B', N', N')`` the per-operation matrix (heads fused); rollout
            fuses the probabilities, Chefer relevance their gradient-weighted positive part.
    """
    ops: list[TokenMixing] = []
    for kind in tap.sites.layers[layer]:           # AttentionSites keeps each layer's run order
        rec: AttentionRecord = tap.records[(layer, kind)]
        m = weigh(rec)
        if kind == "joint":
            ops.append(JointMixing(m))
        elif kind == "temporal":
            ops.append(TemporalMixing(grid, m.reshape(batch, grid.rows * grid.cols, grid.frames, grid.frames)))
        elif kind == "spatial":
            n = grid.prefix_tokens + grid.rows * grid.cols
            ops.append(SpatialMixing(grid, m.reshape(batch, grid.frames, n, n)))
        else:
            raise UnsupportedModelError(f"unknown attention kind {kind!r}")
    return ops


def start_vector(grid: TokenGrid, batch: int, device, dtype=torch.float32) -> torch.Tensor:
    """The row of what the classifier reads: the first token's (CLS), or the mean of all tokens'."""
    n = grid.prefix_tokens + grid.num_patches
    if grid.readout == "first":
        r = torch.zeros(batch, n, device=device, dtype=dtype)
        r[:, 0] = 1
        return r
    return torch.full((batch, n), 1.0 / n, device=device, dtype=dtype)


def token_attribution(method: AttentionMethod, scores: torch.Tensor, num_frames: int, target: torch.Tensor,
                      logits: torch.Tensor) -> Attribution:
    """Per-token scores ``(B, N)`` (prefix included) → an :class:`Attribution` over the input
    frames and crop (:meth:`AttentionMethod.on_input`)."""
    grid = method.model.token_grid
    maps = grid.scores_to_volume(scores[:, grid.prefix_tokens:].clamp_min(0))
    temporal = method.frames_of_tokens(maps.flatten(2).sum(-1), num_frames)
    return Attribution(maps=method.on_input(maps, num_frames), space="crop", target=target, logits=logits,
                       temporal=temporal, time_align="repeat")


@register
class Rollout(AttentionMethod):
    """Attention rollout; see the module docstring. ``layers`` and the shapes:
    :class:`~videoxai.methods.attention.AttentionMethod`. The map is the same for every class
    (attention does not depend on the target, which only names the class explained); for a
    class-specific map use ``attention_relevance``.

    Args:
        head_fusion: how a layer's heads are combined: ``"mean"`` (the paper), ``"max"`` or ``"min"``.
    """

    name = "rollout"
    paper = 'Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020'

    def __init__(self, model, head_fusion: HeadFusion = "mean", layers: Layers = None) -> None:
        super().__init__(model)
        self.head_fusion = head_fusion
        self.layers = self.attention_layers(layers)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        x = check_pixels(self.model, inputs)
        grid, b = self.model.token_grid, x.shape[0]
        fuse = _FUSE[self.head_fusion]
        with torch.no_grad(), AttentionTap(self.model.attention, self.layers) as tap:
            logits = self.model(x)
            target = self.resolve_target(target, logits)
            r = start_vector(grid, b, x.device)
            for layer in reversed(self.layers):
                for op in reversed(layer_mixings(tap, layer, grid, b, lambda rec: fuse(rec.full().float()))):
                    # Â = (A + I) / rowsum(A + I); r Â = (r / (s + 1)) A + r / (s + 1)
                    scaled = r / (op.row_sums() + 1)
                    r = op.rmatvec(scaled) + scaled
        return token_attribution(self, r, x.shape[1], target, logits)
