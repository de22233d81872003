"""Checking what a reader is asked for, shared by :func:`~videoxai.data.video.read_video` and
:func:`~videoxai.data.video_windows.sliding_windows`.

Counts must be positive integers; a time range ``[start, end)`` becomes seconds from the
stream's first frame, with a frame number (``"60"``) resolved to that frame's time by the file's
packets (the frame rate may vary). A bad value is a :class:`~videoxai.errors.VideoReadError`
naming the file, as is a range in which no frame lies (:func:`check_nonempty`) or one frame only
(:func:`check_moving`).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from ..errors import InputError, VideoReadError
from .container import open_video, packet_times, probe
from .streams import shown_path
from .times import FrameNumber, parse_time

def check_count(path, value, name: str, error=VideoReadError) -> int | None:
    """``value`` as an ``int`` (``None`` stays ``None``); ``error`` naming ``path`` and the argument
    ``name`` when it is not a positive integer (a ``bool`` is not one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{shown_path(path)}: {name} must be a positive integer, got {value!r}")
    if value < 1:
        raise error(f"{shown_path(path)}: {name} must be >= 1, got {value}")
    return int(value)


def check_range(path, start, end) -> tuple[float, float]:
    """``[start, end)`` as seconds from the stream's first frame, ``(0, inf)`` where not given: numbers
    are seconds, text is read by :func:`~videoxai.data.times.parse_time` (``"60"`` is frame 60,
    ``"2.5s"`` 2.5 s) and a frame number becomes that frame's time."""
    if isinstance(start, (str, bool)) or isinstance(end, (str, bool)):
        # "60" is frame 60 and "2.5s" 2.5 s, as in explain_video and the CLI; float("60") would
        # silently read a frame number as seconds (and float(True) a flag as 1 s)
        fps = probe(path)["fps"]
        try:
            start, end = parse_time(start, fps, "start"), parse_time(end, fps, "end")
        except InputError as e:
            raise VideoReadError(f"{shown_path(path)}: {e}") from None
    given = start, end
    start, end = _at_frames(path, start, end)
    try:
        lo = 0.0 if start is None else float(start)
        hi = float("inf") if end is None else float(end)
    except (TypeError, ValueError):
        raise VideoReadError(f"{shown_path(path)}: start and end must be times in seconds, got "
                             f"{start!r} and {end!r}") from None
    if not (np.isfinite(lo) and lo >= 0):
        raise VideoReadError(f"{shown_path(path)}: start must be a time >= 0 in seconds, got {start!r}")
    if np.isnan(hi) or lo >= hi:
        # frames named as the user gave them: "start (0.3 s) must be before end (0.2 s)" answered --start 3 --end 2
        raise VideoReadError(f"{shown_path(path)}: start ({_position(given[0], lo)}) must be before end ({_position(given[1], hi)})")
    return lo, hi


def _position(given, seconds: float) -> str:
    """A range boundary for a message: ``"frame 3, 0.3 s"`` for a frame number, else ``"0.3 s"``."""
    return f"frame {given.frame}, {seconds:g} s" if isinstance(given, FrameNumber) else f"{seconds:g} s"


def _range_words(path: Path, given: tuple | None, lo: float, hi: float) -> str:
    """The range ``[lo, hi)`` for a message, its boundaries as ``given`` (``(start, end)`` as the
    caller gave them): ``"[1.9, inf) s"`` for seconds, ``"from frame 19 (1.9 s) to the end"`` where
    a boundary is a frame number (text like ``"19"``, or a :class:`FrameNumber`); ``--start 19``
    was answered in seconds only, naming no frame the user gave."""
    start, end = given if given is not None else (None, None)
    if isinstance(start, str) or isinstance(end, str):
        try:
            fps = probe(path)["fps"]
            start, end = parse_time(start, fps, "start"), parse_time(end, fps, "end")
        except (InputError, VideoReadError):
            start = end = None
    if not isinstance(start, FrameNumber) and not isinstance(end, FrameNumber):
        return f"[{lo:g}, {hi:g}) s"

    def word(boundary, seconds: float, open_end: str) -> str:
        if isinstance(boundary, FrameNumber):
            return f"frame {boundary.frame} ({seconds:g} s)" if np.isfinite(seconds) else f"frame {boundary.frame}"
        return open_end if boundary is None else f"{seconds:g} s"

    excluded = "" if end is None else " (end excluded)"
    return f"from {word(start, lo, 'the start')} to {word(end, hi, 'the end')}{excluded}"


def _at_frames(path: Path, start, end):
    """``start`` and ``end`` with frame numbers (:class:`FrameNumber`) replaced by those frames'
    times, so that ``start="60"`` starts at frame 60 whatever the frame rate does; ``(n - 0.5) /
    fps`` picked the wrong frames once the rate varied (a GIF's, a phone's). A frame past the last
    starts after it (an empty range), or ends nothing; without timestamps the seconds stay."""
    if not isinstance(start, FrameNumber) and not isinstance(end, FrameNumber):
        return start, end
    times = packet_times(path)
    if not times or times[0] is None:
        return start, end
    if isinstance(start, FrameNumber):
        if start.frame >= len(times):
            # said in frames: "[4.95, inf) s; the video is 1.20 s long" answered --start 50
            raise VideoReadError(f"{shown_path(path)}: no frame in the time range: start frame {start.frame} is past the "
                                 f"video's last frame, {len(times) - 1}")
        start = times[start.frame]
    if isinstance(end, FrameNumber):
        end = times[end.frame] if end.frame < len(times) else None
    return start, end


def check_decoded(path: Path, reported: int, count: int, missing: int = 0) -> None:
    """The error for a file whose index lists ``reported`` frames (0: no count) where only
    ``count`` could be decoded (a margin of 2 frames or 2 %: counts of some containers are
    approximate), or where the data of ``missing`` of them lies past the file's end (no margin:
    :func:`~videoxai.data.container.cut_off_frames`). A download cut off after the index (an mp4
    with the index first, as ``+faststart`` writes it) loses the frame data at its end; cut
    between two frames, it demuxes and decodes without an error to the point where it stops, and
    was read as a shorter video; with B-frames, cut a frame or two short, as a video missing a
    frame near its end (within the margin). A count above the file's size in bytes is no count
    (a frame takes a byte at least): a damaged or forged AVI header said 2**31 − 1 frames for 12
    that decode whole."""
    if reported > path.stat().st_size:
        return
    if missing and not reported:  # a fragmented mp4 counts its frames nowhere but in its fragments
        raise VideoReadError(f"{shown_path(path)}: truncated video: the file ends before the data of {missing} of the frames "
                             f"its index lists; {count} could be decoded")
    if reported and (count < reported - max(2, reported // 50) or (missing and count < reported)):
        cut = f" (the file ends before the data of {missing} of them)" if missing else ""
        raise VideoReadError(f"{shown_path(path)}: truncated video: the container lists {reported} frames "
                             f"but only {count} could be decoded{cut}")


def check_nonempty(path: Path, count: int, ranged: bool, lo: float, hi: float, given: tuple | None = None) -> None:
    """The error for a read that found no frame (``count == 0``): in the range ``[lo, hi)`` (with the
    video's length, to say where its frames are) when ``ranged``, else in the whole file.
    ``given``: ``(start, end)`` as the caller gave them, so that a frame number is named as one
    (:func:`_range_words`)."""
    if count:
        return
    if ranged:
        try:
            length = probe(path)["duration"]
        except VideoReadError:
            length = None
        known = f"; the video is {length:.2f} s long" if length else ""
        raise VideoReadError(f"{shown_path(path)}: no frame in the time range {_range_words(path, given, lo, hi)}{known}")
    if _holds_no_frame(path):
        # an mkv or mp4 with a video track but no frame in it (a recording stopped before its
        # first frame, a screen recorder that captured sound only) is not a file that fails to decode
        raise VideoReadError(f"{shown_path(path)}: its video stream holds no frame (a recording that stopped before its "
                             "first frame?)")
    raise VideoReadError(f"{shown_path(path)}: the video has no decodable frame")


def _holds_no_frame(path: Path) -> bool:
    """Whether the video stream has no frame at all: no packet, and no count in the header
    (which an mp4 cut after its index keeps). A program stream cut inside its first frame has
    packets: it is a cut file, not an empty one."""
    try:
        if probe(path)["frames"]:
            return False
        with open_video(path) as (container, stream):
            return not any(packet.size for packet in container.demux(stream))
    except (VideoReadError, av.FFmpegError, OSError):
        return False


def check_moving(path: Path, count: int, ranged: bool, lo: float, hi: float, given: tuple | None = None) -> None:
    """The error for a read that found one frame (``count == 1``): a still picture (a PNG or JPEG,
    a one-frame video) or a range holding one frame. It was sampled into ``num_frames`` copies of
    that frame and explained as a video. A frame given as an array is a one-frame clip, which only
    a model that takes any number of frames accepts; repeated to the model's frames
    (``np.repeat(frame[None], model.num_frames, axis=0)``) it is explained as a still video, as
    is a stream's frame. ``given`` as for :func:`check_nonempty`."""
    if count != 1:
        return
    need = "a video classifier needs a moving clip of 2 frames or more"
    if ranged:
        raise VideoReadError(f"{shown_path(path)}: only 1 frame in the time range {_range_words(path, given, lo, hi)}; {need}: "
                              "widen the range")
    raise VideoReadError(f"{shown_path(path)}: the file decodes to 1 frame (a still picture); {need}. To explain a single "
                         f"image anyway, repeat its frame into a clip: "
                         f"vx.explain(model, np.repeat(frame[None], model.num_frames, axis=0))")
