"""The chunked loop every method and metric goes through: slices of ``[0, n)`` of one batch size,
with a cancellation/work-limit checkpoint between chunks."""

from __future__ import annotations

from typing import Iterator

from ..errors import InputError
from ..work import checkpoint


def batched(n: int, batch_size: int) -> Iterator[slice]:
    """Slices ``[0, n)`` in chunks of ``batch_size`` (the memory knob of every method).

    Between chunks it checks for cancellation and the work limit (:func:`videoxai.work.checkpoint`):
    every method's long loop goes through here or :meth:`Method.progress`, so a cancelled
    explanation stops within one batch.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
    for start in range(0, n, batch_size):
        checkpoint()
        yield slice(start, min(n, start + batch_size))
