"""Positions in a video as users write them: seconds (``2.5``, ``"2.5s"``, ``"1:30"``) or frame numbers (``"60"``).

One reading for every entry point (:func:`videoxai.read_video`, :func:`videoxai.explain_video`,
``videoxai explain --start/--end``), so that ``"60"`` is frame 60 everywhere. Kept apart from
:mod:`videoxai.data.video` so that reading a time does not import the video decoder.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import InputError
from ..options.digits import digit_message, foreign_digit

__all__ = ["parse_time", "FrameNumber"]


class FrameNumber(float):
    """Seconds read from a frame number ``n``: ``(n - 0.5) / fps``, a float that remembers ``n``
    (:attr:`frame`).

    The seconds are exact only at a constant frame rate. Phones, screen recordings and GIFs vary
    theirs, so the readers (:func:`vx.read_video`, :func:`vx.sliding_windows`, and through them
    :func:`vx.explain_video`) look up the time frame ``n`` really has: ``start="60"`` starts at
    frame 60 of any file.
    """

    __slots__ = ("frame",)

    def __new__(cls, seconds: float, frame: int) -> "FrameNumber":
        obj = super().__new__(cls, seconds)
        obj.frame = int(frame)
        return obj

    def __reduce__(self):
        return FrameNumber, (float(self), self.frame)


_TIME = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)?\s*$")
#: a clock time as players show it and ``ffmpeg -ss`` takes it: ``1:30``, ``0:01:30.5``
_CLOCK = re.compile(r"^\s*(?:(\d+):)?(\d+):([0-5]?\d(?:\.\d*)?)\s*$")


def parse_time(value: float | int | str | None, fps: float | None, what: str = "time") -> float | None:
    """A position in a video, in seconds.

    Numbers are seconds (as in :func:`vx.read_video`); strings are seconds with an ``s`` suffix
    (``"2.5s"``), a clock time as players show it (``"1:30"``, ``"0:01:30.5"``), or frame indices
    without a suffix (``"60"``, or ``"60f"``). Frame ``n`` becomes the
    time half a frame before it, so that ``start="60"`` includes frame 60 and ``end="90"``
    excludes frame 90 even when timestamps are rounded; frame numbers come back as
    :class:`FrameNumber` (a float), which the readers turn into the frame's own time.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"{what} must be seconds or a frame number, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
    else:
        digit = foreign_digit(str(value))
        if digit is not None:
            # '\d' matches '٣' and float() reads it: start="٣" started at frame 3, as the command
            # line's --start no longer does (videoxai.options.digits)
            raise InputError(f"{what}: {digit_message(str(value), digit)}")
        clock = _CLOCK.match(str(value))
        m = _TIME.match(str(value))
        if clock:  # "1:30" was refused: the time a player shows is how people find a moment
            hours, minutes, secs = clock.groups()
            number, unit = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs), "s"
        elif not m:
            raise InputError(f"{what} must be seconds like '2.5s' or '1:30', or a frame number like '60', "
                             f"got {value!r}")
        else:
            number, unit = float(m.group(1)), m.group(2)
        if unit == "s":
            seconds = number
        else:
            if number != int(number):
                raise InputError(f"{what}: a frame number must be whole, got {value!r}; seconds take an 's'")
            if not fps:
                raise InputError(f"{what}: the video reports no frame rate; give seconds like '2.5s'")
            seconds = max(0.0, (number - 0.5) / fps)
            if np.isfinite(seconds):
                return FrameNumber(seconds, int(number))
    if not np.isfinite(seconds) or seconds < 0:
        raise InputError(f"{what} must be a time >= 0, got {value!r}")
    return seconds
