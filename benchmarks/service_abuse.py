"""Hostile clients against a live ``videoxai`` server: does it hold?

Runs each scenario of issue 12 against a server on a free loopback port (the bundled demo model
by default, ``--threads 1``) and prints one line per scenario: ``held`` or ``FAILED`` with the
figures that decide it.

    python benchmarks/service_abuse.py
    python benchmarks/service_abuse.py --bomb-side 12000     # the probe's full-size bomb

Scenarios: a late decompression bomb (PNG .mov, small header, huge later frames); a flood of
non-reading file streams on every slot followed by a good client; a job hog stopped by DELETE
followed by a good stream; a stream abandoned while a long job runs; 70 slow-header sockets; a
20 MB header line; 40 KB of headers in one write; a WebSocket from a foreign Origin; chunked bodies
found malformed after their answer and text messages that are not UTF-8; invalid option values; one
address on every stream slot (also naming another address in each ``X-Forwarded-For``), filling the
job queue, or deleting the others' results with a burst of small jobs. SIGTERM and the API
key in logs need a server process of their own: ``tests/test_serve_abuse.py`` covers them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_serve_abuse import (good_stream, late_bomb, logged_errors, raw_ws, read_to_end,  # noqa: E402
                              wait_until, ws_send)
from websockets.sync.client import connect  # noqa: E402

import videoxai as vx  # noqa: E402
from videoxai.data.video import write_video  # noqa: E402
from videoxai.serve import BackgroundServer, ServeSettings, create_app  # noqa: E402
from videoxai.serve.client import encode_frame  # noqa: E402
from videoxai.serve.transport import ABORT_AFTER_CLOSE_S  # noqa: E402


def line(name: str, held: bool, figures: str) -> None:
    print(f"{name:<34} {'held' if held else 'FAILED':<7} {figures}", flush=True)


def timed(fn) -> tuple[bool, float]:
    t0 = time.monotonic()
    try:
        fn()
        return True, time.monotonic() - t0
    except AssertionError:
        return False, time.monotonic() - t0


def raw_request(host: str, port: str, request: bytes) -> str:
    """Send ``request`` as it is on a new connection; the reply's status line (or what happened)."""
    s = socket.create_connection((host, int(port)))
    s.settimeout(15)
    try:
        s.sendall(request)
        reply = s.recv(64)
    except OSError:
        reply = b"(connection closed)"
    s.close()
    return reply.splitlines()[0].decode(errors="replace") if reply else "(nothing)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--bomb-side", type=int, default=4000)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    model = vx.load_model(args.model)
    t = model.num_frames
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2 * t, 96, 128, 3), dtype=np.uint8)
    tmp = Path(tempfile.mkdtemp(prefix="videoxai-abuse-"))
    clip = write_video(frames, tmp / "clip.mp4", fps=10)
    settings = ServeSettings(max_streams=4, max_forward_passes=10_000, header_timeout_s=2.0,
                             stream_idle_timeout_s=10.0)
    app = create_app(model, settings)
    proc = psutil.Process()
    with BackgroundServer(app) as server:
        url = server.url

        # late decompression bomb
        bomb = late_bomb(tmp / "bomb.mov", args.bomb_side)
        base, peak, stop = proc.memory_info().rss, [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.005)

        threading.Thread(target=sample, daemon=True).start()
        r = httpx.post(f"{url}/api/jobs?overlay=false", content=bomb.read_bytes(), timeout=60)
        status = {}
        if r.status_code == 202:
            job = url + r.json()["links"]["status"]
            wait_until(lambda: httpx.get(job).json()["state"] not in ("queued", "running"), 120, "bomb job ends")
            status = httpx.get(job).json()
        stop.set()
        rise = (peak[0] - base) / 2**20
        # the job's error code, else its state (a bomb under the pixel limit is explained: "done"),
        # else the upload's refusal
        code = (status.get("error") or {}).get("code") or status.get("state") or f"HTTP {r.status_code}"
        frame_mib = args.bomb_side ** 2 * 3 / 2**20
        line("late decompression bomb", code == "video_too_large" and rise < frame_mib / 2,
             f"{args.bomb_side}² frames after a 64x48 header: job {code}, server RSS +{rise:.0f} MiB "
             f"(one such frame: {frame_mib:.0f} MiB)")

        # non-reading file-stream flood on every slot at once, then a good client. The flooders wait
        # longer than the server's idle timeout and abort delay, so that it is the server that
        # ends each flood (a client that gave up first would free the slot itself)
        jpegs = [encode_frame(frames[i % len(frames)], "jpeg") for i in range(3000)]
        patience = settings.stream_idle_timeout_s + ABORT_AFTER_CLOSE_S + 10
        ended: list[str] = []
        t_flood = time.monotonic()

        def flood() -> None:
            s = raw_ws(server)
            s.settimeout(patience)
            try:
                ws_send(s, json.dumps({"type": "start", "live": False, "stride": 1}))
                for m in jpegs:
                    ws_send(s, m)
                ended.append("all sent")
            except TimeoutError:
                ended.append("client timed out")
            except OSError:  # the server closed or aborted the connection
                ended.append("server closed")
            s.close()

        flooders = [threading.Thread(target=flood) for _ in range(settings.max_streams)]
        for f in flooders:
            f.start()
        for f in flooders:
            f.join()
        flood_s = time.monotonic() - t_flood
        ok, secs = timed(lambda: wait_until(lambda: app.state.slots.active == 0, 60, "slots released"))
        good = ok and [m["type"] for m in good_stream(server, frames)] == ["window", "end"]
        closed = ended.count("server closed")
        line("non-reading stream flood", good and closed == settings.max_streams,
             f"{settings.max_streams} streams at once x 3000 frames: {closed} closed by the server within "
             f"{flood_s:.0f} s (idle timeout {settings.stream_idle_timeout_s:g} s), slots free "
             f"{secs:.1f} s later, then a good stream served")

        # job hog cancelled by DELETE, then a good stream
        hog = {"method": "smoothgrad", "options": json.dumps({"n_samples": 2400})}
        r = httpx.post(f"{url}/api/jobs", params=hog, content=clip.read_bytes(), timeout=30)
        job = url + r.json()["links"]["status"]
        wait_until(lambda: httpx.get(job).json()["state"] == "running", 60, "hog runs")
        time.sleep(1.0)
        httpx.delete(job)
        t0 = time.monotonic()
        served = [m["type"] for m in good_stream(server, frames)] == ["window", "end"]
        line("job hog + DELETE", served, f"smoothgrad n_samples=2400 deleted while running: a good stream's "
                                         f"window came {time.monotonic() - t0:.1f} s later")

        # over the work limit at submission
        r = httpx.post(f"{url}/api/jobs", params={"method": "rise", "options": '{"n_samples": 20000}'},
                       content=clip.read_bytes(), timeout=30)
        line("work limit at submission", r.status_code == 413, f"rise n_samples=20000: HTTP {r.status_code} "
                                                               f"{r.json()['error']['code']}")

        # a stream abandoned while a long job runs
        r = httpx.post(f"{url}/api/jobs", params=hog, content=clip.read_bytes(), timeout=30)
        job = url + r.json()["links"]["status"]
        wait_until(lambda: httpx.get(job).json()["state"] == "running", 60, "hog runs")
        s = raw_ws(server)
        ws_send(s, json.dumps({"type": "start", "live": False, "stride": 2}))
        for f in frames:
            ws_send(s, encode_frame(f, "jpeg"))
        time.sleep(0.5)
        s.close()
        ok, secs = timed(lambda: wait_until(lambda: app.state.slots.active == 0, 30, "slot released"))
        running = httpx.get(job).json()["state"] == "running"
        httpx.delete(job)
        line("stream abandoned during a job", ok, f"slot free {secs:.2f} s after the client left "
                                                  f"(job still running: {running})")

        # slowloris
        host, port = url.split("//")[1].split(":")
        slow = []
        for _ in range(70):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        t0 = time.monotonic()
        code = httpx.get(url + "/api/health", timeout=30).status_code
        answer = time.monotonic() - t0
        time.sleep(settings.header_timeout_s + 1)
        still = 0
        for s in slow:
            s.settimeout(0.5)
            try:
                still += s.recv(1) != b""
            except (ConnectionResetError, TimeoutError, OSError) as e:
                still += isinstance(e, TimeoutError)
            s.close()
        line("70 slow-header sockets", code == 200 and still == 0,
             f"good request: HTTP {code} in {answer * 1000:.0f} ms; slow sockets still open after "
             f"{settings.header_timeout_s + 1:g} s: {still}")

        # 20 MB header line
        reply = raw_request(host, port, b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (20 * 2**20) + b"\r\n\r\n")
        line("20 MB header line", not reply.startswith("HTTP/1.1 200"), f"answer: {reply}")

        # headers over max_header_bytes sent in one write (h11 bounds only headers that arrive in pieces)
        reply = raw_request(host, port, f"GET /api/health HTTP/1.1\r\nHost: {host}:{port}\r\nX-Big: ".encode()
                            + b"a" * 40_000 + b"\r\n\r\n")
        line("40 KB of headers in one write", not reply.startswith("HTTP/1.1 200"), f"answer: {reply}")

        # foreign Origin
        with connect(url.replace("http", "ws") + "/api/stream", origin="http://evil.example", open_timeout=20) as ws:
            msg = json.loads(ws.recv(timeout=20))
        line("WebSocket from a foreign Origin", msg.get("error", {}).get("code") == "forbidden_origin",
             f"answer: {msg.get('error', {}).get('code')}")

        # bodies found malformed after their answer; text messages that are not UTF-8 (a traceback each before)
        with logged_errors() as errors:
            answered = 0
            for _ in range(50):
                with socket.create_connection((host, int(port)), timeout=15) as s:
                    s.sendall(b"POST /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                    answered += s.recv(64).startswith(b"HTTP/1.1 405")
                    s.sendall(b"zz\r\n")
                    while s.recv(4096):
                        pass
            closes = []
            for _ in range(50):
                s = raw_ws(server)
                s.sendall(bytes([0x81, 0x82, 0, 0, 0, 0]) + b"\xff\xfe")  # a masked text frame, mask 0
                reply = read_to_end(s)
                s.close()
                closes.append(int.from_bytes(reply[2:4], "big") if reply[:1] == b"\x88" else None)
            wait_until(lambda: not server.server.server_state.tasks, 10, "the requests' tasks end")
        code = httpx.get(url + "/api/health", timeout=30).status_code
        line("bad body after answer, bad UTF-8", code == 200 and not errors and answered == 50
             and closes == [1007] * 50, f"{answered}/50 answered 405, closes {sorted(set(closes), key=str)}, "
                                        f"error records logged {len(errors)}, then health HTTP {code}")

        # invalid option values
        bad = ['{"n_samples": "abc"}', '{"n_samples": NaN}', '{"n_samples": 1e400}', "[" * 30000,
               '{"cells": [0, 0, 0]}']
        codes = [httpx.post(f"{url}/api/jobs", params={"method": "rise"}, data={"options": o},
                            files={"file": ("c.mp4", clip.read_bytes())}, timeout=30).status_code for o in bad]
        line("invalid option values", all(400 <= c < 500 for c in codes), f"HTTP {codes}")

    per_client(model, frames, clip, hog)


def per_client(model, frames: np.ndarray, clip: Path, hog: dict) -> None:
    """One address against the others (127.0.0.2 is loopback too): it holds its share of the
    stream slots and of the job queue, not all of them, and its burst of small jobs deletes its
    own finished results, not the others'."""
    settings = ServeSettings(max_streams=4, max_streams_per_client=2, max_queued_jobs=4,
                             max_queued_jobs_per_client=2, max_jobs_kept=3, max_forward_passes=10_000)
    app = create_app(model, settings)
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30)
    small = {"method": "saliency", "overlay": "false"}
    with BackgroundServer(app) as server:
        url = server.url
        ws = url.replace("http", "ws") + "/api/stream"
        with contextlib.ExitStack() as streams:
            for _ in range(settings.max_streams_per_client):
                s = streams.enter_context(connect(ws, open_timeout=20))
                s.send(json.dumps({"type": "start", "live": True}))
                assert json.loads(s.recv(timeout=20))["type"] == "ready"
            with connect(ws, open_timeout=20) as s:  # refused at once (no key to wait for)
                refused = json.loads(s.recv(timeout=20)).get("error", {}).get("code")
            t0 = time.monotonic()
            served = [m["type"] for m in good_stream(server, frames, source="127.0.0.2")] == ["window", "end"]
        line("one address on every stream slot", refused == "client_limit" and served,
             f"its stream {settings.max_streams_per_client + 1}: {refused}; another address's window came "
             f"{time.monotonic() - t0:.1f} s later")

        # the same, each stream naming another address in X-Forwarded-For (read only from the
        # proxies named in forwarded_allow_ips: none here)
        with contextlib.ExitStack() as streams:
            for i in range(settings.max_streams_per_client):
                s = streams.enter_context(connect(ws, open_timeout=20,
                                                  additional_headers={"X-Forwarded-For": f"198.51.100.{i}"}))
                s.send(json.dumps({"type": "start", "live": True}))
                assert json.loads(s.recv(timeout=20))["type"] == "ready"
            with connect(ws, open_timeout=20, additional_headers={"X-Forwarded-For": "198.51.100.99"}) as s:
                forged = json.loads(s.recv(timeout=20)).get("error", {}).get("code")
        line("forged X-Forwarded-For", forged == "client_limit",
             f"its stream {settings.max_streams_per_client + 1}, each naming another address: {forged}")

        hogs = [httpx.post(f"{url}/api/jobs", params=hog, content=clip.read_bytes(), timeout=30)
                for _ in range(settings.max_queued_jobs_per_client + 1)]
        codes = [h.status_code for h in hogs]
        r = other.post(f"{url}/api/jobs", params=small, content=clip.read_bytes())
        theirs = url + r.json()["links"]["status"]
        for h in hogs:  # the hogs go (a hog runs to max_forward_passes otherwise): their job runs next
            if h.status_code == 202:
                httpx.delete(url + h.json()["links"]["status"])
        wait_until(lambda: other.get(theirs).json()["state"] not in ("queued", "running"), 120, "their job ends")
        done = other.get(theirs).json()["state"]
        line("one address filling the job queue", codes[-1] == 429 and r.status_code == 202 and done == "done",
             f"its uploads: HTTP {codes}; another address's meanwhile: HTTP {r.status_code}, {done}")

        for _ in range(settings.max_jobs_kept + 1):  # a burst of small jobs, each waited for
            mine = url + httpx.post(f"{url}/api/jobs", params=small, content=clip.read_bytes()).json()["links"]["status"]
            wait_until(lambda: httpx.get(mine).json()["state"] not in ("queued", "running"), 120, "a small job ends")
        kept = other.get(theirs + "/result").status_code
        line("a burst of jobs evicting results", kept == 200,
             f"{settings.max_jobs_kept + 1} small jobs from one address (max_jobs_kept {settings.max_jobs_kept}): "
             f"another address's result: HTTP {kept}")
    other.close()


if __name__ == "__main__":
    main()
