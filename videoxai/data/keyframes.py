"""A few frames of a long video by seeking to their keyframes instead of decoding everything.

Inter-coded frames depend on the frames before them back to a keyframe, so a frame can only be
decoded from the keyframe before it. Reading 8 frames spread over an hour of video in order
decodes every frame of the hour; seeking to the keyframe before each wanted frame decodes at
most one group of pictures (GOP) per frame. :func:`index_packets` lists the stream's frames from
its packets (demuxing only: no decoding), :func:`seek_plan` decides per wanted frame whether to
seek or to keep decoding (when its keyframe lies behind the frame decoded last), and
:func:`decode_at` yields the wanted frames. A time range that starts late in a long video
(``start=``, sliding windows from a point on) starts decoding at the keyframe before its first
frame (:func:`start_at`).

Frames are identified by their presentation timestamp, so the position of a frame in the
packet list is its index in the stream, as counting decoded frames from the start would give.
Anything unexpected (a frame whose timestamp no packet has, a wanted frame that never comes)
raises :class:`SeekMiss`, and the caller decodes in order instead: seeking is only a shortcut.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import av
import numpy as np

from .clock import Continuous
from .deinterlace import may_be_woven, progressive
from .packets import counts_from_the_start, decode, shown_packets


class SeekMiss(Exception):
    """Seeking did not deliver the frames the packet index promised (decode in order instead)."""


@dataclass(frozen=True)
class PacketIndex:
    """The stream's frames as its packets list them, in presentation order.

    Attributes:
        pts: ``(N,)`` int64 presentation timestamps, sorted, in ``time_base`` units.
        key: ``(N,)`` bool, True for keyframes.
        time_base: the stream's time base (seconds per unit).
        lead: frames to decode before a wanted one: 1 where the stream's frames may be interlaced
            (:func:`~videoxai.data.deinterlace.may_be_woven`), whose deinterlacing looks at the
            frame before (seeking then gives the frame reading in order gives), else 0.
    """

    pts: np.ndarray
    key: np.ndarray
    time_base: Fraction
    lead: int = 0

    def __len__(self) -> int:
        return len(self.pts)

    @cached_property
    def times(self) -> np.ndarray:
        """``(N,)`` seconds from the first frame, computed as the decoder's frame times are
        (:func:`seconds`, so a range boundary on a frame's time splits both alike)."""
        origin = int(self.pts[0])
        return np.array([seconds(int(p) - origin, self.time_base) for p in self.pts])


def seconds(ticks: int, time_base: Fraction) -> float:
    """``ticks`` units of ``time_base`` in seconds, rounded once from the exact value.

    Frame times count from the stream's first frame, which is rarely at 0 (a recording cut from
    a longer one, an MPEG-TS stream starting at 1.4 s): the difference is taken in whole ticks
    *before* converting, because subtracting two rounded times puts frame 13 of a 25 fps stream
    starting at 5 s at 0.51999999999999957 s, outside ``start=0.52``.
    """
    return int(ticks) * time_base.numerator / time_base.denominator


@dataclass(frozen=True)
class SeekStart:
    """Where decoding starts for a range whose first frame is ``first`` (a position in the index).

    Attributes:
        keyframe_pts: the keyframe to seek to (at or before the first frame).
        first_pts, first: the first frame of the range: its timestamp and position.
        origin_pts: the stream's first frame, from which frame times count.
    """

    keyframe_pts: int
    first_pts: int
    first: int
    origin_pts: int


def start_at(index: PacketIndex, seconds: float) -> SeekStart | None:
    """A :class:`SeekStart` for the first frame at or after ``seconds``, or ``None`` when
    seeking would save less than half of the decoding up to that frame."""
    first = int(np.searchsorted(index.times, seconds, side="left"))
    if first >= len(index):
        return None
    keys = np.flatnonzero(index.key[:max(first - index.lead, 0) + 1])
    keyframe = int(keys[-1]) if len(keys) else 0
    if 2 * (first - keyframe + 1) > first + 1:
        return None
    return SeekStart(int(index.pts[keyframe]), int(index.pts[first]), first, int(index.pts[0]))


def index_packets(container: av.container.InputContainer, stream) -> PacketIndex | None:
    """Demux ``stream`` (no decoding) into a :class:`PacketIndex`; ``None`` where seeking by
    timestamp cannot work: a packet without a timestamp, two frames with the same one, no
    keyframe, no time base, a clock that restarts (:mod:`~videoxai.data.clock`), or a program
    stream cut short (:func:`~videoxai.data.packets.counts_from_the_start`). Packets the demuxer
    marks as discarded (an edit list's cut frames) produce no frame and are left out."""
    tb = stream.time_base
    if tb is None or counts_from_the_start(container, stream):
        return None
    pts, key = [], []
    continuous = Continuous(container, stream)
    for packet in shown_packets(container, stream, continuous):
        if packet.size == 0 or getattr(packet, "is_discard", False):  # an older PyAV may lack the flag
            continue
        if packet.pts is None:
            return None
        pts.append(packet.pts)
        key.append(packet.is_keyframe)
    if not pts or continuous.jumps:  # seeking goes by the file's own timestamps, which restart
        return None
    order = np.argsort(pts, kind="stable")
    index = PacketIndex(np.asarray(pts, dtype=np.int64)[order], np.asarray(key, dtype=bool)[order], Fraction(tb),
                        lead=1 if may_be_woven(stream) else 0)
    if not index.key.any() or (np.diff(index.pts) <= 0).any():
        return None
    return index


def seek_plan(index: PacketIndex, targets: list[int]) -> tuple[list[int | None], int]:
    """For each wanted position (sorted, unique), the keyframe position to seek to (``None``:
    keep decoding), and the number of frames that plan decodes."""
    keys = np.flatnonzero(index.key)
    plan: list[int | None] = []
    decoded, last = 0, -1
    for target in targets:
        before = keys[keys <= max(target - index.lead, 0)]
        start = int(before[-1]) if len(before) else 0
        if last >= start:  # its keyframe is behind the frame decoded last: decoding on is cheaper
            plan.append(None)
            decoded += target - last
        else:
            plan.append(start)
            decoded += target - start + 1
        last = target
    return plan, decoded


def decode_at(container: av.container.InputContainer, stream, index: PacketIndex, targets: list[int],
              max_pixels: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(position, frame)`` for each of ``targets`` (sorted, unique positions in ``index``).

    Raises :class:`SeekMiss` when the decoder's frames do not match the index, or when any
    decoded frame, wanted or not, has more than ``max_pixels`` pixels (decoding in order then
    reports it).
    """
    plan, _ = seek_plan(index, targets)
    frames: Iterator[av.VideoFrame] | None = None
    for target, start in zip(targets, plan):
        if start is not None:  # always for the first target
            container.seek(int(index.pts[start]), stream=stream, backward=True, any_frame=False)
            frames = progressive(decode(container, stream), stream)
        for frame in frames:
            if max_pixels is not None and frame.width * frame.height > max_pixels:
                raise SeekMiss(f"a frame of {frame.width}x{frame.height} pixels")
            if frame.pts is None:
                raise SeekMiss("a frame without a timestamp")
            if getattr(frame, "is_corrupt", False):  # decoding in order leaves out a cut last frame
                raise SeekMiss(f"a damaged frame at pts {frame.pts}")
            position = int(np.searchsorted(index.pts, frame.pts))
            if position >= len(index) or index.pts[position] != frame.pts:
                raise SeekMiss(f"a frame at pts {frame.pts} that no packet lists")
            if position == target:
                yield position, frame
                break
            if position > target:
                raise SeekMiss(f"frame {target} was not decoded after seeking")
        else:
            raise SeekMiss(f"the stream ended before frame {target}")
