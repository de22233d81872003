"""The model's own thread: every explanation the server computes runs here, one at a time.

Methods install hooks on the shared model for the length of one explanation (attention taps,
activation captures), so two explanations must never overlap on one model; and inference is
CPU-bound work that would freeze the event loop. Both are solved by one dedicated worker thread:
stream sessions await it (``await engine.call(...)``), the job worker blocks on it
(``engine.call_sync(...)``). Its queue is bounded by construction: each stream keeps at most one
window in flight and the job worker one, so it never holds more than ``max_streams + 1`` items.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from ..clip import Clip
from ..core.refine import StreamSmoother
from ..errors import InputError, UnknownMethodError, VideoXAIError
from ..explain import explain
from ..explanation import Explanation
from ..methods import available as available_methods
from ..methods import get as get_method
from ..methods.base import Method
from ..models.base import VideoModel
from ..work import WorkBudget, work_scope
from .protocol import CompactArray, ModelInfo, Prediction, ServiceError, WindowMaps, WindowResult

R = TypeVar("R")

#: classes listed in ``WindowResult.top``
TOP_K = 5

#: options that set how many clips go through the model at once (memory, never the result)
BATCH_OPTIONS = ("batch_size", "internal_batch_size")


@dataclass
class ExplainSpec:
    """What to compute for each window of a job or a stream (validated by :meth:`Engine.prepare`)."""

    method: Method
    target: int | None = None
    maps: tuple[str, ...] = ("spatial",)
    map_size: int = 32
    map_dtype: str = "uint8"
    #: about how many clips one window of ``window`` frames sends through the model (None: unknown)
    passes_per_window: int | None = None

    @property
    def method_name(self) -> str:
        return self.method.name

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.method.options)


@dataclass
class Smoothing:
    """Moving averages across the windows of one stream (spatial maps and class probabilities).

    The average runs over window *positions*: frame k of a window is blended with frame k of the
    previous windows. With stride ``s`` and weight ``alpha`` the maps lag the stream by about
    ``s·(1 − alpha)/alpha`` frames, the price of a steady overlay on a live camera.
    """

    alpha: float
    maps: StreamSmoother = field(init=False)
    probs: StreamSmoother = field(init=False)

    def __post_init__(self) -> None:
        self.maps = StreamSmoother(self.alpha)
        self.probs = StreamSmoother(self.alpha)


class Engine:
    """Owns the model and the thread that runs it.

    Args:
        model: the loaded model; the engine never modifies it outside one explanation.
        default_method: used when a request names none.
    """

    def __init__(self, model: VideoModel, default_method: str = "staa") -> None:
        if not isinstance(model, VideoModel):
            raise InputError(f"the server needs a model from vx.load_model or vx.wrap, got {type(model).__name__}")
        get_method(default_method)  # unknown names fail at start-up, not on the first request
        self.model = model.eval()
        self.default_method = default_method
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoxai-model")
        self._closed = False

    # -- running on the model thread ---------------------------------------------------------
    async def call(self, fn: Callable[..., R], *args) -> R:
        """Run ``fn(*args)`` on the model thread, from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def call_sync(self, fn: Callable[..., R], *args) -> R:
        """Run ``fn(*args)`` on the model thread and wait for it (from another thread)."""
        return self._executor.submit(fn, *args).result()

    def start(self) -> None:
        """A fresh model thread after :meth:`close` (before any call; the app's startup): an app
        served again once its server stopped, a notebook's second ``BackgroundServer`` say, failed
        every job and stream window with 'cannot schedule new futures after shutdown'."""
        if self._closed:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoxai-model")
            self._closed = False

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- description ---------------------------------------------------------------------------
    def info(self) -> ModelInfo:
        m = self.model
        return ModelInfo(name=m.name, family=m.family, num_frames=m.num_frames,
                         input_size=list(m.input_size), fixed_num_frames=m.fixed_num_frames,
                         labels=list(m.labels))

    def methods(self) -> list[str]:
        """Registered methods whose requirements (attention, CAM layer, token grid) the model meets."""
        return [name for name in available_methods() if get_method(name).supports(self.model)]

    def window_size(self, requested: int | None, max_frames: int) -> int:
        """The window a client may use: the model's frame count, or any size if it accepts any."""
        t = self.model.num_frames
        if requested is None or requested == t:
            return t
        if self.model.fixed_num_frames:
            raise InputError(f"{self.model.name} takes windows of exactly {t} frames, not {requested}")
        if requested > max_frames:
            raise InputError(f"window {requested} exceeds the server's limit of {max_frames} frames")
        return requested

    # -- work ----------------------------------------------------------------------------------
    def prepare(self, method: str | None, options: dict[str, Any], target: int | str | None,
                maps: list[str] | tuple[str, ...], map_size: int, map_dtype: str,
                window: int | None = None) -> ExplainSpec:
        """Build the method once (its constructor validates the options), check the target and
        estimate the work of one window of ``window`` frames (default: the model's).

        Safe on any thread: a method's constructor only reads the model (hooks are installed by
        ``attribute``, on the model thread), so requests are validated even while it is busy.

        Raises:
            InputError (or another library error): unknown method, options it cannot use, a
                target out of range or naming no class (the message lists close matches);
                never anything else, so a client's mistake is never a 500.
        """
        name = method if method is not None else self.default_method  # "" names no method: refused
        if name not in available_methods():
            # the registry's list names every method, also those this model cannot take (a client
            # that picked one from it was refused again, as unsupported): name the server's own
            raise UnknownMethodError(f"unknown method {name!r}; this server's model takes: "
                                     f"{', '.join(self.methods())}")
        cls = get_method(name)
        try:
            m = cls(self.model, **(options or {}))
            passes = m.forward_passes(window or self.model.num_frames)
        except VideoXAIError:
            raise
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as e:
            # a constructor that did not check one of its options: still the client's mistake
            raise InputError(f"method {name!r}: invalid options {options!r}: {e}") from None
        except MemoryError:  # a constructor that allocates from an option the range checks let through
            raise InputError(f"method {name!r}: options {options!r} need more memory than the server has") from None
        if isinstance(target, str):  # a name (or an index as text), resolved as the library and CLI do
            target = self.model.class_from_text(target)
        if target is not None and not 0 <= target < self.model.num_classes:
            raise InputError(f"target {target} is out of range: the model has {self.model.num_classes} classes")
        return ExplainSpec(method=m, target=target, maps=tuple(dict.fromkeys(maps)), map_size=map_size,
                           map_dtype=map_dtype, passes_per_window=passes)

    def explain_window(self, frames: np.ndarray | list[np.ndarray], frame_indices: list[int], index: int,
                       spec: ExplainSpec, smoothing: Smoothing | None = None, fps: float | None = None,
                       cancel: threading.Event | None = None, budget: WorkBudget | None = None,
                       ) -> tuple[Explanation, WindowResult, Prediction]:
        """Explain one window of ``(T, H, W, 3)`` uint8 frames (on the model thread only).

        ``cancel`` / ``budget``: the explanation stops within one batch once ``cancel`` is set
        (:class:`~videoxai.work.Cancelled`) or past the budget's forward passes
        (:class:`~videoxai.work.WorkLimitExceeded`).

        Returns the full explanation (for overlays), the compact :class:`WindowResult`, and the
        smoothed prediction (the window's own when ``smoothing`` is ``None``).
        """
        t0 = time.perf_counter()
        stacked = np.stack(frames) if isinstance(frames, list) else frames
        clip = Clip(stacked, fps=fps, indices=np.asarray(frame_indices, dtype=np.int64))
        with work_scope(self.model, cancel=cancel, budget=budget):
            exp = explain(self.model, clip, method=spec.method, target=spec.target)

        spatial = torch.from_numpy(exp.spatial)[None]                         # (1, T, H, W)
        probs = torch.from_numpy(exp.probs)[None]                             # (1, C)
        if "spatial" in spec.maps:
            small = downsample(spatial, spec.map_size)
            if smoothing is not None:
                small = smoothing.maps(small)
        smooth_probs = smoothing.probs(probs) if smoothing is not None else probs
        maps = WindowMaps(
            spatial=CompactArray.encode(small[0].numpy(), spec.map_dtype) if "spatial" in spec.maps else None,
            raw=CompactArray.encode(exp.raw, spec.map_dtype) if "raw" in spec.maps and exp.raw is not None
            else None)
        result = WindowResult(
            index=index, frame_indices=[int(i) for i in exp.frame_indices],
            prediction=Prediction(index=exp.target, label=exp.label, score=exp.score),
            top=self._top(exp.probs), temporal=[float(v) for v in exp.temporal], maps=maps,
            compute_ms=(time.perf_counter() - t0) * 1000.0)
        k = int(smooth_probs[0].argmax())
        smoothed = Prediction(index=k, label=self.model.labels[k], score=float(smooth_probs[0, k]))
        return exp, result, smoothed

    def _top(self, probs: np.ndarray) -> list[Prediction]:
        order = np.argsort(-probs, kind="stable")[:TOP_K]
        return [Prediction(index=int(i), label=self.model.labels[i], score=float(probs[i])) for i in order]


