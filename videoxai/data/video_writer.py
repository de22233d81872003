"""Writing video files (overlays, reports, test clips), on PyAV and Pillow.

:func:`write_video` picks the encoder from the suffix; the output is the same bytes for the same
frames in every process (no timestamps or encoder identifiers that change from run to run).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from ..clip import Clip
from ..errors import InputError, VideoXAIError
from .streams import ffmpeg_reason, shown_path

__all__ = ["write_video", "WRITERS"]


def _frames_uint8(frames) -> np.ndarray:
    if isinstance(frames, Clip):
        return frames.uint8()
    return Clip.from_array(frames).uint8()


def _rate(fps: float) -> Fraction:
    # any real number but a bool: PyAV gives a stream's rate as a Fraction (30000/1001), which was
    # refused, and fps=True was taken for 1 fps
    if isinstance(fps, bool) or not (isinstance(fps, numbers.Real) and np.isfinite(float(fps)) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    return Fraction(float(fps)).limit_denominator(1001)


def _encode_av(frames: np.ndarray, path: Path, fps: float, codec: str, options: dict[str, str],
               container_options: dict[str, str] | None = None, even: bool = False) -> None:
    if even:
        # yuv420p stores chroma at half resolution; x264 refuses odd sizes. Pad by repeating the
        # last row/column rather than cropping, so no pixel of the content is lost.
        t, h, w, _ = frames.shape
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    if not _has_encoder(codec):
        raise VideoXAIError(f"{shown_path(path)}: this FFmpeg build has no {codec} encoder; choose another "
                            f"format among {', '.join(sorted(WRITERS))}")
    t, h, w, _ = frames.shape
    rate = _rate(fps)
    # "file:": a name with a colon is a file, not an FFmpeg protocol (http:, pipe:, ...)
    with av.open(f"file:{path}", mode="w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        frame_tb = 1 / rate
        stream.time_base = frame_tb
        stream.options = options
        for i, rgb in enumerate(frames):
            # converted here, not by the encoder: left to PyAV's encode path, the RGB → YUV step
            # gave different bytes from run to run for the same frames (x264 with one thread too),
            # so a clip written twice was not the same file; this conversion is reproducible
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format=stream.pix_fmt)
            _zero_padding(frame)
            frame.pts = i
            # not stream.time_base: the muxer rewrites it after the first packet (mp4, webm)
            frame.time_base = frame_tb
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _zero_padding(frame: av.VideoFrame) -> None:
    """Zero the bytes of ``frame``'s planes beyond each row's pixels (the alignment padding).

    FFmpeg leaves them as the allocator found them, and x264 reads some of them: the same pixels
    then gave different files depending on what the process had done before (one clip in ten,
    in a loop of 40 clips).
    """
    for plane in frame.planes:
        buf = np.frombuffer(memoryview(plane), np.uint8)
        used = plane.line_size * plane.height
        rows = buf[:used].reshape(plane.height, plane.line_size)
        rows[:, plane.width:] = 0  # yuv420p: one byte a pixel in every plane
        buf[used:] = 0


def _write_h264(frames, path, fps, quality):
    # crf 18 is visually lossless for x264; "+faststart" puts the index first so browsers and
    # streaming readers can start before the whole file has arrived. Sliced threads (what PyAV
    # asks for today, pinned here): with x264's frame threads the bytes depended on thread timing
    # (the same clip encoded twice in one busy process differed); slices are fixed by the count.
    # No lookahead (rc-lookahead=0, which also turns off mb-tree): x264's lookahead reads
    # memory it never wrote when a side is ≤ 112 px (112 × 112 clips, 720 × 112 and 40 × 720
    # strips; asm or not), so one file in ~20 differed from process to process, and every file
    # under glibc's MALLOC_PERTURB_; without it the bytes are the same. It costs nothing we
    # measured: 48 frames of the 720p sample gave a 1.3 % smaller file in the same time.
    _encode_av(frames, path, fps, "libx264", {"crf": str(quality), "preset": "medium",
                                              "x264-params": "sliced-threads=1:rc-lookahead=0"},
               {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov") else None,
               even=True)


def _write_webm(frames, path, fps, quality):
    codec = "libvpx" if not _has_encoder("libvpx-vp9") and _has_encoder("libvpx") else "libvpx-vp9"
    # constant-quality mode ("b:v 0" + crf); x264's crf 18 ~ VP9's crf 31 in visual quality
    options = {"crf": str(min(63, quality + 13)), "b:v": "0", "deadline": "good", "cpu-used": "4",
               "row-mt": "1"} if codec == "libvpx-vp9" else \
              {"crf": str(min(63, quality - 4)), "b:v": "4M", "deadline": "good", "cpu-used": "4"}
    # bitexact: the Matroska muxer draws a random track UID (and a segment UID) per file, so the
    # same frames written twice (a report's overlays) gave different bytes
    _encode_av(frames, path, fps, codec, options, {"fflags": "+bitexact"}, even=False)


def _write_avi(frames, path, fps, quality):
    _encode_av(frames, path, fps, "mpeg4", {"qscale": "2", "flags": "+qscale"}, even=True)


def _pillow_animation(frames, path, fps, tick: int, least: int, **kwargs):
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=_durations(len(images), fps, tick, least),
                   loop=0, **kwargs)


def _durations(count: int, fps: float, tick: int, least: int) -> list[int]:
    """Each frame's display time in ms: whole ``tick`` ms, at least ``least`` ticks, and frame k
    starting at ``k / fps`` to the nearest tick.

    One duration for every frame, ``round(1000 / fps)`` ms, ran fast: GIF counts 1/100 s, so
    30 fps became 33.3 (a 10 s clip played in 9 s) and the default 8 fps became 8.3; durations of
    3 and 4 hundredths in turn keep 30 fps on average.
    """
    starts = np.rint(np.arange(count + 1) * (1000.0 / tick) / fps).astype(np.int64)
    return [int(max(least, d)) * tick for d in np.diff(starts)]


def _write_gif(frames, path, fps, quality):
    # one adaptive 256-colour palette per frame (Pillow's median cut) keeps heat-map gradients
    # smooth. GIF times are in 1/100 s and browsers show a frame of less than 2/100 s for 1/10 s,
    # so no frame is shorter than 2/100 s: fps above 50 are written as 50.
    _pillow_animation(frames, path, fps, 10, 2, optimize=False, disposal=1)


def _write_webp(frames, path, fps, quality):
    _pillow_animation(frames, path, fps, 1, 1, quality=max(50, 100 - quality), method=4)


#: suffix → writer(frames uint8 (T, H, W, 3), path, fps, quality)
WRITERS: dict[str, Callable[[np.ndarray, Path, float, int], None]] = {
    ".mp4": _write_h264, ".mov": _write_h264, ".mkv": _write_h264,
    ".webm": _write_webm, ".avi": _write_avi, ".gif": _write_gif, ".webp": _write_webp,
}


#: suffix → (lowest, highest) fps the format can time, where it cannot time every rate: Matroska
#: counts milliseconds (at 30 000 fps every frame had time 0, a video of no duration), FFmpeg's
#: AVI muxer refuses rates above 1 000 ("Invalid argument"), a GIF delay is 16 bits of 1/100 s
#: (a frame lasts 655.35 s at most; Pillow's OverflowError below) and a WebP one 24 bits of ms
FPS_RANGES: dict[str, tuple[float, float]] = {
    ".mkv": (0.0, 1000.0), ".webm": (0.0, 1000.0), ".avi": (0.0, 1000.0),
    ".gif": (1 / 655.35, float("inf")), ".webp": (1 / 16777.215, float("inf")),
}


def _check_fps(path: Path, fps: float) -> None:
    """One line naming the format's limit where ``path``'s format cannot time frames at ``fps``."""
    lo, hi = FPS_RANGES.get(path.suffix.lower(), (0.0, float("inf")))
    if fps > hi:
        raise InputError(f"cannot write {shown_path(path)}: a {path.suffix} file times frames at most {hi:g} a second, "
                         f"got fps={fps:g} (write .mp4 for faster rates)")
    if fps < lo:
        raise InputError(f"cannot write {shown_path(path)}: a {path.suffix} frame lasts {1 / lo:g} s at most, got "
                         f"fps={fps:g} (one frame every {1 / fps:g} s)")


@lru_cache(maxsize=None)
def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
        return False
    return True


def write_video(frames, path: str | Path, fps: float = 8.0, *, quality: int = 18) -> Path:
    """Encode frames into a video file; the format follows the suffix.

    * ``.mp4`` / ``.mov`` / ``.mkv``: H.264 (libx264), yuv420p, ``crf=quality`` (18 is visually
      lossless); odd widths/heights are padded to even by repeating the last row/column.
    * ``.webm``: VP9 (libvpx-vp9; VP8 if this FFmpeg has no VP9 encoder) at a comparable quality.
    * ``.avi``: MPEG-4 part 2 at high quality, odd sizes padded as for H.264; ``.gif``: Pillow,
      one adaptive palette per frame, looping, frames timed in 1/100 s (3 and 4 hundredths in turn
      for 30 fps; at most 50 fps; identical consecutive frames become one, shown as long);
      ``.webp``: animated WebP (Pillow), lossy, looping, frames timed in milliseconds (identical
      consecutive frames become one, as in a GIF); :func:`~videoxai.data.video.read_video` reads it
      through Pillow (FFmpeg cannot decode animated WebP: :mod:`~videoxai.data.animated_webp`).

    Args:
        frames: ``(T, H, W, 3)`` uint8 (or float in [0, 1], or a :class:`~videoxai.Clip`).
        path: output file; parent folders are created.
        fps: frames per second of the output.
        quality: constant-quality factor, lower is better (x264 crf scale, 0-51).

    Returns:
        The written path.
    """
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise InputError(f"cannot write {shown_path(path)}: unknown video suffix {path.suffix!r}; "
                         f"use one of {', '.join(sorted(WRITERS))}")
    frames = _frames_uint8(frames)
    _rate(fps)
    _check_fps(path, float(fps))
    # a whole number: int() made "best" a ValueError, 18.9 quality 18 and True quality 1
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 0 <= quality <= 51:
        raise InputError(f"quality must be a whole number in [0, 51] (crf scale), got {quality!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        # a file where a folder of the path should be: mkdir said "File exists: 'out'"
        file = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
        why = f"{file} is a file, not a folder" if file is not None else ffmpeg_reason(e)
        raise VideoXAIError(f"cannot write {shown_path(path)}: {why}") from None
    try:
        writer(frames, path, float(fps), int(quality))
    except (av.FFmpegError, OSError) as e:
        raise VideoXAIError(f"{shown_path(path)}: could not write the video ({ffmpeg_reason(e)})") from None
    return path
