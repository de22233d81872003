"""Reading video files, on PyAV (FFmpeg) only.

Reading never keeps more frames in memory than the caller asked for: :func:`read_video` with
``num_frames=N`` converts to RGB only the N frames it keeps. Where the file has keyframes often
enough that seeking to the keyframe before each wanted frame decodes less than half of what
reading in order would (a long video), it seeks (:mod:`~videoxai.data.keyframes`); otherwise it
decodes the file once, in order (the decoder has to run over the frames in between, because
inter-coded frames depend on them). To choose N frames uniformly it must know how many frames there are; the container's count
is used when it reports one (mp4, mov, avi), otherwise a demux-only pass (packets, no decoding)
counts them (mkv, webm, gif). If decoding then finds a different number of frames than expected,
the choice is redone on the true count, with a second decoding pass only when a frame it needs
was not kept.

The video is the stream FFmpeg's players would show (:func:`video_stream`), never a cover
picture: an audio file with cover art has no video.

Which stream is the video and how its pictures become frames as players show them is
:mod:`~videoxai.data.streams`; writing is :mod:`~videoxai.data.video_writer`.

Every failure a user can cause (a missing file, a directory, a file that is not a video, a
truncated or corrupt stream, a stream with no decodable frame, bad arguments) raises
:class:`~videoxai.errors.VideoReadError` with the file's name in the message, never a raw PyAV
exception. A file cut short is known by the length its header gives (mp4, mov, avi frame counts;
mkv and webm durations); where the container gives none before the frames (MPEG-TS, GIF,
fragmented MP4, a browser's WebM recording) it is read as the shorter video it has become.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from ..clip import Clip
from ..errors import InputError, VideoReadError
from .streams import (PictureConverter, display_size, ffmpeg_reason, quarter_turns, sample_aspect,
                      video_stream)
from .times import FrameNumber, parse_time
from .keyframes import PacketIndex, SeekMiss, SeekStart, decode_at, index_packets, seconds, seek_plan, start_at
from .video_writer import WRITERS, write_video  # noqa: F401  (part of this module's API, as before)
from .windows import Tail, WindowPlanner, WindowSpan

__all__ = ["read_video", "sliding_windows", "write_video", "probe", "uniform_indices", "video_stream",
           "display_size", "frame_times", "PictureConverter", "sample_aspect", "quarter_turns", "WRITERS",
           "FrameTooLargeError", "MAX_PIXELS"]

#: default limit on the pixels of one decoded frame (8192 × 8192): a file whose later frames are
#: far larger than its header says (a "decompression bomb") fails instead of exhausting memory
MAX_PIXELS = 8192 * 8192


class FrameTooLargeError(VideoReadError):
    """A decoded frame exceeds the pixel limit (``max_pixels``)."""


# ----------------------------------------------------------------------------------------------
# sampling


def uniform_indices(count: int, num: int) -> np.ndarray:
    """``num`` positions spread uniformly over ``range(count)``, first and last frame included.

    ``round(linspace(0, count - 1, num))`` (PyTorchVideo's ``UniformTemporalSubsample`` up to the
    rounding). When ``num > count`` positions repeat: a one-frame video sampled with ``num=8``
    gives eight copies of frame 0, so a model that needs ``T`` frames can still run on it.
    """
    if count < 1 or num < 1:
        raise ValueError(f"uniform_indices needs count >= 1 and num >= 1, got {count}, {num}")
    return np.floor(np.linspace(0.0, count - 1, num) + 0.5).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# opening and decoding


@dataclass(frozen=True)
class _Header:
    """What the container says about its first video stream, before any decoding."""

    frames: int          # 0 when the container does not report a count
    fps: float | None
    width: int
    height: int
    duration: float | None  # the stream's, else the container's (which may count from 0)
    codec: str
    container: str
    stream_duration: bool = False  # whether ``duration`` is the stream's own
    sar: Fraction = Fraction(1)   # sample (pixel) aspect ratio, 1 for square pixels


def _check_path(path: str | bytes | os.PathLike) -> Path:
    """``path`` (text, bytes as ``os.fsdecode`` reads them, or path-like) as an existing,
    non-empty file's :class:`Path`; :class:`VideoReadError` naming what is wrong otherwise."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise VideoReadError(f"a video path must be a str, bytes or os.PathLike, got {type(path).__name__}")
    p = Path(os.fsdecode(path))
    if not p.exists():
        raise VideoReadError(f"{p}: no such file")
    if p.is_dir():
        raise VideoReadError(f"{p}: is a directory, not a video file")
    if p.stat().st_size == 0:
        raise VideoReadError(f"{p}: the file is empty")
    return p


#: FFmpeg's decoders of text: they draw a text file's characters as video frames
_TEXT_ART = frozenset({"ansi", "bintext", "xbin", "idf"})


