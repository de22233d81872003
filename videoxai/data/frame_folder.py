"""Videos stored as folders of numbered pictures (``img_00001.jpg``, ``00002.png``, …).

Datasets are often shipped or prepared this way: UCF101-24's ``rgb-images/<class>/<video>/``,
MMAction2's *rawframes* (``img_00001.jpg`` beside the optical flow's ``flow_x_00001.jpg`` and
``flow_y_00001.jpg``), frames extracted with ``ffmpeg -i in.mp4 frames/%05d.png``. A folder, or a
glob naming one series in it (``frames/img_*.jpg``), is read as the video its pictures make, in
the order of their numbers (``img_9`` before ``img_10``), by the same readers as a file:
:func:`~videoxai.data.video.read_video`, :func:`~videoxai.data.video.sliding_windows`, and
through them ``videoxai explain`` and the datasets.

A series is the pictures whose names differ only in their number: ``img_00001.jpg`` …
``img_00300.jpg``. A folder of several series (RGB and flow) is read as its RGB series when one
is named so (``img``, ``image``, ``frame``, ``rgb`` or no name before the number); otherwise the
error lists the series and asks for a glob. Files without a number, and other files (a
``labels.csv``, a ``.DS_Store``), are not frames.

Pictures have no clock: the frame rate is the caller's (``fps``), and without it a clip has no
``fps`` and no ``times``, a range can be given in frame numbers only (``start="60"``), and
``indices`` are the pictures' positions in the series (0 for the first, whatever its number).
Each picture is decoded only when its frame is kept (8 of a 300-picture folder: 8 decodes) by
PyAV, as a file's frames are, and every picture must have the first one's size.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError, VideoReadError
from .decoder import FrameTooLargeError, shown_picture
from .streams import PictureConverter, ffmpeg_reason, shown_path
from .times import FrameNumber, parse_time

__all__ = ["FrameSeries", "frame_series", "names_frame_series", "IMAGE_SUFFIXES"]

#: the picture formats a series may be stored in (lower case; matched without regard to case)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
                            ".jp2", ".exr", ".dpx"})
#: names an RGB series goes by beside other series (flow, masks) in the same folder
_RGB_NAMES = frozenset({"", "img", "image", "images", "frame", "frames", "rgb", "im", "color", "colour"})
#: a run of digits in a picture's name: one of them numbers the frames
_DIGITS = re.compile(r"\d+")
#: series listed by an error, at most
_LISTED = 4


@dataclass(frozen=True)
class FrameSeries:
    """The pictures of one series in frame order.

    Attributes:
        source: the folder or glob it was read from, as the clips' ``source``.
        files: the pictures, ordered by their numbers.
    """

    source: str
    files: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.files)


def names_frame_series(path: str | bytes | os.PathLike) -> bool:
    """Whether ``path`` is read as a folder of frames: an existing directory, or a glob
    (``*``, ``?``, ``[``) of pictures (``img_*.jpg``, or ending in ``*``) whose folder exists and
    which names no existing file."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False   # the file reader names what a path must be
    p = Path(os.fsdecode(path))
    try:
        return stat.S_ISDIR(p.stat().st_mode)
    except OSError:  # no such file: a glob, or a missing file for the file reader to name
        return _is_glob(p.name) and p.parent.is_dir()
    except ValueError:   # a NUL in the name: the file reader's error
        return False


def _is_glob(name: str) -> bool:
    """A name with glob characters that can only mean pictures (``img_*.jpg``, ``*``): a missing
    ``take[1].mp4`` is a missing file, not a pattern matching no picture."""
    return any(c in name for c in "*?[") and (os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
                                               or name.endswith("*"))


def frame_series(path: str | bytes | os.PathLike) -> FrameSeries:
    """The series of pictures ``path`` names (a folder, or a glob in one); :class:`VideoReadError`
    naming the folder when it holds no numbered pictures, several series none of which is the
    RGB one, two pictures with the same number (``img_1.png``, ``img_01.png``), or one picture."""
    p = Path(os.fsdecode(path))
    folder, glob = (p.parent, p.name) if _is_glob(p.name) and not p.is_dir() else (p, None)
    try:
        # hidden files are not frames: macOS writes '._img_00001.jpg' beside each picture copied
        names = sorted(e.name for e in os.scandir(folder) if not e.name.startswith(".") and _is_file(e))
    except OSError as e:
        raise VideoReadError(f"{shown_path(folder)}: cannot be read ({e.strerror or e})") from None
    series = _series_of([n for n in names if glob is None or fnmatch.fnmatchcase(n, glob)])
    if not series:
        if glob is not None:
            raise VideoReadError(f"{shown_path(p)}: no numbered picture in {shown_path(folder)} matches {glob!r}; "
                                 "give a video file or a folder of frames")
        raise VideoReadError(f"{shown_path(p)}: is a directory without numbered pictures (frames such as "
                             "img_00001.jpg), not a video file; give a video file or a folder of frames")
    key = _rgb_series(p, series)
    numbered = sorted(series[key])
    for (a, first), (b, second) in zip(numbered, numbered[1:]):
        if a == b:
            raise VideoReadError(f"{shown_path(folder)}: two pictures are frame {a} ({first} and {second}); "
                                 "a series numbers each frame once")
    return FrameSeries(source=str(p), files=tuple(folder / name for _, name in numbered))


def _is_file(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is a file (through links); a link that loops is none (its OSError
    made the whole folder unreadable)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _series_of(names: list[str]) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """The series among ``names``: ``(text before, text after the frame number) → [(number,
    name)]``. Any run of digits may number the frames (``img_00001.jpg``, ``00001_rgb.png``,
    ``v_Basketball_g01_c01_00001.jpg``): a series is the pictures whose names differ in one run
    only, so each run is tried and those that vary over no other picture (``g01`` above: one
    picture each) make no series. Where none does, each numbered picture is its own (one
    picture, refused as such, or a list for the error)."""
    candidates: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for name in names:
        if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
            continue
        for m in _DIGITS.finditer(name):
            candidates.setdefault((name[:m.start()], name[m.end():]), []).append((int(m.group()), name))
    series = {key: files for key, files in candidates.items() if len(files) > 1}
    if series:
        return series
    return {key: files for key, files in candidates.items()
            if _DIGITS.search(key[1]) is None}  # one key per picture: its last number's


def _rgb_series(path: Path, series: dict[tuple[str, str], list]) -> tuple[str, str]:
    """The one series to read: the only one, else the only one named as RGB frames are."""
    if len(series) == 1:
        return next(iter(series))
    rgb = [k for k in series if _words(k).strip("_-. ").lower() in _RGB_NAMES]
    if len(rgb) == 1:
        return rgb[0]
    # numbered by their last number first (per camera, not per frame across cameras), the largest first
    keys = sorted(series, key=lambda k: (_DIGITS.search(k[1]) is not None, -len(series[k]), k))
    listed = ", ".join(f"{prefix}#{suffix} ({len(series[prefix, suffix])})" for prefix, suffix in keys[:_LISTED])
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    raise VideoReadError(f"{shown_path(path)}: holds {len(series)} series of numbered pictures ({listed}{more}); "
                         f"name one with a glob, e.g. {shown_path(path / (keys[0][0] + '*' + keys[0][1]))!r}")


def _words(key: tuple[str, str]) -> str:
    """A series' name without its number and suffix: ``img_`` of ``img_#.jpg``, ``_rgb`` of ``#_rgb.png``."""
    return key[0] + os.path.splitext("#" + key[1])[0][1:]   # ('.jpg' alone is a name to splitext, not a suffix)


# ----------------------------------------------------------------------------------------------
# reading


def frame_range(series: FrameSeries, start, end, fps: float | None) -> range:
    """The positions ``[start, end)`` selects: seconds (numbers, ``"2.5s"``, ``"1:30"``) need
    ``fps``; frame numbers (``"60"``) count the series' pictures from 0."""
    name = series.source

    def position(value, what: str, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, (str, bool)):
            try:
                value = parse_time(value, fps or 1.0, what)  # frame numbers need no rate
            except InputError as e:
                raise VideoReadError(f"{shown_path(name)}: {e}") from None
            if isinstance(value, FrameNumber):
                return value.frame
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise VideoReadError(f"{shown_path(name)}: {what} must be a time in seconds or a frame number, got {value!r}")
        if not fps:
            raise VideoReadError(f"{shown_path(name)}: {what}={value!r} is in seconds, but a folder of frames has no "
                                 "frame rate; give fps= (the rate the pictures were taken at) or a frame number "
                                 "like '60'")
        seconds = float(value)
        if not np.isfinite(seconds) or seconds < 0:
            raise VideoReadError(f"{shown_path(name)}: {what} must be a time >= 0, got {value!r}")
        return int(np.ceil(seconds * fps - 1e-9))  # the first frame shown at or after the time

    lo, hi = position(start, "start", 0), position(end, "end", len(series))
    if lo >= len(series):
        raise VideoReadError(f"{shown_path(name)}: no frame in the time range: start frame {lo} is past the "
                             f"series' last frame, {len(series) - 1}")
    if lo >= hi:
        raise VideoReadError(f"{shown_path(name)}: start (frame {lo}) must be before end (frame {hi})")
    return range(lo, min(hi, len(series)))


def check_pictures_move(series: FrameSeries, positions: range, ranged: bool) -> None:
    """The error for a series, or a range of it, of one picture: a still picture explained as a
    video, which the readers refuse for a file of one frame too."""
    if len(positions) == 1:
        where = f"the range holds 1 frame (frame {positions[0]})" if ranged else "holds 1 picture"
        raise VideoReadError(f"{shown_path(series.source)}: {where}; a video classifier needs a moving clip of 2 "
                             "frames or more")


def check_frame_rate(name, fps) -> float | None:
    """``fps`` as a positive float (``None`` stays ``None``)."""
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) \
            or not np.isfinite(fps) or fps <= 0:
        raise VideoReadError(f"{shown_path(name)}: fps must be a number of frames per second > 0, got {fps!r}")
    return float(fps)


class PictureReader:
    """Decodes the series' pictures one at a time into ``(H, W, 3)`` uint8, each the size of the
    first decoded (after ``max_side``); refuses a picture of another stored size, naming it."""

    def __init__(self, series: FrameSeries, max_side: int | None, max_pixels: int | None) -> None:
        self.series, self.max_side, self.max_pixels = series, max_side, max_pixels
        self._picture: PictureConverter | None = None
        self._stored: tuple[int, int, Path] | None = None

    def __call__(self, position: int) -> np.ndarray:
        from .container import open_video  # (which imports the decoder, as this module does)

        file = self.series.files[position]
        where = f"frame {position} of {shown_path(self.series.source)}"
        with open_video(file, self.max_pixels) as (container, stream):
            width, height = stream.codec_context.width, stream.codec_context.height
            too_large = FrameTooLargeError(f"{shown_path(file)}: {where} is {width}x{height}, over the limit of "
                                           f"{self.max_pixels} pixels per frame (max_pixels)")
            if self.max_pixels is not None and width * height > self.max_pixels:
                raise too_large  # before its pixels are allocated
            try:
                frame = next(container.decode(stream), None)
            except (av.FFmpegError, OSError) as e:
                if self.max_pixels is not None and getattr(e, "errno", None) == errno.EINVAL:
                    raise too_large from None  # how FFmpeg's decoders refuse a picture over max_pixels
                raise VideoReadError(f"{shown_path(file)}: {where} cannot be decoded ({ffmpeg_reason(e)})") from None
            if frame is None:
                raise VideoReadError(f"{shown_path(file)}: {where} holds no picture")
            if self._picture is None:
                self._picture = shown_picture(file, frame, Fraction(1), self.max_side, self.max_pixels)
                self._stored = (frame.width, frame.height, file)
            elif (frame.width, frame.height) != self._stored[:2]:
                w, h, first = self._stored
                raise VideoReadError(f"{shown_path(file)}: frame {position} is {frame.width}x{frame.height}, but "
                                     f"{first.name} is {w}x{h}; every frame of {shown_path(self.series.source)} "
                                     "must have the same size")
            return self._picture(frame)



def describe(path) -> dict:
    """:func:`~videoxai.data.container.probe` of a folder of frames, decoding its first picture:
    ``fps`` and ``duration`` are ``None`` (pictures have no clock), ``container`` is ``"frames"``."""
    from .container import open_video

    series = frame_series(path)
    with open_video(series.files[0]) as (_container, stream):
        codec = stream.codec_context.name
    height, width = PictureReader(series, None, None)(0).shape[:2]
    return {"frames": len(series), "fps": None, "width": width, "height": height, "duration": None,
            "codec": codec, "container": "frames"}
