"""A video stream's packets as every reader takes them: on one clock, without a frame the file was cut inside.

The decoder, the packet times and the keyframe index all demux through :func:`stream_packets`,
so that they agree on which frames there are and when each is shown (the packet times and the
index through :func:`shown_packets`, which also leaves out the frames the decoder drops at the
start of a stream cut at an open-GOP keyframe):

* where the file's clock restarts (recordings joined end to end), the timestamps follow on
  (:class:`~videoxai.data.clock.Continuous`);
* a file cut off inside a frame's data (a download stopped partway) ends with that frame's
  first part. FFmpeg decodes it without an error: an MPEG-TS frame with its missing part
  concealed, a GIF frame with its missing rows left from the frame before. The truncated file
  was read with that frame last, and ``num_frames=8`` always takes the last frame: a clip of
  seven frames and a damaged one (a mean error of 30-75 grey levels on random pictures). Where the
  container has no index to tell the file is cut (MPEG-TS and program streams, GIF:
  :func:`~videoxai.data.video.read_video` reads them as the shorter video they have become), the
  frame the cut falls in is left out (in any container whose demuxer flags the packet it read
  short at the file's end, as FLV, AVI past its frames' index, IVF and NUT do): a GIF's by its data blocks (:func:`_gif_image_ends`), an
  MPEG-TS one by the TS packet the file ends inside, or by the last TS packet not ending the frame
  where the file ends between two (:func:`_ts_cut_inside`), a program stream's by the packet or
  pack header it ends inside, or by its last packet being the video's (:func:`_ps_cut_inside`);
  with B-frames, so are the frames shown after one the cut took, which a decoder stores before
  it (:func:`_before_a_gap`; in a program stream, whose frames mostly carry no time, the frames
  its decoder still held at the end: :func:`_held_at_the_end`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from functools import lru_cache

import av

from .clock import Continuous
from .streams import shown_path

#: the packet sizes of MPEG-TS and where their sync byte is: plain, Blu-ray's M2TS (a 4-byte time
#: code first), DVB with error correction; a whole file is a multiple of its packet size
TS_PACKET_SIZES = ((188, 0), (192, 4), (204, 0))


def stream_packets(container: av.container.InputContainer, stream, continuous: Continuous | None = None,
                   hidden: set[int] | None = None) -> Iterator[av.Packet]:
    """``container.demux(stream)`` on one continuous clock (``continuous``, which counts the
    restarts it joins; a new one by default), without the last frame's packet where the file was
    cut inside it; the empty packet that flushes the decoder still comes last.

    In an MPEG-TS (any: one of whole TS packets may have been cut between two frames) or a
    program stream cut short, the frames shown after one the cut took (:func:`_before_a_gap`)
    are left out too, or, given ``hidden``, kept (the frames shown before
    them may refer to them) with their presentation times added to ``hidden`` before the
    decoder shows them (:func:`decode` leaves those frames out)."""
    continuous = continuous or Continuous(container, stream)
    cut, cut_short = _cut_inside(container, stream)
    demuxed = container.demux(stream)
    packets = _whole(_timed_once(demuxed) if container.format.name == "mpeg" else demuxed, continuous, cut,
                     alone=cut is _short_read)
    if cut_short and container.format.name == "mpeg":
        name = container.name
        changed = os.stat(name[len("file:"):] if name.startswith("file:") else name).st_mtime_ns
        yield from _before_the_held(packets, _held_at_the_end(name, container.size, changed, stream.index), hidden)
    else:
        # an MPEG-TS that ends with a whole frame may be whole: the frames left out are named
        whole_end = container.format.name == "mpegts" and not cut(None)
        yield from _before_a_gap(packets, hidden, container.name.removeprefix("file:") if whole_end else None) \
            if cut_short else packets


def counts_from_the_start(container: av.container.InputContainer, stream) -> bool:
    """Whether :func:`stream_packets` names the frames it leaves out by their place from the
    stream's first packet (a program stream cut short, :func:`_held_at_the_end`): demuxed from
    a seek, it cannot tell them, and the stream is read in order."""
    return container.format.name == "mpeg" and _cut_inside(container, stream)[1]


def _timed_once(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """A program stream's ``packets`` with a PES packet's times on one frame only: the first that
    begins in it (as the standard gives them). FFmpeg's parser now and then gives them to the
    frame going on when the PES packet begins too: an H.264 .mpg read its 16th frame (a P-frame)
    at its 14th's time, and its times went back."""
    held = None
    for packet in packets:
        if held is not None and packet.pts is not None and packet.pos is not None and \
                (held.pos, held.pts, held.dts) == (packet.pos, packet.pts, packet.dts):
            held.pts = held.dts = None
        if held is not None:
            yield held
        held = packet
    if held is not None:
        yield held


