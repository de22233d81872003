"""Which stream of a file is the video, and how its decoded pictures become RGB frames as players
show them.

Players and FFmpeg's command line show a video as its container and codec describe it; PyAV hands
over the stored pictures. The differences a model would otherwise see:

* the stream: FFmpeg's pick, never an attached cover picture (:func:`video_stream`);
* the pixels' shape: DVD, DV and broadcast video store non-square pixels (:func:`display_size`);
* the turn: phones store portrait clips as landscape pictures with a display matrix, which
  may mirror the picture too (:func:`orientation`);
* the colours: 10-bit YUV converted without FFmpeg's default darkening (:func:`_deep_yuv`), and
  16-bit RGB and grey, and full-range deep YUV, rounded to 8 bits, not brightened
  (:func:`_deep_rgb`, :func:`_full_range`).

:class:`PictureConverter` applies all of them; :func:`videoxai.data.video.read_video` and the
stream client's URL reader both use it.
"""

from __future__ import annotations

import os
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np
from av.video.reformatter import Interpolation

from .hdr import ToneMap, tone_map_for
from .side_data import side_data

__all__ = ["video_stream", "sample_aspect", "display_size", "target_size", "PictureConverter", "quarter_turns", "orientation",
           "ffmpeg_reason"]


def video_stream(container: av.container.InputContainer):
    """The stream to read as the video, or ``None``: FFmpeg's pick (``av_find_best_stream``, as
    its command line and players choose), never an attached picture.

    Audio files carry their cover art as a one-picture "video" stream marked as an attached
    picture (mp3, m4a, flac; videos too, mp4 and mkv): read as the video, an album became a
    one-frame clip, and a video whose cover came first became its cover. Timed thumbnails are
    skipped alike. A stream that is the video is not always the first: audio may come first, and
    FFmpeg prefers a stream marked default, then one with motion over a still.
    """
    pictures = getattr(av.stream, "Disposition", None)
    skip = int(pictures.attached_pic | pictures.timed_thumbnails) if pictures is not None else 0
    moving = [s for s in container.streams.video if not int(s.disposition) & skip]
    if not moving:
        return None
    # a stream in a codec FFmpeg does not know has no decoder: read another where there is one
    moving = [s for s in moving if s.codec_context is not None] or moving
    try:
        best = container.streams.best("video")
    except (av.FFmpegError, ValueError):
        best = None
    return best if best is not None and best.index in {s.index for s in moving} else moving[0]


def sample_aspect(stream) -> Fraction:
    """The width of the stream's pixels over their height (FFmpeg's guess from the container and
    the codec), 1 where it says nothing or nonsense."""
    try:
        sar = stream.sample_aspect_ratio
    except (AttributeError, ZeroDivisionError, av.FFmpegError):
        sar = None
    if not sar or sar <= 0 or not Fraction(1, 100) <= sar <= 100:
        return Fraction(1)
    return Fraction(sar)


def display_size(width: int, height: int, sar: Fraction) -> tuple[int, int]:
    """The size that shows a ``width`` × ``height`` picture of pixels ``sar`` times as wide as they
    are tall in square pixels, as players show it: wider for ``sar > 1``, taller for ``sar < 1``
    (no stored pixel is lost), unchanged for square pixels.

    DVD, DV and broadcast video store 720 × 480 or 720 × 576 pictures whose pixels are not
    square (sample aspect ratio 32:27 for 16:9 NTSC, 8:9 for 4:3, …); the container or codec says
    so, and players stretch the picture to its display aspect ratio (853 × 480 for 32:27). Read
    as stored, people and round objects look squeezed, unlike anything a model saw in training
    (square-pixel frames), so :func:`read_video` resamples to this size.
    """
    if sar == 1:
        return width, height
    if sar > 1:
        return max(1, round(width * sar)), height
    return width, max(1, round(height / sar))


