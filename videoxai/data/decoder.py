"""Decoding one video file's frames in presentation order, and the checks that only decoding can make.

:class:`Decoder` is what :func:`~videoxai.data.video.read_video` and
:func:`~videoxai.data.video_windows.sliding_windows` decode with: it numbers the frames from the
stream's first one and times them from its first timestamp; it refuses a frame over
``max_pixels`` (:class:`FrameTooLargeError`: a "decompression bomb" fails before it costs
memory), turns a decoder's failure into :class:`~videoxai.errors.VideoReadError` (a truncated or
corrupt file, never a short clip) and, once the whole stream is decoded, checks its end against
the one the header declares. :func:`frames_from` starts decoding at the keyframe before a time,
where that saves at least half of the work (:mod:`~videoxai.data.keyframes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import VideoReadError
from .container import (MAX_PIXELS, Header, check_whole, declared_end, matroska_cut, open_video, packet_index,
                        read_header)
from .deinterlace import progressive
from .keyframes import SeekMiss, SeekStart, seconds, start_at
from .packets import decode
from .streams import PictureConverter, display_size, ffmpeg_reason, shown_path, target_size



class FrameTooLargeError(VideoReadError):
    """A decoded frame exceeds the pixel limit (``max_pixels``)."""


class Decoder:
    """Decodes one file in presentation order; yields ``(index, time, frame)`` lazily.

    ``index`` counts every decoded frame from the start of the stream; ``time`` is the frame's
    presentation time in seconds relative to the stream's first frame (``index / fps`` when the
    container gives no timestamps; :attr:`timed` says whether it gave any). A frame without a
    timestamp in a stream that has them is shown a frame after the one before it, and frames
    before the first timestamp (an MPEG-TS whose first packets carry none) a frame apart before
    it: the first timed frame was taken as time 0, and every time was one frame early (a range
    from 0.2 s began at frame 6 of 25 fps, not 5).
    """

    def __init__(self, path: Path, max_pixels: int | None = MAX_PIXELS) -> None:
        self.path = path
        self.max_pixels = max_pixels
        self.header: Header | None = None
        self.timed = False  # whether a frame had a timestamp (else times are index / fps)
        self._picture: PictureConverter | None = None  # made at the first frame, with the header's SAR

    def _too_large(self, index: int, detail: str) -> FrameTooLargeError:
        return FrameTooLargeError(f"{shown_path(self.path)}: frame {index} {detail} the limit of {self.max_pixels} pixels "
                                  "per frame (the stream's header said "
                                  f"{self.header.width}x{self.header.height})")

    def frames(self, start: SeekStart | None = None) -> Iterator[tuple[int, float, av.VideoFrame]]:
        """With ``start``, decoding begins at its keyframe and the frames before its first frame
        are skipped; :class:`SeekMiss` (before any frame is yielded) when that frame does not come."""
        with open_video(self.path, self.max_pixels) as (container, stream):
            self.header = h = read_header(container, stream, self.path)
            tb = stream.time_base
            index = 0
            origin = None  # the first frame's pts, from which times count
            step, t = 1 / h.fps if h.fps else 1.0, 0.0  # a frame's length (s); the last frame's time
            declared, last_end = declared_end(container, stream), None  # the end the header says, the frames' end
            cut = matroska_cut(container, self.path)  # where the file ends inside its frames' data
            if start is not None:
                container.seek(start.keyframe_pts, stream=stream, backward=True, any_frame=False)
                index, origin = start.first, start.origin_pts
                self.timed = True
            try:
                for frame in progressive(decode(container, stream), stream):  # interlaced frames made whole
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
                        if origin is None:  # the frames before it, if any, were a frame apart
                            origin = frame.pts - round(index * step / tb)
                            self.timed = True
                        t = seconds(frame.pts - origin, tb)
                    else:
                        t = t + step if origin is not None else index * step
                    if frame.pts is not None and tb is not None and (last_end is None or frame.pts >= last_end[0]):
                        last_end = (frame.pts, frame.duration)  # the last frame, and how long it lasts
                    yield index, t, frame
                    index += 1
                # the whole stream was decoded (a consumer that stops early never gets here)
                check_whole(self.path, declared, seconds(sum(last_end), tb) if last_end and last_end[1] else None,
                            index, cut)
            except (av.FFmpegError, OSError) as e:
                if self.max_pixels is not None and getattr(e, "errno", None) == 22:
                    # EINVAL: how FFmpeg's decoders refuse a frame over max_pixels (or bad data)
                    raise self._too_large(index, "could not be decoded within") from None
                if index == 0:
                    raise VideoReadError(f"{shown_path(self.path)}: cannot decode its {h.codec} video stream; the "
                                         "file is truncated, corrupt or in an unsupported format "
                                         f"({ffmpeg_reason(e)})") from None
                raise VideoReadError(f"{shown_path(self.path)}: truncated or corrupt video, decoding failed "
                                     f"after {index} frames ({ffmpeg_reason(e)})") from None

    def to_rgb(self, frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
        """``(H, W, 3)`` uint8 as players show it (:class:`PictureConverter`); every frame gets the
        first frame's size and turn."""
        if self._picture is None:
            sar = self.header.sar if self.header is not None else Fraction(1)
            self._picture = shown_picture(self.path, frame, sar, max_side, self.max_pixels)
        return self._picture(frame)


def shown_picture(name: object, frame: av.VideoFrame, sar: Fraction, max_side: int | None,
                  max_pixels: int | None) -> PictureConverter:
    """The :class:`PictureConverter` of a stream whose first frame is ``frame``, once the size
    its frames come out at (their display size, after ``max_side``) is within ``max_pixels``
    (:class:`FrameTooLargeError` naming ``name`` otherwise)."""
    w, h = target_size(*display_size(frame.width, frame.height, sar), max_side)
    if max_pixels is not None and w * h > max_pixels:
        # the frames come out at their display size: pixels stored 100 times as wide as
        # tall (a forged aspect ratio) made a 2 KB file of 256x256 frames 78 MB of
        # 25600x256 ones, past max_pixels (an 8192x8192 frame would be 20 GB)
        raise FrameTooLargeError(
            f"{shown_path(name)}: its frames are shown at {w}x{h} (stored {frame.width}x{frame.height}, pixels "
            f"{sar} as wide as tall), over the limit of {max_pixels} pixels per frame; "
            "give max_side to read them smaller")
    return PictureConverter(max_side, sar)


def frames_from(dec: Decoder, lo: float) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """``dec.frames()`` from the first frame at or after ``lo`` seconds on (earlier frames may be
    yielded too; callers test the time): from the keyframe before it where that saves at least
    half of the decoding (a range late in a long video), else from the start."""
    start = None
    if lo > 0:
        try:
            index = packet_index(dec.path)
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