@contextmanager
def _open(path: Path, max_pixels: int | None = None
          ) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``path`` and its first video stream, turning every FFmpeg failure into a clear error.

    ``max_pixels``: FFmpeg's own per-frame limit, checked by the decoder when it reads a frame's
    size, before it allocates the frame (so a bomb costs no memory).
    """
    _refuse_a_playlist(path)
    try:
        # "file:": FFmpeg reads a name with a colon as a protocol (cam1:take2.mp4 was "Protocol
        # not found", http:x.mp4 a network request, pipe:0.mp4 standard input); this is a file
        container = av.open(f"file:{path}", mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoReadError(f"{path}: not a readable video file ({ffmpeg_reason(e)})") from None
    try:
        stream = video_stream(container)
        if stream is None:
            covers = " (only a cover picture: an audio file?)" if container.streams.video else ""
            raise VideoReadError(f"{path}: the file has no video stream{covers}")
        if stream.codec_context.name in _TEXT_ART:
            # FFmpeg opens .txt, .nfo, .asc, .diz (and .bin, .adf, .idf, .xb) as "ANSI art" videos
            # of their characters: a text file given by mistake was explained as a video
            raise VideoReadError(f"{path}: a text file, not a video (FFmpeg would draw its characters "
                                 "as pictures)")
        if stream.codec_context.name == "webp" and _animated_webp(path):
            raise VideoReadError(f"{path}: an animated WebP, whose frames FFmpeg cannot decode; convert it "
                                 "to .gif or .mp4 first (Pillow reads it)")
        # Slice threading only: FFmpeg's frame threading swallows the decoder's error at the
        # point where a truncated file ends, which would turn a damaged file into a short clip.
        stream.thread_type = "SLICE"
        if max_pixels is not None:
            stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(int(max_pixels))}
        yield container, stream
    finally:
        container.close()


#: the first bytes by which FFmpeg's concat demuxer knows a playlist, whatever the file's name
CONCAT_MAGIC = b"ffconcat version 1.0"


def _refuse_a_playlist(path: Path) -> None:
    """:class:`VideoReadError` for an FFmpeg concat playlist, before FFmpeg opens it: it opens the
    files the playlist names while probing, and one that names itself was opened again and again
    until the process had no file descriptor left ("Too many open files", other work failing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(CONCAT_MAGIC))
    except OSError:
        return  # FFmpeg's own open says what is wrong with the path
    if head == CONCAT_MAGIC:
        raise VideoReadError(f"{path}: an FFmpeg concat playlist, not a video (read the videos it lists)")


def _animated_webp(path: Path) -> bool:
    """Whether ``path`` is an animated WebP (the animation flag of its extended header).

    FFmpeg's WebP decoder reads still pictures only: an animated one (what browsers, chat apps
    and :func:`write_video`'s ``.webp`` make) failed as "truncated, corrupt or in an unsupported
    format", as if the file were damaged.
    """
    with open(path, "rb") as f:
        head = f.read(21)
    return head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20] & 0x02)


def _header(container, stream, path: Path | None = None) -> _Header:
    """``path``: where the container gives no frame rate, the frame rate its packets' times give
    (:func:`_packets`, a demux pass remembered for the file)."""
    fps = _stream_rate(stream)
    if fps is None and path is not None:
        fps = _packets(path).rate
    tb = stream.time_base
    duration = None
    if stream.duration is not None and tb is not None:
        duration = float(stream.duration * tb)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    return _Header(frames=_shown_frames(stream), fps=fps, width=int(stream.codec_context.width or 0),
                   height=int(stream.codec_context.height or 0), duration=duration,
                   codec=stream.codec_context.name, container=container.format.name,
                   stream_duration=stream.duration is not None and tb is not None, sar=sample_aspect(stream))


def _stream_rate(stream) -> float | None:
    """The frames per second the container reports, or ``None``.

    The average rate where there is one; else FFmpeg's guess, unless the guess is merely the
    clock the timestamps count in: a variable-rate MPEG-TS stream has no average rate and a
    guess of 90000 (its 90 kHz clock), which made every frame number a few microseconds.
    """
    rate = stream.average_rate
    if stream.codec_context.name in ("gif", "apng") and stream.frames and stream.duration and stream.time_base:
        # FFmpeg's average for an animation is its first frame's delay: a GIF timed 3, 4, 3, 4, …
        # hundredths (30 fps) said 33.3 fps; its demuxer counts the frames and their whole length
        rate = Fraction(int(stream.frames)) / (stream.duration * stream.time_base)
    if not rate or rate <= 0:
        rate = stream.guessed_rate or stream.base_rate
        tb = stream.time_base
        if rate and tb and rate == 1 / tb and rate >= 1000:
            rate = None
    return float(rate) if rate and rate > 0 else None