def _whole(packets: Iterator[av.Packet], continuous: Continuous,
           cut: Callable[[av.Packet], bool], alone: bool = False) -> Iterator[av.Packet]:
    """:func:`stream_packets` before :func:`_before_a_gap`; ``alone``: a cut packet with none
    before it is kept (the readers' checks then name the file truncated, or one frame)."""
    held = None  # the last packet with data: yielded once another follows, or if it is whole
    given = False  # whether a packet with data was yielded
    for packet in packets:
        packet = continuous(packet)
        if packet.size == 0:
            if held is not None and (not cut(held) or (alone and not given)):
                yield held
            held = None
            yield packet
            continue
        if held is not None:
            given = True
            yield held
        held = packet
    if held is not None and (not cut(held) or (alone and not given)):
        yield held


#: packets fed to the decoder, at most, to find the first frame it shows: a decoder's delay is a
#: few frames, but an HEVC stream cut between keyframes shows nothing before the next one, seconds
#: later; past this, no packet is left out
FIRST_FRAME_PACKETS = 600


def shown_packets(container: av.container.InputContainer, stream,
                  continuous: Continuous | None = None) -> Iterator[av.Packet]:
    """:func:`stream_packets` less the frames before the first one the decoder shows, for the
    readers that list frames from packets (frame times and counts, the keyframe index).

    A stream cut from a longer one without re-encoding (``ffmpeg -ss … -c copy`` to .ts or .mkv,
    a broadcast recording) can begin at an open-GOP keyframe: the frames stored after it but
    shown before it refer to frames that are not in the file, and FFmpeg drops them, as players
    do. Listed from the packets they were frame 0, so every time and position counted from it
    was one frame (or a few) off the decoder's: ``probe`` said 111 frames for 110, and a range
    read by seeking (``start=5.0`` of a long mkv) returned the frame before the one decoding in
    order returned. The first shown frame is found by decoding the first few packets.
    """
    pending: list[av.Packet] | None = []  # None once the first shown frame is known
    for packet in stream_packets(container, stream, continuous):
        if pending is None:
            yield packet
            continue
        pending.append(packet)
        try:
            frame = next(iter(packet.decode()), None)
            done = frame is not None or packet.size == 0 or len(pending) >= FIRST_FRAME_PACKETS
        except (av.FFmpegError, OSError):  # decoding in order says what is wrong
            frame, done = None, True
        if done:
            first = frame.pts if frame is not None else None  # None: leave every packet in
            yield from (p for p in pending if first is None or p.size == 0 or p.pts is None or p.pts >= first)
            pending = None
    yield from pending or []


