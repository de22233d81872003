"""Reading video files, on PyAV (FFmpeg) only.

Reading never keeps more frames in memory than the caller asked for: :func:`read_video` with
``num_frames=N`` converts to RGB only the N frames it keeps. Where the file has keyframes often
enough that seeking to the keyframe before each wanted frame decodes less than half of what
reading in order would (a long video), it seeks (:mod:`~videoxai.data.keyframes`); otherwise it
decodes the file once, in order (the decoder has to run over the frames in between, because
inter-coded frames depend on them). To choose N frames uniformly it must know how many frames there are; the container's count
is used when it reports one (mp4, mov, avi), otherwise a demux-only pass (packets, no decoding)
counts them (mkv, webm, gif; a whole AVI whose header counts other frames than its index lists,
with a warning naming both: :func:`~videoxai.data.container.avi_miscount`). If decoding then finds a different number of frames than expected,
the choice is redone on the true count, with a second decoding pass only when a frame it needs
was not kept.

The video is the stream FFmpeg's players would show (:func:`video_stream`), never a cover
picture: an audio file with cover art has no video.

Which stream is the video and how its pictures become frames as players show them is
:mod:`~videoxai.data.streams`; opening a file and what its container says (header, packets,
:func:`probe`) :mod:`~videoxai.data.container`; decoding in presentation order
:mod:`~videoxai.data.decoder`, from packets on one timeline where the file's clock restarts
(recordings joined end to end) :mod:`~videoxai.data.packets`; the checks of a read's arguments
:mod:`~videoxai.data.read_arguments`; :func:`sliding_windows` :mod:`~videoxai.data.video_windows`;
writing :mod:`~videoxai.data.video_writer`.

Every failure a user can cause (a missing file, a directory, a file that is not a video, a
truncated or corrupt stream, a stream with no decodable frame, bad arguments) raises
:class:`~videoxai.errors.VideoReadError` with the file's name in the message, never a raw PyAV
exception. A file cut short is known by the length its header gives (mp4, mov, avi frame counts;
mkv and webm sizes and durations: :mod:`~videoxai.data.matroska`) or by an index of frames whose
data lies past its end (mp4, mov, fragmented MP4 inside a fragment); where the container gives
none before the frames (MPEG-TS, GIF, a browser's WebM recording, fragmented MP4 between two
fragments) it is read as the shorter video it has become, without the frame the cut falls in
(MPEG-TS, MPEG-PS, GIF, and wherever FFmpeg flags that frame's packet as read short or the frame
as concealed: FLV, AVI, IVF, NUT, ASF, raw H.264; :mod:`~videoxai.data.packets`). A raw HEVC
stream cut inside its last frame keeps that frame, damaged: FFmpeg's HEVC decoder gives no sign
of the cut (:func:`~videoxai.data.packets._damaged`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from ..clip import Clip
from ..errors import VideoReadError
from .container import (avi_miscount, check_path, cut_off_frames, frame_times, open_video, packet_index,
                        packet_times, probe, read_header, shown_frames, warn_avi_miscount)
from .decoder import MAX_PIXELS, Decoder, FrameTooLargeError, frames_from
from .frame_folder import (PictureReader, check_frame_rate, check_pictures_move, frame_range, frame_series,
                           names_frame_series)
from .keyframes import SeekMiss, decode_at, seek_plan
from .read_arguments import check_count, check_decoded, check_moving, check_nonempty, check_range
from .streams import PictureConverter, display_size, quarter_turns, sample_aspect, shown_path, video_stream
from .video_windows import sliding_windows
from .video_writer import WRITERS, write_video  # noqa: F401  (part of this module's API, as before)

__all__ = ["read_video", "sliding_windows", "write_video", "probe", "uniform_indices", "video_stream",
           "display_size", "frame_times", "PictureConverter", "sample_aspect", "quarter_turns", "WRITERS",
           "FrameTooLargeError", "MAX_PIXELS"]


# ----------------------------------------------------------------------------------------------
# sampling


def uniform_indices(count: int, num: int) -> np.ndarray:
    """``num`` positions spread uniformly over ``range(count)``, first and last frame included.

    ``round(linspace(0, count - 1, num))`` (PyTorchVideo's ``UniformTemporalSubsample`` up to the
    rounding). When ``num > count`` positions repeat: a two-frame video sampled with ``num=8``
    gives frames 0 and 1 four times each, so a model that needs ``T`` frames can still run on it.
    """
    if count < 1 or num < 1:
        raise ValueError(f"uniform_indices needs count >= 1 and num >= 1, got {count}, {num}")
    return np.floor(np.linspace(0.0, count - 1, num) + 0.5).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# reading


def read_video(path: str | bytes | os.PathLike, num_frames: int | None = None, *, start: float | None = None,
               end: float | None = None, max_side: int | None = None,
               max_pixels: int | None = MAX_PIXELS, fps: float | None = None) -> Clip:
    """Decode a video file (mp4, mov, mkv, webm, avi, gif, ...) or a folder of frames into a :class:`~videoxai.Clip`.

    Args:
        path: the file (a str, bytes or path-like), or a folder of numbered pictures
            (``img_00001.jpg``, …) or a glob naming one series in a folder (``frames/img_*.jpg``),
            read in the order of their numbers (:mod:`~videoxai.data.frame_folder`).
        num_frames: how many frames to return, sampled uniformly over the file (or over
            ``[start, end)``) with the first and last frame included (:func:`uniform_indices`);
            ``None`` returns every frame. A video with fewer frames than ``num_frames`` is sampled
            with repetition (a two-frame video gives each frame ``num_frames / 2`` times), so the
            clip always has exactly ``num_frames`` frames; ``clip.indices`` shows the repeats. A
            file of one frame (a PNG or JPEG, a one-frame video) is refused: to explain one image,
            repeat it into a clip, ``vx.explain(model, np.repeat(frame[None], model.num_frames,
            axis=0))``.
        start, end: optional time range, ``start`` included, ``end`` excluded, measured from
            the stream's first frame: seconds as numbers (``2.5``) or text (``"2.5s"``), or a
            frame number as text (``"60"``), as :func:`parse_time` reads them; a frame number
            means that frame, whose time is looked up (the frame rate may vary).
        max_side: if set, frames whose longer side exceeds it are shrunk (aspect ratio kept).
        max_pixels: refuse any decoded frame with more pixels (:class:`FrameTooLargeError`),
            checked frame by frame, since a stream's later frames may be larger than its header
            says; ``None``: no limit.
        fps: the frame rate of a folder of frames (pictures carry none; without it the clip has
            no ``fps`` or ``times`` and ``start``/``end`` are frame numbers). A video file has its
            own rate: giving one is an error.

    Returns:
        A clip with ``frames`` uint8 ``(T, H, W, 3)``, upright as players show them (a
        container's display matrix, e.g. a phone's portrait clip, is applied, a mirroring too:
        :func:`~videoxai.data.streams.orientation`)
        and in square pixels (an anamorphic DVD or DV picture is stretched to its display aspect
        ratio, as players do: :func:`display_size`),
        ``fps`` the *source* frame rate,
        ``indices`` each frame's index in the source video, ``times`` when each is shown (seconds
        from the stream's first frame; ``None`` for a file without timestamps) and
        ``source=str(path)``.

    Raises:
        VideoReadError: the file is missing, not a video, truncated or corrupt, has no decodable
            frame in the range or only one (a still picture), a folder holds no series of
            pictures of one size, or the arguments are invalid.
    """
    if names_frame_series(path):
        return _read_frame_folder(path, num_frames, start, end, max_side, max_pixels, fps)
    path = check_path(path)
    if fps is not None:
        raise VideoReadError(f"{shown_path(path)}: fps applies to a folder of frames; a video file has its own frame "
                             "rate")
    num_frames = check_count(path, num_frames, "num_frames")
    max_pixels = check_count(path, max_pixels, "max_pixels")
    max_side = check_count(path, max_side, "max_side")
    lo, hi = check_range(path, start, end)
    ranged = start is not None or end is not None

    def in_range(t: float) -> bool:
        return lo <= t < hi

    # How many frames lie in the range, before decoding: the container's count, else a demux pass.
    with open_video(path) as (container, stream):
        reported = 0 if ranged else shown_frames(stream)
        header = 0 if ranged else avi_miscount(stream)  # a whole AVI's header count, not used
        missing = 0 if ranged else cut_off_frames(stream)  # frames past the end of a cut mp4
    expected = reported or _count_in_range(packet_times(path), in_range)
    warn_avi_miscount(path, header, expected)
    expected = max(expected, 1)  # nothing found: decode anyway, so the error says why

    if num_frames is None:
        dec = Decoder(path, max_pixels)
        # every frame takes a byte of the file at least: an AVI header that counted 2**31 frames
        # (damaged or forged) asked numpy for 6 TiB up front (MemoryError) for a 30-frame file
        kept, src, times = _FrameBuffer(min(expected, path.stat().st_size)), [], []
        for index, t, frame in frames_from(dec, lo):
            if t >= hi:
                break
            if in_range(t):
                kept.append(dec.to_rgb(frame, max_side))
                src.append(index)
                times.append(t)
        check_nonempty(path, len(src), ranged, lo, hi, (start, end))
        check_decoded(path, reported, len(src), missing)
        check_moving(path, len(src), ranged, lo, hi, (start, end))
        return Clip(kept.array(), fps=dec.header.fps, indices=np.asarray(src), source=str(path),
                    times=_known(dec, times))

    by_seeking = _read_seeking(path, num_frames, lo, hi, reported, max_side, max_pixels)
    if by_seeking is not None:
        return by_seeking
    wanted = uniform_indices(expected, num_frames)
    dec, kept, src, shown, count = _decode_positions(path, set(wanted.tolist()), in_range, lo, hi, max_side,
                                                     max_pixels)
    check_nonempty(path, count, ranged, lo, hi, (start, end))
    check_decoded(path, reported, count, missing)
    check_moving(path, count, ranged, lo, hi, (start, end))
    if count != expected:
        # the container's count was wrong (or packets != frames): choose again on the true count
        wanted = uniform_indices(count, num_frames)
        if not set(wanted.tolist()) <= kept.keys():
            dec, kept, src, shown, count = _decode_positions(path, set(wanted.tolist()), in_range, lo, hi,
                                                             max_side, max_pixels)
    frames = np.stack([kept[p] for p in wanted.tolist()])
    indices = np.asarray([src[p] for p in wanted.tolist()], dtype=np.int64)
    return Clip(frames, fps=dec.header.fps, indices=indices, source=str(path),
                times=_known(dec, [shown[p] for p in wanted.tolist()]))


def _read_frame_folder(path, num_frames, start, end, max_side, max_pixels, fps) -> Clip:
    """:func:`read_video` of a folder of pictures: only the pictures of the kept frames are decoded."""
    series = frame_series(path)
    num_frames = check_count(series.source, num_frames, "num_frames")
    max_pixels = check_count(series.source, max_pixels, "max_pixels")
    max_side = check_count(series.source, max_side, "max_side")
    fps = check_frame_rate(series.source, fps)
    positions = frame_range(series, start, end, fps)
    check_pictures_move(series, positions, start is not None or end is not None)
    chosen = list(positions) if num_frames is None else [positions[i] for i in uniform_indices(len(positions),
                                                                                                  num_frames)]
    read, kept, last = PictureReader(series, max_side, max_pixels), _FrameBuffer(len(chosen)), (-1, None)
    for p in chosen:  # in order, repeats (fewer pictures than num_frames) side by side: each decoded once
        if p != last[0]:
            last = p, read(p)
        kept.append(last[1])
    indices = np.asarray(chosen, dtype=np.int64)
    return Clip(kept.array(), fps=fps, indices=indices, source=series.source,
                times=None if fps is None else indices / fps)


def _read_seeking(path: Path, num_frames: int, lo: float, hi: float, reported: int,
                  max_side: int | None, max_pixels: int | None) -> Clip | None:
    """:func:`read_video`'s ``num_frames`` frames by seeking to their keyframes
    (:mod:`~videoxai.data.keyframes`), or ``None`` where decoding in order is not at least twice
    as costly, or where seeking does not deliver what the packet index promised: the caller then
    decodes in order, and reports whatever is wrong with the file."""
    try:
        index = packet_index(path)
        if index is None or (reported and len(index) != reported):
            return None
        positions = np.flatnonzero((index.times >= lo) & (index.times < hi))
        if len(positions) < 2:  # none or one: decoding in order says which (check_moving)
            return None
        chosen = positions[uniform_indices(len(positions), num_frames)]
        targets = sorted(set(chosen.tolist()))
        if 2 * seek_plan(index, targets)[1] > int(positions[-1]) + 1:
            return None
        with open_video(path, max_pixels) as (container, stream):
            dec = Decoder(path, max_pixels)
            dec.header = read_header(container, stream, path)
            kept = {}
            for position, frame in decode_at(container, stream, index, targets, max_pixels):
                kept[position] = dec.to_rgb(frame, max_side)
    except (SeekMiss, VideoReadError, av.FFmpegError, OSError):
        return None
    return Clip(np.stack([kept[p] for p in chosen.tolist()]), fps=dec.header.fps, indices=chosen.astype(np.int64),
                source=str(path), times=index.times[chosen])


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

    Returns the decoder, ``{position: rgb}``, ``{position: source index}``, ``{position: time}``
    (``index / fps`` in a stream without timestamps) and the number of frames found in the range.
    """
    dec = Decoder(path, max_pixels)
    kept: dict[int, np.ndarray] = {}
    src: dict[int, int] = {}
    shown: dict[int, float | None] = {}
    pos = 0
    for index, t, frame in frames_from(dec, lo):
        if t >= hi:
            break
        if not in_range(t):
            continue
        if pos in wanted:
            kept[pos] = dec.to_rgb(frame, max_side)
            src[pos] = index
            shown[pos] = t
        pos += 1
    return dec, kept, src, shown, pos


def _known(dec: Decoder, times: list[float]) -> np.ndarray | None:
    """The frames' presentation times as :attr:`Clip.times`, ``None`` for a stream without
    timestamps (the decoder counts ``index / fps``, which is not when a frame is shown)."""
    return np.asarray(times, dtype=np.float64) if dec.timed else None
