"""Explain a whole video, window by window, on the video's own time axis.

``vx.explain`` explains one clip of ``model.num_frames`` frames. A user with a real video wants
the whole of it (or a stretch of it): :func:`explain_video` slides a window of
``model.num_frames`` frames over the video (``window_stride`` frames apart, optionally taking
every ``frame_step``-th frame), explains each window with ``vx.explain`` and puts the results
back on the video's frames:

* per window: the prediction (class, probability), the explained class, its per-frame
  importance and cost (:class:`WindowResult`);
* per source frame: the spatial map averaged over the windows that contain it, at a display
  size (long videos are never held at full size, and a video with so many frames that even
  these would fill more than about 1 GiB is held at half that size, and so on), and the temporal
  importance *relative to its window* (``T · temporal``: 1 is the window's average frame),
  averaged likewise.

Where windows start and end is :class:`~videoxai.data.windows.WindowPlanner`'s rule, the one the
stream service uses: windows every ``window_stride`` frames and, when the video ends inside a
window, a last window of the last ``num_frames`` frames, so every frame is explained and no
window holds invented frames. The file is decoded as a stream (at most one window at full size
in memory).

>>> video = vx.explain_video(model, "tests/data/bigbuckbunny.mp4", "gradcam", window_stride=8)
>>> [(w.start_s, w.label) for w in video.windows]
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .clip import Clip
from .cost import Cost
from .errors import InputError
from .explain import explain
from .explanation import _check_finite, metadata_array
from .npz import read_archive, write_npz
from .models.base import VideoModel
from .data.times import parse_time  # noqa: F401  part of this module's API, as before

__all__ = ["WindowResult", "VideoExplanation", "explain_video", "parse_time"]

# Frames (uint8 RGB, 3 bytes a pixel) and maps (float32, 4) held for the whole video: past this,
# the display size is halved. At 640x360 a 10-minute video at 25 fps held 24 GB.
_HELD_BYTES = 1 << 30
_LEAST_SIDE = 80  # no halving once the longer side is this or less: smaller shows nothing (memory grows again)
# VideoExplanation.save's archives: the kind tells them from Explanation.save's
_FORMAT_VERSION = 1
_KIND = "video_explanation"


@dataclass
class WindowResult:
    """One window's explanation, summarised.

    Attributes:
        index: window number.
        frame_indices: ``(T,)`` source index of each of its frames.
        start_s, end_s: when its first and last frame are shown, in seconds (the file's timestamps,
            which at a variable frame rate are not index / fps; ``None`` without them or an fps).
        target, label: the explained class; score: its probability.
        predicted, predicted_label, predicted_score: the model's top class on the window.
        temporal: ``(T,)`` per-frame importance within the window (sums to 1).
        cost: what explaining it cost.
        resolved_options: what the method chose for this window for the options left to it
            (its ``Explanation.meta["resolved_options"]``; LIME's ``"auto"`` smoothing depends on
            the frames, so windows can differ).
    """

    index: int
    frame_indices: np.ndarray
    start_s: float | None
    end_s: float | None
    target: int
    label: str
    score: float
    predicted: int
    predicted_label: str
    predicted_score: float
    temporal: np.ndarray
    cost: Cost
    resolved_options: dict = field(default_factory=dict)


@dataclass
class VideoExplanation:
    """Sliding-window explanations of one video (see the module docstring).

    Attributes:
        method, model: what explained what.
        windows: one :class:`WindowResult` per window, in order.
        frames: uint8 ``(N, h, w, 3)`` every explained source frame, at the display size.
        frame_indices: ``(N,)`` their source indices (increasing); times: ``(N,)`` in seconds,
            or the frame indices again for frames without a rate (an array given with no
            ``fps``), where the windows' ``start_s`` / ``end_s`` are ``None``.
        spatial: float32 ``(N, h, w)`` in [0, 1], the windows' maps averaged per frame.
        temporal: float32 ``(N,)`` importance relative to the frame's window (1 = the window's
            average), averaged over the windows that contain the frame.
        fps: source frame rate; source: the file; options: the method's options as used;
        meta: the first window's ``Explanation.meta`` without per-window arrays (weights), with
            ``"warnings"`` gathered from every window and ``"resolved_options"`` the choices
            every window shares.
    """

    method: str
    model: str
    windows: list[WindowResult]
    frames: np.ndarray
    frame_indices: np.ndarray
    times: np.ndarray
    spatial: np.ndarray
    temporal: np.ndarray
    fps: float | None
    source: str | None
    options: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def clip(self) -> Clip:
        """The explained frames at display size, as a clip (for overlays and reports)."""
        return Clip(self.frames, fps=self.fps, indices=self.frame_indices, source=self.source)

    def window_at(self, frame_index: int) -> WindowResult:
        """The window whose centre is nearest to source frame ``frame_index``."""
        return min(self.windows, key=lambda w: abs(float(w.frame_indices.mean()) - frame_index))

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` of every field (no pickle) and return its path; :meth:`load` reads it.

        As :meth:`Explanation.save <videoxai.Explanation.save>`: the suffix becomes ``.npz``,
        missing parents are made, an existing file is replaced whole, NaN or infinite maps are
        refused, and the metadata is JSON (tuples come back as lists, NumPy scalars as Python
        numbers). Arrays: ``frames``, ``frame_indices``, ``times``, ``spatial``, ``temporal`` as
        the attributes are; the windows' ``frame_indices`` and ``temporal`` one after the other
        in ``window_frame_indices`` and ``window_temporal``, ``window_lengths`` frames each; the
        rest (each window's classes, scores, times, cost and resolved options; method, model,
        fps, source, options, meta) in the JSON record ``metadata``.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        windows = self.windows
        arrays = {
            "frames": np.asarray(self.frames, dtype=np.uint8),
            "frame_indices": np.asarray(self.frame_indices, dtype=np.int64),
            "times": np.asarray(self.times, dtype=np.float64),
            "spatial": np.asarray(self.spatial, dtype=np.float32),
            "temporal": np.asarray(self.temporal, dtype=np.float32),
            # concatenated, not stacked: windows of different lengths stay exact
            "window_frame_indices": np.concatenate(
                [np.asarray(w.frame_indices, dtype=np.int64).ravel() for w in windows] or [np.zeros(0, np.int64)]),
            "window_temporal": np.concatenate(
                [np.asarray(w.temporal, dtype=np.float32).ravel() for w in windows] or [np.zeros(0, np.float32)]),
            "window_lengths": np.asarray([np.size(w.frame_indices) for w in windows], dtype=np.int64),
        }
        for w in windows:
            if np.size(w.temporal) != np.size(w.frame_indices):
                # split by one length on load, the other array would be cut in the wrong places
                raise InputError(f"cannot save the video explanation to {path}: window {w.index} has "
                                 f"{np.size(w.frame_indices)} frame indices but {np.size(w.temporal)} importances")
        _check_finite(arrays, f"cannot save the video explanation to {path}", "VideoExplanation")
        meta = {
            "version": _FORMAT_VERSION, "kind": _KIND, "method": self.method, "model": self.model,
            "fps": self.fps, "source": self.source, "options": self.options, "meta": self.meta,
            "windows": [{
                "index": w.index, "start_s": w.start_s, "end_s": w.end_s, "target": w.target, "label": w.label,
                "score": w.score, "predicted": w.predicted, "predicted_label": w.predicted_label,
                "predicted_score": w.predicted_score, "cost": w.cost.to_dict(),
                "resolved_options": w.resolved_options} for w in windows],
        }
        arrays["metadata"] = metadata_array(meta)
        return write_npz(path, arrays, "video explanation")

    @classmethod
    def load(cls, path: str | Path) -> "VideoExplanation":
        """Read a video explanation written by :meth:`save`."""
        path = Path(path)
        arrays = read_archive(path, "video explanation")
        try:
            meta = json.loads(bytes(arrays.pop("metadata")).decode())
        except KeyError:
            raise InputError(f"{path} is not a videoxai video explanation file: it has no 'metadata'") from None
        except (ValueError, TypeError) as e:
            raise InputError(f"{path} is not a videoxai video explanation file: its metadata is not JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("kind") != _KIND:
            if isinstance(meta, dict) and "spatial" in arrays and "probs" in arrays:
                # Explanation.save's archive: one clip's maps, no windows
                raise InputError(f"{path} is one clip's explanation, not a video explanation: "
                                 "read it with vx.Explanation.load")
            raise InputError(f"{path} is not a videoxai video explanation file")
        version = meta.get("version")
        if isinstance(version, int) and version > _FORMAT_VERSION:
            raise InputError(f"{path} was written by a newer videoxai (video explanation format {version}; "
                             f"this one reads format {_FORMAT_VERSION}): upgrade videoxai to read it")
        _check_finite(arrays, f"{path} is not a valid video explanation", "VideoExplanation")
        try:
            lengths = [int(n) for n in arrays["window_lengths"]]
            records = meta["windows"]
            if len(records) != len(lengths) or sum(lengths) != arrays["window_frame_indices"].size \
                    or sum(lengths) != arrays["window_temporal"].size or min(lengths, default=0) < 0:
                raise ValueError("its windows' arrays and records do not match")
            n = arrays["frame_indices"].shape
            if any(arrays[k].shape[:1] != n for k in ("frames", "times", "spatial", "temporal")):
                raise ValueError("its per-frame arrays have different numbers of frames")
            cuts = np.cumsum(lengths)[:-1]
            windows = [WindowResult(
                index=r["index"], frame_indices=fi, start_s=r["start_s"], end_s=r["end_s"], target=r["target"],
                label=r["label"], score=r["score"], predicted=r["predicted"], predicted_label=r["predicted_label"],
                predicted_score=r["predicted_score"], temporal=t, cost=Cost.from_dict(r.get("cost", {})),
                resolved_options=r.get("resolved_options", {}))
                for r, fi, t in zip(records, np.split(arrays["window_frame_indices"], cuts),
                                    np.split(arrays["window_temporal"], cuts))]
            return cls(method=meta["method"], model=meta["model"], windows=windows, frames=arrays["frames"],
                       frame_indices=arrays["frame_indices"], times=arrays["times"], spatial=arrays["spatial"],
                       temporal=arrays["temporal"], fps=meta.get("fps"), source=meta.get("source"),
                       options=meta.get("options", {}), meta=meta.get("meta", {}))
        except KeyError as e:
            raise InputError(f"{path} is not a videoxai video explanation file: it has no {e.args[0]!r}") from None
        except (ValueError, TypeError, AttributeError) as e:
            raise InputError(f"{path} is not a videoxai video explanation file: {e}") from None

    def __repr__(self) -> str:
        return (f"VideoExplanation(method={self.method!r}, model={self.model!r}, windows={len(self.windows)}, "
                f"frames={len(self.frame_indices)}, size={self.frames.shape[2]}x{self.frames.shape[1]})")


def explain_video(model: VideoModel, video: str | bytes | os.PathLike | Clip | np.ndarray | torch.Tensor,
                  method: str = "gradcam", *,
                  window_stride: int | None = None, frame_step: int = 1,
                  start: float | str | None = None, end: float | str | None = None,
                  target: int | str | None = None, refine=None, working_size: str = "model",
                  display_side: int = 640, on_window: Callable[[int], None] | None = None,
                  fps: float | None = None, **options) -> VideoExplanation:
    """Explain every window of ``model.num_frames`` frames of a video (see the module docstring).

    Args:
        model: the classifier.
        video: a video file, or frames already in memory (all of them): a
            :class:`~videoxai.Clip`, or an array or tensor as :func:`vx.explain` takes it
            (:meth:`Clip.from_array`).
        method: a registered method name; ``**options`` are its options.
        window_stride: frames (after ``frame_step``) between window starts; ``None``: windows
            do not overlap (``num_frames``).
        frame_step: use every ``frame_step``-th frame of the video.
        start, end: the stretch to explain (files only): seconds (numbers, or ``"2.5s"``) or
            frame numbers (``"60"``); see :func:`parse_time`. ``end`` is excluded.
        fps: the frame rate of a folder of frames (as :func:`vx.read_video` takes it): the
            timeline's seconds; without it the timeline counts frames.
        target: the class every window explains (index or name); ``None``: each window's own
            prediction.
        refine, working_size: as in :func:`vx.explain`.
        display_side: longer side of the stored frames and maps (halved, and halved again, for
            a video whose frames and maps would otherwise take more than about 1 GiB).
        on_window: called with each window's number before it is explained (progress).

    Returns:
        A :class:`VideoExplanation`.
    """
    from .data.container import probe
    from .data.frame_folder import frame_series, names_frame_series
    from .data.video_windows import sliding_windows
    from .core.resize import resize_frames, resize_maps

    if not isinstance(model, VideoModel):
        raise InputError(f"explain_video needs a model from vx.load_model or vx.wrap, got {type(model).__name__}")
    # checked before any window is explained: display_side=0 held every frame as 1x1 pixel
    if isinstance(display_side, bool) or not isinstance(display_side, numbers.Integral) or display_side < 1:
        raise InputError(f"display_side must be a whole number of pixels, at least 1, got {display_side!r}")
    if on_window is not None and not callable(on_window):
        raise InputError(f"on_window must be a function of the window's number, got {type(on_window).__name__}")
    for name, count in (("window_stride", window_stride), ("frame_step", frame_step)):
        # arguments, not the file: sliding_windows named them "stride" in a VideoReadError
        if count is not None and (isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1):
            raise InputError(f"{name} must be a whole number of frames, at least 1, got {count!r}")
    if target is not None:
        target = model.class_index(target)
    if isinstance(video, (np.ndarray, torch.Tensor)):
        video = Clip.from_array(video)
    elif not isinstance(video, (Clip, str, bytes, os.PathLike)):
        raise InputError(f"explain_video needs a video file's path, a Clip, or frames as an array or tensor; "
                         f"got {type(video).__name__}")
    if isinstance(video, Clip):
        if start is not None or end is not None:
            raise InputError("start and end apply to video files; select a clip's frames with clip.subclip")
        if fps is not None:
            raise InputError("fps applies to a folder of frames; a Clip has its own (Clip.fps)")
        source, fps = video.source, video.fps
        windows_iter = sliding_windows(video, model.num_frames, window_stride, frame_step=frame_step, tail="shift")
    elif names_frame_series(video):  # pictures: no clock to read a time by but the one given
        source = frame_series(video).source
        windows_iter = sliding_windows(video, model.num_frames, window_stride, frame_step=frame_step,
                                       start=start, end=end, tail="shift", fps=fps)
    else:
        if fps is not None:
            raise InputError(f"fps applies to a folder of frames; {os.fsdecode(video)} has its own frame rate")
        info = probe(video)
        fps = info["fps"]
        lo, hi = parse_time(start, fps, "start"), parse_time(end, fps, "end")
        source = os.fsdecode(video)
        windows_iter = sliding_windows(video, model.num_frames, window_stride, frame_step=frame_step,
                                       start=lo, end=hi, tail="shift")

    # when each frame is shown, as the windows say (a file's timestamps, a clip's own times): at a
    # variable frame rate (phones, GIFs) not index / fps, which placed a clip read from such a
    # file (its times known) at the wrong seconds (a window shown from 5.0 s said 3.0 s)
    shown: dict[int, float] = {}

    def seconds(i: int) -> float | None:
        if i in shown:
            return shown[i]
        return i / fps if fps else None

    results: list[WindowResult] = []
    frames: dict[int, np.ndarray] = {}
    map_mean: dict[int, np.ndarray] = {}   # a running mean stays in [0, 1]: it can be resized as a map
    rel_sum: dict[int, float] = {}
    hits: dict[int, int] = {}
    size = None
    first = None
    warned: dict[str, None] = {}  # every window's warnings (a constant map may be one window's), once each
    for window in windows_iter:
        if on_window:
            on_window(window.meta["window"])
        if window.times is not None:
            shown.update(zip(window.indices.tolist(), window.times.tolist()))
        exp = explain(model, window, method, target=target, refine=refine, working_size=working_size, **options)
        first = first or exp
        warned.update(dict.fromkeys(exp.meta.get("warnings") or []))
        if size is None:
            size = _display_size(window.height, window.width, display_side)
        maps = resize_maps(exp.spatial, size)
        new = [k for k, i in enumerate(window.indices) if int(i) not in frames]
        if new:
            small = resize_frames(window.uint8()[new], size)
            for k, rgb in zip(new, small):
                frames[int(window.indices[k])] = rgb
        # A video shorter than a window fills it with repeats (3 frames: #0, #1, #2 ×6): each
        # source frame counts once per window, with the share of all its places and the mean of
        # their maps, relative to the window's average *frame* (its first place's share × 8 made
        # the only frame of a one-frame video 1.24 times its window's average, not 1).
        sources, place_of = np.unique(window.indices, return_inverse=True)
        shares = np.bincount(place_of, weights=exp.temporal.astype(np.float64), minlength=sources.size)
        places = np.bincount(place_of, minlength=sources.size)
        for u, i in enumerate(sources.tolist()):
            where = place_of == u
            own = maps[where].mean(0) if places[u] > 1 else maps[np.argmax(where)]
            hits[i] = hits.get(i, 0) + 1
            map_mean[i] = own if i not in map_mean else map_mean[i] + (own - map_mean[i]) / hits[i]
            rel_sum[i] = rel_sum.get(i, 0.0) + float(shares[u]) * sources.size
        while len(frames) * size[0] * size[1] * 7 > _HELD_BYTES and max(size) > _LEAST_SIDE:
            size = (max(1, round(size[0] / 2)), max(1, round(size[1] / 2)))
            _shrink(frames, map_mean, size)
        top = int(np.argmax(exp.probs))
        ts = [seconds(int(window.indices[0])), seconds(int(window.indices[-1]))]
        results.append(WindowResult(
            index=int(window.meta["window"]), frame_indices=window.indices.copy(), start_s=ts[0], end_s=ts[1],
            target=exp.target, label=exp.label, score=exp.score, predicted=top,
            predicted_label=model.labels[top], predicted_score=float(exp.probs[top]),
            temporal=exp.temporal.copy(), cost=exp.cost,
            resolved_options=dict(exp.meta.get("resolved_options") or {})))
    if first is None:
        raise InputError(f"{source}: no frames to explain")
    order = sorted(frames)
    spatial = _stack(map_mean, order, np.float32)
    peak = float(spatial.max())
    if peak > 0:
        spatial /= peak
    index = np.asarray(order, dtype=np.int64)
    meta = {k: v for k, v in first.meta.items() if not isinstance(v, np.ndarray)}
    # the choices every window shares (a window's own are in its WindowResult)
    common = {k: v for k, v in results[0].resolved_options.items()
              if all(r.resolved_options.get(k) == v for r in results)}
    meta.pop("resolved_options", None)
    if common:
        meta["resolved_options"] = common
    meta.update(window_stride=window_stride or model.num_frames, frame_step=frame_step,
                num_frames=model.num_frames)
    if warned:
        meta["warnings"] = list(warned)
    return VideoExplanation(
        method=first.method, model=model.name, windows=results, frames=_stack(frames, order, np.uint8),
        frame_indices=index, times=np.array([_or(seconds(int(i)), float(i)) for i in index], dtype=np.float64),
        spatial=spatial,
        temporal=np.asarray([rel_sum[i] / hits[i] for i in order], dtype=np.float32), fps=fps,
        source=source, options=dict(first.options), meta=meta)


def _shrink(frames: dict[int, np.ndarray], maps: dict[int, np.ndarray], size: tuple[int, int]) -> None:
    """Resize the held frames ``(h, w, 3)`` and maps ``(h, w)`` to ``size`` in place, a few hundred
    at a time (their float copies for resizing take 4-12 times their bytes)."""
    from .core.resize import resize_frames, resize_maps

    keys = list(frames)
    for a in range(0, len(keys), 256):
        chunk = keys[a:a + 256]
        small = resize_frames(np.stack([frames[i] for i in chunk]), size)
        small_maps = resize_maps(np.stack([maps[i] for i in chunk]).astype(np.float32), size)
        for i, rgb, m in zip(chunk, small, small_maps):
            frames[i], maps[i] = rgb, m


def _stack(held: dict[int, np.ndarray], order: list[int], dtype) -> np.ndarray:
    """The held arrays in ``order`` as one array, emptying ``held`` as it goes (``np.stack`` would
    hold both copies of the whole video at once)."""
    out = np.empty((len(order), *held[order[0]].shape), dtype=dtype)
    for j, i in enumerate(order):
        out[j] = held.pop(i)
    return out


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _display_size(h: int, w: int, side: int) -> tuple[int, int]:
    if max(h, w) <= side:
        return h, w
    s = side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def explain_videos(model: VideoModel, video, methods: Sequence[str], **kwargs) -> list[VideoExplanation]:
    """:func:`explain_video` with each of ``methods`` (per-method options as ``options={name: {...}}``)."""
    per_method = kwargs.pop("options", None) or {}
    return [explain_video(model, video, name, **kwargs, **per_method.get(name, {})) for name in methods]
