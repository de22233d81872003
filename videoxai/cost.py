"""Measured cost of an explanation: wall time, model passes and peak memory.

Costs are measured, never estimated: the model adapter counts every clip that goes forward and
every clip whose logits receive a gradient (see :class:`videoxai.models.base.PassCounter`), and a
:class:`CostMeter` takes the difference around one explanation.

Peak memory is the most memory the call held at once *beyond what the process held when it
started*: the CUDA allocator's peak on GPU; on CPU (torch's CPU allocator keeps no peak
statistic) the larger of the peak rise of the C heap's bytes in use (glibc's ``mallinfo2``, where
torch's CPU tensors live) and the peak rise of the resident set, both sampled every few
milliseconds by a background thread. The resident set alone reads 0 for a second call, whose
tensors reuse the heap memory the first one freed: the process does not grow, but the call
needed the memory all the same. ``process_peak_mb`` is the whole process's resident set at its
sampled peak during the call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from dataclasses import asdict, dataclass

import psutil
import torch


@dataclass
class Cost:
    """What one explanation cost.

    Attributes:
        seconds: wall-clock time of the method, model passes and post-processing included.
        forward_passes: clips that went through the model's forward (a batch of 8 counts 8).
        backward_passes: clips whose logits were back-propagated.
        peak_memory_mb: the most memory the call held at once beyond what the process held when
            it started, in MiB (CUDA: the allocator's; CPU: heap bytes in use or resident set).
        device: where the model ran.
        process_peak_mb: the process's resident memory at its peak during the call, in MiB.
    """

    seconds: float = 0.0
    forward_passes: int = 0
    backward_passes: int = 0
    peak_memory_mb: float = 0.0
    device: str = "cpu"
    process_peak_mb: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Cost":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_reader():
    """A function giving the C heap's bytes in use (glibc ≥ 2.33), or ``None`` where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd   # allocated from the arenas + directly mapped blocks

    return in_use


_HEAP_IN_USE = _heap_reader()


class _MemorySampler(threading.Thread):
    """Samples this process's resident memory and heap bytes in use until stopped; keeps the maxima.

    The interval starts at ``interval`` (short calls still get samples) and grows by half each
    sample up to ``max_interval``: waking every 5 ms for a whole run slowed a 2-core machine's
    model by 4 %, which the STAA overhead benchmark measures.
    """

    def __init__(self, interval: float = 0.005, max_interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self._proc = psutil.Process()
        self._interval = interval
        self._max_interval = max_interval
        self._stop_event = threading.Event()
        self.start_rss = self.peak_rss = self._proc.memory_info().rss
        self.start_heap = self.peak_heap = _HEAP_IN_USE() if _HEAP_IN_USE else 0

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)
        if _HEAP_IN_USE is not None:
            self.peak_heap = max(self.peak_heap, _HEAP_IN_USE())

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(self._interval)
            self._interval = min(self._max_interval, self._interval * 1.5)

    def stop(self) -> tuple[float, float]:
        """``(peak rise in MiB, the process's peak resident memory in MiB)``."""
        self._stop_event.set()
        self.join()
        self._sample()
        rise = max(self.peak_rss - self.start_rss, self.peak_heap - self.start_heap)
        return rise / 2**20, self.peak_rss / 2**20


class CostMeter:
    """Context manager that fills a :class:`Cost` for the work done inside it.

    >>> with CostMeter(model) as meter:
    ...     model(x)
    >>> meter.cost.forward_passes
    1
    """

    def __init__(self, model, device: torch.device | str | None = None) -> None:
        self.model = model
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.cost = Cost(device=str(self.device))

    def __enter__(self) -> "CostMeter":
        counter = self.model.passes
        self._f0, self._b0 = counter.forward, counter.backward
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._cuda0 = torch.cuda.memory_allocated(self.device)
            self._sampler = None
        else:
            self._sampler = _MemorySampler()
            self._sampler.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = (torch.cuda.max_memory_allocated(self.device) - self._cuda0) / 2**20
            self.cost.process_peak_mb = psutil.Process().memory_info().rss / 2**20
        else:
            peak, self.cost.process_peak_mb = self._sampler.stop()
        self.cost.seconds = time.perf_counter() - self._t0
        counter = self.model.passes
        self.cost.forward_passes = counter.forward - self._f0
        self.cost.backward_passes = counter.backward - self._b0
        self.cost.peak_memory_mb = max(0.0, float(peak))


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
