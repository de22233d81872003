"""Read the attention of chosen transformer layers without slowing the model.

Hugging Face computes attention with fused kernels (SDPA) that never materialise the
probabilities, and ``output_attentions=True`` would switch *every* layer to the slow eager path
(and TimeSformer never returns its temporal attention at all). An :class:`AttentionTap` instead
hooks the query/key projections of only the layers asked for and keeps their outputs. A method
then computes just the rows it needs (e.g. the CLS row: ``B·T·heads·N`` numbers) from those.

A method that needs only a small summary of each layer's attention (STAA: the CLS rows, or the
attention each token receives) passes ``reduce``: the summary is computed inside the hook, while
the projection's output is fresh in cache, and the queries and keys are dropped at once. Keeping
them until after the forward held 12 × 29 MB on TimeSformer-base (the fused q|k|v outputs of six
layers, of which only small parts are needed) and cost about 4 % of the forward in fresh memory.

For methods that need gradients *of the attention* (gradient-weighted STAA, Chefer relevance),
``grad=True`` recomputes the chosen layers' attention eagerly and substitutes it into the
module's output, so that the probabilities are part of the graph; other layers keep their fast
kernels. All hooks are removed on exit, also when the forward raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError

Kind = Literal["spatial", "temporal", "joint"]


@dataclass
class AttentionCall:
    """One attention operation of one layer.

    Attributes:
        module: the module whose forward computes the attention (its output is replaced in
            ``grad`` mode).
        q, k, v: the projection modules; for a fused projection all three are the same module
            and ``fused`` is True (its output is ``(…, 3·D)``, split as q | k | v).
        heads: number of heads; ``scale`` the logit scale.
        finish: maps the merged context ``(B', N, D)`` to what ``module`` returns in place of its
            first output (e.g. ViViT applies its output projection inside the module).
        project: for a module that does not call its projection modules (transformers 4's
            VideoMAE applies their weights with its own biases), ``hidden (B', N, D) → (q, k, v)``
            each ``(B', N, D)``, computed from the module's input (a forward pre-hook) instead.
        softcap: where the logits are soft-capped before the softmax (VideoPrism:
            ``c · tanh(logits / c)``), ``c``; ``None`` (default): they are not.
    """

    module: nn.Module
    q: nn.Module
    k: nn.Module
    v: nn.Module
    heads: int
    scale: float
    fused: bool = False
    finish: Callable[[torch.Tensor], torch.Tensor] = lambda ctx: ctx
    project: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
    softcap: float | None = None


@dataclass
class AttentionSites:
    """The attention calls of a model, per layer and kind (``"spatial"``/``"temporal"``/``"joint"``).

    A layer holds the calls it runs, in order: TimeSformer's a temporal and a spatial one each;
    a factorised encoder's (VideoPrism) spatial layers a spatial one, its temporal layers a
    temporal one.
    """

    layers: list[dict[str, AttentionCall]]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def kinds(self) -> tuple[str, ...]:
        """Every kind some layer runs, in the order they first appear."""
        return tuple(dict.fromkeys(kind for layer in self.layers for kind in layer))

    @property
    def factorised(self) -> bool:
        """Whether the spatial and the temporal attention lie in layers of their own (a
        factorised encoder: all spatial layers, then all temporal ones)."""
        return all(len(layer) == 1 for layer in self.layers) and set(self.kinds()) == {"spatial", "temporal"}

    def resolve_layers(self, layers: int | Iterable[int]) -> list[int]:
        """``k`` → the last k layers; a list → those indices (negative allowed), in the order
        the model runs them (ascending) whatever order they were listed in."""
        n = self.num_layers
        if isinstance(layers, int):
            if not 1 <= layers <= n:
                raise UnsupportedModelError(f"asked for the last {layers} layers of a {n}-layer model")
            return list(range(n - layers, n))
        layers = list(layers)
        out: dict[int, int] = {}
        for i in layers:
            if not -n <= i < n:
                raise UnsupportedModelError(f"layer {i} out of range for a {n}-layer model")
            if i % n in out:
                # read twice, a layer would weigh double in a mean and be applied twice in a rollout
                raise InputError(f"layers {layers} name layer {i % n} twice (as {out[i % n]} and {i}) "
                                 f"in a {n}-layer model")
            out[i % n] = i
        if not out:
            # no layer read: every method would return an all-zero map
            raise InputError(f"layers is an empty list; give layer indices (0 … {n - 1}) or a count")
        # rollout and relevance propagation multiply the layers' maps in the model's order
        return sorted(out)


@dataclass
class AttentionRecord:
    """What was captured for one call: per-head queries, keys (and values), ``(B', heads, N, d)``.

    In ``grad`` mode ``probs`` holds the eager attention ``(B', heads, N, N)`` that the model
    actually used, with its gradient retained after ``backward``. With a tap's ``reduce``,
    ``summary`` holds what it returned and ``q``/``k`` are ``None``.
    """

    scale: float
    q: torch.Tensor | None = None
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    summary: torch.Tensor | None = None
    softcap: float | None = None

    def capped(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits as the softmax takes them: soft-capped where the model caps them."""
        if self.softcap is None:
            return logits
        return torch.tanh(logits / self.softcap) * self.softcap

    def rows(self, index: int | slice) -> torch.Tensor:
        """Attention rows of the given queries, ``(B', heads, n_q, N)``."""
        if self.probs is not None:
            p = self.probs[:, :, index]
            return p if p.ndim == 4 else p.unsqueeze(2)
        q = self.q[:, :, index]
        q = q if q.ndim == 4 else q.unsqueeze(2)
        return self.capped(q @ self.k.transpose(-2, -1) * self.scale).softmax(-1)

    def full(self) -> torch.Tensor:
        """The whole attention matrix ``(B', heads, N, N)``."""
        return self.probs if self.probs is not None else self.rows(slice(None))

    def received(self, chunk: int = 128) -> torch.Tensor:
        """Attention each key receives, averaged over queries: ``(B', heads, N)``.

        Computed in chunks of queries so that memory stays ``O(chunk · N)`` per head. Small
        chunks that stay in cache, the scale folded into the queries and one in-place sum make
        this about as fast as the fused attention itself (3× faster than 512-query chunks on
        VideoMAE-base's 1568 tokens on CPU).
        """
        if self.probs is not None:
            return self.probs.mean(2)
        n = self.q.shape[2]
        keys = self.k.transpose(-2, -1).contiguous()
        total = self.q.new_zeros(*self.q.shape[:2], keys.shape[-1])
        for start in range(0, n, chunk):
            logits = torch.matmul(self.q[:, :, start:start + chunk] * self.scale, keys)
            total += torch.softmax(self.capped(logits), dim=-1).sum(2)
        return total / n


class AttentionTap:
    """Capture queries/keys (or eager probabilities) of chosen layers during a forward.

    >>> with AttentionTap(model.attention, layers=[11], kinds=("spatial",)) as tap:
    ...     logits = model(x)
    >>> tap.records[(11, "spatial")].rows(0)      # CLS rows

    ``reduce(kind, record) -> tensor``, without ``grad``: called in the hook as soon as a call's
    queries and keys are known; its result is kept as ``record.summary`` and the queries and keys
    are dropped.
    """

    def __init__(self, sites: AttentionSites, layers: Iterable[int], kinds: Iterable[str] | None = None,
                 grad: bool = False,
                 reduce: Callable[[str, AttentionRecord], torch.Tensor] | None = None) -> None:
        if grad and reduce is not None:
            raise ValueError("reduce needs the queries and keys of a no-grad tap")
        self.sites = sites
        self.layers = list(layers)
        self.kinds = tuple(kinds) if kinds is not None else None   # None: every call of each layer
        self.grad = grad
        self.reduce = reduce
        self.records: dict[tuple[int, str], AttentionRecord] = {}
        self._handles: list = []

    def __enter__(self) -> "AttentionTap":
        try:
            for layer in self.layers:
                for kind in self.kinds if self.kinds is not None else self.sites.layers[layer]:
                    if kind not in self.sites.layers[layer]:
                        raise UnsupportedModelError(f"layer {layer} has no {kind} attention")
                    self._hook(layer, kind, self.sites.layers[layer][kind])
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, layer: int, kind: str, call: AttentionCall) -> None:
        rec = AttentionRecord(scale=call.scale, softcap=call.softcap)
        self.records[(layer, kind)] = rec
        keep = (lambda t: t) if self.grad else (lambda t: t.detach())

        def split_heads(t: torch.Tensor) -> torch.Tensor:  # (B', N, D) -> (B', heads, N, d)
            b, n, d = t.shape
            return t.view(b, n, call.heads, d // call.heads).transpose(1, 2)

        def summarise() -> None:
            if self.reduce is not None and rec.q is not None and rec.k is not None:
                with torch.no_grad():
                    rec.summary = self.reduce(kind, rec)
                rec.q = rec.k = None

        if call.project is not None:
            def on_input(_m, inp):
                q, k, v = call.project(inp[0])
                rec.q, rec.k = split_heads(keep(q)), split_heads(keep(k))
                if self.grad:
                    rec.v = split_heads(v)
                summarise()
            self._handles.append(call.module.register_forward_pre_hook(on_input))
        elif call.fused:
            def on_qkv(_m, _inp, out):
                q, k, v = out.chunk(3, dim=-1)
                rec.q, rec.k = split_heads(keep(q)), split_heads(keep(k))
                if self.grad:
                    rec.v = split_heads(v)
                summarise()
            self._handles.append(call.q.register_forward_hook(on_qkv))
        else:
            def setter(name):
                def on_proj(_m, _inp, out):
                    setattr(rec, name, split_heads(keep(out)))
                    summarise()
                return on_proj
            self._handles.append(call.q.register_forward_hook(setter("q")))
            self._handles.append(call.k.register_forward_hook(setter("k")))
            if self.grad:
                self._handles.append(call.v.register_forward_hook(setter("v")))

        if self.grad:
            def substitute(_m, _inp, out):
                # Recompute this layer's attention eagerly so the probabilities are in the graph.
                probs = rec.capped(rec.q @ rec.k.transpose(-2, -1) * rec.scale).softmax(-1)
                if probs.requires_grad:
                    probs.retain_grad()
                rec.probs = probs
                b, h, n, d = rec.v.shape
                ctx = call.finish((probs @ rec.v).transpose(1, 2).reshape(b, n, h * d))
                if isinstance(out, tuple):
                    return (ctx,) + tuple(out[1:])
                return ctx
            self._handles.append(call.module.register_forward_hook(substitute))
