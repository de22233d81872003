"""What a video file's container says about it, before (or without) decoding its frames.

Every reader opens a file through :func:`open_video`, which refuses what FFmpeg would misread as
a video (a concat or HLS playlist, which it would follow; a text file, which it would draw as "ANSI
art"), gives an animated WebP, whose frames FFmpeg cannot decode, as Pillow decodes them
(:mod:`~videoxai.data.animated_webp`), and turns FFmpeg's failures into
:class:`~videoxai.errors.VideoReadError` naming the file. :func:`read_header` is what the container
reports about the video stream (frame count less the frames an edit list hides, frame rate, size,
duration); where it reports no count or no rate, a demux pass over the packets (no decoding,
remembered for the last few files read) gives the frames' times. A file cut short is known here
by the length its header declares (:func:`check_whole`). :func:`probe` and :func:`frame_times`
describe a file from these (``probe`` decodes its first frame, for the display matrix);
:func:`packet_index` is the keyframe index that seeking reads (:mod:`~videoxai.data.keyframes`).
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from ..errors import VideoReadError
from .animated_webp import as_quicktime, is_animated_webp
from .keyframes import PacketIndex, index_packets, seconds
from .matroska import cut_inside_frames
from .packets import damaged_at_the_end, shown_packets
from .streams import display_size, ffmpeg_reason, quarter_turns, sample_aspect, shown_path, video_stream


#: default limit on the pixels of one decoded frame (8192 × 8192): a file whose later frames are
#: far larger than its header says (a "decompression bomb") fails instead of exhausting memory
MAX_PIXELS = 8192 * 8192


# ----------------------------------------------------------------------------------------------
# opening


def check_path(path: str | bytes | os.PathLike) -> Path:
    """``path`` (text, bytes as ``os.fsdecode`` reads them, or path-like) as an existing,
    non-empty file's :class:`Path`; :class:`VideoReadError` naming what is wrong otherwise."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise VideoReadError(f"a video path must be a str, bytes or os.PathLike, got {type(path).__name__}")
    p = Path(os.fsdecode(path))
    try:
        info = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise VideoReadError(f"{shown_path(p)}: no such file") from None
    except OSError as e:   # a folder on the way the user may not enter was a PermissionError traceback
        raise VideoReadError(f"{shown_path(p)}: cannot be read ({e.strerror or e})") from None
    except ValueError:   # a NUL byte: no file can have that name (a raw ValueError from os.stat)
        raise VideoReadError(f"{shown_path(p)}: no such file (a file name cannot hold a NUL byte)") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoReadError(f"{shown_path(p)}: is a directory, not a video file")
    if not stat.S_ISREG(info.st_mode):  # /dev/zero, a named pipe: their size of 0 was "the file is empty"
        raise VideoReadError(f"{shown_path(p)}: is not a regular file (a device, a pipe or a socket); give a video file")
    if info.st_size == 0:
        raise VideoReadError(f"{shown_path(p)}: the file is empty")
    return p


def local_file(source: str | os.PathLike) -> Path | None:
    """The local file ``source`` names, to be read as a file (:func:`check_path` says whether it
    is one): ``source`` itself where it exists (or names a folder's pictures by a glob,
    ``frames/img_*.jpg``), the name after a ``file:`` URL's scheme as FFmpeg
    reads it (``file:/a.mp4`` and ``file:///a.mp4`` are ``/a.mp4``, no %-decoding), else ``None``
    (a stream URL such as ``rtsp://…``).

    A ``file:`` URL opened by FFmpeg as a stream is decoded without the checks a file's reading
    makes: a download cut short (an mp4 whose index lists frames past its end, an mkv that ends
    inside a Cluster) streamed as the frames before the cut, without a word.
    """
    from .frame_folder import names_frame_series  # (which imports this module)

    text = os.fsdecode(source)
    if Path(text).exists() or names_frame_series(text):   # a glob of pictures is read as its folder is
        return Path(text)
    return Path(text[len("file:"):]) if text.startswith("file:") and len(text) > len("file:") else None


#: FFmpeg's decoders of text: they draw a text file's characters as video frames
_TEXT_ART = frozenset({"ansi", "bintext", "xbin", "idf"})