class PictureConverter:
    """Decoded frames → ``(H, W, 3)`` uint8 RGB as players show them: in square pixels at the
    display aspect ratio (:func:`display_size`), upright (:func:`orientation`), 10-bit YUV
    converted without FFmpeg's darkening (:func:`_deep_yuv`), 16-bit RGB and full-range deep YUV rounded
    (:func:`_deep_rgb`, :func:`_full_range`), HDR (PQ, HLG) tone-mapped to SDR
    (:mod:`~videoxai.data.hdr`), the longer side at most ``max_side``. The size, the turn and the
    tone mapping are the first frame's, for every frame of the stream.

    Args:
        max_side: shrink larger frames to this longer side (aspect ratio kept); ``None``: never.
        sar: the stream's sample aspect ratio (pixel width over height).
    """

    def __init__(self, max_side: int | None = None, sar: Fraction = Fraction(1)) -> None:
        self.max_side, self.sar = max_side, sar
        self.size: tuple[int, int] | None = None
        self.turns, self.mirror = 0, False
        self.tone_map: ToneMap | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self.size is None:
            self.size = target_size(*display_size(frame.width, frame.height, self.sar), self.max_side)
            self.turns, self.mirror = orientation(frame)
            self.tone_map = tone_map_for(frame)
        w, h = self.size
        resize = (frame.width, frame.height) != (w, h)
        # AREA averages the source pixels a target pixel covers (no aliasing when shrinking)
        interpolation = Interpolation.AREA if resize else Interpolation.BILINEAR
        if self.tone_map is not None:  # HDR: its full-precision signal, tone-mapped as players show it
            # (not FULL_CHR_H_INT: FFmpeg 8.1 then zeroed red and green of 10-bit 4:2:0 in 16-bit RGB)
            # a matrix left unspecified is BT.2020's (swscale's default is BT.601's)
            matrix = "BT2020" if int(getattr(frame, "colorspace", 0) or 0) == 2 else None
            wide = frame.reformat(width=w, height=h, format="rgb48le", src_colorspace=matrix,
                                  interpolation=interpolation | Interpolation.ACCURATE_RND).to_ndarray()
            rgb = self.tone_map(wide)
        elif _deep_rgb(frame.format.name) or (_deep_yuv(frame.format.name) and _full_range(frame)):
            wide = frame.reformat(width=w, height=h, format="rgb48le", interpolation=interpolation).to_ndarray()
            rgb = _eight_bits(wide)
        else:
            deep = _deep_yuv(frame.format.name)
            if resize or deep:
                if deep:
                    interpolation |= Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
                frame = frame.reformat(width=w, height=h, format="rgb24", interpolation=interpolation)
            rgb = frame.to_ndarray(format="rgb24")
        if self.turns or self.mirror:
            rgb = np.rot90(rgb, self.turns)
            rgb = np.ascontiguousarray(rgb[:, ::-1] if self.mirror else rgb)
        return rgb


@lru_cache(maxsize=None)
def _deep_yuv(pix_fmt: str) -> bool:
    """Whether frames in ``pix_fmt`` are YUV with more than 8 bits a sample (10-bit HEVC, H.264,
    VP9, ProRes).

    FFmpeg's default conversion of those to 8-bit RGB comes out darker by about 1.4 levels on
    average (220 became 218); its accurate rounding with full chroma interpolation does not, so
    they are converted that way. 8-bit YUV keeps the default conversion (what ``ffmpeg`` and
    PyAV give). (Through 16-bit RGB, as :func:`_deep_rgb` formats are, 10-bit 4:2:0 came out
    worse: FFmpeg 8.1's conversion with those flags added 2.5 levels of blue far from any edge.)
    """
    fmt = _format(pix_fmt)
    return fmt is not None and not fmt.is_rgb and _bits(fmt) > 8 and len(fmt.components) >= 3


def _full_range(frame: av.VideoFrame) -> bool:
    """Whether ``frame``'s YUV levels use the full range of its bits (JPEG range: black 0, white
    ``2**bits - 1``), as some cameras, screen recorders and 16-bit FFV1 archives write them.

    FFmpeg's step from such deep YUV to 8-bit RGB scales by ``2**(bits - 8)``, not by
    ``(2**bits - 1) / 255``: every level from 128 up came out one brighter (a full-range 16-bit
    grey 200, stored as 51400, was read as 201; 10 and 12 bits alike). Its conversion to 16-bit
    RGB (without the flags :func:`_deep_yuv` adds, which wreck 4:2:0 there) is exact, and is
    rounded to 8 bits as :func:`_deep_rgb` formats are. Limited-range deep YUV (the usual) stays
    on :func:`_deep_yuv`'s path, which is exact for it and a level dark through 16-bit RGB.
    """
    return int(getattr(frame, "color_range", 0) or 0) == 2  # AVCOL_RANGE_JPEG


