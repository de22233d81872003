"""What reading HDR video costs: the same 10-bit HEVC frames tagged SDR and tagged HDR, side by side.

Writes the bundled Big Buck Bunny sample (1280×720) as 10-bit HEVC twice into a temporary
directory — tagged BT.709 SDR, and tagged as a phone tags its HDR recording (HLG, BT.2020) or as
an HDR10 master (PQ) — then times ``read_video`` on each in one run (CPU seconds of this process,
best of ``--repeat``). The HDR file's frames go through the tone map of
:mod:`videoxai.data.hdr` (16-bit RGB, BT.2100 transfer, BT.2390 roll-off, BT.2020 → BT.709);
the SDR file's through FFmpeg's 8-bit conversion.

    python benchmarks/hdr_reading.py                  # 132 frames of 720p, best of 3
    python benchmarks/hdr_reading.py --frames 30 --transfer pq
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout without installing

import av  # noqa: E402
from test_hdr import mux_x265  # noqa: E402

import videoxai as vx  # noqa: E402
from videoxai.data.hdr import HLG, PQ  # noqa: E402

#: (transfer, primaries, matrix) tags: FFmpeg's AVColorTransferCharacteristic, …Primaries, …Space
TAGS = {"sdr": (1, 1, 1), "hlg": (HLG, 9, 9), "pq": (PQ, 9, 9)}


def write_hevc(path: Path, frames, tags: tuple[int, int, int]) -> None:
    """``frames`` (RGB uint8) as 10-bit 4:2:0 HEVC tagged ``tags``: the same samples whatever the
    tags (converted to YUV once, by FFmpeg's default matrix), so only their reading differs."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx265", rate=24, options={"x265-params": "log-level=error:bframes=0", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p10le"
        s.codec_context.color_trc, s.codec_context.color_primaries, s.codec_context.colorspace = tags
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p10le")
            frame.pts = k
            frame.color_trc, frame.color_primaries, frame.colorspace = tags
            mux_x265(out, s.encode(frame))  # garbage decoding times from FFmpeg 8.1's wrapper fixed
        mux_x265(out, s.encode())


def best_cpu_seconds(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t)
    return best, result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=132, help="frames of the sample to write (at most 132)")
    ap.add_argument("--repeat", type=int, default=3, help="timed reads of each file (the best is printed)")
    ap.add_argument("--transfer", choices=["hlg", "pq"], default="hlg", help="the HDR file's transfer")
    args = ap.parse_args(argv)
    if "libx265" not in av.codecs_available:
        sys.exit("this FFmpeg has no libx265 encoder to write the test files with")
    frames = vx.read_video(ROOT / "tests" / "data" / "bigbuckbunny.mp4").frames[:max(2, args.frames)]
    print(f"{len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}, 10-bit HEVC; CPU seconds, best of "
          f"{args.repeat}; decoding on the CPU")
    with tempfile.TemporaryDirectory() as tmp:
        times = {}
        for name in ("sdr", args.transfer):
            path = Path(tmp) / f"{name}.mp4"
            write_hevc(path, frames, TAGS[name])
            seconds, clip = best_cpu_seconds(lambda: vx.read_video(path), args.repeat)
            times[name] = seconds
            print(f"{name:<4} read_video {seconds:8.3f} s  {1000 * seconds / len(clip):7.1f} ms/frame  "
                  f"mean level {clip.frames.mean():6.1f}")
        print(f"hdr/sdr = {times[args.transfer] / times['sdr']:.2f}")


if __name__ == "__main__":
    main()