def decode(container: av.container.InputContainer, stream, *, start_pos: int | None = None,
           left_out: list | None = None) -> Iterator[av.VideoFrame]:
    """``container.decode(stream)`` from :func:`stream_packets`, less the frames the decoder marks
    damaged once the stream's packets have run out (:func:`_damaged`).

    A damaged frame (rare) is held, with the frames after it, until another packet with data
    follows; every other frame is given out as soon as it is decoded (a live stream's latency).
    ``start_pos``: decode from the packet at that byte position (a keyframe) on, as the end of
    the whole stream (:func:`damaged_at_the_end`); ``left_out`` gets each damaged frame left out."""
    hidden: set[int] = set()
    given = start_pos is not None  # a damaged frame with none before it is kept: the readers name the file cut
    held: list[av.VideoFrame] = []  # from the first damaged frame on, until a packet with data follows
    for packet in stream_packets(container, stream, hidden=hidden):
        if start_pos is not None and packet.size:
            if packet.pos != start_pos:
                continue
            start_pos = None
        if packet.size and held:
            yield from held
            held = []
        for frame in packet.decode():
            if frame.pts is not None and frame.pts in hidden:
                continue
            if held or (given and _damaged(frame)):
                held.append(frame)
                continue
            given = True
            yield frame
    for frame in held:
        if not _damaged(frame):
            yield frame
        elif left_out is not None:
            left_out.append(frame)


def damaged_at_the_end(container: av.container.InputContainer, stream, key_pos: int) -> int:
    """How many frames :func:`decode` leaves out at the end of the stream as damaged (the frame
    a file without an index was cut inside, which demuxing alone counts), decoding only from the
    keyframe packet at byte ``key_pos`` (the last one) on."""
    lost: list[av.VideoFrame] = []
    for _ in decode(container, stream, start_pos=key_pos, left_out=lost):
        pass
    return len(lost)


def _damaged(frame: av.VideoFrame) -> bool:
    """Whether the decoder marks ``frame`` as damaged (FFmpeg's ``AV_FRAME_FLAG_CORRUPT``).

    A stream without a container index (raw H.264, NUT, an ASF) cut inside its last frame
    demuxes the frame's first part as a whole packet; the decoder conceals the rest and says so.
    Such a frame given out from the last packet or the flush is the one the cut fell in
    (:func:`decode` leaves it out); a damaged frame earlier in the stream is kept, as before.

    A raw HEVC stream (``.hevc``, ``.h265``) cut inside its last frame keeps it, damaged: this
    cannot be told reliably. Its last packet ends at the file's end whether the file is cut or
    whole (no container says how long a frame is), and FFmpeg's HEVC decoder (libavcodec 62)
    gives the frame out with no flag, no ``decode_error_flags`` and no error. Cut in its last
    row of coding units (anywhere, in a picture of one row), not even a log line at debug level
    shows it (x265's noise frames: a mean error of 1-50 levels); cut earlier, its wavefront entry
    points lie past the data, which it logs, and only ``err_detect=explode`` makes an error of,
    one that would also fail a read at any damaged frame earlier in the stream. (An encoder's
    MD5 picture hash SEI would tell, where one is written: x265 writes none by default.)"""
    return bool(getattr(frame, "is_corrupt", False))


def _cut_inside(container: av.container.InputContainer, stream) -> tuple[Callable[[av.Packet], bool], bool]:
    """Whether the last packet of the stream is a frame the file was cut inside, and whether the
    file is known to be cut short whatever its last packet (an MPEG-TS or program stream)."""
    name = container.format.name
    if name == "mpegts":
        cut, short = _ts_cut_inside(container.name, container.size, stream.id)
        return (lambda packet: cut), short
    if name == "mpeg":
        cut = _ps_cut_inside(container.name, container.size)
        return (lambda packet: cut), cut
    if name == "gif":
        return (lambda packet: not _gif_image_ends(bytes(packet))), False
    # elsewhere FFmpeg flags the packet it read short at the end of the file (FLV, AVI, IVF, NUT,
    # ASF, …: the demuxer asked for the frame's size and the file ended): its frame was decoded
    # with the missing part concealed, a damaged last frame that num_frames always takes
    return _short_read, False