def check_batch(spec: ExplainSpec, limit: int) -> None:
    """Refuse (413 ``batch_limit``) a batch size above the server's limit.

    The work limit counts forward passes, not clips held at once: ``rise`` with
    ``n_samples=9000, batch_size=9000`` is within it, yet puts 9000 clips and their activations
    in memory together (about 3 MiB each on the demo model: the server is killed).
    """
    for name in BATCH_OPTIONS:
        value = spec.options.get(name)
        if isinstance(value, int) and value > limit:
            raise ServiceError(413, "batch_limit", f"{spec.method_name}: {name}={value} exceeds the server's "
                                                   f"limit of {limit} clips per forward pass (it sets memory, not "
                                                   "the result)")


def downsample(maps: torch.Tensor, max_side: int) -> torch.Tensor:
    """``(B, T, H, W)`` → ``(B, T, h, w)`` with ``max(h, w) ≤ max_side``, aspect ratio kept.

    Area averaging: each small cell is the mean of the pixels it covers, so no evidence is lost
    between samples (bilinear would skip narrow peaks).
    """
    b, t, h, w = maps.shape
    size = fit(h, w, max_side)
    if size is None:
        return maps
    return F.interpolate(maps.reshape(b * t, 1, h, w), size=size, mode="area").reshape(b, t, *size)


def fit(h: int, w: int, max_side: int) -> tuple[int, int] | None:
    """``(h, w)`` shrunk so that the longer side is ``max_side`` (aspect kept); ``None`` if it fits."""
    if max(h, w) <= max_side:
        return None
    s = max_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))