@contextmanager
def open_video(path: Path, max_pixels: int | None = None
               ) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``path`` and its first video stream, turning every FFmpeg failure into a clear error.

    ``max_pixels``: FFmpeg's own per-frame limit, checked by the decoder when it reads a frame's
    size, before it allocates the frame (so a bomb costs no memory).
    """
    _refuse_a_playlist(path)
    try:
        if is_animated_webp(path):  # FFmpeg cannot decode its frames; Pillow can
            container = av.open(as_quicktime(path, max_pixels), mode="r", format="mov")
        else:
            # "file:": FFmpeg reads a name with a colon as a protocol (cam1:take2.mp4 was "Protocol
            # not found", http:x.mp4 a network request, pipe:0.mp4 standard input); this is a file.
            # pattern_type none: FFmpeg's image demuxer read 'shot%d.png' as the numbered pictures
            # beside it (shot0.png, shot1.png, … explained as a video), not as the file given
            container = av.open(f"file:{path}", mode="r", options={"pattern_type": "none"})
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoReadError(f"{shown_path(path)}: not a readable video file ({ffmpeg_reason(e)})") from None
    try:
        stream = video_stream(container)
        if stream is None:
            covers = " (only a cover picture: an audio file?)" if container.streams.video else ""
            raise VideoReadError(f"{shown_path(path)}: the file has no video stream{covers}")
        if stream.codec_context is None:
            # a codec FFmpeg does not know (an AVI's unknown FourCC, a damaged codec id): PyAV gives
            # no decoder, and the next line was an AttributeError on None
            raise VideoReadError(f"{shown_path(path)}: its video stream is in a format FFmpeg cannot decode (an unknown "
                                 "codec)")
        if stream.codec_context.name in _TEXT_ART:
            # FFmpeg opens .txt, .nfo, .asc, .diz (and .bin, .adf, .idf, .xb) as "ANSI art" videos
            # of their characters: a text file given by mistake was explained as a video
            raise VideoReadError(f"{shown_path(path)}: a text file, not a video (FFmpeg would draw its characters "
                                 "as pictures)")
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
#: the first bytes of an HLS playlist (FFmpeg's HLS demuxer takes it by them and by its name)
HLS_MAGIC = b"#EXTM3U"


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
        raise VideoReadError(f"{shown_path(path)}: an FFmpeg concat playlist, not a video (read the videos it lists)")
    if head.removeprefix(b"\xef\xbb\xbf").startswith(HLS_MAGIC):
        # FFmpeg's HLS demuxer (a .m3u8 or .m3u name) reads the segments the playlist lists, other
        # files; one without #EXT-X-ENDLIST (a live stream's, saved) it reloads for new segments
        # forever: read_video never returned
        raise VideoReadError(f"{shown_path(path)}: an HLS playlist, not a video (it lists segments, other files or URLs); "
                             "read a segment, or give the stream's URL to `videoxai stream`")


# ----------------------------------------------------------------------------------------------
# the header and the packets


@dataclass(frozen=True)
class Header:
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


def read_header(container, stream, path: Path | None = None) -> Header:
    """``path``: where the container gives no frame rate, the frame rate its packets' times give
    (:func:`_packets`, a demux pass remembered for the file); in Matroska and WebM too, where
    that differs from the container's by more than a tenth."""
    fps = _stream_rate(stream)
    if path is not None and (fps is None or container.format.name.startswith("matroska")):
        # Matroska's rate is the frame duration its muxer declared, not an average over the
        # frames (mp4's is): a variable-rate phone or screen recording in mkv said 30 fps for
        # frames shown 11.8 times a second on average (its mp4 copy said 11.8), and clips, the
        # report and the overlay videos, played at 30 fps, took its rate. A constant rate's
        # millisecond timestamps (29.97 fps as 33, 34, 33 ms) stay within the tenth.
        measured = _packets(path).rate
        if fps is None or (measured and abs(measured - fps) > 0.1 * fps):
            fps = measured
    if path is not None and (container.format.name == "gif"
                             or container.format.name == "apng" and not (stream.frames and stream.duration)):
        # an APNG's demuxer counts neither its frames nor their length, and its rate is FFmpeg's
        # guess from the first delays (1 fps for frames shown 0.02, 0.02 and 1 s: overlays played
        # the 1.04 s animation in 3 s); each frame's delay is its packet's duration, so the
        # animation's average rate is its frames over their whole length. A GIF's too: FFmpeg's
        # length of one whose delays are 0 (shown 0.1 s each, as browsers do) leaves out the last
        # frame's, so 5 frames 0.1 s apart said 12.5 fps (the overlays played them 25 % fast)
        packets = _packets(path)
        if packets.end:
            fps = len(packets.times) / packets.end
    tb = stream.time_base
    duration = None
    if stream.duration is not None and tb is not None:
        duration = float(stream.duration * tb)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    # the format, not the decoder FFmpeg chose for it: AV1 is decoded by "libdav1d"
    codec, name = getattr(stream.codec_context.codec, "canonical_name", None) or stream.codec_context.name, \
        container.format.name
    if path is not None and is_animated_webp(path):  # read as open_video gives it: its frames as PNG in QuickTime
        codec = name = "webp"
    return Header(frames=shown_frames(stream), fps=fps, width=int(stream.codec_context.width or 0),
                  height=int(stream.codec_context.height or 0), duration=duration, codec=codec, container=name,
                  stream_duration=stream.duration is not None and tb is not None, sar=sample_aspect(stream))