def _short_read(packet: av.Packet) -> bool:
    """Whether the demuxer flagged ``packet`` as read short (``AV_PKT_FLAG_CORRUPT``), as FFmpeg
    does where the file ends inside the frame's data."""
    return bool(packet.is_corrupt)


def _before_a_gap(packets: Iterator[av.Packet], hidden: set[int] | None,
                  name: str | None = None) -> Iterator[av.Packet]:
    """The ``packets`` of a stream that may be cut short, less the frames shown after a frame the cut took
    (``hidden``: kept, their presentation times added to it, as :func:`stream_packets` says).

    With B-frames a stream is stored in decoding order, and a cut takes the frames decoded after
    it: the frame a B-frame refers forward to is stored before it and shown after it. An MPEG-TS
    download of 48 frames cut inside frame 46 kept frame 47: it was read as 47 frames, the last
    one shown a frame late and each position from 46 on naming the frame after it. A frame
    taken by the cut was decoded after every frame kept, and is shown no earlier than it is
    decoded: the frames shown up to the last decoding time kept are all there. Those shown
    later are held until the end, then given up from the first gap on: a step between two
    frames longer than one frame lasts by three quarters of a frame, i.e. a frame missing (a
    whole file's last frames, shown one after the other, pass; so does a variable rate's jitter).

    The frames a cut takes from before a frame it kept are B-frames shown before it, decoded
    after it: where as many of them came as the stream puts after any frame
    (:class:`_ShownBefore`), none is missing, and a longer step is the frame's own: it stays (a
    whole file whose last frame is shown late, a variable rate's or a pause's, was read without
    it). Otherwise a step is a gap, and where the file may be whole (``name``: it ends with a
    whole frame) a warning names the frames left out: an MPEG-TS has no end by which a whole
    file could be told from one cut between two frames.
    """
    held: deque[av.Packet] = deque()  # in decoding order, from the first one not yet known to be whole
    decoded = None                    # the latest decoding time so far
    before: list[int] = []            # the last presentation times given out, for a frame's length
    runs = _ShownBefore()
    flush = None
    for packet in packets:
        if packet.size == 0:
            flush = packet
            break
        runs.add(packet.pts)
        held.append(packet)
        if packet.dts is not None:
            decoded = packet.dts if decoded is None else max(decoded, packet.dts)
        while held and (held[0].pts is None or decoded is None or held[0].pts <= decoded):
            out = held.popleft()
            if out.pts is not None:
                before = (before + [out.pts])[-32:]
            yield out
    late = [p for p in held if p.pts is not None and decoded is not None and p.pts > decoded]
    shown = sorted(before + [p.pts for p in held if p.pts is not None and p not in late])
    steps = sorted(b - a for a, b in zip(shown, shown[1:]) if b > a)
    step = steps[len(steps) // 2] if steps else None  # the usual frame length
    gone: set[int] = set()
    if late and step:
        most, after = runs.most, runs.after
        expected = shown[-1] + step if shown else None  # when the next frame is due
        gap = 0.0  # frame lengths from when the first frame given up was due to when it is shown
        for packet in sorted(late, key=lambda p: p.pts):
            if gone or (expected is not None and packet.pts - expected > 3 * step / 4
                        and most > after.get(packet.pts, 0)):
                gap = gap or (packet.pts - expected) / step
                gone.add(packet.pts)
            else:
                expected = packet.pts + (packet.duration or step)
        if gone and name is not None:
            last = f"last {len(gone)} frames" if len(gone) > 1 else "last frame"
            warnings.warn(f"{shown_path(name)}: its {last} left out: shown {gap:.2g} frame length{'s' * (gap != 1)} later than the frame before "
                          "it would end, after B-frames a cut between two frames may have taken (a whole MPEG-TS "
                          "whose last frame is shown late looks the same)", stacklevel=2)
    for packet in held:
        if packet.pts in gone:
            if hidden is None:
                continue
            hidden.add(packet.pts)
        yield packet
    if flush is not None:
        yield flush


class _ShownBefore:
    """For each frame added (its presentation time, in decoding order), how many frames decoded
    after it are shown before it (a reference frame's B-frames): :attr:`after` for the last 64
    frames, :attr:`most` the most any frame had."""

    def __init__(self) -> None:
        self.after: dict[int, int] = {}
        self._most = 0

    def add(self, pts: int | None) -> None:
        if pts is None:
            return
        for t in self.after:
            self.after[t] += t > pts
        self.after[pts] = 0
        if len(self.after) > 64:
            self._most = max(self._most, self.after.pop(next(iter(self.after))))

    @property
    def most(self) -> int:
        return max([self._most, *self.after.values()])


#: presentation times given to the frames a cut program stream's decoder still held at its end
#: (their packets may carry none): far below any stream's own
HELD_PTS = -(1 << 60)


def _before_the_held(packets: Iterator[av.Packet], held: frozenset[int],
                     hidden: set[int] | None) -> Iterator[av.Packet]:
    """The ``packets`` of a program stream cut short, less the frames its decoder still held when
    they ran out (``held``: positions among the packets with data, :func:`_held_at_the_end`), or,
    given ``hidden``, with them kept under presentation times added to ``hidden`` (as
    :func:`_before_a_gap` does)."""
    k = 0
    for packet in packets:
        if packet.size and k in held:
            if hidden is None:
                k += 1
                continue
            packet.pts = HELD_PTS + k  # most of a program stream's frames carry no time: name it
            hidden.add(packet.pts)
        k += packet.size > 0
        yield packet


@lru_cache(maxsize=8)
def _held_at_the_end(name: str, size: int, mtime_ns: int, index: int) -> frozenset[int]:
    """Which frames (positions among the stream's packets with data, the one the cut falls in
    left out) the decoder of a program stream with B-frames cut short still held when its
    packets ran out.

    With B-frames a decoder holds each frame until the frames shown before it are decoded; a
    cut takes the frames decoded last, and the frames it still held are those the frames the
    cut took would have come before (a P-frame decoded before the B-frames shown before it).
    Where they belong cannot be told from the packets: in a program stream most frames carry no
    time (one per PES packet does, and FFmpeg's guesses for the others go by the frames that
    follow, which the cut took: a P-frame shown after two lost B-frames was timed in their
    place). Every frame a decoder gives out before its end is in its place, as in the whole file
    (a frame shown before it would have been decoded, and given out, first). Found by decoding
    the stream once, each packet's position carried as its presentation time. A stream with no
    B-frame (none decoded, none shown out of order, the frame the cut falls in none) keeps them:
    an MPEG-2 decoder holds its last frame whatever the stream."""
    from .container import MAX_PIXELS  # (container imports this module)

    with av.open(name) as container:
        stream = container.streams[index]
        stream.thread_type = "SLICE"  # frame threading holds frames too
        # as every reader decodes: a frame far larger than the header says fails before it costs memory
        stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(MAX_PIXELS)}
        cut, _ = _cut_inside(container, stream)
        continuous = Continuous(container, stream)
        packets = [p for p in map(continuous, container.demux(stream)) if p.size]
        last = bytes(packets.pop()) if packets and cut(packets[-1]) else b""
        shown, b_frames = [], _b_frame(last, stream.codec_context.name)
        try:
            for k, packet in enumerate(packets):
                packet.pts = k
                shown += [frame for frame in packet.decode()]
            held = [frame for frame in stream.codec_context.decode(None)]
        except (av.FFmpegError, OSError):  # decoding in order says what is wrong
            return frozenset()
    order = [frame.pts for frame in shown + held]
    b_frames = b_frames or any(frame.pict_type == av.video.frame.PictureType.B for frame in shown + held)
    if not b_frames and None not in order and all(a < b for a, b in zip(order, order[1:])):
        return frozenset()
    if not shown:  # the decoder gave out none before its end: its first is the stream's, and nothing comes before it
        held = held[1:]
    return frozenset(frame.pts for frame in held if frame.pts is not None)