def _shown_frames(stream) -> int:
    """The container's frame count less the frames its edit list cuts (0: no count).

    A clip cut from a longer recording without re-encoding (``ffmpeg -ss 10 -c copy``) starts
    between keyframes: its mp4 keeps the frames back to the keyframe, which the decoder needs,
    and an edit list marks them as not shown; FFmpeg drops them, as players do. The container's
    count includes them, so it was taken for a truncated file. The index that lists them is in
    the file's header: no packet is read. Frames a capture dropped count alike (below).
    """
    frames = int(stream.frames or 0)
    if frames:
        try:
            entries = stream.index_entries
            if len(entries) == frames:
                frames -= sum(1 for e in entries if e.is_discard)
            elif 0 < len(entries) < frames and stream.duration and \
                    entries[-1].timestamp - (stream.start_time or 0) + stream.duration / frames >= stream.duration:
                # an index that reaches the stream's end with fewer frames than the header counts:
                # a capture (AVI) stores each frame it missed as an empty chunk, which the index
                # skips and no decoder shows (a truncated file's index stops short of the end)
                frames = len(entries)
        except (AttributeError, av.FFmpegError):  # an older PyAV
            pass
    return frames


@dataclass(frozen=True)
class _Packets:
    """What demuxing the video stream's packets (no decoding) says about its frames."""

    times: tuple[float | None, ...]  # presentation times (s) from the first frame, sorted
    end: float | None                # when the last frame ends (s from the first frame)

    @property
    def rate(self) -> float | None:
        """The average frame rate over the frames' times, ``None`` for fewer than two frames."""
        if len(self.times) < 2 or self.times[-1] is None or self.times[-1] <= 0:
            return None
        return (len(self.times) - 1) / self.times[-1]


def _packets(path: Path) -> _Packets:
    """:func:`_demux` of ``path``, remembered for the few files read last (reading a file with no
    frame count, or no frame rate, consults it more than once)."""
    stat = path.stat()
    return _demux(str(path), stat.st_mtime_ns, stat.st_size)


def _packet_times(path: Path) -> tuple[float | None, ...]:
    """Presentation times (s) of the stream's frames from the first one (:func:`_demux`)."""
    return _packets(path).times


@lru_cache(maxsize=8)
def _demux(name: str, mtime_ns: int, size: int) -> _Packets:
    """Presentation times (s) of the stream's packets from its first frame (:func:`seconds`, as
    the decoder's frame times are), in presentation order, by demuxing only; ``None`` for every
    packet when some packet has no timestamp.

    One packet holds one frame for every codec we read (H.264/HEVC/VP8/VP9/AV1/MPEG-4/GIF
    frames; VP9 hidden frames travel inside superframes), so this counts frames without decoding.
    """
    path = Path(name)
    ticks: list[int | None] = []
    end = None
    last = None  # the end of the last frame (largest time), None where its packet has no duration
    with _open(path) as (container, stream):
        tb = stream.time_base
        declared = _declared_end(container, stream)
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or getattr(packet, "is_discard", False):  # the flush packet at
                    continue                                                # the end; edit-list cuts
                ts = packet.pts if packet.pts is not None else packet.dts
                ticks.append(ts if tb is not None else None)
                if ts is not None and packet.duration:
                    end = max(end, ts + packet.duration) if end is not None else ts + packet.duration
                if ts is not None and (last is None or ts >= last[0]):
                    last = (ts, packet.duration)
        except (av.FFmpegError, OSError) as e:
            raise VideoReadError(f"{path}: truncated or corrupt after {len(ticks)} packets "
                                 f"({ffmpeg_reason(e)})") from None
    _check_whole(path, declared, seconds(sum(last), tb) if last and last[1] and tb is not None else None, len(ticks))
    if not ticks or any(t is None for t in ticks):
        return _Packets((None,) * len(ticks), None)
    ticks.sort()
    times = tuple(seconds(t - ticks[0], tb) for t in ticks)
    if end is None or end <= ticks[-1]:  # no durations: the last frame lasts as long as the average
        end = None if len(times) < 2 else times[-1] * len(times) / (len(times) - 1)
    else:
        end = seconds(end - ticks[0], tb)
    return _Packets(times, end)


def _declared_end(container, stream) -> float | None:
    """When the stream's last frame ends (seconds on its own clock, from 0) by the duration
    Matroska and WebM muxers (FFmpeg, OBS, HandBrake, mkvmerge) write in each track's tags, or
    ``None``; a recording never finished says 0 or nothing. Other containers: ``None`` (a tag
    copied from an mkv into, say, a NUT file describes the source, not the copy)."""
    if not container.format.name.startswith("matroska"):
        return None
    text = (stream.metadata or {}).get("DURATION") or ""
    m = re.fullmatch(r"\s*(\d+):(\d\d):(\d\d(?:\.\d*)?)\s*", text)
    if not m:
        return None
    declared = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return declared if declared > 0 else None


