"""Logits of perturbed clips, shared between metrics and between the methods of one clip.

The perturbation metrics (deletion, insertion, faithfulness, monotonicity, …) run the model on
the clip with some of its pixels replaced by a baseline, and many of those clips recur within an
evaluation: every curve starts or ends at the clean clip or at the fully replaced one, for every
method; ``faithfulness`` (keep 70 %) is one point of ``monotonicity``'s curve; the frame-unit
curves of methods that rank the frames alike share their first steps. Inside a
:func:`sharing` block, :meth:`videoxai.metrics.base.Metric.forward_batched` looks each perturbed
clip up by a digest of its pixels and runs the model only on the clips it has not seen.

The perturbation *methods* (RISE, LIME, occlusion, temporal SHAP) score their perturbed clips
through the same cache (:meth:`videoxai.methods.perturbation.PerturbationMethod.scores`). Their
clips do not depend on the class explained, so the class-sensitivity check's second explanation
(another class, same clip and seed) finds every one of them already run. A clip looked up is
not run, so it is not in the explanation's ``cost.forward_passes`` (the clips the model ran).
The runner computes a method's own explanation in a ``lookup=False`` block: its clips are all
run (and recorded), so its forward-pass count, time and values are those of a standalone call.

The key is the clip itself (BLAKE2b of the model's preprocessing and the clip's shape and
bytes), so a hit is an identical input and no metric has to describe its perturbation. What can
change: a clip's logits computed beside other clips in a batch differ from a lone pass in the last
bits (about 1e-7), like any change of batch composition. The evaluation runner opens one block per worker for its whole life, bounded to
``max_entries`` clips (least recently used dropped).
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import torch

from ..core.batching import batched
from .base import VideoModel


class _Rows:
    """The logits by key, in one preallocated ``(capacity, C)`` tensor with a slot per key.

    Why not a dict of ``(C,)`` tensors: each would be a separate small allocation, interleaved on
    the heap with the perturbed batches (megabytes each) that come and go between them; the small
    ones pin the heap and it cannot shrink (RISE under max-sensitivity grew a worker by 0.9 GB for
    under 100 kB of logits). Rows of one tensor grown by doubling avoid that.
    """

    def __init__(self, max_entries: int) -> None:
        if int(max_entries) < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = int(max_entries)
        self.slots: OrderedDict[bytes, int] = OrderedDict()   # least recently used first
        self.rows: torch.Tensor | None = None
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.slots)

    def get(self, key: bytes) -> torch.Tensor | None:
        slot = self.slots.get(key)
        if slot is None:
            return None
        self.slots.move_to_end(key)
        return self.rows[slot].clone()   # a copy: the slot may be reused before the caller is done

    def put(self, key: bytes, row: torch.Tensor) -> None:
        slot = self.slots.get(key)
        if slot is None:
            if len(self.slots) >= self.max_entries:        # reuse the least recently used slot
                slot = self.slots.pop(next(iter(self.slots)))
            else:
                slot = len(self.slots)
                self._make_room(slot + 1, row)
            self.slots[key] = slot
        self.slots.move_to_end(key)
        self.rows[slot] = row

    def _make_room(self, size: int, row: torch.Tensor) -> None:
        if self.rows is not None and self.rows.shape[0] >= size:
            return
        capacity = min(self.max_entries, max(1024, 2 * (0 if self.rows is None else self.rows.shape[0])))
        grown = torch.empty(capacity, row.numel(), dtype=torch.float32, device=row.device)
        if self.rows is not None:
            grown[:self.rows.shape[0]] = self.rows
        self.rows = grown


class ForwardCache:
    """Logits ``(C,)`` of clips already run through one model, by digest of the clip."""

    def __init__(self, model: VideoModel, max_entries: int = 20000) -> None:
        self.model = model
        self._rows = _Rows(max_entries)   # shared with the views

    @property
    def max_entries(self) -> int:
        return self._rows.max_entries

    hits = property(lambda self: self._rows.hits, lambda self, v: setattr(self._rows, "hits", v))
    misses = property(lambda self: self._rows.misses, lambda self, v: setattr(self._rows, "misses", v))

    def __len__(self) -> int:
        return len(self._rows)

    def view(self, model: VideoModel) -> ForwardCache:
        """This cache for ``model``, a view of the same network with its own preprocessing
        (:meth:`~videoxai.models.base.VideoModel.at_model_size`, which the perturbation methods
        run at): the same store, keys that include the preprocessing."""
        if model is self.model:
            return self
        view = copy.copy(self)   # shares _rows
        view.model = model
        return view

    def digest(self, clip: torch.Tensor) -> bytes:
        """Key of one input ``(T, 3, H, W)``: the model's preprocessing, the clip's shape, dtype and
        bytes."""
        c = clip.detach().contiguous().cpu()
        h = hashlib.blake2b(f"{self.model.preprocess!r}{tuple(c.shape)}{c.dtype}".encode(), digest_size=16)
        h.update(c.view(torch.uint8).numpy().data if c.numel() else b"")
        return h.digest()

    def forward(self, n: int, build: Callable[[slice], torch.Tensor], batch_size: int) -> torch.Tensor:
        """Logits ``(n, C)`` of the ``n`` clips ``build`` makes, running only the unseen ones
        through the model, ``batch_size`` at a time (every one, and recording it, in a
        ``lookup=False`` block)."""
        model = self.model
        if not _LOOKUP.get():
            return self._record(n, build, batch_size)
        out: list[torch.Tensor | None] = [None] * n
        pending: list[tuple[int, bytes, torch.Tensor]] = []
        queued: dict[bytes, list[int]] = {}
        for s in batched(n, batch_size):
            clips = build(s)
            for j, i in enumerate(range(s.start, s.stop)):
                key = self.digest(clips[j])
                hit = self._rows.get(key)
                if hit is not None:
                    out[i] = hit
                    self.hits += 1
                elif key in queued:              # the same clip twice in one request
                    queued[key].append(i)
                    self.hits += 1
                else:
                    queued[key] = [i]
                    pending.append((i, key, clips[j]))
                    self.misses += 1
            while len(pending) >= batch_size:
                self._run(pending[:batch_size], queued, out, model)
                pending = pending[batch_size:]
        if pending:
            self._run(pending, queued, out, model)
        return torch.stack(out) if n else torch.zeros(0, model.num_classes)

    def _record(self, n: int, build: Callable[[slice], torch.Tensor], batch_size: int) -> torch.Tensor:
        """Run all ``n`` clips as an uncached call would (same batches), storing their logits."""
        out = []
        for s in batched(n, batch_size):
            clips = build(s)
            with torch.no_grad():
                logits = self.model(clips).float()
            for clip, row in zip(clips, logits):
                self._rows.put(self.digest(clip), row)
            self.misses += len(clips)
            out.append(logits)
        return torch.cat(out) if out else torch.zeros(0, self.model.num_classes)

    def _run(self, items, queued, out, model) -> None:
        with torch.no_grad():
            logits = model(torch.stack([c for _, _, c in items])).float()
        for (_, key, _), row in zip(items, logits):
            self._rows.put(key, row)
            for i in queued.pop(key):
                out[i] = row


_ACTIVE: ContextVar[ForwardCache | None] = ContextVar("videoxai_forward_cache", default=None)
_LOOKUP: ContextVar[bool] = ContextVar("videoxai_forward_cache_lookup", default=True)


def active(model: VideoModel) -> ForwardCache | None:
    """The cache of the enclosing :func:`sharing` block, if it is for ``model`` or for a view of
    the same network (a randomised copy has its own network: no cache)."""
    cache = _ACTIVE.get()
    if cache is None:
        return None
    if cache.model is model:
        return cache
    if type(model) is type(cache.model) and getattr(model, "net", None) is getattr(cache.model, "net", False):
        return cache.view(model)
    return None


def forward_batched(model: VideoModel, n: int, build: Callable[[slice], torch.Tensor],
                    batch_size: int) -> torch.Tensor:
    """Logits ``(n, C)`` of ``n`` clips made ``batch_size`` at a time by ``build(slice)``,
    without gradients; inside a :func:`sharing` block for ``model`` (or a view of its network),
    clips already run are looked up instead of run again."""
    cache = active(model)
    if cache is not None:
        return cache.forward(n, build, batch_size)
    with torch.no_grad():
        out = [model(build(s)).float() for s in batched(n, batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.num_classes)


@contextmanager
def sharing(model: VideoModel, cache: ForwardCache | None = None, *,
            lookup: bool = True) -> Iterator[ForwardCache]:
    """Share perturbed clips' logits of ``model`` between the metrics and the perturbation methods
    called inside the block.

    ``lookup=False`` only records: every clip is run, as without the block, and its logits are
    kept for later blocks on the same cache.

    >>> with sharing(model) as cache:
    ...     d = vx.metrics.evaluate("deletion", model, clip, exp)
    ...     i = vx.metrics.evaluate("insertion", model, clip, exp)   # reuses the clean and the blank clip
    """
    cache = cache if cache is not None else ForwardCache(model)
    if cache.model is not model:
        raise ValueError("the cache belongs to another model")
    token, mode = _ACTIVE.set(cache), _LOOKUP.set(bool(lookup))
    try:
        yield cache
    finally:
        _LOOKUP.reset(mode)
        _ACTIVE.reset(token)