def _b_frame(data: bytes, codec: str) -> bool:
    """Whether the frame ``data`` (a packet, or its first part) of an MPEG-1/2 or H.264 stream may
    be a B-frame, by its picture header or its first slice's header: ``True`` where too little of
    it is left to tell; ``False`` for other codecs (and for no data)."""
    if not data or codec not in ("mpeg1video", "mpeg2video", "h264"):
        return False
    if codec != "h264":
        i = data.find(b"\x00\x00\x01\x00")  # the picture header: 10 bits of order, then the type
        return i < 0 or i + 6 > len(data) or (data[i + 5] >> 3) & 7 == 3
    i = 0
    while (i := data.find(b"\x00\x00\x01", i) + 3) >= 3 and i < len(data):
        if data[i] & 0x1F in (1, 5):  # a slice: first_mb_in_slice, then slice_type, both ue(v)
            bits = "".join(f"{b:08b}" for b in data[i + 1:i + 9].replace(b"\x00\x00\x03", b"\x00\x00"))
            values, j = [], 0
            while len(values) < 2 and (zeros := bits.find("1", j) - j) >= 0 and j + 2 * zeros < len(bits):
                values.append(int(bits[j + zeros:j + 2 * zeros + 1], 2) - 1)
                j += 2 * zeros + 1
            return len(values) < 2 or values[1] % 5 == 1
    return True