def _check_whole(path: Path, declared: float | None, end: float | None, frames: int) -> None:
    """:class:`VideoReadError` where the stream's ``frames`` stop well before the ``declared`` end.

    An mkv or webm download cut short demuxes and decodes without an error to the point where it
    stops: it was read as a shorter video (half the file, half the frames, ``num_frames`` spread
    over them). Its header, written first, still says how long the video is. ``end``: when its
    last frame ends (seconds from 0, as ``declared`` counts), ``None`` where that frame's packet
    carries no duration (a frame held long would look like a cut: no verdict). The margin is two
    frames or 2 %, whichever is longer.
    """
    if declared is None or (end is None and frames):
        return
    end = end or 0.0
    if end < declared - max(0.02 * declared, 2 * end / max(frames, 1)):
        found = f"its frames end at {end:.2f} s" if frames else "no frame of it is left"
        raise VideoReadError(f"{path}: truncated video: its header says the video lasts until {declared:.2f} s "
                             f"but {found}")


class _Decoder:
    """Decodes one file in presentation order; yields ``(index, time, frame)`` lazily.

    ``index`` counts every decoded frame from the start of the stream; ``time`` is the frame's
    presentation time in seconds relative to the stream's first frame (``index / fps`` when the
    container gives no timestamps).
    """

    def __init__(self, path: Path, max_pixels: int | None = MAX_PIXELS) -> None:
        self.path = path
        self.max_pixels = max_pixels
        self.header: _Header | None = None
        self._picture: PictureConverter | None = None  # made at the first frame, with the header's SAR

    def _too_large(self, index: int, detail: str) -> FrameTooLargeError:
        return FrameTooLargeError(f"{self.path}: frame {index} {detail} the limit of {self.max_pixels} pixels "
                                  "per frame (the stream's header said "
                                  f"{self.header.width}x{self.header.height})")

    def frames(self, start: SeekStart | None = None) -> Iterator[tuple[int, float, av.VideoFrame]]:
        """With ``start``, decoding begins at its keyframe and the frames before its first frame
        are skipped; :class:`SeekMiss` (before any frame is yielded) when that frame does not come."""
        with _open(self.path, self.max_pixels) as (container, stream):
            self.header = h = _header(container, stream, self.path)
            tb = stream.time_base
            index = 0
            origin = None  # the first frame's pts, from which times count
            declared, last_end = _declared_end(container, stream), None  # the end the header says, the frames' end
            if start is not None:
                container.seek(start.keyframe_pts, stream=stream, backward=True, any_frame=False)
                index, origin = start.first, start.origin_pts
            try:
                for frame in container.decode(stream):
                    if self.max_pixels is not None and frame.width * frame.height > self.max_pixels:
                        # decoders that ignore FFmpeg's limit: refuse right after decoding
                        raise self._too_large(index, f"is {frame.width}x{frame.height}, over")
                    if start is not None:  # decoded only to reach the range's first frame
                        if frame.pts is not None and frame.pts < start.first_pts:
                            continue
                        if frame.pts != start.first_pts:
                            raise SeekMiss(f"seeking did not reach frame {start.first}")
                        start = None
                    if frame.pts is not None and tb is not None:
                        origin = frame.pts if origin is None else origin
                        t = seconds(frame.pts - origin, tb)
                    else:
                        t = index / h.fps if h.fps else float(index)
                    if frame.pts is not None and tb is not None and (last_end is None or frame.pts >= last_end[0]):
                        last_end = (frame.pts, frame.duration)  # the last frame, and how long it lasts
                    yield index, t, frame
                    index += 1
                # the whole stream was decoded (a consumer that stops early never gets here)
                _check_whole(self.path, declared, seconds(sum(last_end), tb) if last_end and last_end[1] else None,
                             index)
            except (av.FFmpegError, OSError) as e:
                if self.max_pixels is not None and getattr(e, "errno", None) == 22:
                    # EINVAL: how FFmpeg's decoders refuse a frame over max_pixels (or bad data)
                    raise self._too_large(index, "could not be decoded within") from None
                if index == 0:
                    raise VideoReadError(f"{self.path}: cannot decode its {h.codec} video stream; the "
                                         "file is truncated, corrupt or in an unsupported format "
                                         f"({ffmpeg_reason(e)})") from None
                raise VideoReadError(f"{self.path}: truncated or corrupt video, decoding failed "
                                     f"after {index} frames ({ffmpeg_reason(e)})") from None

    def to_rgb(self, frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
        """``(H, W, 3)`` uint8 as players show it (:class:`PictureConverter`); every frame gets the
        first frame's size and turn."""
        if self._picture is None:
            sar = self.header.sar if self.header is not None else Fraction(1)
            self._picture = PictureConverter(max_side, sar)
        return self._picture(frame)


# ----------------------------------------------------------------------------------------------
# reading


def probe(path: str | Path) -> dict:
    """Describe a video, decoding at most its first frame.

    Returns:
        ``{"frames", "fps", "width", "height", "duration", "codec", "container"}``; ``width`` and
        ``height`` are those of the frames :func:`read_video` returns: upright (swapped for a clip
        whose display matrix turns it a quarter, as phones' portrait clips do) and in square
        pixels (:func:`display_size`: 853 × 480 for a 720 × 480 DVD picture shown at 16:9);
        ``frames`` is the container's count (less the frames an edit list hides) or, when it
        reports none, the number of packets (demux only); ``duration`` in seconds from the first
        frame to the end of the last (the span of its packets' times where a demux pass lists
        them, else the stream's, else ``frames / fps``); ``fps`` the container's average rate,
        else the one its packets' times give.
    """
    path = _check_path(path)
    with _open(path) as (container, stream):
        h = _header(container, stream, path)
        turns = _first_frame_turns(container, stream)
    packets = None if h.frames and h.stream_duration else _packets(path)
    frames = h.frames or len(packets.times)
    # the frames' own span wherever they were listed: the container's duration counts from 0 in
    # mkv, not from the first frame (a clip cut from 5 s on said 6.2 s for 1.2 s of frames), and an
    # MPEG program stream's estimate can be one frame (0.04 s for 1.2 s)
    duration = packets.end if packets is not None and packets.end is not None else h.duration
    if duration is None and h.fps:
        duration = frames / h.fps
    width, height = display_size(h.width, h.height, h.sar)
    width, height = (height, width) if turns % 2 else (width, height)
    return {"frames": frames, "fps": h.fps, "width": width, "height": height,
            "duration": duration, "codec": h.codec, "container": h.container}


def _first_frame_turns(container, stream) -> int:
    """:func:`quarter_turns` of the first frame (0 when none decodes): PyAV exposes the display
    matrix on decoded frames only, so the size a reader returns needs one decoded frame."""
    try:
        for frame in container.decode(stream):
            return quarter_turns(frame)
    except (av.FFmpegError, OSError):
        pass
    return 0


def frame_times(path: str | bytes | os.PathLike) -> np.ndarray | None:
    """Each frame's presentation time in seconds from the first frame, indexed as
    ``clip.indices`` are (demuxing only, no decoding); ``None`` for a file without timestamps.

    A clip's ``fps`` is the average rate: at a variable frame rate (phones, screen recordings,
    GIFs) ``index / fps`` is not when a frame is shown; ``frame_times(path)[clip.indices]`` is.
    """
    times = _packet_times(_check_path(path))
    if not times or times[0] is None:
        return None
    return np.asarray(times, dtype=np.float64)


def _check_count(path, value, name: str, error=VideoReadError) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{path}: {name} must be a positive integer, got {value!r}")
    if value < 1:
        raise error(f"{path}: {name} must be >= 1, got {value}")
    return int(value)


def _check_range(path, start, end) -> tuple[float, float]:
    if isinstance(start, (str, bool)) or isinstance(end, (str, bool)):
        # "60" is frame 60 and "2.5s" 2.5 s, as in explain_video and the CLI; float("60") would
        # silently read a frame number as seconds (and float(True) a flag as 1 s)
        fps = probe(path)["fps"]
        try:
            start, end = parse_time(start, fps, "start"), parse_time(end, fps, "end")
        except InputError as e:
            raise VideoReadError(f"{path}: {e}") from None
    given = start, end
    start, end = _at_frames(path, start, end)
    try:
        lo = 0.0 if start is None else float(start)
        hi = float("inf") if end is None else float(end)
    except (TypeError, ValueError):
        raise VideoReadError(f"{path}: start and end must be times in seconds, got "
                             f"{start!r} and {end!r}") from None
    if not (np.isfinite(lo) and lo >= 0):
        raise VideoReadError(f"{path}: start must be a time >= 0 in seconds, got {start!r}")
    if np.isnan(hi) or lo >= hi:
        # frames named as the user gave them: "start (0.3 s) must be before end (0.2 s)" answered --start 3 --end 2
        raise VideoReadError(f"{path}: start ({_position(given[0], lo)}) must be before end ({_position(given[1], hi)})")
    return lo, hi


def _position(given, seconds: float) -> str:
    """A range boundary for a message: ``"frame 3, 0.3 s"`` for a frame number, else ``"0.3 s"``."""
    return f"frame {given.frame}, {seconds:g} s" if isinstance(given, FrameNumber) else f"{seconds:g} s"


def _at_frames(path: Path, start, end):
    """``start`` and ``end`` with frame numbers (:class:`FrameNumber`) replaced by those frames'
    times, so that ``start="60"`` starts at frame 60 whatever the frame rate does; ``(n - 0.5) /
    fps`` picked the wrong frames once the rate varied (a GIF's, a phone's). A frame past the last
    starts after it (an empty range), or ends nothing; without timestamps the seconds stay."""
    if not isinstance(start, FrameNumber) and not isinstance(end, FrameNumber):
        return start, end
    times = _packet_times(path)
    if not times or times[0] is None:
        return start, end
    if isinstance(start, FrameNumber):
        if start.frame >= len(times):
            # said in frames: "[4.95, inf) s; the video is 1.20 s long" answered --start 50
            raise VideoReadError(f"{path}: no frame in the time range: start frame {start.frame} is past the "
                                 f"video's last frame, {len(times) - 1}")
        start = times[start.frame]
    if isinstance(end, FrameNumber):
        end = times[end.frame] if end.frame < len(times) else None
    return start, end


def read_video(path: str | bytes | os.PathLike, num_frames: int | None = None, *, start: float | None = None,
               end: float | None = None, max_side: int | None = None,
               max_pixels: int | None = MAX_PIXELS) -> Clip:
    """Decode a video file (mp4, mov, mkv, webm, avi, gif, ...) into a :class:`~videoxai.Clip`.

    Args:
        path: the file (a str, bytes or path-like).
        num_frames: how many frames to return, sampled uniformly over the file (or over
            ``[start, end)``) with the first and last frame included (:func:`uniform_indices`);
            ``None`` returns every frame. A video with fewer frames than ``num_frames`` is sampled
            with repetition (a one-frame video gives ``num_frames`` copies of it), so the clip
            always has exactly ``num_frames`` frames; ``clip.indices`` shows the repeats.
        start, end: optional time range, ``start`` included, ``end`` excluded, measured from
            the stream's first frame: seconds as numbers (``2.5``) or text (``"2.5s"``), or a
            frame number as text (``"60"``), as :func:`parse_time` reads them; a frame number
            means that frame, whose time is looked up (the frame rate may vary).
        max_side: if set, frames whose longer side exceeds it are shrunk (aspect ratio kept).
        max_pixels: refuse any decoded frame with more pixels (:class:`FrameTooLargeError`),
            checked frame by frame, since a stream's later frames may be larger than its header
            says; ``None``: no limit.

    Returns:
        A clip with ``frames`` uint8 ``(T, H, W, 3)``, upright as players show them (a
        container's display matrix, e.g. a phone's portrait clip, is applied: :func:`quarter_turns`)
        and in square pixels (an anamorphic DVD or DV picture is stretched to its display aspect
        ratio, as players do: :func:`display_size`),
        ``fps`` the *source* frame rate,
        ``indices`` each frame's index in the source video and ``source=str(path)``.

    Raises:
        VideoReadError: the file is missing, a directory, not a video, truncated or corrupt, has
            no decodable frame in the range, or the arguments are invalid.
    """
    path = _check_path(path)
    num_frames = _check_count(path, num_frames, "num_frames")
    max_pixels = _check_count(path, max_pixels, "max_pixels")
    max_side = _check_count(path, max_side, "max_side")
    lo, hi = _check_range(path, start, end)
    ranged = start is not None or end is not None

    def in_range(t: float) -> bool:
        return lo <= t < hi

    # How many frames lie in the range, before decoding: the container's count, else a demux pass.
    with _open(path) as (container, stream):
        reported = 0 if ranged else _shown_frames(stream)
    expected = reported or _count_in_range(_packet_times(path), in_range)
    expected = max(expected, 1)  # nothing found: decode anyway, so the error says why

    if num_frames is None:
        dec = _Decoder(path, max_pixels)
        # every frame takes a byte of the file at least: an AVI header that counted 2**31 frames
        # (damaged or forged) asked numpy for 6 TiB up front (MemoryError) for a 30-frame file
        kept, src = _FrameBuffer(min(expected, path.stat().st_size)), []
        for index, t, frame in _frames_from(dec, lo):
            if t >= hi:
                break
            if in_range(t):
                kept.append(dec.to_rgb(frame, max_side))
                src.append(index)
        _check_nonempty(path, len(src), ranged, lo, hi)
        return Clip(kept.array(), fps=dec.header.fps, indices=np.asarray(src), source=str(path))

    by_seeking = _read_seeking(path, num_frames, lo, hi, reported, max_side, max_pixels)
    if by_seeking is not None:
        return by_seeking
    wanted = uniform_indices(expected, num_frames)
    dec, kept, src, count = _decode_positions(path, set(wanted.tolist()), in_range, lo, hi, max_side, max_pixels)
    _check_nonempty(path, count, ranged, lo, hi)
    if reported and count < reported - max(2, reported // 50):
        # a cut-off download whose header survived: the index lists frames the data lacks
        raise VideoReadError(f"{path}: truncated video: the container lists {reported} frames "
                             f"but only {count} could be decoded")
    if count != expected:
        # the container's count was wrong (or packets != frames): choose again on the true count
        wanted = uniform_indices(count, num_frames)
        if not set(wanted.tolist()) <= kept.keys():
            dec, kept, src, count = _decode_positions(path, set(wanted.tolist()), in_range, lo, hi, max_side,
                                                      max_pixels)
    frames = np.stack([kept[p] for p in wanted.tolist()])
    indices = np.asarray([src[p] for p in wanted.tolist()], dtype=np.int64)
    return Clip(frames, fps=dec.header.fps, indices=indices, source=str(path))


def _packet_index(path: Path) -> PacketIndex | None:
    """:func:`~videoxai.data.keyframes.index_packets` of ``path``, remembered for the few files
    read last (a ranged read consults it up to twice; a long file's demux pass reads all of it)."""
    stat = path.stat()
    return _packet_index_of(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _packet_index_of(path: str, mtime_ns: int, size: int) -> PacketIndex | None:
    with _open(Path(path)) as (container, stream):
        return index_packets(container, stream)


def _frames_from(dec: _Decoder, lo: float) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """``dec.frames()`` from the first frame at or after ``lo`` seconds on (earlier frames may be
    yielded too; callers test the time): from the keyframe before it where that saves at least
    half of the decoding (a range late in a long video), else from the start."""
    start = None
    if lo > 0:
        try:
            index = _packet_index(dec.path)
            start = start_at(index, lo) if index is not None else None
        except (VideoReadError, av.FFmpegError, OSError):
            start = None  # decoding from the start reports what is wrong
    if start is not None:
        try:
            yield from dec.frames(start)
            return
        except SeekMiss:  # raised before any frame was yielded
            pass
    yield from dec.frames()


def _read_seeking(path: Path, num_frames: int, lo: float, hi: float, reported: int,
                  max_side: int | None, max_pixels: int | None) -> Clip | None:
    """:func:`read_video`'s ``num_frames`` frames by seeking to their keyframes
    (:mod:`~videoxai.data.keyframes`), or ``None`` where decoding in order is not at least twice
    as costly, or where seeking does not deliver what the packet index promised: the caller then
    decodes in order, and reports whatever is wrong with the file."""
    try:
        index = _packet_index(path)
        if index is None or (reported and len(index) != reported):
            return None
        positions = np.flatnonzero((index.times >= lo) & (index.times < hi))
        if not len(positions):
            return None
        chosen = positions[uniform_indices(len(positions), num_frames)]
        targets = sorted(set(chosen.tolist()))
        if 2 * seek_plan(index, targets)[1] > int(positions[-1]) + 1:
            return None
        with _open(path, max_pixels) as (container, stream):
            dec = _Decoder(path, max_pixels)
            dec.header = _header(container, stream, path)
            kept = {}
            for position, frame in decode_at(container, stream, index, targets, max_pixels):
                kept[position] = dec.to_rgb(frame, max_side)
    except (SeekMiss, VideoReadError, av.FFmpegError, OSError):
        return None
    return Clip(np.stack([kept[p] for p in chosen.tolist()]), fps=dec.header.fps, indices=chosen.astype(np.int64),
                source=str(path))


class _FrameBuffer:
    """Frames appended into one array sized from the expected count.

    Collecting a list and stacking it would hold every frame twice at the end; here the array
    grows (doubling) only if the count was low, and its unused tail was never written, so the
    operating system has not backed it with memory.
    """

    def __init__(self, expected: int) -> None:
        self._expected = max(1, expected)
        self._buf: np.ndarray | None = None
        self._n = 0

    def append(self, rgb: np.ndarray) -> None:
        if self._buf is None:
            self._buf = np.empty((self._expected, *rgb.shape), dtype=rgb.dtype)
        elif self._n == len(self._buf):
            grown = np.empty((2 * len(self._buf), *self._buf.shape[1:]), dtype=self._buf.dtype)
            grown[:self._n] = self._buf
            self._buf = grown
        self._buf[self._n] = rgb
        self._n += 1

    def array(self) -> np.ndarray:
        return self._buf[:self._n]


def _count_in_range(times: list[float | None], in_range: Callable[[float], bool]) -> int:
    if times and all(t is not None for t in times):
        return sum(in_range(t) for t in times)
    return len(times)  # no timestamps: only a whole-file count is possible


def _decode_positions(path: Path, wanted: set[int], in_range: Callable[[float], bool], lo: float, hi: float,
                      max_side: int | None, max_pixels: int | None = MAX_PIXELS):
    """One decoding pass keeping the frames at ``wanted`` positions of the range.

    Returns the decoder, ``{position: rgb}``, ``{position: source index}`` and the number of
    frames found in the range.
    """
    dec = _Decoder(path, max_pixels)
    kept: dict[int, np.ndarray] = {}
    src: dict[int, int] = {}
    pos = 0
    for index, t, frame in _frames_from(dec, lo):
        if t >= hi:
            break
        if not in_range(t):
            continue
        if pos in wanted:
            kept[pos] = dec.to_rgb(frame, max_side)
            src[pos] = index
        pos += 1
    return dec, kept, src, pos


def _check_nonempty(path: Path, count: int, ranged: bool, lo: float, hi: float) -> None:
    if count:
        return
    if ranged:
        try:
            length = probe(path)["duration"]
        except VideoReadError:
            length = None
        known = f"; the video is {length:.2f} s long" if length else ""
        raise VideoReadError(f"{path}: no frame in the time range [{lo:g}, {hi:g}) s{known}")
    raise VideoReadError(f"{path}: the video has no decodable frame")


# ----------------------------------------------------------------------------------------------
# sliding windows


def sliding_windows(path_or_clip: str | Path | Clip, num_frames: int, stride: int | None = None, *,
                    frame_step: int = 1, max_side: int | None = None, start: float | None = None,
                    end: float | None = None, tail: Tail = "pad",
                    max_pixels: int | None = MAX_PIXELS) -> Iterator[Clip]:
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
    is never reported twice. A video shorter than one window gives one padded window.

    Args:
        path_or_clip: a video file or a :class:`~videoxai.Clip` already in memory.
        num_frames: frames per window.
        stride: sub-sampled frames between window starts.
        frame_step: take every ``frame_step``-th frame.
        max_side: shrink large frames (files only, as in :func:`read_video`).
        start, end: time range (files only): seconds or a frame number, as in :func:`read_video`.
        tail: ``"pad"`` or ``"shift"`` (see above).
        max_pixels: refuse larger decoded frames (files only, as in :func:`read_video`).

    Yields:
        Clips with ``fps`` the source frame rate, ``indices`` the source frame indices and
        ``meta = {"window": k, "start": first sub-sampled position, "padding": p}``.
    """
    is_clip = isinstance(path_or_clip, Clip)
    name = (path_or_clip.source or "clip") if is_clip else path_or_clip
    error = InputError if is_clip else VideoReadError
    num_frames = _check_count(name, num_frames, "num_frames", error)
    stride = num_frames if stride is None else _check_count(name, stride, "stride", error)
    frame_step = _check_count(name, frame_step, "frame_step", error)
    if tail not in ("pad", "shift"):
        raise error(f"{name}: tail must be 'pad' or 'shift', got {tail!r}")
    if is_clip:
        if start is not None or end is not None:
            raise InputError("start and end apply to video files; select a clip's frames with clip.subclip")
        if max_side is not None:  # it was ignored: the windows kept the clip's full size
            raise InputError("max_side applies to video files; a clip's frames are windowed at their size")
        clip = path_or_clip
        source = ((int(i), clip.frames[k]) for k, i in enumerate(clip.indices))
        return _windows(source, num_frames, stride, frame_step, tail, clip.source, lambda: clip.fps)
    path = _check_path(path_or_clip)
    max_side = _check_count(path, max_side, "max_side")
    max_pixels = _check_count(path, max_pixels, "max_pixels")
    lo, hi = _check_range(path, start, end)
    return _file_windows(path, num_frames, stride, frame_step, tail, max_side, max_pixels, lo, hi)


def _file_windows(path: Path, num_frames: int, stride: int, frame_step: int, tail: Tail,
                  max_side: int | None, max_pixels: int | None, lo: float, hi: float) -> Iterator[Clip]:
    dec = _Decoder(path, max_pixels)

    def source() -> Iterator[tuple[int, av.VideoFrame]]:
        for index, t, frame in _frames_from(dec, lo):
            if t >= hi:
                return
            if t >= lo:
                yield index, frame

    yielded = False
    for window in _windows(source(), num_frames, stride, frame_step, tail, str(path),
                           lambda: dec.header.fps if dec.header else None,
                           convert=lambda f: dec.to_rgb(f, max_side)):
        yielded = True
        yield window
    if not yielded:
        _check_nonempty(path, 0, lo > 0 or hi < float("inf"), lo, hi)


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
