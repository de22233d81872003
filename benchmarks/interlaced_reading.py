"""What reading interlaced video costs and gives: the same 1080i-style file read woven and deinterlaced.

Weaves the bundled Big Buck Bunny sample (1280×720, 24 fps) into interlaced frames the way an
interlaced camera samples them — frame k's top field from sample frame 2k, its bottom field from
frame 2k + 1 — encodes them as top-field-first MBAFF H.264 in a temporary directory, then reads
the file with ``read_video`` twice in one run: as stored ("woven", the frames as FFmpeg's decoder
gives them, :func:`~videoxai.data.deinterlace.progressive` bypassed) and as the library reads it
(deinterlaced by ``bwdif``). Prints CPU seconds (best of ``--repeat``) of the whole file and of an
8-frame sample (seeking to keyframes), and how far each read is from the sample frame the first
field was taken from (mean absolute difference in levels; the encoder's own loss is in both).

    python benchmarks/interlaced_reading.py                # 66 frames of 720p, best of 3
    python benchmarks/interlaced_reading.py --repeat 5 --frames 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # run from a checkout without installing

import av  # noqa: E402
import av.filter  # noqa: E402
import numpy as np  # noqa: E402
from hdr_reading import best_cpu_seconds  # noqa: E402

import videoxai as vx  # noqa: E402
from videoxai.data import decoder, keyframes  # noqa: E402


def write_interlaced(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """Pairs of ``frames`` woven into top-field-first frames, flagged so (``setfield``), as H.264
    MBAFF with a keyframe every 12 frames."""
    h, w = frames.shape[1:3]
    graph = av.filter.Graph()
    source = graph.add("buffer", video_size=f"{w}x{h}", pix_fmt="yuv420p", time_base=f"1/{fps}", pixel_aspect="1/1")
    setfield, sink = graph.add("setfield", "tff"), graph.add("buffersink")
    source.link_to(setfield)
    setfield.link_to(sink)
    graph.configure()
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"x264-params": "interlaced=1", "crf": "16", "g": "12", "preset": "fast"}
        for k in range(len(frames) // 2):
            img = frames[2 * k].copy()
            img[1::2] = frames[2 * k + 1][1::2]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = k
            graph.vpush(frame)
            frame = graph.vpull()
            frame.pts = k
            out.mux(s.encode(frame))
        out.mux(s.encode())


def woven(frames, stream):
    """:func:`~videoxai.data.deinterlace.progressive` bypassed: the decoder's frames as they are."""
    return frames


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=132, help="sample frames to weave, two a frame (at most 132)")
    ap.add_argument("--repeat", type=int, default=3, help="timed reads of each kind (the best is printed)")
    args = ap.parse_args(argv)
    sample = vx.read_video(ROOT / "tests" / "data" / "bigbuckbunny.mp4").frames[:max(4, args.frames)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "interlaced.mp4"
        write_interlaced(path, sample)
        n = len(sample) // 2
        print(f"{n} interlaced frames of {sample.shape[2]}x{sample.shape[1]} (top field first, H.264 MBAFF); "
              f"CPU seconds, best of {args.repeat}")
        rows = {}
        for name in ("woven", "deinterlaced"):
            if name == "woven":  # the decoder's frames as they are
                decoder.progressive, keyframes.progressive = woven, woven
            try:
                whole_s, clip = best_cpu_seconds(lambda: vx.read_video(path), args.repeat)
                eight_s, _ = best_cpu_seconds(lambda: vx.read_video(path, 8), args.repeat)
            finally:
                decoder.progressive = keyframes.progressive = vx.data.deinterlace.progressive
            first_fields = sample[0:2 * n:2]
            error = float(np.abs(clip.frames.astype(np.float32) - first_fields).mean())
            rows[name] = (whole_s, eight_s)
            print(f"  {name:>12}: whole file {whole_s:6.2f} s ({1000 * whole_s / n:5.1f} ms/frame), 8 frames "
                  f"{eight_s:5.2f} s; {error:5.2f} levels from the first field's frame")
        print(f"  deinterlaced / woven: whole file {rows['deinterlaced'][0] / rows['woven'][0]:.2f}, "
              f"8 frames {rows['deinterlaced'][1] / rows['woven'][1]:.2f}")


if __name__ == "__main__":
    main()
