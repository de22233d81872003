"""Animated WebP, which FFmpeg cannot decode, read through Pillow.

FFmpeg's WebP decoder reads still pictures only: an animated WebP (what browsers, chat apps and
:func:`~videoxai.data.video_writer.write_video`'s ``.webp`` make) fails in it as "invalid data".
Pillow decodes one (libwebp's animation decoder, each frame composited on the canvas as a viewer
shows it, with its own delay), so :func:`~videoxai.data.container.open_video` gives every reader
such a file as :func:`as_quicktime` makes it: the same frames losslessly (PNG pictures) in an
in-memory QuickTime file whose frame times are the animation's. Every reader — ``read_video``,
``probe``, ``frame_times``, sliding windows, seeking by time — then reads it as it reads any
video, with no second code path to keep in step.

Timing follows browsers: a frame whose delay is 10 ms or less is shown for 100 ms (Chromium's
rule for every animated image, after Firefox's for GIF), so a 0-delay animation plays at 10 fps,
as its GIF copy does (:func:`~videoxai.data.container.read_header`). Alpha is dropped, as FFmpeg drops it
when other videos with an alpha channel are read as RGB.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np

from ..errors import VideoReadError
from .streams import shown_path

#: QuickTime time base the frames are timed in: WebP delays are whole milliseconds
MILLISECOND = Fraction(1, 1000)
#: the most decoded frame bytes (RGB) an animation may have: its frames are held in memory, as PNG
#: pictures (about that size for photographs, a little more for noise, far less for drawings),
#: once more while the conversion is copied out, and the last file's for as long as it is read
MAX_DECODED_BYTES = 2 << 30
#: a delay at most this long (ms) is shown for :data:`SHORT_DELAY_SHOWN` ms, as browsers show it
SHORT_DELAY = 10
SHORT_DELAY_SHOWN = 100


def is_animated_webp(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an animated WebP: a RIFF ``WEBP`` file with an extended header
    (``VP8X``) whose animation flag is set. ``False`` for a file that cannot be read (its
    opener says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(21)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) == 21 and bool(head[20] & 0x02)


def canvas_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an animated WebP's canvas, from its ``VP8X`` header (each stored
    less one, in 24 bits), without decoding anything."""
    with open(path, "rb") as f:
        head = f.read(30)
    return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1


def as_quicktime(path: str | os.PathLike, max_pixels: int | None = None) -> io.BytesIO:
    """The animated WebP at ``path`` as an in-memory QuickTime file to open with PyAV: each
    frame as Pillow composites it, stored as a PNG picture (lossless) timed in milliseconds by
    the animation's delays (:data:`SHORT_DELAY` rule above); the last frame lasts its own delay.

    The last file's conversion is remembered (keyed by its path, size and modification
    time), so opening it again — a probe, a read, the windows after it — does not decode it again.

    Raises:
        FrameTooLargeError: its canvas has more than ``max_pixels`` pixels (checked on the
            header, before anything is decoded).
        VideoReadError: Pillow cannot read the file (damaged, cut short), or its frames are more
            than :data:`MAX_DECODED_BYTES`.
    """
    width, height = canvas_size(path)
    if max_pixels is not None and width * height > max_pixels:
        from .decoder import FrameTooLargeError  # (the decoder imports this module's importer)

        raise FrameTooLargeError(f"{shown_path(path)}: its frames are {width}x{height}, over the limit of {max_pixels} "
                                 "pixels per frame")
    st = os.stat(path)
    return io.BytesIO(_converted(os.fspath(path), st.st_size, st.st_mtime_ns))  # (shares the bytes)


@lru_cache(maxsize=1)
def _converted(path: str, size: int, mtime_ns: int) -> bytes:
    from PIL import Image  # a dependency of the package; imported where an animated WebP is read

    buffer = io.BytesIO()
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames * im.width * im.height * 3 > MAX_DECODED_BYTES:
                raise VideoReadError(f"{shown_path(path)}: an animated WebP of {frames} frames of {im.width}x{im.height}, "
                                     f"more than the {MAX_DECODED_BYTES / 2**30:g} GiB of frames it is read into "
                                     "memory within; convert it to a video file first")
            with av.open(buffer, "w", format="mov") as out:
                stream = out.add_stream("png")
                stream.width, stream.height, stream.pix_fmt = im.width, im.height, "rgb24"
                stream.codec_context.time_base = stream.time_base = MILLISECOND
                stream.options = {"compression_level": "1"}  # fast: the file lives only in memory
                start = 0
                for index in range(frames):
                    im.seek(index)
                    im.load()  # the frame's delay is known once it is decoded
                    delay = int(im.info.get("duration") or 0)
                    shown = SHORT_DELAY_SHOWN if delay <= SHORT_DELAY else delay
                    frame = av.VideoFrame.from_ndarray(np.asarray(im.convert("RGB")), format="rgb24")
                    frame.pts, frame.time_base = start, MILLISECOND
                    for packet in stream.encode(frame):
                        packet.duration = shown
                        out.mux(packet)
                    start += shown
                out.mux(stream.encode())
    except VideoReadError:
        raise
    except Image.DecompressionBombError as e:  # past Pillow's own limit (max_pixels=None was given)
        raise VideoReadError(f"{shown_path(path)}: its frames are larger than Pillow decodes ({e})") from None
    except (OSError, ValueError, EOFError, SyntaxError) as e:  # what Pillow raises on a damaged file
        declared = _declared_size(path)
        if declared > size:  # libwebp's animation decoder reads no frame of a file cut short
            raise VideoReadError(f"{shown_path(path)}: truncated video: the file ends at byte {size} of the {declared} "
                                 "its RIFF header declares (an animated WebP cut short decodes no frame)") from None
        reason = str(e).strip() or type(e).__name__
        raise VideoReadError(f"{shown_path(path)}: an animated WebP that cannot be decoded ({reason})") from None
    return buffer.getvalue()


def _declared_size(path: str) -> int:
    """The file size a RIFF header declares (its chunk size plus the 8 bytes before it)."""
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8)[4:8], "little") + 8