#: an MPEG program stream's pack header, which begins each of its packs
PACK_START = b"\x00\x00\x01\xba"
#: how far from its end a program stream's last pack header is looked for
PS_TAIL = 1 << 16


def _ps_cut_inside(name: str, size: int | None) -> bool:
    """Whether an MPEG program stream (``.mpg``, ``.vob``, a camcorder's ``.mod``) ends inside a
    frame: from its last pack header on, every packet says how long it is, and a whole file
    ends where its last packet does. A file cut inside a packet ends inside a frame's data (or,
    in another stream's packet, very likely while a frame was still coming); so does one cut
    inside a pack header, or after a video packet that fills its pack (a muxer pads the pack the
    last frame ends in, with a padding packet or stuffing in the packet's header beyond the
    others', or ends the program). No pack header in the last 64 KiB, or bytes that are not
    packets: no verdict."""
    path = name[len("file:"):] if name.startswith("file:") else name
    if not size:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(max(0, size - PS_TAIL))
            tail = f.read()
    except OSError:
        return False
    i = tail.rfind(PACK_START)
    if i < 0:
        return False
    # a whole file ends after a packet: one that ends inside a pack header, or a packet's, is cut,
    # and the frame the packet before holds the start of may go on in the pack cut off
    if len(tail) < i + 5:
        return True
    if tail[i + 4] >> 6 == 1:          # MPEG-2: 14 bytes and stuffing
        if len(tail) < i + 14:
            return True
        i += 14 + (tail[i + 13] & 7)
    elif tail[i + 4] >> 4 == 2:        # MPEG-1: 12 bytes
        i += 12
    else:
        return False
    if i >= len(tail):                 # a pack with no packet
        return True
    code, start = 0, i
    while i + 4 <= len(tail):
        if tail[i:i + 3] != b"\x00\x00\x01":
            return False                # not a packet: no verdict
        code, start = tail[i + 3], i
        if code == 0xB9:               # the program's end
            return False
        if code == 0xBA or i + 6 > len(tail):
            return code != 0xBA        # a pack header cut short, or the next pack (not the last)
        i += 6 + int.from_bytes(tail[i + 4:i + 6], "big")
    # ending with a video packet: a muxer pads the pack a stream's last frame ends in (a padding
    # packet, the program's end, or stuffing in the packet's header beyond the usual), and the
    # packs before are full of frames that go on in the next one (a 1 GiB piece of a DVD's
    # title, a recorder stopped between two packs)
    if i != len(tail):
        return True
    if not 0xE0 <= code <= 0xEF:
        return False
    usual = [_stuffing(tail, m.start()) for m in re.finditer(b"\x00\x00\x01[\xe0-\xef]", tail[:start])]
    last = _stuffing(tail, start)
    # (with no packet to compare, a byte: some muxers (DVD's) stuff one into every header)
    return last is not None and last <= max((u for u in usual if u is not None), default=1)