def _stream_rate(stream) -> float | None:
    """The frames per second the container reports, or ``None``.

    The average rate where there is one; else FFmpeg's guess, unless the guess is merely the
    clock the timestamps count in: a variable-rate MPEG-TS stream has no average rate and a
    guess of 90000 (its 90 kHz clock), which made every frame number a few microseconds. An
    average that is that clock is no average either: FFmpeg's DV demuxer gives 60000 (its
    1/60000 s clock) for a camcorder's 29.97 fps, and overlays were written at 60000 fps.
    """
    tb = stream.time_base

    def clock(rate) -> bool:
        return bool(rate and tb and rate == 1 / tb and rate >= 1000)

    rate = stream.average_rate
    if clock(rate):
        rate = None
    if stream.codec_context.name in ("gif", "apng") and stream.frames and stream.duration and stream.time_base:
        # FFmpeg's average for an animation is its first frame's delay: a GIF timed 3, 4, 3, 4, …
        # hundredths (30 fps) said 33.3 fps; its demuxer counts the frames and their whole length
        rate = Fraction(int(stream.frames)) / (stream.duration * stream.time_base)
    if not rate or rate <= 0:
        rate = stream.guessed_rate or stream.base_rate
        if clock(rate):
            rate = None
    return float(rate) if rate and rate > 0 else None


def shown_frames(stream) -> int:
    """The container's frame count less the frames its edit list cuts (0: no count, as for a
    whole AVI whose header counts frames its index does not list: :func:`avi_miscount`).

    A clip cut from a longer recording without re-encoding (``ffmpeg -ss 10 -c copy``) starts
    between keyframes: its mp4 keeps the frames back to the keyframe, which the decoder needs,
    and an edit list marks them as not shown; FFmpeg drops them, as players do. The container's
    count includes them, so it was taken for a truncated file. The index that lists them is in
    the file's header: no packet is read. Frames a capture dropped count alike (below).
    """
    return 0 if avi_miscount(stream) else _listed_frames(stream)


def _listed_frames(stream) -> int:
    """:func:`shown_frames` by the header's count and the index alone."""
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


def cut_off_frames(stream) -> int:
    """How many frames an MP4 or QuickTime file's index lists whose data lies past the file's end
    (the index gives each frame's place and size): a download cut short of its last frames. A
    fragmented MP4 lists each fragment's frames before their data, so one cut inside a fragment
    is known too."""
    container = getattr(stream, "container", None)
    if container is None or not container.format.name.startswith("mov,") or not container.size:
        return 0
    try:
        return sum(1 for e in stream.index_entries if not e.is_discard and e.pos + e.size > container.size)
    except (AttributeError, av.FFmpegError):  # an older PyAV
        return 0


def avi_miscount(stream) -> int:
    """The frame count of a whole AVI's header where its index lists another number of frames,
    else 0 (they agree, the file is cut, or it is not an AVI).

    An AVI's header says how many frames it has, and its index, written after the frames,
    lists them; a tool that rewrites or joins AVIs without updating the header (or a forged
    header) leaves them apart. The header was trusted, and a whole file whose header said 60
    frames for the 30 its index listed and that decode failed as "truncated video: the container
    lists 60 frames but only 30 could be decoded". Where the file is whole (:func:`_riff_whole`)
    nothing of it is missing, and its frames are counted from its packets instead, as players
    count them; a file cut short keeps the header's count, by which it is known to be cut.
    """
    container = getattr(stream, "container", None)
    if container is None or container.format.name != "avi":
        return 0
    frames = _listed_frames(stream)
    try:
        listed = len(stream.index_entries)
    except (AttributeError, av.FFmpegError):  # an older PyAV
        return 0
    if not frames or listed == frames or not _riff_whole(container.name, container.size):
        return 0
    return frames


