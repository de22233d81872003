"""Load test of the WebSocket stream: N concurrent streams against a local ``videoxai serve``.

Starts the server in its own process (``--model``, default the bundled demo TimeSformer) on a
free loopback port, opens ``--streams`` streams at once and sends each one JPEG frames of the
sample video for ``--seconds`` seconds, then prints per stream:

* **frames/s**: frames inside the windows explained during the measured interval (each frame
  once; frames of dropped windows are not counted), per second;
* **windows** explained, **dropped** (live mode only) and **errors**;
* **p50 / p95 latency**: from sending a window's last frame to receiving its result (client clocks).

and the server's resident memory sampled every half second (start of the measurement, end,
maximum, and the growth between the first and the second half: a leak shows as steady growth).

Two modes: ``file`` (default): each client sends as fast as the server takes frames (lossless,
TCP back-pressure), which measures capacity; ``live``: each client sends at ``--fps`` like a
camera and the server drops stale windows, which measures what a live viewer sees.

    python benchmarks/stream_load.py --streams 1 --seconds 30
    python benchmarks/stream_load.py --streams 4 --seconds 60 --mode live --fps 30

The measurement starts once every stream has its first result (model warm-up excluded).
Frames are encoded once up front, so the clients cost little next to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "tests" / "data" / "bigbuckbunny.mp4"  # in the checkout, wherever it is


# -- server process --------------------------------------------------------------------------------


def _load_model(spec: str):
    import torch

    import videoxai as vx
    from videoxai.errors import VideoXAIError

    try:
        return vx.load_model(spec), spec
    except (VideoXAIError, OSError) as e:
        if spec != "demo":
            raise
        # Same architecture as the bundled demo (scripts/train_demo.py), random weights: the
        # timing is the same; only the predictions are meaningless.
        from transformers import TimesformerConfig, TimesformerForVideoClassification

        from videoxai.models.hf import from_hf_module

        torch.manual_seed(0)
        cfg = TimesformerConfig(num_frames=8, image_size=64, patch_size=8, hidden_size=96, num_hidden_layers=4,
                                num_attention_heads=4, intermediate_size=192, num_labels=5)
        return (from_hf_module(TimesformerForVideoClassification(cfg), name="demo-architecture"),
                f"demo architecture, random weights ({type(e).__name__}: the bundled weights are not there)")


def _serve(spec: str, threads: int | None, ready: mp.Queue) -> None:
    import torch
    import uvicorn

    from videoxai.serve import ServeSettings, create_app, uvicorn_config

    if threads:
        torch.set_num_threads(threads)
    model, described = _load_model(spec)
    # all load clients come from 127.0.0.1: one address, so its per-client limits are the total ones
    app = create_app(model, ServeSettings(max_streams=64, max_streams_per_client=64, max_requests_per_client=256))
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=0))

    async def run() -> None:
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        ready.put((port, described, model.num_frames, torch.get_num_threads()))
        await server.main_loop()
        await server.shutdown()

    asyncio.run(run())


# -- clients ---------------------------------------------------------------------------------------


def sample_frames(count: int, max_side: int) -> list[tuple[bytes, int, int]]:
    """``count`` JPEG frames ``(bytes, width, height)`` of the sample video (noise if it is absent)."""
    from PIL import Image

    if SAMPLE.is_file():
        import videoxai as vx

        frames = vx.read_video(SAMPLE, num_frames=count, max_side=max_side).frames
    else:
        frames = np.random.default_rng(0).integers(0, 256, size=(count, max_side * 9 // 16, max_side, 3),
                                                   dtype=np.uint8)
    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=80)
        out.append((buf.getvalue(), f.shape[1], f.shape[0]))
    return out


@dataclass
class StreamStats:
    windows: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    first_result: float | None = None
    last_covered: int = 0   # end of the latest explained window (frames [0, end) were sent)
    frames: int = 0         # frames inside explained windows, each counted once, while measuring


async def run_stream(url: str, frames: list, stride: int, live: bool, fps: float, started: asyncio.Event,
                     measure: dict, stats: StreamStats) -> None:
    from websockets.asyncio.client import connect

    from videoxai.serve.protocol import FrameHeader, pack_frame

    async with connect(url, compression=None, max_size=None, proxy=None) as ws:
        await ws.send(json.dumps({"type": "start", "stride": stride, "live": live}))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            stats.errors.append(str(ready))
            return

        # a file-mode client keeps at most this many frames beyond the last result (protocol.md):
        # enough for one window in flight and the next waiting, no megabytes queued in TCP buffers
        ahead = ready["window"] + 2 * ready["stride"]
        progress = asyncio.Condition()

        async def send() -> None:
            t0, i = time.perf_counter(), 0
            while not measure.get("stop"):
                if not live:
                    async with progress:
                        await progress.wait_for(lambda: i < stats.last_covered + ahead or measure.get("stop"))
                payload, w, h = frames[i % len(frames)]
                header = FrameHeader(format="jpeg", width=w, height=h, ts=time.perf_counter())
                await ws.send(pack_frame(header, payload))
                i += 1
                if live:
                    await asyncio.sleep(max(0.0, t0 + i / fps - time.perf_counter()))
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for text in ws:
            msg = json.loads(text)
            now = time.perf_counter()
            kind = msg["type"]
            if kind == "window":
                if stats.first_result is None:
                    stats.first_result = now
                    started.set()
                start, end = msg["frame_indices"][0], msg["frame_indices"][-1] + 1
                if measure.get("start") is not None and measure.get("stop_time") is None:
                    stats.windows += 1
                    stats.latencies_ms.append((now - msg["ts"]) * 1000.0)
                    # frames of dropped windows are not counted: only what was explained
                    stats.frames += max(0, end - max(stats.last_covered, start))
                stats.last_covered = max(stats.last_covered, end)
                async with progress:
                    progress.notify_all()
            elif kind == "dropped":
                if measure.get("start") is not None and measure.get("stop_time") is None:
                    stats.dropped += 1
            elif kind == "error":
                stats.errors.append(f"{msg['error']['code']}: {msg['error']['message']}")
            elif kind == "end":
                break
        await sender


async def load(url: str, streams: int, seconds: float, stride: int, live: bool, fps: float, frames: list,
               server_pid: int | None) -> tuple[list[StreamStats], dict, list[float]]:
    import psutil

    stats = [StreamStats() for _ in range(streams)]
    events = [asyncio.Event() for _ in range(streams)]
    measure: dict = {}
    tasks = [asyncio.create_task(run_stream(url, frames, stride, live, fps, events[k], measure, stats[k]))
             for k in range(streams)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout=120)
    proc = psutil.Process(server_pid) if server_pid else None
    rss: list[float] = []
    cpu0 = sum(proc.cpu_times()[:2]) if proc is not None else 0.0
    load0 = os.getloadavg()[0]
    measure["start"] = t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if proc is not None:
            rss.append(proc.memory_info().rss / 2**20)
        await asyncio.sleep(0.5)
    measure["stop_time"] = time.perf_counter()
    measure["stop"] = True
    cpu = sum(proc.cpu_times()[:2]) - cpu0 if proc is not None else None
    load = (load0, os.getloadavg()[0])
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    return stats, {"seconds": measure["stop_time"] - t0, "server_cpu": cpu, "load": load}, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--mode", choices=["file", "live"], default="file")
    ap.add_argument("--fps", type=float, default=30.0, help="send rate per stream in live mode")
    ap.add_argument("--stride", type=int, default=None, help="frames between windows (default: half a window)")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--max-side", type=int, default=320, help="longer side of the frames sent")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the server (default: torch's)")
    ap.add_argument("--server", default=None, help="use this running server (ws://host:port) instead")
    args = ap.parse_args()

    frames = sample_frames(64, args.max_side)
    proc = None
    if args.server is None:
        ctx = mp.get_context("spawn")
        ready = ctx.Queue()
        proc = ctx.Process(target=_serve, args=(args.model, args.threads, ready), daemon=True)
        proc.start()
        port, described, window, threads = ready.get(timeout=300)
        url = f"ws://127.0.0.1:{port}/api/stream"
    else:
        url = args.server.rstrip("/") + "/api/stream"
        described, window, threads = args.model, 8, "?"
    stride = args.stride or max(1, window // 2)
    live = args.mode == "live"
    try:
        stats, info, rss = asyncio.run(load(url, args.streams, args.seconds, stride, live, args.fps, frames,
                                            proc.pid if proc else None))
    finally:
        if proc is not None:
            proc.terminate()
            proc.join(10)

    seconds = info["seconds"]
    w, h = frames[0][1], frames[0][2]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"server torch threads {threads}; python {platform.python_version()}; "
          f"1-min load average {info['load'][0]:.1f} → {info['load'][1]:.1f} (other processes included)")
    # noise compresses far worse than the video: its numbers are not the sample's
    source = SAMPLE.name if SAMPLE.is_file() else "random noise (the sample video is missing)"
    print(f"model: {described}; window {window}, stride {stride}; frames {w}x{h} JPEG of {source}")
    print(f"mode: {args.mode}" + (f" at {args.fps:g} fps per stream" if live else " (as fast as the server takes them)")
          + f"; {args.streams} stream(s) for {seconds:.1f} s after warm-up")
    print(f"{'stream':>6} {'frames/s':>9} {'windows':>8} {'dropped':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}")
    total_fps = 0.0
    all_errors = []
    for k, s in enumerate(stats):
        fps = s.frames / seconds
        total_fps += fps
        lat = sorted(s.latencies_ms)
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
        print(f"{k:>6} {fps:>9.1f} {s.windows:>8} {s.dropped:>8} {p50:>8.0f} {p95:>8.0f} {len(s.errors):>7}")
        all_errors += s.errors
    print(f"total frames/s: {total_fps:.1f}; errors: {len(all_errors)}"
          + (f" (first: {all_errors[0]})" if all_errors else ""))
    if info["server_cpu"] is not None:
        print(f"server CPU: {info['server_cpu']:.1f} s in {seconds:.1f} s "
              f"({info['server_cpu'] / seconds:.2f} cores busy on average)")
    if rss:
        half = len(rss) // 2
        first, second = (statistics.mean(rss[:half]) if half else rss[0]), statistics.mean(rss[half:])
        marks = "  ".join(f"{q:.0%} {rss[min(len(rss) - 1, int(q * (len(rss) - 1)))]:.0f}"
                          for q in (0, 0.25, 0.5, 0.75, 1))
        print(f"server RSS MiB over the run: {marks}; max {max(rss):.0f}; "
              f"mean of 2nd half − 1st half: {second - first:+.1f}")


if __name__ == "__main__":
    main()
