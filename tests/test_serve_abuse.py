"""The service against hostile or broken clients (issue 12), on loopback with a real uvicorn.

Each test reproduces one way a client stalled or crashed the server before, and checks that the
server now holds: slots come back, the model thread is freed, bombs fail without memory, slow
sockets are dropped, shutdown is bounded, secrets stay out of logs. Every wait has a deadline
(a bound on correctness, generous for a loaded machine), never a speed assertion.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

import httpx  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

import videoxai as vx  # noqa: E402
from conftest import tiny_hf  # noqa: E402
from videoxai.data.video import FrameTooLargeError, read_video, sliding_windows, write_video  # noqa: E402
from videoxai.models.hf import from_hf_module  # noqa: E402
from videoxai.serve import BackgroundServer, ServeSettings, create_app  # noqa: E402
from videoxai.serve.client import encode_frame  # noqa: E402
from videoxai.serve.engine import Engine  # noqa: E402
from videoxai.serve.jobs import UPLOAD_NAME, JobQueue  # noqa: E402
from videoxai.serve.protocol import JobRequest, VideoInfo  # noqa: E402
from videoxai.serve.transport import WebSocketProtocol  # noqa: E402
from videoxai.work import Cancelled, WorkBudget, WorkLimitExceeded, work_scope  # noqa: E402

T = 8
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return from_hf_module(tiny_hf("timesformer"))


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(2).integers(0, 256, size=(16, 40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory, frames):
    return write_video(frames, tmp_path_factory.mktemp("abuse") / "clip.mp4", fps=8)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/api/stream"


def good_stream(server, frames, source: str | None = None) -> list[dict]:
    """A well-behaved file stream of one window (from loopback address ``source``, if given);
    returns its messages up to ``end``."""
    extra = {"source_address": (source, 0)} if source else {}
    with connect(ws_url(server), open_timeout=20, max_size=None, **extra) as ws:
        ws.send(json.dumps({"type": "start", "live": False, "stride": T}))
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready", ready
        for f in frames[:T]:
            ws.send(encode_frame(f, "rgb"))
        ws.send(json.dumps({"type": "end"}))
        out = []
        while not out or out[-1]["type"] != "end":
            out.append(json.loads(ws.recv(timeout=60)))
    return out


# -- a minimal WebSocket client that can misbehave (not read, vanish, shrink its buffers) ------------


def raw_ws(server, rcvbuf: int | None = None, headers: dict[str, str] | None = None) -> socket.socket:
    host, port = server.url.split("//")[1].split(":")
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, int(port)))
    s.settimeout(20)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall((f"GET /api/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s


def ws_send(s: socket.socket, payload: bytes | str) -> None:
    text = isinstance(payload, str)
    data = payload.encode() if text else payload
    n = len(data)
    head = bytes([0x80 | (1 if text else 2)])
    head += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
                                              else bytes([0x80 | 127]) + struct.pack(">Q", n))
    mask = os.urandom(4)
    masked = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
    s.sendall(head + mask + masked)


def ws_connections(server) -> int:
    return sum(isinstance(c, WebSocketProtocol) for c in server.server.server_state.connections)


# -- 1. late decompression bomb -----------------------------------------------------------------------


def late_bomb(path: Path, big: int = 4000) -> Path:
    """A .mov (PNG codec) whose header and first 4 frames say 64x48 and whose last 2 are big²."""
    out = av.open(str(path), "w")
    s = out.add_stream("png", rate=10)
    s.width, s.height, s.pix_fmt = 64, 48, "rgb24"
    for i in range(4):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, np.uint8), format="rgb24")
        f.pts = i
        out.mux(s.encode(f))
    out.mux(s.encode(None))
    cc = av.CodecContext.create("png", "w")
    cc.width = cc.height = big
    cc.pix_fmt, cc.time_base = "rgb24", Fraction(1, 10)
    for i in range(4, 6):
        f = av.VideoFrame.from_ndarray(np.zeros((big, big, 3), np.uint8), format="rgb24")
        f.pts, f.time_base = i, Fraction(1, 10)
        for p in cc.encode(f):
            p.stream, p.pts, p.dts, p.time_base = s, i, i, Fraction(1, 10)
            out.mux(p)
    out.close()
    return path


def test_read_video_refuses_a_late_bomb_frame_by_frame(tmp_path):
    bomb = late_bomb(tmp_path / "bomb.mov")
    with pytest.raises(FrameTooLargeError, match="frame 4 .*limit of 2073600 pixels.*said 64x48"):
        read_video(bomb, max_pixels=1920 * 1080)
    with pytest.raises(FrameTooLargeError):
        list(sliding_windows(bomb, num_frames=4, max_pixels=1920 * 1080))


@pytest.mark.parametrize("kwargs", [{"num_frames": 2}, {"num_frames": 3, "start": 0.3}])
def test_seeking_past_frames_still_refuses_a_bomb(tmp_path, kwargs):
    # every PNG frame is a keyframe, so these reads seek instead of decoding in order; the bomb
    # frames are decoded all the same, and refused
    bomb = late_bomb(tmp_path / "bomb.mov")
    with pytest.raises(FrameTooLargeError, match="limit of 2073600 pixels"):
        read_video(bomb, max_pixels=1920 * 1080, **kwargs)
    with pytest.raises(FrameTooLargeError):
        list(sliding_windows(bomb, num_frames=2, start=kwargs.get("start", 0.1), max_pixels=1920 * 1080))


def test_upload_with_a_late_bomb_fails_cleanly_within_a_memory_bound(model, tmp_path):
    bomb = late_bomb(tmp_path / "bomb.mov")
    proc = psutil.Process()
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        base = proc.memory_info().rss
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        r = httpx.post(f"{server.url}/api/jobs?overlay=false", content=bomb.read_bytes(), timeout=30)
        assert r.status_code == 202, r.text  # the header says 64x48: accepted
        job = r.json()["links"]["status"]
        wait_until(lambda: httpx.get(server.url + job).json()["state"] not in ("queued", "running"), 60,
                   "the job ends")
        done.set()
        sampler.join()
        status = httpx.get(server.url + job).json()
        assert status["state"] == "failed" and status["error"]["code"] == "video_too_large", status
        assert "frame 4" in status["error"]["message"] and "/tmp" not in status["error"]["message"]
        # one 4000x4000 frame is 46 MiB as RGB; the decoder refused it before allocating it
        assert (peak[0] - base) / 2**20 < 30, f"RSS rose by {(peak[0] - base) / 2**20:.0f} MiB"
        assert httpx.get(server.url + "/api/health").status_code == 200


# -- 2. slot leak: a non-reading file-stream flood ------------------------------------------------------


def test_non_reading_file_stream_flood_then_a_good_client_gets_a_slot(model, frames):
    app = create_app(model, ServeSettings(max_streams=2))
    jpegs = [encode_frame(frames[i % len(frames)], "jpeg") for i in range(3000)]
    with BackgroundServer(app) as server:
        for _ in range(2):  # every slot
            s = raw_ws(server)
            ws_send(s, json.dumps({"type": "start", "live": False, "stride": 1}))
            try:
                for message in jpegs:  # 3000 frames, a window each; never reads a reply
                    ws_send(s, message)
            except OSError:
                # the server stopped reading from it (its buffers full while it decodes, or the
                # stream aborted as a non-reader): on a loaded machine the flooder's 20 s send
                # timeout ran out first, and the test failed on the flooder, not on the server
                pass
            s.close()
        wait_until(lambda: app.state.slots.active == 0, 60, "the flooders' slots are released")
        messages = good_stream(server, frames)
        assert [m["type"] for m in messages] == ["window", "end"]


# -- 3. job hog: limits at submission, cancellation that stops the work -------------------------------


def test_work_over_the_limit_is_refused_at_submission(model, clip_file):
    with BackgroundServer(create_app(model, ServeSettings(max_forward_passes=5000))) as server:
        assert httpx.get(server.url + "/api/info").json()["limits"]["max_forward_passes"] == 5000
        for method, options in [("rise", {"n_samples": 20000}), ("occlusion", {"window": 1, "strides": 1}),
                                ("smoothgrad", {"n_samples": 6000})]:
            r = httpx.post(f"{server.url}/api/jobs", params={"method": method, "options": json.dumps(options)},
                           content=clip_file.read_bytes(), timeout=30)
            assert r.status_code == 413 and r.json()["error"]["code"] == "work_limit", (method, r.text)
            assert "5000" in r.json()["error"]["message"]
        # sliding windows multiply the work of one window
        r = httpx.post(f"{server.url}/api/jobs", params={"method": "rise", "options": '{"n_samples": 2000}',
                                                         "sampling": "windows", "stride": 2},
                       content=clip_file.read_bytes(), timeout=30)
        assert r.status_code == 413 and "windows" in r.json()["error"]["message"]
        with connect(ws_url(server), open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start", "method": "rise", "options": {"n_samples": 9000}}))
            assert json.loads(ws.recv(timeout=30))["error"]["code"] == "work_limit"


def test_a_result_over_the_limit_is_refused_at_submission(model, clip_file):
    # a small upload may ask for every window's maps at full size: bound what it gets back
    big = {"sampling": "windows", "stride": 1, "map_size": 256, "map_dtype": "float16", "maps": "spatial,raw",
           "method": "saliency", "overlay": "false"}
    with BackgroundServer(create_app(model, ServeSettings(max_result_mb=0.2))) as server:
        r = httpx.post(f"{server.url}/api/jobs", params=big, content=clip_file.read_bytes(), timeout=30)
        assert r.status_code == 413 and r.json()["error"]["code"] == "result_too_large", r.text
        assert "0.2 MiB" in r.json()["error"]["message"]
        r = httpx.post(f"{server.url}/api/jobs", params={**big, "stride": 8, "map_dtype": "uint8", "maps": "spatial"},
                       content=clip_file.read_bytes(), timeout=30)
        assert r.status_code == 202, r.text


def test_a_result_over_the_limit_is_stopped_when_the_header_under_reports_frames(model, clip_file, tmp_path):
    settings = ServeSettings(max_result_mb=0.2)
    queue = JobQueue(Engine(model, "saliency"), settings, tmp_path)
    queue.start()
    try:
        job_id, folder = queue.new_dir()
        (folder / UPLOAD_NAME).write_bytes(clip_file.read_bytes())
        request = JobRequest(sampling="windows", stride=1, map_size=256, map_dtype="float16", maps=["spatial", "raw"],
                             overlay=False)
        liar = VideoInfo(frames=1, fps=8.0, width=48, height=40, duration=0.125)  # 16 frames in truth
        queue.submit(job_id, folder, request, liar)
        wait_until(lambda: queue.status(job_id).state in ("done", "failed"), 60, "the job ends")
        status = queue.status(job_id)
        assert status.state == "failed" and status.error.code == "result_too_large", status
    finally:
        queue.stop()


def test_batch_size_over_the_limit_is_refused_at_submission(model, clip_file):
    # within the work limit, but 5000 clips held at once: memory, not work, would kill the server
    with BackgroundServer(create_app(model, ServeSettings(max_batch_size=16))) as server:
        assert httpx.get(server.url + "/api/info").json()["limits"]["max_batch_size"] == 16
        for method, options in [("rise", {"n_samples": 5000, "batch_size": 5000}),
                                ("smoothgrad", {"batch_size": 17}),
                                ("integrated_gradients", {"internal_batch_size": 100_000})]:
            r = httpx.post(f"{server.url}/api/jobs", params={"method": method, "options": json.dumps(options)},
                           content=clip_file.read_bytes(), timeout=30)
            assert r.status_code == 413 and r.json()["error"]["code"] == "batch_limit", (method, r.text)
            assert "16" in r.json()["error"]["message"]
        r = httpx.post(f"{server.url}/api/jobs", content=clip_file.read_bytes(), timeout=30,
                       params={"method": "rise", "options": '{"n_samples": 8, "batch_size": 16}', "overlay": "false"})
        assert r.status_code == 202, r.text
        with connect(ws_url(server), open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start", "method": "rise", "options": {"n_samples": 8, "batch_size": 64}}))
            msg = json.loads(ws.recv(timeout=30))
            assert msg["error"]["code"] == "batch_limit" and msg["fatal"] is False, msg


def test_work_scope_cancels_and_limits_inside_the_batch_loop(model, frames):
    clip = vx.Clip.from_array(frames[:T])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled), work_scope(model, cancel=cancel):
        vx.explain(model, clip, method="smoothgrad", n_samples=50)
    before = model.passes.forward
    budget = WorkBudget(max_forward_passes=10)
    with pytest.raises(WorkLimitExceeded, match="over its limit of 10"), work_scope(model, budget=budget):
        vx.explain(model, clip, method="smoothgrad", n_samples=200, batch_size=4)
    assert 10 < budget.used <= 10 + 4 + 1 and model.passes.forward - before == budget.used  # stopped within a batch


def test_a_work_budget_counts_only_its_own_passes_while_another_thread_explains(model, frames):
    # the scope read the model's pass counter before the other thread's explanation had ended:
    # that explanation's remaining passes counted against this budget ("used 401, over 50")
    clip = vx.Clip.from_array(frames[:T])
    start = model.passes.forward
    other = threading.Thread(target=vx.explain, args=(model, clip, "rise"), kwargs={"n_samples": 400, "batch_size": 4})
    other.start()
    wait_until(lambda: model.passes.forward > start, 30, "the other explanation runs")
    budget = WorkBudget(max_forward_passes=50)
    with work_scope(model, budget=budget):
        vx.explain(model, clip, "rise", n_samples=20)
    other.join()
    assert budget.used == 21   # its 20 masks and the clean clip


def test_job_hog_cancelled_by_delete_then_a_good_stream(model, clip_file, frames):
    app = create_app(model, ServeSettings(max_forward_passes=10**8))
    with BackgroundServer(app) as server:
        r = httpx.post(f"{server.url}/api/jobs", params={"method": "smoothgrad",
                                                         "options": json.dumps({"n_samples": 10**6})},
                       content=clip_file.read_bytes(), timeout=30)
        assert r.status_code == 202, r.text
        job = r.json()["links"]["status"]
        wait_until(lambda: httpx.get(server.url + job).json()["state"] == "running", 30, "the hog runs")
        start = model.passes.forward
        wait_until(lambda: model.passes.forward > start + 8, 30, "the hog computes")
        assert httpx.delete(server.url + job).status_code == 204

        def stopped() -> bool:
            a = model.passes.forward
            time.sleep(0.5)
            return model.passes.forward == a

        wait_until(stopped, 20, "the cancelled explanation stops using the model")
        assert [m["type"] for m in good_stream(server, frames)] == ["window", "end"]


# -- 4. abandoned streams during a long job --------------------------------------------------------------


def test_stream_abandoned_while_a_long_job_runs_frees_its_slot_at_once(model, clip_file, frames):
    app = create_app(model, ServeSettings(max_forward_passes=10**8, max_streams=1))
    with BackgroundServer(app) as server:
        r = httpx.post(f"{server.url}/api/jobs", params={"method": "smoothgrad",
                                                         "options": json.dumps({"n_samples": 10**6})},
                       content=clip_file.read_bytes(), timeout=30)
        job = r.json()["links"]["status"]
        wait_until(lambda: httpx.get(server.url + job).json()["state"] == "running", 30, "the hog runs")
        s = raw_ws(server)
        ws_send(s, json.dumps({"type": "start", "live": False, "stride": 2}))
        for f in frames:  # windows wait for the model, which is busy with the job
            ws_send(s, encode_frame(f, "jpeg"))
        wait_until(lambda: app.state.slots.active == 1, 10, "the stream holds its slot")
        s.close()
        wait_until(lambda: app.state.slots.active == 0, 10, "the slot comes back while the job still runs")
        assert httpx.get(server.url + job).json()["state"] == "running"
        httpx.delete(server.url + job)


# -- 5. slowloris and header size -------------------------------------------------------------------------


def test_slow_header_sockets_cannot_take_the_server(model):
    settings = ServeSettings(header_timeout_s=1.0, max_pending_per_client=8)
    with BackgroundServer(create_app(model, settings)) as server:
        host, port = server.url.split("//")[1].split(":")
        slow = []
        for _ in range(70):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # never finished
            slow.append(s)
        r = httpx.get(server.url + "/api/health", timeout=10)
        assert r.status_code == 200

        def closed(s: socket.socket) -> bool:
            s.settimeout(15)
            try:
                return s.recv(1) == b""
            except ConnectionResetError:
                return True

        assert all(closed(s) for s in slow)  # dropped: the oldest by newer ones, the rest after 1 s
        for s in slow:
            s.close()


def test_a_burst_of_connections_from_one_client_is_served(model):
    # 30 parallel requests from one address (a parallel client, or every user behind a proxy):
    # all connections are accepted before any is read, so they must not count as slow sockets
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        host, port = server.url.split("//")[1].split(":")
        socks = [socket.create_connection((host, int(port))) for _ in range(30)]
        time.sleep(0.3)  # the server has accepted them all, none has sent its request yet
        answers = []
        for s in socks:
            s.settimeout(15)
            try:
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            except OSError:
                pass  # already closed by the server: its answer below is empty
        for s in socks:
            reply = b""
            try:
                while chunk := s.recv(4096):
                    reply += chunk
            except OSError:
                pass
            answers.append(reply.split(b"\r\n", 1)[0])
            s.close()
        assert answers == [b"HTTP/1.1 200 OK"] * 30, answers


@pytest.mark.parametrize("request_bytes", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),      # TLS to the plain port
    b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nabc",
    b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"GET /api/health HTTP/1.1\r\nHost x\r\n\r\n",
    # WebSocket handshakes the websockets library refuses (answered in plain text before)
    b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",                                          # no Sec-WebSocket-Key
    b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    b"POST /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 2\r\n\r\nhi",
])
def test_unparsable_http_gets_a_json_error(model, request_bytes):
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        host, port = server.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port))) as s:
            s.settimeout(15)
            s.sendall(request_bytes)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, reply
        assert json.loads(body)["error"]["code"] == "bad_request", reply


def test_a_request_framed_both_ways_is_refused_and_what_follows_it_is_not_answered(model):
    # Content-Length and Transfer-Encoding together: h11 reads the chunks, and the connection was
    # kept, so the bytes after the empty chunked body were answered as a request of their own (the
    # CL.TE request smuggling of a proxy that goes by the Content-Length). RFC 9112 §6.3: close.
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        host, port = server.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port))) as s:
            s.settimeout(15)
            s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 44\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                      b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"connection: close" in head.lower(), reply
        error = json.loads(body)["error"]
        assert error["code"] == "bad_request" and "Transfer-Encoding" in error["message"], reply
        assert reply.count(b"HTTP/1.1") == 1, reply  # the smuggled GET got no answer
        # each framing alone is a request as usual, and two pipelined requests get two answers
        with socket.create_connection((host, int(port))) as s:
            s.settimeout(15)
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                      b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert reply.count(b"HTTP/1.1 200 OK") == 2, reply


def test_a_request_over_the_connection_limit_gets_a_json_503(model):
    # uvicorn's own answer past limit_concurrency was a plain-text 503 (160 idle connections with
    # the default settings then): now the API's JSON error, with Retry-After
    settings = ServeSettings(header_timeout_s=120)  # the idle sockets below stay for the test
    with BackgroundServer(create_app(model, settings), limit_concurrency=3) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connections = server.server.server_state.connections
        assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
        try:
            wait_until(lambda: len(connections) == 2, 20, "the server holds the two idle connections")
            r = httpx.get(server.url + "/api/health", timeout=10)
            assert r.status_code == 503 and r.headers["content-type"] == "application/json", r.text
            assert r.json()["error"]["code"] == "busy" and "connections" in r.json()["error"]["message"]
            assert r.headers["retry-after"] == "5" and r.headers["connection"] == "close"
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: httpx.get(server.url + "/api/health", timeout=10).status_code == 200, 20,
                   "served again once the idle connections are gone")


def test_oversized_header_is_refused(model):
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        host, port = server.url.split("//")[1].split(":")
        s = socket.create_connection((host, int(port)))
        s.settimeout(15)
        try:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (20 * 2**20) + b"\r\n\r\n")
        except OSError:
            pass  # the server stopped reading and closed: refused
        try:
            reply = s.recv(64)
        except OSError:
            reply = b""
        assert not reply.startswith(b"HTTP/1.1 200"), reply
        s.close()
        assert httpx.get(server.url + "/api/health").status_code == 200


def test_headers_over_the_limit_sent_at_once_are_refused(model):
    # h11 bounds headers that arrive in pieces only: 40 KB of them sent in one write were served
    with BackgroundServer(create_app(model, ServeSettings(max_header_bytes=16 * 1024))) as server:
        host, port = server.url.split("//")[1].split(":")
        stream = (f"GET /api/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n").encode()
        health = f"GET /api/health HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
        for request, extra, ok in ((health, b"X-Big: " + b"a" * 15_000 + b"\r\n", True),
                                   (health, b"X-Big: " + b"a" * 40_000 + b"\r\n", False),
                                   (health, b"X-A: b\r\n" * 5000, False),
                                   (stream, b"".join(b"X-%d: %s\r\n" % (i, b"a" * 7000) for i in range(6)), False)):
            with socket.create_connection((host, int(port)), timeout=15) as s:
                s.sendall(request + extra + b"\r\n")
                reply = b""
                while b"}" not in reply and (chunk := s.recv(4096)):
                    reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            if ok:
                assert head.startswith(b"HTTP/1.1 200"), reply
            else:
                assert head.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), reply
                assert json.loads(body)["error"]["code"] in ("headers_too_large", "bad_request"), reply


# -- 8. non-reading clients, Origin, keys in logs, SIGTERM --------------------------------------------------


def test_a_dropped_non_reading_client_has_its_tcp_connection_closed(model, frames):
    app = create_app(model, ServeSettings(stream_idle_timeout_s=1.0))
    with BackgroundServer(app) as server:
        s = raw_ws(server, rcvbuf=2048)
        ws_send(s, json.dumps({"type": "start", "stride": 1, "maps": ["spatial", "raw"], "map_dtype": "float16",
                               "map_size": 256}))
        s.settimeout(2)
        try:
            for i in range(400):  # results pile up in buffers the client never drains
                ws_send(s, encode_frame(frames[i % len(frames)], "rgb"))
        except OSError:
            pass
        wait_until(lambda: ws_connections(server) == 0, 30, "the server closes the connection")
        s.close()


def test_a_client_that_sends_frames_but_reads_no_result_is_closed_after_the_idle_timeout(model, frames):
    # a camera that sends a frame every 50 ms and never reads: its results fit in the kernel's
    # socket buffers for a long while, so no send blocked, and it held its slot until uvicorn's
    # keep-alive ping gave up (about 40 s) instead of stream_idle_timeout_s after its first result
    app = create_app(model, ServeSettings(stream_idle_timeout_s=1.0))
    with BackgroundServer(app) as server:
        closed, sent = _stream_without_reading(app, server, frames)
        assert closed, f"a client that read nothing kept its stream open for 15 s ({sent} frames sent)"
        wait_until(lambda: app.state.slots.active == 0 and ws_connections(server) == 0, 10, "slot and socket freed")
        assert [m["type"] for m in good_stream(server, frames)] == ["window", "end"]


def _stream_without_reading(app, server, frames, also: Callable[[socket.socket, int], None] | None = None
                            ) -> tuple[bool, int]:
    """Start a stream and send a frame every 50 ms for up to 15 s without reading a byte
    (``also(sock, i)`` after the ``i``-th frame); whether the server closed it, and the frames sent."""
    s = raw_ws(server, rcvbuf=1 << 20)
    ws_send(s, json.dumps({"type": "start", "stride": 2}))
    wait_until(lambda: app.state.slots.active == 1, 10, "the stream takes its slot")
    closed, deadline, i = False, time.monotonic() + 15, 0
    while not closed and time.monotonic() < deadline:
        try:
            ws_send(s, encode_frame(frames[i % len(frames)], "rgb"))
            if also is not None:
                also(s, i)
        except OSError:  # reset by the server
            closed = True
        i += 1
        time.sleep(0.05)
        closed = closed or app.state.slots.active == 0
    s.close()
    return closed, i


def ws_recv_json(s: socket.socket) -> dict:
    """The server's next text message on a raw socket (pings skipped; the server does not mask)."""
    def exact(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            assert chunk, "the server closed the connection"
            out += chunk
        return out
    while True:
        first, second = exact(2)
        n = second & 0x7F
        n = struct.unpack(">H", exact(2))[0] if n == 126 else struct.unpack(">Q", exact(8))[0] if n == 127 else n
        payload = exact(n)
        if first & 0x0F == 1:
            return json.loads(payload)


def test_a_message_in_tiny_fragments_is_held_in_its_own_bytes_not_one_object_each(model, frames):
    # uvicorn kept every fragment of a message as a bytes object of its own: max_size bounds
    # their bytes, not their number, so a message of 2-byte fragments held some 17 times its
    # size (6 MiB of them, the largest message: 320 MiB per connection, for 24 MiB on the wire)
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        s = raw_ws(server)
        ws_send(s, json.dumps({"type": "start", "stride": T, "live": False}))
        assert ws_recv_json(s)["type"] == "ready"
        message = encode_frame(frames[0], "rgb")
        pieces = [message[i:i + 2] for i in range(0, len(message), 2)]
        for i, piece in enumerate(pieces[:-1]):  # unmasked (zero key), not final
            s.sendall(bytes([0x02 if i == 0 else 0x00, 0x80 | len(piece)]) + bytes(4) + piece)
        conn = next(c for c in server.server.server_state.connections if isinstance(c, WebSocketProtocol))
        wait_until(lambda: sum(map(len, list(conn.frames))) == len(message) - len(pieces[-1]), 30,
                   "the server has read every fragment but the last")
        held = sum(sys.getsizeof(f) for f in list(conn.frames))
        assert held < 2 * len(message), f"{len(pieces) - 1} fragments of {len(message)} bytes held in {held} bytes"
        s.sendall(bytes([0x80, 0x80 | len(pieces[-1])]) + bytes(4) + pieces[-1])  # the final fragment
        for f in frames[1:T]:
            ws_send(s, encode_frame(f, "rgb"))
        ws_send(s, json.dumps({"type": "end"}))
        window, end = ws_recv_json(s), ws_recv_json(s)
        s.close()
    reference = good_stream_result(model, frames[:T])
    assert window["type"] == "window" and end == {**end, "type": "end", "frames": T, "windows": 1}, (window, end)
    np.testing.assert_allclose(window["temporal"], reference, atol=1e-5)  # the frame arrived whole


def good_stream_result(model, clip: np.ndarray) -> np.ndarray:
    """The temporal scores the server's default method gives ``clip`` (the library's own call)."""
    engine = Engine(model, ServeSettings().default_method)
    return vx.explain(model, clip, method=engine.default_method).temporal


def test_a_client_that_reads_nothing_cannot_answer_the_read_probes_unasked(model, frames):
    # the probes were "videoxai-read-1", -2, …: a client could send those pongs without reading a
    # byte and keep its stream until the socket buffers filled (minutes of small results)
    def answer_the_old_probes(sock: socket.socket, i: int) -> None:
        for n in range(1, 3 * i + 10):  # every probe sent so far, answered unasked (zero mask)
            pong = b"videoxai-read-%d" % n
            sock.sendall(bytes([0x8A, 0x80 | len(pong)]) + bytes(4) + pong)

    app = create_app(model, ServeSettings(stream_idle_timeout_s=1.0))
    with BackgroundServer(app) as server:
        closed, sent = _stream_without_reading(app, server, frames, answer_the_old_probes)
        assert closed, f"a client that read nothing but answered the probes kept its stream for 15 s ({sent} frames)"


def test_a_ping_flood_that_reads_no_pongs_is_slowed_not_buffered(model):
    # every ping gets a pong at once: unless the server stops reading a peer that does not read,
    # the pongs pile up in its write buffer (as much memory as the peer cares to send)
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        s = raw_ws(server, rcvbuf=4096)
        ping = bytes([0x89, 0x80 | 125]) + bytes(4) + b"p" * 125  # masked with a zero key
        chunk, sent = ping * 8000, 0
        s.settimeout(3)
        try:
            while sent < 64 * 2**20:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # blocked: the server stopped reading
        s.close()
        assert sent < 48 * 2**20, f"the server read {sent / 2**20:.0f} MiB of pings while nobody read its pongs"
        assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200


def test_websocket_origin_check(model):
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        with connect(ws_url(server), origin="http://evil.example", open_timeout=20) as ws:
            msg = json.loads(ws.recv(timeout=20))
            assert msg["fatal"] and msg["error"]["code"] == "forbidden_origin"
        with connect(ws_url(server), origin=server.url, open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
    allowed = ServeSettings(allowed_origins=("http://viewer.example",))
    with BackgroundServer(create_app(model, allowed)) as server:
        with connect(ws_url(server), origin="http://viewer.example", open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"


def test_streams_that_never_authenticate_cannot_lock_out_a_client_with_the_key(model, frames):
    # a socket without the key holds no stream slot, and only max_pending_connections of them wait
    # at once (newer ones close the oldest): before, each held its connection for the idle timeout,
    # and more of them than uvicorn's limit_concurrency made every HTTP request get 503
    settings = ServeSettings(api_key="k3y", max_streams=1, max_pending_connections=4,
                             stream_idle_timeout_s=600, auth_timeout_s=600)  # only displacement frees them
    app = create_app(model, settings)
    with BackgroundServer(app) as server:
        silent = [raw_ws(server) for _ in range(2 * settings.max_pending_connections + 4 + 64 + 16)]
        try:
            assert app.state.slots.active == 0
            def served() -> bool:
                r = httpx.get(server.url + "/api/info", headers={"X-API-Key": "k3y"}, timeout=20)
                assert r.status_code in (200, 503), r.text
                return r.status_code == 200

            wait_until(served, 30, "a request with the key is served (not 503)")
            assert ws_connections(server) <= settings.max_pending_connections  # the oldest were closed
            with connect(ws_url(server), additional_headers={"X-API-Key": "k3y"}, open_timeout=20) as ws:
                ws.send(json.dumps({"type": "start"}))
                assert json.loads(ws.recv(timeout=30))["type"] == "ready"  # the one slot is free
            with connect(ws_url(server), open_timeout=20) as ws:  # the key in the first message, as browsers do
                ws.send(json.dumps({"type": "start", "api_key": "k3y"}))
                assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            oldest = silent[0]
            oldest.settimeout(20)
            try:
                while oldest.recv(4096):  # the fatal 'busy' and a close frame, or a reset
                    pass
            except ConnectionResetError:
                pass
        finally:
            for s in silent:
                s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_during_a_hog_and_a_stream_stops_in_bounded_time_and_logs_no_key(clip_file, frames):
    port, key = free_port(), "s3cret-KEY-42"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", VIDEOXAI_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "videoxai", "serve", "--model", "demo", "--port", str(port),
                             "--api-key", key, "--threads", "1", "--shutdown-timeout", "1",
                             "--max-forward-passes", str(10**8)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), 120, "the server starts")
        assert httpx.get(f"{url}/api/info?api_key={key}").status_code == 401  # logged, with its query
        r = httpx.post(f"{url}/api/jobs", params={"method": "smoothgrad", "options": '{"n_samples": 1000000}'},
                       headers={"X-API-Key": key}, content=clip_file.read_bytes(), timeout=30)
        assert r.status_code == 202, r.text
        job = r.json()["links"]["status"]
        wait_until(lambda: httpx.get(url + job, headers={"X-API-Key": key}).json()["state"] == "running", 30,
                   "the hog runs")
        # a stream with the key in the legacy query parameter, left waiting for the busy model
        with connect(f"ws://127.0.0.1:{port}/api/stream?api_key={key}", open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start", "live": False}))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            for f in frames[:T]:
                ws.send(encode_frame(f, "jpeg"))
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)  # 1 s of grace, then the work is cancelled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read().decode(errors="replace")
    assert key not in log
    assert "api_key=***" in log  # the access log line is there, masked


def test_uploads_still_arriving_at_shutdown_get_a_json_503_and_leave_no_files(model, tmp_path):
    # cancelled after the shutdown grace, each upload logged "Exception in ASGI application" with
    # a traceback and its client got uvicorn's plain-text 500, the answer to a bug
    app = create_app(model, ServeSettings(shutdown_timeout_s=1, work_dir=str(tmp_path)))
    sockets = []
    with BackgroundServer(app) as server:
        host, port = server.url.split("//")[1].split(":")
        for multipart in (False, True):
            s = socket.create_connection((host, int(port)))
            s.settimeout(30)
            head = b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n"
            if multipart:
                head += (b"Content-Type: multipart/form-data; boundary=XX\r\n\r\n--XX\r\nContent-Disposition: "
                         b"form-data; name=\"file\"; filename=\"a.mp4\"\r\n")
            s.sendall(head + b"\r\n" + b"x" * 200_000)  # and nothing more
            sockets.append(s)
        wait_until(lambda: len(list((tmp_path / "jobs").iterdir())) == 2, 20, "both uploads are being received")
    replies = []
    for s in sockets:
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        s.close()
        replies.append(reply)
    for reply in replies:
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"application/json" in head, reply
        error = json.loads(body)["error"]
        assert error["code"] == "busy" and "shutting down" in error["message"], reply
    assert list((tmp_path / "jobs").iterdir()) == []  # the uploads' folders are gone


def test_a_download_still_being_read_at_shutdown_is_cut_off_without_a_traceback(model, tmp_path):
    # a client reading a large result slowly when the shutdown grace ended: its cancelled answer
    # was logged as "Exception in ASGI application" with a traceback, as a bug is
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    app = create_app(model, ServeSettings(shutdown_timeout_s=1, body_timeout_s=120))
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "videoxai.serve")]
    try:
        with BackgroundServer(app) as server:
            for logger in loggers:  # once uvicorn has configured its loggers (which drops their handlers)
                logger.addHandler(handler)
            with httpx.Client(base_url=server.url, timeout=60) as c:
                r = c.post("/api/jobs", params={"method": "saliency", "overlay": "false"},
                           content=write_video(np.zeros((8, 24, 32, 3), np.uint8), tmp_path / "c.mp4").read_bytes())
                job = r.json()["id"]
                wait_until(lambda: c.get(f"/api/jobs/{job}").json()["state"] == "done", 60, "the job is done")
            app.state.jobs.get(job).result_path.write_bytes(b" " * (16 * 2**20) + b"{}")  # more than the buffers hold
            host, port = server.url.split("//")[1].split(":")
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((host, int(port)))
            s.sendall(f"GET /api/jobs/{job}/result HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            s.settimeout(30)
            assert s.recv(12) == b"HTTP/1.1 200"  # and no more: the server's writes stall
        s.close()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert not [r for r in records if r.levelno >= logging.ERROR and "Exception in ASGI" in r.getMessage()], \
        [r.getMessage() for r in records]
    assert [r for r in records if "shutting down" in r.getMessage()], [r.getMessage() for r in records]


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- 9. invalid option values are 4xx, never 500 ------------------------------------------------------------


@pytest.mark.parametrize("method,options,code", [
    ("rise", '{"n_samples": "abc"}', "bad_input"),
    ("rise", '{"n_samples": NaN}', "bad_request"),
    ("rise", '{"n_samples": 1e400}', "bad_request"),
    ("rise", '{"cells": [0, 0, 0]}', "bad_input"),
    ("occlusion", '{"window": 0}', "bad_input"),
    ("rise", "[" * 30000, "bad_request"),
    ("rise", '{"n_samples": ' + "[" * 40 + "]" * 40 + "}", "bad_request"),
    ("rise", "[1, 2]", "bad_request"),
    ("integrated_gradients", '{"n_steps": 1000000}', "bad_input"),  # above its range (it held a CPU for hours)
])
def test_invalid_options_are_refused_with_4xx_before_the_job(model, clip_file, method, options, code):
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        r = httpx.post(f"{server.url}/api/jobs", params={"method": method}, data={"options": options},
                       files={"file": ("clip.mp4", clip_file.read_bytes())}, timeout=30)
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        if code is not None:
            assert r.json()["error"]["code"] == code, r.text
        assert httpx.get(server.url + "/api/health").status_code == 200


@pytest.mark.parametrize("host, allowed, ok", [
    ("127.0.0.1:8000", (), True), ("[::1]:8000", (), True), ("10.1.2.3", (), True),
    ("localhost:8000", (), True), ("LOCALHOST", (), True), ("app.localhost:8000", (), True),
    ("evil.example:8000", (), False), ("localhost.evil.example", (), False), ("", (), False),
    ("myhost.lan:8000", ("myhost.lan",), True), ("other.lan", ("myhost.lan",), False),
    ("a.corp.example", (".corp.example",), True), ("corp.example", (".corp.example",), True),
    ("evilcorp.example", (".corp.example",), False), ("anything.example", ("*",), True),
])
def test_host_names_the_server_answers_to(host, allowed, ok):
    from videoxai.core.hosts import host_allowed
    assert host_allowed(allowed, host) is ok


def test_dns_rebinding_is_refused_by_host_name(model):
    # a page whose name was re-pointed at 127.0.0.1 sends its own name as Host (and Origin)
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        host, port = server.url.split("//")[1].split(":")
        with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as c:
            r = c.get("/api/info", headers={"Host": f"evil.example:{port}"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "forbidden_host", r.text
            assert "evil.example" in r.json()["error"]["message"]
            assert c.get("/api/info", headers={"Host": f"localhost:{port}"}).status_code == 200
            assert c.get("/api/info").status_code == 200  # 127.0.0.1
        s = socket.create_connection((host, int(port)), timeout=20)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /api/stream HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and (chunk := s.recv(1)):
            head += chunk
        s.close()
        assert head.startswith(b"HTTP/1.1 403"), head
    named = ServeSettings(allowed_hosts=("viewer.lan",))
    with BackgroundServer(create_app(model, named)) as server:
        port = server.url.rsplit(":", 1)[1]
        with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as c:
            assert c.get("/api/info", headers={"Host": f"viewer.lan:{port}"}).status_code == 200


# -- 10. bodies that turn out malformed after an answer; text that is not UTF-8 -------------------------------


@contextmanager
def logged_errors() -> Iterator[list[logging.LogRecord]]:
    """Records of level ERROR the server's loggers (asyncio's, uvicorn's, videoxai's) emit meanwhile."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("asyncio", "uvicorn.error", "videoxai.serve")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def read_to_end(s: socket.socket) -> bytes:
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    return reply


def test_a_body_found_malformed_after_the_answer_closes_the_connection_without_a_traceback(model):
    # a request answered without reading its body (405, 401) whose chunked body then turned out
    # malformed: h11 was told to send a second answer, and raised from data_received ("Fatal error
    # on transport") or from the app's send ("Exception in ASGI application"): a traceback each
    with BackgroundServer(create_app(model, ServeSettings(api_key="k"))) as server, logged_errors() as errors:
        host, port = server.url.split("//")[1].split(":")
        for path in (b"POST /api/health", b"GET /api/info"):
            head = path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            with socket.create_connection((host, int(port)), timeout=15) as s:  # answered, then the bad chunk
                s.sendall(head)
                reply = b""
                while b"}}" not in reply:
                    reply += s.recv(4096)
                s.sendall(b"zz\r\nabc\r\n0\r\n\r\n")
                reply += read_to_end(s)
            assert reply.count(b"HTTP/1.1 4") == 1 and reply.startswith((b"HTTP/1.1 405", b"HTTP/1.1 401")), reply
            with socket.create_connection((host, int(port)), timeout=15) as s:  # the bad chunk with the headers
                s.sendall(head + b"zz\r\nabc\r\n0\r\n\r\n")
                reply = read_to_end(s)
            assert reply.count(b"HTTP/1.1 4") == 1, reply  # one answer, whichever came first
            if reply.startswith(b"HTTP/1.1 400"):
                assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request", reply
        wait_until(lambda: not server.server.server_state.tasks, 10, "the requests' tasks end")
        assert not errors, [r.getMessage() for r in errors]
        assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200


def test_a_text_message_that_is_not_utf8_closes_the_stream_with_1007_saying_why(model, frames):
    # uvicorn closed with 1007 and no reason, and logged a traceback for each such message
    with BackgroundServer(create_app(model, ServeSettings())) as server, logged_errors() as errors:
        s = raw_ws(server)
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | 3]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"{\xff}")))
        reply = read_to_end(s)
        s.close()
        assert reply[0] == 0x88, reply  # a close frame, and nothing before it
        n = reply[1] & 0x7F
        code, reason = struct.unpack(">H", reply[2:4])[0], reply[4:2 + n].decode()
        assert code == 1007 and reason == ("bad_message: a text message is not valid UTF-8 (byte 1); send JSON as "
                                           "UTF-8 text"), reply
        assert not errors, [r.getMessage() for r in errors]
        assert good_stream(server, frames)[-1]["type"] == "end"  # the server goes on
