"""Reading a few frames of a long video: seeking to keyframes against decoding in order.

Writes a long H.264 video (the bundled Big Buck Bunny clip looped, 1280×720, a keyframe every
``--gop`` frames, as streaming encoders do) into a temporary directory, then times, side by side
in one run, what a user's first calls do on it:

* ``read_video(path, 8)`` — ``videoxai explain`` without a range: 8 frames over the whole video;
* ``read_video(path, 8, start=…)`` — ``--start`` near the end;
* one sliding window from a late start — ``--start … --window-stride``;

each with the package's seeking (:mod:`videoxai.data.keyframes`) and with it switched off
(decoding from the first frame, as before), checking that both give the same frames.

    python benchmarks/long_video_reading.py                  # 165 s of 720p at 24 fps, GOP 48
    python benchmarks/long_video_reading.py --seconds 600 --gop 250
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402

import videoxai as vx  # noqa: E402
from videoxai.data import decoder  # noqa: E402
from videoxai.data import video as vio  # noqa: E402


def write_long(path: Path, seconds: float, gop: int, fps: int = 24) -> int:
    clip = vx.read_video(ROOT / "tests" / "data" / "bigbuckbunny.mp4")
    n = int(seconds * fps)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = clip.width, clip.height, "yuv420p"
        s.options = {"preset": "veryfast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for k in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(clip.frames[k % clip.num_frames], format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return n


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=165.0, help="length of the video (default 165)")
    ap.add_argument("--gop", type=int, default=48, help="frames between keyframes (default 48: 2 s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.mp4"
        t, n = timed(lambda: write_long(path, args.seconds, args.gop))
        late = max(0.0, args.seconds - 10)
        print(f"{path.name}: {n} frames of 1280x720 H.264 at 24 fps, a keyframe every {args.gop} "
              f"(written in {t:.0f} s); decoding on the CPU ({os.cpu_count()} cores), wall seconds, best of 2; "
              f"seek/order = seeking s / in order s")
        cases = {
            "read_video(path, 8)": lambda: vx.read_video(path, 8),
            f"read_video(path, 8, start={late:g})": lambda: vx.read_video(path, 8, start=late),
            f"first window from start={late:g}": lambda: next(vx.sliding_windows(path, 8, 8, start=late)),
        }
        print(f"{'call':<36}{'in order s':>11}{'seeking s':>11}{'seek/order':>11}  same frames")
        for name, call in cases.items():
            seeking = min(timed(call)[0] for _ in range(2))
            a = call()
            keep = vio._read_seeking, decoder.start_at
            vio._read_seeking, decoder.start_at = (lambda *a, **k: None), (lambda *a, **k: None)
            try:
                in_order = min(timed(call)[0] for _ in range(2))
                b = call()
            finally:
                vio._read_seeking, decoder.start_at = keep
            same = np.array_equal(a.indices, b.indices) and np.array_equal(a.frames, b.frames)
            print(f"{name:<36}{in_order:>11.2f}{seeking:>11.2f}{seeking / in_order:>11.3f}  {same}", flush=True)


if __name__ == "__main__":
    main()
