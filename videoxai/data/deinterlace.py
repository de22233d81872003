"""Interlaced video as players show it: each frame's two fields made whole again.

An interlaced frame (DV, DVD and broadcast MPEG-2, 1080i H.264 from AVCHD cameras and TV) holds
two fields sampled 1/50 or 1/60 s apart, on alternate lines; read as it is stored ("woven"),
anything that moves is drawn twice, its edges combed into stripes a line apart: patterns no
video model was trained on, and the first thing a saliency map would light up. Players
deinterlace such frames; :func:`progressive` does it as they do, with FFmpeg's ``bwdif`` filter
(Bob Weaver: each missing line of a frame's first field interpolated in time from the frames
around it where nothing moves, along the field where something does), one frame out per frame
in, with its timestamp: a clip's frame count, times and rate are those of the stream.

Only frames the decoder flags interlaced are changed; a progressive stream never goes through the
filter (its frames are the decoder's, bit for bit), nor do HEVC's and VVC's, whose field-coded
streams FFmpeg decodes into a frame per field (:data:`UNWOVEN_CODECS`). From the first interlaced
frame on, frames come out one decoded frame late (the filter looks at the next frame), the
stream's last ones when it ends. The first frame decoded after a seek has no frame before it (its
missing lines would come from the next frame and along the field only, a few levels from the
frame read in order), so the readers seek to the keyframe before the frame *before* the one they
want, unless the stream's frames cannot be woven (:func:`may_be_woven`,
:attr:`~videoxai.data.keyframes.PacketIndex.lead`). Frames too small for the filter (a plane
under 3 lines or columns) are given as stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction

import av
import av.filter

# bwdif's options: one frame out per frame in (not one per field, which would double the rate);
# the field order each frame declares; frames not flagged interlaced passed through unchanged
BWDIF = "mode=send_frame:parity=auto:deint=interlaced"

#: decoders whose frames are never two fields woven together: codecs without interlaced coding
#: (VP8, VP9, AV1, pictures), and HEVC and VVC, whose field-coded streams FFmpeg decodes into one
#: frame per field (flagged interlaced, with no other field in it to undo)
UNWOVEN_CODECS = frozenset({"vp8", "libvpx", "vp9", "libvpx-vp9", "av1", "libdav1d", "libaom-av1", "hevc", "vvc",
                            "gif", "png", "apng", "webp"})


def may_be_woven(stream) -> bool:
    """Whether ``stream``'s decoded frames may be interlaced ones :func:`progressive` changes:
    not where its decoder never weaves fields, nor where its header says progressive (DV, MJPEG
    and MPEG-4 part 2 leave the field order unknown)."""
    cc = stream.codec_context
    return cc.name not in UNWOVEN_CODECS and getattr(cc, "field_order", 0) != 1   # 1: AV_FIELD_PROGRESSIVE


def progressive(frames: Iterable[av.VideoFrame], stream) -> Iterator[av.VideoFrame]:
    """``frames`` (one stream's, in presentation order) with every interlaced one deinterlaced.

    Args:
        frames: decoded frames, as ``container.decode(stream)`` gives them.
        stream: their stream. Its time base is the one the frames' ``pts`` and ``duration``
            count in (and still count in on the frames given out); a decoder of
            :data:`UNWOVEN_CODECS` gives its frames as they are.
    """
    if stream.codec_context.name in UNWOVEN_CODECS:
        yield from frames
        return
    time_base = stream.time_base
    filtered: _Bwdif | None = None
    for frame in frames:
        if filtered is None and not frame.interlaced_frame:
            yield frame  # progressive so far: no filter, no delay
            continue
        if filtered is not None and not filtered.takes(frame):  # a new size or format mid-stream
            yield from filtered.finish()
            filtered = None
        if filtered is None:
            try:
                filtered = _Bwdif(frame, time_base)
            except av.FFmpegError:  # bwdif takes no plane under 3 lines or columns (16x4 4:2:0)
                yield frame  # nothing to interpolate from: shown as stored
                continue
        yield from filtered.push(frame)
    if filtered is not None:
        yield from filtered.finish()


class _Bwdif:
    """One ``buffer → bwdif → buffersink`` graph for frames of one size and pixel format."""

    def __init__(self, frame: av.VideoFrame, time_base: Fraction | None) -> None:
        self.key = (frame.width, frame.height, frame.format.name)
        self.time_base = Fraction(time_base) if time_base else Fraction(1, 90_000)
        args = {"video_size": f"{frame.width}x{frame.height}", "pix_fmt": frame.format.name,
                "time_base": str(self.time_base), "pixel_aspect": "1/1"}
        # the frame's colour tags where it has them: a pixel format bwdif does not take (packed
        # 4:2:2, NV12, RGB) is converted by a scaler FFmpeg inserts, which reads them
        if int(frame.colorspace or 2) != 2:  # 2: unspecified
            args["colorspace"] = str(int(frame.colorspace))
        if int(frame.color_range or 0):  # 0: unspecified
            args["range"] = str(int(frame.color_range))
        self.graph = graph = av.filter.Graph()
        source, sink = graph.add("buffer", **args), graph.add("buffersink")
        bwdif = graph.add("bwdif", BWDIF)
        source.link_to(bwdif)
        bwdif.link_to(sink)
        graph.configure()

    def takes(self, frame: av.VideoFrame) -> bool:
        return (frame.width, frame.height, frame.format.name) == self.key

    def push(self, frame: av.VideoFrame | None) -> Iterator[av.VideoFrame]:
        self.graph.vpush(frame)
        while True:
            try:
                out = self.graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                return
            yield self._in_stream_time(out)

    def finish(self) -> Iterator[av.VideoFrame]:
        """The frames still in the filter, once no more come."""
        yield from self.push(None)

    def _in_stream_time(self, frame: av.VideoFrame) -> av.VideoFrame:
        # bwdif counts in half the input's time base (it could give a frame per field); the
        # readers time frames in the stream's
        scale = Fraction(frame.time_base or self.time_base / 2) / self.time_base
        if frame.pts is not None:
            frame.pts = round(frame.pts * scale)
        if frame.duration:
            frame.duration = round(frame.duration * scale)
        frame.time_base = self.time_base
        return frame