def _riff_whole(name: str, size: int | None) -> bool:
    """Whether the RIFF file ``name`` ends where its chunks do: each top-level chunk (an AVI has
    one, an OpenDML AVI over 1 GiB one per gigabyte) says how long it is, and a file cut short
    ends inside one. Bytes after the last chunk that are not a chunk are left alone."""
    path = name[len("file:"):] if name.startswith("file:") else name
    pos = 0
    try:
        with open(path, "rb") as f:
            size = size or f.seek(0, 2)
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(8)
                if head[:4] not in (b"RIFF", b"LIST", b"JUNK"):
                    break
                length = int.from_bytes(head[4:], "little")
                if pos + 8 + length > size:
                    return False
                pos += 8 + length + (length & 1)  # chunks are padded to an even length
    except OSError:
        return False
    return True


def warn_avi_miscount(path: Path, header: int, count: int) -> None:
    """Say that a whole AVI was read as the ``count`` frames it holds, not the ``header``'s count
    (:func:`avi_miscount`): the count players show differs from what other tools may report."""
    if header and header != count:
        warnings.warn(f"{shown_path(path)}: its AVI header says {header} frames but the file is whole and holds {count} "
                      f"(its header and its index disagree: a tool did not update the header); read as the "
                      f"{count} frames it holds", stacklevel=3)


#: the containers without an index or sizes that tell a file cut inside its last frame: only the
#: decoder does (FLV, whose demuxer flags the packet it read short, and the others, tell before);
#: HEVC's decoder does not (:func:`~videoxai.data.packets._damaged`), but where it comes to flag
#: such a frame, the readers leave it out and so do the counts
_CUT_FOUND_BY_DECODING = frozenset({"nut", "h264", "hevc", "ivf", "asf", "avi"})


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


def packet_times(path: Path) -> tuple[float | None, ...]:
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
    ends: dict[int, int] = {}  # a packet's time: when its frame ends, where its packet says how long it lasts
    last = None  # the end of the last frame (largest time), None where its packet has no duration
    key_pos = None  # the byte position of the last keyframe's packet
    with open_video(path, MAX_PIXELS) as (container, stream):  # shown_packets decodes a frame
        tb = stream.time_base
        declared, cut = declared_end(container, stream), matroska_cut(container, path)
        damaged_cut = container.format.name in _CUT_FOUND_BY_DECODING
        try:
            for packet in shown_packets(container, stream):
                if packet.size == 0 or getattr(packet, "is_discard", False):  # the flush packet at
                    continue                                                # the end; edit-list cuts
                ts = packet.pts if packet.pts is not None else packet.dts
                ticks.append(ts if tb is not None else None)
                if ts is not None and packet.duration:
                    ends[ts] = max(ends.get(ts, ts), ts + packet.duration)
                if ts is not None and (last is None or ts >= last[0]):
                    last = (ts, packet.duration)
                if packet.is_keyframe:
                    key_pos = packet.pos if packet.pos is not None and packet.pos >= 0 else None
        except (av.FFmpegError, OSError) as e:
            raise VideoReadError(f"{shown_path(path)}: truncated or corrupt after {len(ticks)} packets "
                                 f"({ffmpeg_reason(e)})") from None
    check_whole(path, declared, seconds(sum(last), tb) if last and last[1] and tb is not None else None, len(ticks),
                cut)
    if damaged_cut and key_pos is not None and len(ticks) > 1:
        # a file cut inside its last frame where no index tells: the readers leave that frame out
        # (the decoder marks it damaged, :func:`~videoxai.data.packets.decode`), so do its counts
        try:
            with open_video(path, MAX_PIXELS) as (container, stream):
                lost = min(damaged_at_the_end(container, stream, key_pos), len(ticks) - 1)
        except (av.FFmpegError, OSError):  # decoding in order says what is wrong
            lost = 0
        if lost:
            ticks = ticks if any(t is None for t in ticks) else sorted(ticks)
            ticks = ticks[:-lost]
    end = max((ends[t] for t in ticks if t in ends), default=None)
    if not ticks or any(t is None for t in ticks):
        return _Packets((None,) * len(ticks), None)
    ticks.sort()
    times = tuple(seconds(t - ticks[0], tb) for t in ticks)
    if end is None or end <= ticks[-1]:  # no durations: the last frame lasts as long as the average
        end = None if len(times) < 2 else times[-1] * len(times) / (len(times) - 1)
    else:
        end = seconds(end - ticks[0], tb)
    return _Packets(times, end)


def declared_end(container, stream) -> float | None:
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


def matroska_cut(container, path: Path) -> tuple[int, int] | None:
    """:func:`~videoxai.data.matroska.cut_inside_frames` of a Matroska or WebM file, ``None`` for
    other containers."""
    return cut_inside_frames(path) if container.format.name.startswith("matroska") else None