def _stuffing(data: bytes, i: int) -> int | None:
    """How many stuffing bytes the header of the PES packet at ``data[i]`` has: an MPEG-2 one's
    beyond the fields its flags name, an MPEG-1 one's before them; ``None`` where it does not
    say (cut, or an MPEG-2 header extension)."""
    if i + 9 > len(data):
        return None
    if data[i + 6] >> 6 == 2:          # MPEG-2: flags, then the header's length
        flags = data[i + 7]
        named = {2: 5, 3: 10}.get(flags >> 6, 0) + 6 * bool(flags & 0x20) + 3 * bool(flags & 0x10) + \
            bool(flags & 0x08) + bool(flags & 0x04) + 2 * bool(flags & 0x02)
        if flags & 0x01:               # the extension: its flags, then what they name
            if i + 9 + named >= len(data):
                return None
            more = data[i + 9 + named]
            if more & 0x40 or more & 0x01:  # a pack header inside, or a second extension: not read
                return None
            named += 1 + 16 * bool(more & 0x80) + 2 * bool(more & 0x20) + 2 * bool(more & 0x10)
        return data[i + 8] - named
    n = 0
    while i + 6 + n < len(data) and data[i + 6 + n] == 0xFF and n < 16:
        n += 1
    return n


def _gif_image_ends(data: bytes) -> bool:
    """Whether the GIF frame ``data`` (FFmpeg's packet: the file's header for the first frame,
    extensions, the image) holds its image's last data block (the empty block that ends it)."""

    def blocks_end(i: int) -> int | None:  # data sub-blocks from i: where they end, None if cut
        while i < len(data):
            if data[i] == 0:
                return i + 1
            i += 1 + data[i]
        return None

    i = 0
    if data[:3] == b"GIF":  # header and logical screen descriptor, then its colour table
        i = 13 + (3 << ((data[10] & 7) + 1) if len(data) > 10 and data[10] & 0x80 else 0)
    while i is not None and i < len(data):
        if data[i] == 0x21:                     # an extension: label, then data blocks
            i = blocks_end(i + 2)
        elif data[i] == 0x2C:                   # the image: descriptor, colour table, LZW code size, data
            if i + 10 > len(data):
                return False
            table = 3 << ((data[i + 9] & 7) + 1) if data[i + 9] & 0x80 else 0
            return blocks_end(i + 10 + table + 1) is not None
        else:
            return True  # not a layout we know: no verdict
    return False


