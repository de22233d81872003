"""Torch's global generators seeded for a block of work and put back as they were after it.

A network may draw random numbers in eval mode (Monte-Carlo dropout, ``F.dropout(x,
training=True)``, stochastic depth, noise layers): each forward pass of an explanation then
drew from torch's global generator, and the same clip and seed gave another map at every call
(and consumed the caller's random stream). :func:`seeded_draws` seeds the generators the
network draws from (the CPU one, and the CUDA one of each device named) for the block, and
restores their states when the last such block of the process ends.

Torch has one global generator per device for the whole process, not one per thread: two
threads explaining two models that draw random numbers at once interleave their draws (each is
seeded when it starts, the other's draws then come between), and a thread that draws while
another explains draws from the seeded stream, which is then rewound. The states are restored
when the last block open in any thread closes, so the caller's stream is the one it had before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

_lock = threading.Lock()
_open = 0  # seeded blocks open in the process
_saved: dict[int | None, torch.Tensor] = {}  # device index (None: the CPU) → the state before the first block
_local = threading.local()  # .depth: seeded blocks open in this thread


def cuda_indices(device: torch.device) -> list[int]:
    """``[index]`` of a CUDA device (its current index where it names none), else ``[]``."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _state(index: int | None) -> torch.Tensor:
    return torch.random.get_rng_state() if index is None else torch.cuda.get_rng_state(index)


def _restore(index: int | None, state: torch.Tensor) -> None:
    if index is None:
        torch.random.set_rng_state(state)
    else:
        torch.cuda.set_rng_state(state, index)


def _seed(index: int | None, seed: int) -> None:
    # the one generator, not torch.manual_seed: that re-seeds every CUDA device too (or queues it
    # for when CUDA starts), which nothing here would put back
    (torch.random.default_generator if index is None else torch.cuda.default_generators[index]).manual_seed(seed)


@contextmanager
def seeded_draws(seed: int, cuda: Sequence[int] = (), *, outermost_only: bool = False) -> Iterator[None]:
    """Torch's CPU generator and those of the CUDA devices ``cuda`` seeded with ``seed`` for the
    block; every state as it was before when the last seeded block of the process closes.

    ``outermost_only``: seed only where no seeded block is open in this thread (a model's
    :meth:`~videoxai.models.base.VideoModel.inference` around a metric or an explanation, whose
    method then seeds with its own ``seed``); a nested block otherwise re-seeds.
    """
    global _open
    depth = getattr(_local, "depth", 0)
    devices = [None, *cuda]
    with _lock:
        for index in devices:
            if index not in _saved:
                _saved[index] = _state(index)
        _open += 1
    _local.depth = depth + 1
    try:   # (seeded inside: a seed that fails still closes the block, and the states are put back)
        if depth == 0 or not outermost_only:
            with _lock:
                for index in devices:
                    _seed(index, int(seed))
        yield
    finally:
        _local.depth = depth
        with _lock:
            _open -= 1
            if _open == 0:
                for index, state in _saved.items():
                    _restore(index, state)
                _saved.clear()