def check_whole(path: Path, declared: float | None, end: float | None, frames: int,
                cut: tuple[int, int] | None = None) -> None:
    """:class:`VideoReadError` where the stream's ``frames`` stop well before the ``declared`` end,
    or where the file ends inside its frames' data (``cut``: the file's size and the one its
    header declares, :func:`matroska_cut`).

    An mkv or webm download cut short demuxes and decodes without an error to the point where it
    stops: it was read as a shorter video (half the file, half the frames, ``num_frames`` spread
    over them). Its header, written first, still says how long the video is. ``end``: when its
    last frame ends (seconds from 0, as ``declared`` counts), ``None`` where that frame's packet
    carries no duration (a frame held long would look like a cut: no verdict). The margin is two
    frames or 2 %, whichever is longer; the cut that ``cut`` says has none: with B-frames the
    frames lost are those last in decoding order, and the last one shown may be kept.
    """
    read = f"{frames} frame{'s' * (frames != 1)} could be read"
    if cut is not None:
        raise VideoReadError(f"{shown_path(path)}: truncated video: the file ends inside its frames, at byte {cut[0]} of "
                             f"the {cut[1]} its header declares; {read}")
    if declared is None or (end is None and frames):
        return
    end = end or 0.0
    if end < declared - max(0.02 * declared, 2 * end / max(frames, 1)):
        found = f"its frames end at {end:.2f} s" if frames else "no frame of it is left"
        raise VideoReadError(f"{shown_path(path)}: truncated video: its header says the video lasts until {declared:.2f} s "
                             f"but {found}; {read}")


# ----------------------------------------------------------------------------------------------
# describing a file


def probe(path: str | Path) -> dict:
    """Describe a video, decoding at most its first frame.

    Returns:
        ``{"frames", "fps", "width", "height", "duration", "codec", "container"}``; ``width`` and
        ``height`` are those of the frames :func:`~videoxai.data.video.read_video` returns:
        upright (swapped for a clip whose display matrix turns it a quarter, as phones' portrait
        clips do) and in square pixels (:func:`display_size`: 853 × 480 for a 720 × 480 DVD
        picture shown at 16:9);
        ``frames`` is the container's count (less the frames an edit list hides) or, when it
        reports none (or for a GIF, or an AVI cut short), the number of packets the readers
        decode (demux only, but for the frame the file was cut inside); ``duration`` in seconds from the first
        frame to the end of the last (the span of its packets' times where a demux pass lists
        them, else the stream's, else ``frames / fps``); ``fps`` the container's average rate,
        else the one its packets' times give.
    """
    from .frame_folder import describe, names_frame_series  # (which imports this module)

    if names_frame_series(path):  # a folder of frames (:mod:`~videoxai.data.frame_folder`): no fps, no duration
        return describe(path)
    path = check_path(path)
    with open_video(path) as (container, stream):
        h = read_header(container, stream, path)
        turns = _first_frame_turns(container, stream)
        # an AVI cut short (its index, at the end, gone with its last frames) keeps its header's
        # count, by which the readers know it is cut; cut inside its last frame, it is read
        # without that frame (within the count's margin), and probe said 10 frames for 9 read
        cut_avi = h.container == "avi" and h.frames > 0 and not _riff_whole(container.name, container.size)
    # a GIF's count is FFmpeg's scan of the file, which counts a frame the file was cut inside;
    # its packets, as the readers take them, leave that frame out (:mod:`~videoxai.data.packets`),
    # as they leave out a cut AVI's
    scanned = h.container == "gif" or cut_avi
    packets = None if h.frames and h.stream_duration and not scanned else _packets(path)
    frames = len(packets.times) if scanned else h.frames or len(packets.times)
    if cut_avi:  # cut well before its end: truncated, as the readers say (no count to give)
        from .read_arguments import check_decoded  # (which imports this module)

        check_decoded(path, h.frames, frames)
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
    times = packet_times(check_path(path))
    if not times or times[0] is None:
        return None
    return np.asarray(times, dtype=np.float64)


def packet_index(path: Path) -> PacketIndex | None:
    """:func:`~videoxai.data.keyframes.index_packets` of ``path``, remembered for the few files
    read last (a ranged read consults it up to twice; a long file's demux pass reads all of it)."""
    stat = path.stat()
    return _packet_index_of(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _packet_index_of(path: str, mtime_ns: int, size: int) -> PacketIndex | None:
    with open_video(Path(path), MAX_PIXELS) as (container, stream):  # index_packets decodes a frame
        return index_packets(container, stream)
