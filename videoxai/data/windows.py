"""Where sliding windows start and end: one planner for files, clips and live streams.

Frames arrive one at a time (decoded from a file, taken from a clip in memory, or received over
a WebSocket); a window of ``size`` frames starts every ``stride`` frames. :class:`WindowPlanner`
is told of each frame as it arrives and says whether the caller must keep it and when a window
is complete; at the end it says which last window covers the frames no window reached. It holds
no frames itself, so :func:`videoxai.data.video_windows.sliding_windows`, the stream service
(:mod:`videoxai.serve.stream`) and :func:`videoxai.timeline.explain_video` share the rule and
keep their own buffers (a ``deque(maxlen=size)`` of the kept frames holds every window exactly
when it completes).

The end of the video, when it falls inside a window, is handled one of two ways (``tail``):

* ``"shift"``: the last window is the last ``size`` frames, overlapping the one before more than
  ``stride`` says (the stream service, and the video explanations: every window is real frames);
* ``"pad"``: the last window starts on schedule and is padded by repeating its last frame
  (:func:`~videoxai.data.video_windows.sliding_windows`, whose windows keep their regular starts).

Either way a window is added only if it holds a frame no earlier window reached, and a video
shorter than one window gives one window padded to ``size``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

from ..errors import InputError

Tail = Literal["shift", "pad"]


@dataclass(frozen=True)
class WindowSpan:
    """One window: positions ``[start, stop)`` of the frames in it, plus ``padding`` repeats of the last.

    ``stop - start + padding`` is always the window size; ``index`` counts windows from 0.
    """

    index: int
    start: int
    stop: int
    padding: int = 0


class WindowPlanner:
    """Online planner of windows of ``size`` frames every ``stride`` frames (see the module docstring).

    >>> planner = WindowPlanner(size=4, stride=2)
    >>> [planner.push()[1] for _ in range(6)][-1]
    WindowSpan(index=1, start=2, stop=6, padding=0)
    >>> planner.finish()                                   # frames 0-5 are all covered
    """

    def __init__(self, size: int, stride: int | None = None, tail: Tail = "shift") -> None:
        stride = size if stride is None else stride
        for name, value in (("window size", size), ("stride", stride)):
            # numpy's integers too (a size read from an array or a config): np.int64(8) was refused
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        size, stride = int(size), int(stride)
        if tail not in ("shift", "pad"):
            raise InputError(f"tail must be 'shift' or 'pad', got {tail!r}")
        self.size, self.stride, self.tail = size, stride, tail
        self.frames = 0        # frames pushed so far
        self.windows = 0       # windows emitted so far
        self.next_start = 0    # position of the next window's first frame
        self.covered = 0       # positions [0, covered) lie in an emitted window

    def push(self) -> tuple[bool, WindowSpan | None]:
        """A frame arrived at position :attr:`frames`: ``(keep it, the window it completes or None)``.

        Frames that no window will contain (gaps when ``stride > size`` with ``tail="pad"``) need
        not be kept (nor decoded to RGB).
        """
        pos = self.frames
        self.frames += 1
        keep = pos >= self.next_start or self.tail == "shift"
        if pos == self.next_start + self.size - 1:
            span = WindowSpan(self.windows, self.next_start, pos + 1)
            self.windows += 1
            self.covered = pos + 1
            self.next_start += self.stride
            return True, span
        return keep, None

    def finish(self) -> WindowSpan | None:
        """The last window, over frames no window reached; ``None`` if there are none."""
        total = self.frames
        if total == 0 or self.covered >= total or (self.windows and self.next_start >= total):
            return None
        if total < self.size:
            span = WindowSpan(self.windows, 0, total, self.size - total)
        elif self.tail == "shift":
            span = WindowSpan(self.windows, total - self.size, total)
        else:
            span = WindowSpan(self.windows, self.next_start, total, self.size - (total - self.next_start))
        self.windows += 1
        self.covered = total
        return span


def window_spans(total: int, size: int, stride: int | None = None, tail: Tail = "shift") -> list[WindowSpan]:
    """Every window of a video of ``total`` frames, as the planner emits them."""
    planner = WindowPlanner(size, stride, tail)
    spans = [span for _ in range(total) for span in [planner.push()[1]] if span is not None]
    last = planner.finish()
    return spans + ([last] if last is not None else [])
