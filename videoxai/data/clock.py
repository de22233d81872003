"""A stream's timestamps made continuous where the file's clock starts over, as players show it.

MPEG transport and program streams (``.ts``, ``.m2ts``, ``.mts``, ``.mpg``) may restart their
clock partway: recordings joined end to end (``cat a.ts b.ts > c.ts``, a camera's ``.MTS``
files) each start at their own time. FFmpeg marks such formats (``AVFMT_TS_DISCONT``) and its
command line and players join the pieces into one timeline; PyAV hands the raw timestamps over.
Read raw, a second recording starting at the time the first one did put its frames among the
first one's: ``start=0.5`` of two joined 1-second recordings took frames 5-9 and 15-19, and
``frame_times`` placed frame 10 at 0.5 s instead of 1 s.

:class:`Continuous` shifts each packet's timestamps as FFmpeg's command line does: where a
packet's decoding time goes back by more than 0.1 s, or jumps forward by more than 10 s, the
rest of the stream is moved to follow on from the packet before, one frame later. Every reader
that demuxes (the decoder, the packet times, the keyframe index) takes its packets through it
(:func:`~videoxai.data.packets.stream_packets`), so all agree on each frame's time.
"""

from __future__ import annotations

import av

#: FFmpeg's ``AVFMT_TS_DISCONT``: the format's timestamps may restart (``av.format.Flags.ts_discont``,
#: a flag whose type differs between PyAV versions)
TS_DISCONT = 0x0200

#: a forward jump longer than this (in seconds) is a new recording, not a pause (FFmpeg's
#: ``-dts_delta_threshold`` default)
JUMP_S = 10.0
#: a step back longer than this (in seconds) is a new recording (FFmpeg's command line too): the
#: two fields of an interlaced frame may come as two packets with one decoding time
BACK_S = 0.1


class Continuous:
    """Rewrites the timestamps of one stream's packets, in demux order, into one continuous clock.

    Call it on every packet of the stream, in the order :meth:`av.container.InputContainer.demux`
    gives them; :attr:`jumps` counts the restarts joined so far. Formats whose timestamps cannot
    restart (mp4, mkv, webm, avi) are left as they are.
    """

    def __init__(self, container: av.container.InputContainer, stream) -> None:
        self.enabled = bool(int(container.format.flags) & TS_DISCONT) and stream.time_base is not None
        self.jump = int(JUMP_S / stream.time_base) if self.enabled else 0
        self.back = int(BACK_S / stream.time_base) if self.enabled else 0
        self.offset = 0        # ticks added to every timestamp from here on
        self.jumps = 0
        self._last = None      # the last packet's decoding time (after the offset)
        self._step = None      # how far apart the last two decoding times were

    def __call__(self, packet: av.Packet) -> av.Packet:
        if not self.enabled or packet.dts is None:
            return packet
        dts = packet.dts + self.offset
        if self._last is not None and (dts < self._last - self.back or dts - self._last > self.jump):
            # a new recording starts here: it follows the last frame, one frame later
            step = packet.duration or self._step or 1
            self.offset += self._last + step - dts
            dts = self._last + step
            self.jumps += 1
        elif self._last is not None and dts > self._last:
            self._step = dts - self._last
        if self.offset:
            packet.dts = dts
            if packet.pts is not None:
                packet.pts = packet.pts + self.offset
        self._last = dts if self._last is None else max(self._last, dts)
        return packet