@lru_cache(maxsize=None)
def _deep_rgb(pix_fmt: str) -> bool:
    """Whether frames in ``pix_fmt`` are RGB or grey with more than 8 bits a sample (16-bit PNG,
    FFV1, TIFF, DPX).

    FFmpeg's step from 16 bits to 8 divides by 256, not 257: every level from 128 up came out
    one brighter (a 16-bit PNG's 200, stored as 51400, was read as 201). They are converted to
    16-bit RGB, which needs no colour matrix, and rounded to 8 bits here (:func:`_eight_bits`).
    """
    fmt = _format(pix_fmt)
    return fmt is not None and (fmt.is_rgb or len(fmt.components) <= 2) and _bits(fmt) > 8


def _format(pix_fmt: str):
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.FFmpegError):
        return None
    return fmt if fmt.components else None


def _bits(fmt) -> int:
    return max(c.bits for c in fmt.components)


def _eight_bits(wide: np.ndarray) -> np.ndarray:
    """16-bit samples ``(H, W, 3)`` to 8 bits, each rounded to the nearest level (``x / 257``,
    exactly, in integers)."""
    x = wide.astype(np.uint32)
    return ((x * 255 + 32895) >> 16).astype(np.uint8)


def quarter_turns(frame: av.VideoFrame) -> int:
    """How many quarter turns counter-clockwise (0–3, for :func:`numpy.rot90`) show ``frame``
    upright, from the display matrix its container carries (before a mirroring, :func:`orientation`).

    Phones store a portrait recording as landscape pictures and say in the display matrix how
    to turn them; players (and FFmpeg's command line) apply it, PyAV does not. PyAV's
    ``frame.rotation`` is the matrix's counter-clockwise angle: -90 for the usual portrait phone
    clip, which FFmpeg shows turned a quarter clockwise (``np.rot90(rgb, -1)``). Angles between
    quarter turns (not written by cameras) are rounded to the nearest.
    """
    return orientation(frame)[0]


def orientation(frame: av.VideoFrame) -> tuple[int, bool]:
    """``(turns, mirror)``: ``np.rot90(rgb, turns)``, then mirrored left to right where ``mirror``,
    shows ``frame`` as FFmpeg's command line and players do, by the display matrix its container
    carries.

    A matrix may mirror the picture too (a front camera's, an editor's flip): its angle alone is
    then another picture's (a mirrored one reads as a half turn), and the clip was read upside
    down. FFmpeg's rule: at a quarter turn the picture is transposed where the matrix mirrors
    it; at a half turn each axis is flipped where the matrix flips it; with no turn it is flipped
    upside down where the matrix says so. Angles between quarter turns are rounded to the nearest.
    """
    angle = getattr(frame, "rotation", 0) or 0
    turns = round(angle / 90) % 4
    m = _display_matrix(frame)
    if m is None:
        return turns, False
    if turns == 3:            # FFmpeg's 90°: transpose=clock, or cclock_flip (a transpose)
        return (3, True) if m[3] > 0 else (3, False)
    if turns == 1:            # 270°: transpose=cclock, or clock_flip
        return (1, True) if m[3] < 0 else (1, False)
    if turns == 2:            # 180°: hflip where m[0] < 0, vflip where m[4] < 0
        h, v = m[0] < 0, m[4] < 0
        return (0, True) if h and not v else (2, v and not h)
    return (2, True) if m[4] < 0 else (0, False)  # no turn: vflip where m[4] < 0


def _display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's display matrix, 9 int32 in FFmpeg's layout, or ``None`` (none, or a PyAV
    that does not give side data)."""
    data = side_data(frame, "DISPLAYMATRIX")
    if data is None or len(data) != 36:
        return None
    return np.frombuffer(data, dtype="=i4")  # FFmpeg's int32_t array, in this machine's byte order


def target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` with the longer side at most ``max_side`` (aspect ratio kept)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shown_path(path) -> str:
    """``path`` as an error names it: as given, its unprintable characters escaped as ``repr``
    escapes them (a newline as ``\\n``) and a byte that is not UTF-8 as the folder datasets' keys
    show it (``\\xe9``): a file name holding a newline made a two-line error, and one holding
    ``ESC [2J`` cleared the terminal it was printed to."""
    text = path if isinstance(path, str) else os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    try:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate no file name decodes to: repr's escape below
        pass
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def ffmpeg_reason(e: Exception) -> str:
    """A one-line description of a PyAV/FFmpeg error, without its repr noise."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.rstrip(".")