def _ts_cut_inside(name: str, size: int | None, pid: int) -> tuple[bool, bool]:
    """Whether an MPEG-TS file ends inside a frame of the stream ``pid``, and whether it is cut
    short at all (it ends inside a TS packet, or inside a frame).

    The file is a sequence of fixed-size TS packets, each a piece of one stream's frame; a whole
    file ends with a whole one. FFmpeg drops the TS packet a cut falls in and hands over the
    frame assembled so far as if it were whole. That frame is whole only where the cut packet
    began the stream's next frame (its "payload unit start" flag); where the cut packet continues
    the frame, or belongs to another stream (audio between the frame's pieces) or shows too little
    to tell, the frame is taken as cut. A file of whole TS packets is cut inside the frame where
    the stream's last TS packet does not end it (:func:`_ts_frame_ends`).
    """
    path = name[len("file:"):] if name.startswith("file:") else name
    try:
        with open(path, "rb") as f:
            head = f.read(3 * 204 + 4)
            for packet_size, sync in TS_PACKET_SIZES:  # the sync byte 0x47 begins every packet
                if len(head) >= 2 * packet_size + sync + 1 and \
                        head[sync] == head[packet_size + sync] == head[2 * packet_size + sync] == 0x47:
                    break
            else:
                return False, False  # not a layout we know: no verdict
            if not size:
                return False, False
            if size % packet_size == 0:
                # cut on a packet boundary, as a recorder that stops (a DVB capture, a stream dump)
                # leaves it: FFmpeg hands over the frame assembled so far all the same
                whole = size // packet_size
                f.seek((whole - min(whole, TS_TAIL // packet_size)) * packet_size)
                # ending with a whole frame, it may be whole or cut between two frames (a
                # frame a B-frame shown before it refers to may be gone): short, as far as
                # B-frames go (:func:`_before_a_gap`, which a whole file passes unchanged)
                return not _ts_frame_ends(f.read(), packet_size, sync, pid), True
            f.seek(size - size % packet_size + sync)
            tail = f.read(4)
    except OSError:
        return False, False
    if len(tail) < 4 or tail[0] != 0x47:
        return True, True
    starts = bool(tail[1] & 0x40)
    return not (starts and ((tail[1] & 0x1F) << 8 | tail[2]) == pid), True


#: how far from its end an MPEG-TS file's last packets of the video are looked at
TS_TAIL = 1 << 16


def _ts_frame_ends(tail: bytes, packet_size: int, sync: int, pid: int) -> bool:
    """Whether the last TS packet of stream ``pid`` in ``tail`` (whole TS packets) ends that
    stream's frame (its PES packet).

    A frame's PES packet says how long it is, except a video frame's, whose length may be left
    0 (FFmpeg's muxer always does); a TS packet carries one PES packet's bytes only, so the last
    piece of a frame is padded to the TS packet's size with stuffing bytes in its adaptation
    field, and a piece that fills its TS packet is followed by more, but for a frame that fills
    its TS packets exactly (about 1 in 184), which is taken as cut. Bytes that are not TS packets,
    or no packet of ``pid``: no verdict (``True``).
    """
    payload, last = 0, None  # the PES bytes from the packet looked at to the end; the last packet
    for k in range(len(tail) // packet_size - 1, -1, -1):
        packet = tail[k * packet_size + sync:(k + 1) * packet_size]
        if packet[0] != 0x47:
            return True
        control = packet[3] >> 4 & 3
        if ((packet[1] & 0x1F) << 8 | packet[2]) != pid or not control & 1:
            continue  # another stream's, or an adaptation field without payload (a clock)
        start = 5 + packet[4] if control & 2 else 4
        payload += max(0, len(packet) - start)
        last = last or packet
        if packet[1] & 0x40:  # "payload unit start": the frame's PES packet begins here
            head = packet[start:start + 6]
            length = int.from_bytes(head[4:6], "big") if head[:3] == b"\0\0\1" and len(head) == 6 else 0
            if length:
                return payload >= 6 + length
            break
    return True if last is None else _stuffed(last)


def _stuffed(packet: bytes) -> bool:
    """Whether the TS ``packet`` (from its sync byte) has stuffing bytes in its adaptation field:
    what a muxer adds to the last piece of a PES packet (a frame) that does not fill it."""
    if not packet[3] & 0x20:
        return False
    length = packet[4]
    if length == 0:  # an adaptation field of its length byte only: one byte of stuffing
        return True
    flags, i = packet[5], 6
    i += 6 if flags & 0x10 else 0     # the programme clock
    i += 6 if flags & 0x08 else 0     # the original programme clock
    i += 1 if flags & 0x04 else 0     # a splice countdown
    if flags & 0x02 and i < len(packet):  # private data, with its length
        i += 1 + packet[i]
    if flags & 0x01 and i < len(packet):  # the extension, with its length
        i += 1 + packet[i]
    return i < 5 + length
