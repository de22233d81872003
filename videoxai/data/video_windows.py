"""Sliding windows over a video file or a clip in memory: a video longer than a model's input, in pieces.

:func:`sliding_windows` decodes a file as a stream and never holds it whole: at most one window's
frames are in memory. Where windows start and end is :class:`~videoxai.data.windows.WindowPlanner`'s
rule, shared with the stream service; this module keeps the frames and makes the clips.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from ..clip import Clip
from ..errors import InputError, VideoReadError
from .container import avi_miscount, check_path, cut_off_frames, open_video, shown_frames, warn_avi_miscount
from .decoder import MAX_PIXELS, Decoder, frames_from
from .frame_folder import (PictureReader, check_frame_rate, check_pictures_move, frame_range, frame_series,
                           names_frame_series)
from .read_arguments import check_count, check_decoded, check_moving, check_nonempty, check_range
from .streams import shown_path
from .windows import Tail, WindowPlanner, WindowSpan

def sliding_windows(path_or_clip: str | Path | Clip, num_frames: int, stride: int | None = None, *,
                    frame_step: int = 1, max_side: int | None = None, start: float | None = None,
                    end: float | None = None, tail: Tail = "pad",
                    max_pixels: int | None = MAX_PIXELS, fps: float | None = None) -> Iterator[Clip]:
    """Windows of ``num_frames`` consecutive (sub-sampled) frames, decoded as a stream.

    The video is read frame by frame and never held whole: at most ``num_frames`` frames are in
    memory. Frames are first sub-sampled by ``frame_step`` (every ``frame_step``-th frame of the
    file or clip);
    windows then start every ``stride`` sub-sampled frames (default ``num_frames``: no overlap;
    smaller: overlapping; larger: gaps). Where windows start and end is decided by
    :class:`~videoxai.data.windows.WindowPlanner`, shared with the stream service.

    By default (``tail="pad"``) the last window is **padded by repeating the last frame** when the
    video ends inside it, so every window has exactly ``num_frames`` frames; its ``indices`` show
    the repeated source index and ``meta["padding"]`` how many frames were added. With
    ``tail="shift"`` the last window is instead the last ``num_frames`` frames (no repeats). A
    window is emitted only if it holds a frame no earlier window reached, so the end of the video
    is never reported twice. A video shorter than one window gives one padded window; a file of
    one frame (a still picture), or a range holding one, is refused as by
    :func:`~videoxai.data.video.read_video`, unless ``num_frames`` is 1 (a stream's reading); so is
    a ``frame_step`` that keeps one frame of a file, range or clip of more (an
    :class:`~videoxai.errors.InputError`, before that frame's window is given out).

    Args:
        path_or_clip: a video file, a folder of frames (or a glob naming one series in it, as
            :func:`~videoxai.data.video.read_video` reads them) or a :class:`~videoxai.Clip` already
            in memory.
        num_frames: frames per window.
        stride: sub-sampled frames between window starts.
        frame_step: take every ``frame_step``-th frame.
        max_side: shrink large frames (files only, as in :func:`~videoxai.data.video.read_video`).
        start, end: time range (files only): seconds or a frame number, as in :func:`~videoxai.data.video.read_video`.
        tail: ``"pad"`` or ``"shift"`` (see above).
        max_pixels: refuse larger decoded frames (files only, as in :func:`~videoxai.data.video.read_video`).
        fps: a folder of frames' frame rate (as in :func:`~videoxai.data.video.read_video`).

    Yields:
        Clips with ``fps`` the source frame rate, ``indices`` the source frame indices, ``times``
        when each frame is shown (as :func:`~videoxai.data.video.read_video` gives them; ``None``
        where a frame has no timestamp) and ``meta = {"window": k, "start": first sub-sampled
        position, "padding": p}``.
    """
    is_clip = isinstance(path_or_clip, Clip)
    name = (path_or_clip.source or "clip") if is_clip else path_or_clip
    error = InputError if is_clip else VideoReadError
    num_frames = check_count(name, num_frames, "num_frames", error)
    stride = num_frames if stride is None else check_count(name, stride, "stride", error)
    frame_step = check_count(name, frame_step, "frame_step", error)
    if tail not in ("pad", "shift"):
        raise error(f"{shown_path(name)}: tail must be 'pad' or 'shift', got {tail!r}")
    if is_clip:
        if start is not None or end is not None:
            raise InputError("start and end apply to video files; select a clip's frames with clip.subclip")
        if max_side is not None:  # it was ignored: the windows kept the clip's full size
            raise InputError("max_side applies to video files; a clip's frames are windowed at their size")
        clip = path_or_clip
        _check_step(name, len(clip), frame_step, num_frames, False, InputError)
        source = ((int(i), clip.frames[k]) for k, i in enumerate(clip.indices))
        shown = None if clip.times is None else dict(zip(clip.indices.tolist(), clip.times.tolist()))
        return _timed(_windows(source, num_frames, stride, frame_step, tail, clip.source, lambda: clip.fps), shown)
    if names_frame_series(path_or_clip):
        return _folder_windows(path_or_clip, num_frames, stride, frame_step, tail, max_side, max_pixels, start, end,
                               fps)
    path = check_path(path_or_clip)
    if fps is not None:
        raise VideoReadError(f"{shown_path(path)}: fps applies to a folder of frames; a video file has its own frame "
                             "rate")
    max_side = check_count(path, max_side, "max_side")
    max_pixels = check_count(path, max_pixels, "max_pixels")
    lo, hi = check_range(path, start, end)
    return _file_windows(path, num_frames, stride, frame_step, tail, max_side, max_pixels, lo, hi, (start, end))


def _timed(windows: Iterator[Clip], shown: dict[int, float | None] | None,
           timed: Callable[[], bool] = lambda: True) -> Iterator[Clip]:
    """``windows`` with ``times`` from ``shown`` (source index → seconds, filled as frames are
    read; entries before a window's first frame are dropped once it is out, so that a long video's
    times are not held whole), unless ``timed()`` says the file has no timestamps (its decoder
    counts ``index / fps``, which :func:`~videoxai.data.video.read_video` gives no clip either).
    The entries are dropped in a file without timestamps too: there they were kept, a time per
    frame of the whole video (a raw ``.h264`` stream's windows grew by about 90 bytes a frame)."""
    for window in windows:
        if shown is not None:
            if timed():
                seconds = [shown.get(i) for i in window.indices.tolist()]
                if None not in seconds:
                    window = replace(window, times=np.asarray(seconds, dtype=np.float64))
            first = int(window.indices.min())
            for i in [i for i in shown if i < first]:
                del shown[i]
        yield window


def _file_windows(path: Path, num_frames: int, stride: int, frame_step: int, tail: Tail,
                  max_side: int | None, max_pixels: int | None, lo: float, hi: float,
                  given: tuple) -> Iterator[Clip]:
    dec = Decoder(path, max_pixels)
    ranged = lo > 0 or hi < float("inf")
    with open_video(path) as (_container, stream):
        reported = 0 if ranged else shown_frames(stream)
        header = 0 if ranged else avi_miscount(stream)  # a whole AVI's header count, not used
        missing = 0 if ranged else cut_off_frames(stream)  # frames past the end of a cut mp4
    decoded, ended = 0, False

    def source() -> Iterator[tuple[int, av.VideoFrame]]:
        nonlocal decoded, ended
        for index, t, frame in frames_from(dec, lo):
            if t >= hi:
                break
            if t >= lo:
                decoded += 1
                shown[index] = t
                yield index, frame
        ended = True

    yielded, shown = False, {}
    for window in _timed(_windows(source(), num_frames, stride, frame_step, tail, str(path),
                                  lambda: dec.header.fps if dec.header else None,
                                  convert=lambda f: dec.to_rgb(f, max_side)), shown, lambda: dec.timed):
        if ended:  # a still picture's one frame came as a window padded with copies of it
            check_decoded(path, reported, decoded, missing)  # unless the file was cut short: that says more
            check_moving(path, decoded, ranged, lo, hi, given)
            _check_step(path, decoded, frame_step, num_frames, ranged, InputError)
        yielded = True
        yield window
    if not yielded:
        check_nonempty(path, 0, ranged, lo, hi, given)
    # a file cut between two frames decodes without an error to where it stops: its windows
    # came as they were read, and the error after them says the rest of the video is missing
    check_decoded(path, reported, decoded, missing)
    warn_avi_miscount(path, header, decoded)


def _folder_windows(path, num_frames: int, stride: int, frame_step: int, tail: Tail, max_side, max_pixels,
                    start, end, fps) -> Iterator[Clip]:
    """:func:`sliding_windows` over a folder of pictures: each decoded when its frame is kept."""
    series = frame_series(path)
    max_side = check_count(series.source, max_side, "max_side")
    max_pixels = check_count(series.source, max_pixels, "max_pixels")
    fps = check_frame_rate(series.source, fps)
    positions = frame_range(series, start, end, fps)
    ranged = start is not None or end is not None
    if num_frames > 1:
        check_pictures_move(series, positions, ranged)
    _check_step(series.source, len(positions), frame_step, num_frames, ranged, InputError)
    windows = _windows(((p, p) for p in positions), num_frames, stride, frame_step, tail, series.source,
                       lambda: fps, convert=PictureReader(series, max_side, max_pixels))
    return windows if fps is None else (replace(w, times=w.indices / fps) for w in windows)


def _check_step(name, count: int, frame_step: int, num_frames: int, ranged: bool, error: type[Exception]) -> None:
    """The error for a ``frame_step`` that keeps one of ``count`` frames (2 or more, up to
    ``frame_step``) for windows of ``num_frames`` > 1: the window was that frame repeated, a still
    picture explained as a video, which the readers refuse for a file or a range of one frame and
    :func:`~videoxai.timeline.explain_video` refused after explaining it (a 2-frame file with
    ``frame_step=3`` gave one window of frame #0 four times here). ``error``: the caller's
    argument errors' type."""
    if num_frames > 1 and frame_step > 1 and 1 < count <= frame_step:
        raise error(f"{shown_path(name)}: frame_step {frame_step} keeps 1 of the {count} frames of the video"
                    f"{' range' if ranged else ''}; a video classifier needs a moving clip of 2 frames or more: "
                    "give a smaller frame_step")


def _windows(source: Iterator[tuple[int, object]], num_frames: int, stride: int, frame_step: int,
             tail: Tail, name: str | None, get_fps: Callable[[], float | None],
             convert: Callable[[object], np.ndarray] = np.asarray) -> Iterator[Clip]:
    """Core of :func:`sliding_windows` over ``(source index, frame)`` pairs in order."""
    planner = WindowPlanner(num_frames, stride, tail)
    buf: deque[tuple[int, np.ndarray]] = deque(maxlen=num_frames)  # (source index, rgb) kept frames
    for n, (index, frame) in enumerate(source):
        if n % frame_step:
            continue
        keep, span = planner.push()
        if keep:
            buf.append((index, convert(frame)))
        if span is not None:
            yield _window(list(buf), span, get_fps(), name)
    span = planner.finish()
    if span is not None:
        yield _window(list(buf)[len(buf) - (span.stop - span.start):], span, get_fps(), name)


def _window(items: list[tuple[int, np.ndarray]], span: WindowSpan, fps, name) -> Clip:
    items = items + [items[-1]] * span.padding
    frames = np.stack([f for _, f in items])
    indices = np.asarray([i for i, _ in items], dtype=np.int64)
    return Clip(frames, fps=fps, indices=indices, source=name,
                meta={"window": span.index, "start": span.start, "padding": span.padding})
