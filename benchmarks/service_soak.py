"""Soak test of the service: many cycles of normal and abnormal use, watching for what leaks.

A server running for days sees every kind of client thousands of times. This drives one server
(the bundled demo model, ``--threads 1``, an API key, short timeouts) with ``--cycles`` cycles,
each one scenario in turn, and every ``--every`` cycles lets it settle (no client connected, no
job running) and measures, inside the server process: RSS, open file descriptors, OS threads,
asyncio tasks, files in its work dir, uvicorn's connections and tasks, and the server's own
tables (jobs, their folders, stream slots, streams waiting to authenticate, connections still
sending headers, the model thread's queue) and the live objects of its classes.

    python benchmarks/service_soak.py                  # 2000 cycles, a line every 100
    python benchmarks/service_soak.py --cycles 300 --every 50

Scenarios (HTTP): a raw upload polled to the end, its result and overlay downloaded whole and in
ranges (and with bad ranges), then deleted; multipart uploads with sliding windows left to be
evicted (``max_jobs_kept``), the methods taking turns (hooks, attention taps, gradients,
perturbations); one whose part outgrows starlette's in-memory spool (1 MiB), whole or cut off;
a slow job whose client leaves at once; jobs deleted while queued or running; a burst over
``max_queued_jobs`` (503); refused uploads (not a video, empty, bad options, unknown method, over
the size limit, wrong key); a truncated video (refused, or a failed job); uploads cut off
mid-body (FIN and RST, raw and multipart); uploads that stall (408 after ``body_timeout_s``);
downloads cut off after the headers; headers that never end, and bytes that are not HTTP.
(WebSocket): streams that end normally (:class:`~videoxai.serve.client.StreamClient`, RGB, JPEG
and PNG frames, the methods taking turns; and a raw client with the key in its first message);
streams that drop without ``end`` (FIN, RST, a close frame, a live stream, windows in flight);
garbage before and after ``start``, and a message over ``max_message_bytes``; streams that never
authenticate (silent, a wrong key, a binary first message); streams that go silent after
``start`` (idle timeout); a stream that sends and never reads; one stream too many (``busy``).
A client left to the server's timeouts is checked later: its connection must have been closed.

The server runs in a child process so that the driver's own sockets, threads and memory are not
counted; before each measurement the driver closes every connection, waits until the server is
idle and then ``--linger`` seconds (a WebSocket closed by the server keeps its transport 5 s for
the peer's close). The verdict takes the measurements after ``--warmup`` cycles: a count (fds,
threads, tasks, connections, table sizes, files, hooks on the model, live objects) whose every
value in the second half is above every value in the first half is a leak (pools and timers come
and go; a leak only grows), as is a median RSS that rose by more than ``--rss-slack-mib``; the
work dir must always hold exactly the folders of the jobs the server lists; with fewer than six
measurements after warm-up there is no verdict (exit status 2). ``--inject-leak``
checks the checker: the server then keeps a file descriptor and 256 KiB per accepted upload.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KEY = "soak-key"

#: methods the jobs and streams take turns with (hooks, attention taps, gradients, perturbations)
METHODS = (("staa", {}), ("gradcam", {}), ("saliency", {}), ("attention_relevance", {}), ("rollout", {}),
           ("lime", {"n_samples": 16}), ("smoothgrad", {"n_samples": 4}))
T = 8  # the demo model's window
ABORT_AFTER_CLOSE_S = 5.0  # videoxai.serve.transport's (not imported here: the driver stays light)
#: the start of the server's read probes (pings after each message): a client that reads nothing is
#: aborted stream_idle_timeout_s after one, possibly before its idle timeout's message is sent
#: (the idle and non-reading scenarios were counted unexpected when the probe came first)
READ_PROBE = b"videoxai-read-"

#: the server's settings: small tables and short timeouts, so that every path is taken often
SETTINGS = dict(api_key=KEY, max_jobs_kept=6, max_queued_jobs=3, max_streams=4, auth_timeout_s=0.5,
                stream_idle_timeout_s=1.0, body_timeout_s=1.0, header_timeout_s=2.0, max_upload_mb=4.0,
                max_pending_connections=16, max_pixels=320 * 240, max_side=400,
                # every client of the soak is one address (loopback): the per-client caps would turn
                # its stalled and cut uploads into 429s for the uploads it expects to be taken, and
                # take the queue's and the streams' limits (503, busy) out of its reach
                max_uploads_per_client=16, max_queued_jobs_per_client=16, max_streams_per_client=16,
                max_requests_per_client=256)

#: classes whose live instances are counted (a leak of requests or sessions shows here first)
WATCHED = ("Job", "StreamSession", "WebSocket", "Request", "HTTPProtocol", "WebSocketProtocol",
           "VideoXAIHTTPProtocol", "_OpenedFile", "FileResponse", "JSONResponse", "Task", "Future",
           "TimerHandle", "Event", "Clip", "Explanation", "OverlayWriter", "UploadFile", "SpooledTemporaryFile",
           "InputContainer", "OutputContainer", "Thread", "socket", "TextIOWrapper", "BufferedReader",
           "BufferedWriter", "FileIO", "WorkBudget", "Smoothing", "_Window", "async_generator", "coroutine",
           "generator", "frame")


# -- the server process -----------------------------------------------------------------------------


def server_main(conn, settings: dict, threads: int, inject_leak: bool = False) -> None:
    """Run the server on a background thread and answer ``measure`` requests on ``conn``."""
    import asyncio
    import gc

    import psutil
    import torch

    torch.set_num_threads(threads)
    import videoxai as vx
    from videoxai.serve import BackgroundServer, ServeSettings, create_app

    if inject_leak:  # checks the checker: every accepted upload keeps a file descriptor and 256 KiB
        from videoxai.serve.jobs import JobQueue

        kept, submit = [], JobQueue.submit

        def leaky_submit(self, *args, **kwargs):
            kept.append((os.open(os.devnull, os.O_RDONLY), bytearray(b"x" * (256 << 10))))
            return submit(self, *args, **kwargs)

        JobQueue.submit = leaky_submit
    model = vx.load_model("demo")
    app = create_app(model, ServeSettings(**settings))
    proc = psutil.Process()
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    with BackgroundServer(app, log_level="error") as server:  # no line per refused bad request
        conn.send(server.url)
        loop = server.server.servers[0].get_loop()

        async def task_names() -> list[str]:
            me = asyncio.current_task()
            return sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not me)

        while True:
            cmd = conn.recv()
            if cmd == "stop":
                break
            full = cmd == "measure"
            jobs = app.state.jobs
            with jobs.lock:
                listed = set(jobs._jobs)
                active = sum(j.state in ("queued", "running") for j in jobs._jobs.values())
            folders = {p.name for p in jobs.root.iterdir()}
            state = server.server.server_state
            pending = getattr(state, "videoxai_pending", None)
            m = {
                "rss_mib": proc.memory_info().rss / 2**20,
                "fds": proc.num_fds(),
                "threads": proc.num_threads(),
                "connections": len(state.connections),
                "uvicorn_tasks": len(state.tasks),
                "jobs": len(listed),
                "jobs_active": active,
                "job_queue": jobs._queue.qsize(),
                "job_folders": len(folders),
                "orphan_folders": len(folders - listed),
                "missing_folders": len(listed - folders),
                "work_files": sum(1 for _ in jobs.root.parent.rglob("*")),
                "stream_slots": app.state.slots.active,
                "auth_waiters": len(app.state.auth_waiters),
                "pending_headers": len(pending.connections) if pending is not None else 0,
                "model_queue": app.state.engine._executor._work_queue.qsize(),
                "model_hooks": sum(len(getattr(mod, d, None) or {}) for mod in model.modules() for d in hook_dicts),
                "model_attrs": len(vars(model)),
            }
            names = asyncio.run_coroutine_threadsafe(task_names(), loop).result(10)
            m["asyncio_tasks"] = len(names)
            if full:
                m["task_names"] = dict(Counter(names))
                m["thread_names"] = dict(Counter(t.name.rstrip("0123456789_") for t in threading.enumerate()))
                gc.collect()
                objects = gc.get_objects()
                m["gc_objects"] = len(objects)
                m["types"] = dict(Counter(n for n in (type(o).__name__ for o in objects) if n in WATCHED))
                del objects
                m["rss_mib"] = proc.memory_info().rss / 2**20
                m["fds"] = proc.num_fds()
            conn.send(m)


# -- a WebSocket client that can misbehave ------------------------------------------------------------


class RawWS:
    """A minimal WebSocket client over a plain socket: it can vanish, send garbage, not read."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall((f"GET /api/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"{extra}\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(head.split(b"\r\n")[0].decode())
        self._buf = b""

    def send(self, payload: bytes | str, opcode: int | None = None) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        op = opcode if opcode is not None else (1 if isinstance(payload, str) else 2)
        n = len(data)
        head = bytes([0x80 | op])
        head += (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
                 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 4096 else _mask(data, mask)
        self.sock.sendall(head + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv(self) -> tuple[int, bytes]:
        """The next frame: ``(opcode, payload)``; 8 is a close."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def recv_json(self) -> dict:
        while True:
            op, data = self.recv()
            if op == 1:
                return json.loads(data)
            if op == 8:
                raise ConnectionError(f"closed by the server ({struct.unpack('>H', data[:2])[0] if data else ''})")

    def until(self, kind: str, limit: int = 200) -> list[dict]:
        out = []
        for _ in range(limit):
            msg = self.recv_json()
            out.append(msg)
            if msg.get("type") == kind or (msg.get("type") == "error" and msg.get("fatal")):
                return out
        raise AssertionError(f"no {kind!r} in {limit} messages")

    def close_frame(self, code: int = 1000) -> None:
        self.send(struct.pack(">H", code), opcode=8)

    def abort(self) -> None:
        """Vanish: RST, no close frame."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def closed_by_server(sock: socket.socket, timeout: float = 3.0) -> tuple[bool, bytes]:
    """Read what is left on ``sock``: ``(True, data)`` once the server has closed it (``b"reset"``
    for an abort), ``(False, data)`` if it is still open after ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return True, data or b"reset"
    except (TimeoutError, socket.timeout):
        return False, data
    return True, data


def _mask(data: bytes, mask: bytes) -> bytes:
    import numpy as np

    n = len(data)
    return (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()


# -- the driver -------------------------------------------------------------------------------------


class Driver:
    def __init__(self, url: str, tmp: Path) -> None:
        import httpx
        import numpy as np

        from videoxai.data.video import write_video
        from videoxai.serve.client import encode_frame

        self.url = url
        self.host, port = url.split("//")[1].rsplit(":", 1)
        self.port = int(port)
        rng = np.random.default_rng(0)
        self.frames = rng.integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
        self.video = write_video(self.frames, tmp / "clip.mp4", fps=10).read_bytes()
        self.padded = self.video + bytes(1_500_000)  # still a video; a multipart spool over 1 MiB is a file
        self.rgb = [encode_frame(f, "rgb") for f in self.frames]
        self.httpx = httpx
        self.client = self._client()
        self.parked: list[tuple[float, object, str, tuple[bytes, ...]]] = []  # stalled clients, see park()
        self.outcomes: Counter[str] = Counter()
        self.turns: Counter[str] = Counter()
        self.surprises: Counter[str] = Counter()

    def _client(self):
        return self.httpx.Client(base_url=self.url, timeout=30, trust_env=False, headers={"X-API-Key": KEY})

    def reset_clients(self) -> None:
        """Close every connection the driver holds (before a measurement), after waiting for the
        server to close the ones left to its timeouts."""
        self.client.close()
        while self.parked:
            self.unpark(wait=True)
        self.client = self._client()

    def park(self, conn, seconds: float, name: str, *expect: bytes) -> None:
        """Leave a misbehaving client alone for ``seconds``; then the server must have closed its
        connection (having sent one of ``expect`` first, if any)."""
        self.parked.append((time.monotonic() + seconds, conn, name, expect))

    def unpark(self, wait: bool = False) -> None:
        """Check the parked clients whose time is up (all of them, waiting, if ``wait``)."""
        keep = []
        for at, conn, name, expect in self.parked:
            if at > time.monotonic() and not wait:
                keep.append((at, conn, name, expect))
                continue
            timeout = max(0.0, at - time.monotonic()) + 3.0
            closed, data = closed_by_server(conn.sock if isinstance(conn, RawWS) else conn, timeout)
            conn.close()
            said = not expect or data == b"reset" or any(e in data for e in expect)
            self.expect(name, closed and said, f"closed={closed}, {len(data)} bytes: {data[-80:]!r}")
        self.parked = keep

    def turn(self, scenario: str) -> int:
        """How many times ``scenario`` ran before (picks its variant)."""
        self.turns[scenario] += 1
        return self.turns[scenario] - 1

    def expect(self, name: str, ok: bool, detail: object = "") -> None:
        self.outcomes[name] += 1
        if not ok:
            self.surprises[f"{name}: {detail}"[:160]] += 1

    # -- HTTP helpers --
    def upload(self, client=None, **params):
        return (client or self.client).post("/api/jobs", content=self.video, params=params,
                                            headers={"content-type": "video/mp4"})

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.client.get(f"/api/jobs/{job_id}").json()
            if status.get("state") not in ("queued", "running"):
                return status
            time.sleep(0.01)
        return {"state": "timeout"}

    def raw(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)

    def raw_upload_head(self, length: int, content_type: str = "video/mp4") -> bytes:
        return (f"POST /api/jobs HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nX-API-Key: {KEY}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()

    def multipart(self, video: bytes | None = None) -> tuple[bytes, str]:
        boundary = "soakboundary1234"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"sampling\"\r\n\r\nwindows\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.mp4\"\r\n"
                f"Content-Type: video/mp4\r\n\r\n").encode() + (video or self.video) + \
            f"\r\n--{boundary}--\r\n".encode()
        return body, f"multipart/form-data; boundary={boundary}"

    # -- HTTP scenarios --
    def job_full(self) -> None:
        r = self.upload()
        self.expect("upload", r.status_code == 202, r.text)
        if r.status_code != 202:
            return
        job = r.json()["id"]
        status = self.wait_job(job)
        self.expect("job done", status["state"] == "done", status)
        c = self.client
        result = c.get(f"/api/jobs/{job}/result")
        self.expect("result", result.status_code == 200, result.status_code)
        overlay = c.get(f"/api/jobs/{job}/overlay.mp4")
        self.expect("overlay", overlay.status_code == 200 and len(overlay.content) > 100, overlay.status_code)
        part = c.get(f"/api/jobs/{job}/overlay.mp4", headers={"Range": "bytes=0-99"})
        self.expect("overlay range", part.status_code == 206 and len(part.content) == 100, part.status_code)
        tail = c.get(f"/api/jobs/{job}/result", headers={"Range": "bytes=-50"})
        self.expect("result suffix range", tail.status_code == 206 and len(tail.content) == 50, tail.status_code)
        multi = c.get(f"/api/jobs/{job}/overlay.mp4", headers={"Range": "bytes=0-9,20-29"})
        self.expect("multi range", multi.status_code == 206, multi.status_code)
        bad = c.get(f"/api/jobs/{job}/overlay.mp4", headers={"Range": "bytes=9-1"})
        self.expect("bad range", bad.status_code == 400, bad.status_code)
        beyond = c.get(f"/api/jobs/{job}/overlay.mp4", headers={"Range": "bytes=99999999-"})
        self.expect("range beyond", beyond.status_code == 416, beyond.status_code)
        d = c.delete(f"/api/jobs/{job}")
        self.expect("delete", d.status_code == 204, d.status_code)
        gone = c.get(f"/api/jobs/{job}")
        self.expect("deleted is 404", gone.status_code == 404, gone.status_code)

    def job_left_to_evict(self) -> None:
        body, ctype = self.multipart()
        method = METHODS[self.turn("evicted job") % len(METHODS)]
        r = self.client.post("/api/jobs", content=body, headers={"content-type": ctype},
                             params={"stride": "4", "maps": "spatial,raw", "method": method[0],
                                     "options": json.dumps(method[1])})
        self.expect("multipart upload", r.status_code == 202, r.text)
        if r.status_code == 202:
            status = self.wait_job(r.json()["id"])
            self.expect("job done", status["state"] == "done", status)

    def upload_large(self) -> None:
        """A multipart upload whose part outgrows starlette's in-memory spool: whole, or cut."""
        body, ctype = self.multipart(self.padded)
        if self.turn("large upload") % 2 == 0:
            r = self.client.post("/api/jobs", content=body, headers={"content-type": ctype})
            self.expect("large upload", r.status_code == 202, r.text)
            if r.status_code == 202:
                status = self.wait_job(r.json()["id"])
                self.expect("job done", status["state"] == "done", status)
            return
        s = self.raw()
        s.sendall(self.raw_upload_head(len(body), ctype) + body[: len(body) * 3 // 4])
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        self.expect("large upload", True)

    def job_fails(self) -> None:
        """A video cut short: refused when probed, or a job that fails while decoding (kept, then evicted)."""
        r = self.client.post("/api/jobs", content=self.video[: len(self.video) * 6 // 10],
                             params={"sampling": "windows"})
        if r.status_code == 202:
            status = self.wait_job(r.json()["id"])
            self.expect("truncated video", status["state"] in ("failed", "done"), status)
        else:
            self.expect("truncated video", r.status_code in (415, 503), r.status_code)

    def stream_not_reading(self) -> None:
        """A file stream that sends 24 frames at stride 1 and never reads its 17 windows, nor the
        server's close: closed as idle, its transport aborted ABORT_AFTER_CLOSE_S later. (A reader
        so slow that the server's writes stall is ``tests/test_serve_abuse.py``'s: minutes here.)"""
        ws = RawWS(self.host, self.port, {"X-API-Key": KEY})
        ws.send(json.dumps({"type": "start", "stride": 1, "live": False}))
        for i in range(24):
            ws.send(self.rgb[i % len(self.rgb)])
        self.park(ws, 1.0 + SETTINGS["stream_idle_timeout_s"] + ABORT_AFTER_CLOSE_S + 1.5,
                  "non-reading stream closed", b'"idle"', b'"busy"', READ_PROBE)

    def bad_http(self) -> None:
        """Headers that never end (dropped after header_timeout_s), or bytes that are not HTTP."""
        s = self.raw()
        if self.turn("bad http") % 2 == 0:
            s.sendall(f"GET /api/health HTTP/1.1\r\nHost: {self.host}\r\nX-Slow: ".encode())
            self.park(s, SETTINGS["header_timeout_s"] + 1.0, "slow headers dropped")
            return
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        answer = s.recv(200)
        s.close()
        self.expect("bad http", b" 400 " in answer.split(b"\r\n")[0], answer[:40])

    def job_client_leaves(self) -> None:
        with self._client() as c:  # a client of its own, gone while its job runs
            r = self.upload(c, method="rise", options=json.dumps({"n_samples": 24}), sampling="windows", stride="4")
        self.expect("slow upload", r.status_code in (202, 503), r.text)

    def job_cancelled(self) -> None:
        r = self.upload(method="rise", options=json.dumps({"n_samples": 24}), sampling="windows", stride="4")
        if r.status_code == 503:
            self.expect("cancel (busy)", True)
            return
        self.expect("upload to cancel", r.status_code == 202, r.text)
        job = r.json()["id"]
        time.sleep(0.05 * (self.turn("cancel") % 4))  # queued, or running
        d = self.client.delete(f"/api/jobs/{job}")
        self.expect("delete running", d.status_code in (204, 404), d.status_code)
        gone = self.client.get(f"/api/jobs/{job}")
        self.expect("cancelled is 404", gone.status_code == 404, gone.status_code)

    def job_burst(self) -> None:
        ids, codes = [], Counter()
        for _ in range(SETTINGS["max_queued_jobs"] + 2):
            r = self.upload(method="rise", options=json.dumps({"n_samples": 16}))
            codes[r.status_code] += 1
            if r.status_code == 202:
                ids.append(r.json()["id"])
        self.expect("burst gets 503", codes[503] >= 1, dict(codes))
        for job in ids:
            self.client.delete(f"/api/jobs/{job}")

    def refused_uploads(self) -> None:
        c = self.client
        r = c.post("/api/jobs", content=b"this is not a video\n" * 50)
        self.expect("not a video", r.status_code == 415, r.status_code)
        r = c.post("/api/jobs", content=b"")
        self.expect("empty", r.status_code == 400, r.status_code)
        r = self.upload(options="{not json")
        self.expect("bad options", r.status_code == 400, r.status_code)
        r = self.upload(method="nope")
        self.expect("unknown method", r.status_code == 400, r.status_code)
        r = c.post("/api/jobs", content=b"x" * (int(SETTINGS["max_upload_mb"] * 2**20) + 1))
        self.expect("too large", r.status_code == 413, r.status_code)
        r = c.post("/api/jobs", content=self.video, headers={"X-API-Key": "wrong"})
        self.expect("wrong key", r.status_code == 401, r.status_code)
        r = c.get("/api/jobs/" + "0" * 32)
        self.expect("no such job", r.status_code == 404, r.status_code)
        r = c.get("/api/jobs/" + "0" * 32 + "/overlay.mp4")
        self.expect("no such overlay", r.status_code == 404, r.status_code)

    def upload_cut(self) -> None:
        variant = self.turn("upload cut") % 4
        if variant < 2:
            head, body = self.raw_upload_head(len(self.video)), self.video
        else:
            body, ctype = self.multipart()
            head = self.raw_upload_head(len(body), ctype)
        s = self.raw()
        s.sendall(head + body[: len(body) // 2])
        time.sleep(0.02)  # the server is reading the body
        if variant % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        self.expect("upload cut", True)

    def upload_stalled(self) -> None:
        s = self.raw()
        s.sendall(self.raw_upload_head(len(self.video)) + self.video[:1000])
        self.park(s, SETTINGS["body_timeout_s"] + 1.0, "upload stalled: 408", b"HTTP/1.1 408")

    def download_cut(self) -> None:
        r = self.upload(overlay="true")
        if r.status_code != 202:
            self.expect("download cut (busy)", r.status_code == 503, r.status_code)
            return
        job = r.json()["id"]
        self.wait_job(job)
        s = self.raw()
        s.sendall((f"GET /api/jobs/{job}/overlay.mp4 HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   f"X-API-Key: {KEY}\r\n\r\n").encode())
        first = s.recv(64)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        self.expect("download cut", first.startswith(b"HTTP/1.1 200"), first[:20])

    # -- WebSocket scenarios --
    def ws(self, key: bool = True, **kw) -> RawWS:
        return RawWS(self.host, self.port, {"X-API-Key": KEY} if key else None, **kw)

    def stream_normal(self) -> None:
        from videoxai.serve.client import StreamClient, StreamError

        turn = self.turn("stream")
        fmt = ("rgb", "jpeg", "png")[turn % 3]
        method, options = METHODS[turn % len(METHODS)]
        try:
            events = list(StreamClient(self.url, api_key=KEY, stride=T, frame_format=fmt, method=method,
                                       options=options, timeout=30).stream(self.frames))
            self.expect("stream", [e["type"] for e in events] == ["ready", "window", "window", "end"],
                        [e["type"] for e in events])
        except StreamError as e:
            self.expect("stream", e.code == "busy", e)

    def stream_key_in_message(self) -> None:
        ws = self.ws(key=False)
        try:
            ws.send(json.dumps({"type": "start", "api_key": KEY, "stride": T}))
            ready = ws.recv_json()
            if ready.get("type") != "ready":
                self.expect("stream key in message", ready.get("error", {}).get("code") == "busy", ready)
                return
            for m in self.rgb:
                ws.send(m)
            ws.send(json.dumps({"type": "end"}))
            msgs = ws.until("end")
            self.expect("stream key in message", msgs[-1]["type"] == "end", msgs[-1])
            ws.close_frame()
        finally:
            ws.close()

    def stream_dropped(self) -> None:
        variant = self.turn("stream dropped") % 4
        ws = self.ws()
        ws.send(json.dumps({"type": "start", "stride": 4, "live": variant == 3}))
        ready = ws.recv_json()
        self.expect("stream dropped", ready.get("type") == "ready" or ready.get("error", {}).get("code") == "busy",
                    ready)
        for m in self.rgb[: 4 + 4 * variant]:
            ws.send(m)
        if variant == 0:
            ws.close()          # FIN, no close frame
        elif variant == 1:
            ws.abort()          # RST
        elif variant == 2:
            ws.close_frame()    # a close without 'end', windows in flight
            ws.close()
        else:
            ws.recv_json()      # a live stream's first answer, then gone
            ws.abort()

    def stream_garbage(self) -> None:
        ws = self.ws()
        try:
            ws.send(b"\x00\x01garbage")                      # a frame before start
            ws.send("not json")
            ws.send(json.dumps({"type": "nope"}))
            ws.send(json.dumps({"type": "start", "method": "nope"}))
            ws.send(json.dumps({"type": "start", "stride": "x"}))
            ws.send(json.dumps({"type": "start", "stride": T}))
            msgs = ws.until("ready")
            if msgs[-1].get("type") != "ready":
                self.expect("garbage stream", msgs[-1].get("error", {}).get("code") == "busy", msgs[-1])
                return
            self.expect("garbage before start", sum(m["type"] == "error" for m in msgs) == 5, msgs)
            ws.send(b"\xff" * 40)                            # no valid header
            ws.send(b"\x00\x00\x00\x10" + b"{}" * 8)
            ws.send(self.rgb[0][:-7])                        # wrong byte count
            ws.send(json.dumps({"type": "start"}))           # a second start
            variant = self.turn("garbage stream") % 3
            if variant == 1:
                ws.abort()
                self.expect("garbage stream", True)
                return
            if variant == 2:  # over max_message_bytes: uvicorn closes with 1009
                ws.send(bytes(SETTINGS["max_pixels"] * 3 + 100 * 1024))
                try:
                    while True:
                        ws.recv_json()
                except ConnectionError as e:
                    self.expect("garbage stream", "1009" in str(e), e)
                return
            for m in self.rgb[:T]:
                ws.send(m)
            ws.send(json.dumps({"type": "end"}))
            msgs = ws.until("end")
            self.expect("garbage stream", msgs[-1]["type"] == "end", msgs[-1])
        finally:
            ws.close()

    def stream_unauthenticated(self) -> None:
        variant = self.turn("stream without key") % 3
        ws = self.ws(key=False)
        if variant == 0:    # says nothing: the server closes it after auth_timeout_s
            self.park(ws, SETTINGS["auth_timeout_s"] + 1.0, "silent stream without key", b"unauthorized")
            return
        try:
            if variant == 1:
                ws.send(json.dumps({"type": "start", "api_key": "wrong"}))
            else:
                ws.send(b"\x00\x01binary first")
            msg = ws.recv_json()
            self.expect("stream without key", msg.get("error", {}).get("code") == "unauthorized", msg)
        finally:
            ws.close()

    def stream_idle(self) -> None:
        ws = self.ws()
        ws.send(json.dumps({"type": "start", "stride": T}))
        ws.send(self.rgb[0])
        # closed for being idle; its transport is aborted ABORT_AFTER_CLOSE_S later (no close from the peer)
        self.park(ws, SETTINGS["stream_idle_timeout_s"] + ABORT_AFTER_CLOSE_S + 1.5, "idle stream closed",
                  b'"idle"', b'"busy"', READ_PROBE)

    def stream_busy(self) -> None:
        socks = []
        try:
            codes = Counter()
            for _ in range(SETTINGS["max_streams"] + 1):
                ws = self.ws()
                socks.append(ws)
                ws.send(json.dumps({"type": "start", "stride": T}))
                msg = ws.recv_json()
                codes[msg.get("type") if msg.get("type") == "ready" else msg.get("error", {}).get("code")] += 1
            self.expect("one stream too many", codes["busy"] >= 1, dict(codes))
        finally:
            for ws in socks:
                ws.abort()

    SCENARIOS = ("job_full", "stream_normal", "upload_cut", "stream_dropped", "job_left_to_evict",
                 "stream_garbage", "refused_uploads", "stream_unauthenticated", "job_cancelled",
                 "stream_key_in_message", "upload_stalled", "stream_idle", "job_client_leaves",
                 "download_cut", "stream_dropped", "upload_cut", "job_burst", "stream_busy", "upload_large",
                 "bad_http", "job_fails", "stream_not_reading")

    def cycle(self, i: int) -> None:
        name = self.SCENARIOS[i % len(self.SCENARIOS)]
        self.unpark()
        try:
            getattr(self, name)()
        except Exception as e:  # a scenario's own failure is a finding, not the end of the soak
            self.surprises[f"{name}: {type(e).__name__}: {e}"[:160]] += 1


# -- measuring --------------------------------------------------------------------------------------

COUNTS = ("fds", "threads", "asyncio_tasks", "connections", "uvicorn_tasks", "jobs_active", "job_queue",
          "orphan_folders", "missing_folders", "stream_slots", "auth_waiters", "pending_headers", "model_queue",
          "model_hooks", "model_attrs", "work_files", "gc_objects")
QUIET = ("connections", "uvicorn_tasks", "jobs_active", "stream_slots", "auth_waiters", "pending_headers",
         "orphan_folders", "missing_folders")  # a deleted job's folder goes when its worker notices


def settle(conn, linger: float, timeout: float = 20.0) -> tuple[dict, float]:
    """Wait for the server to be idle (nothing connected, nothing running), then ``linger``
    seconds more (what lives on a timer: a closed WebSocket's transport is kept 5 s for its
    peer's close); its full measurement."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        m = ask(conn, "light")
        if all(m[k] == 0 for k in QUIET):
            break
        time.sleep(0.1)
    time.sleep(linger)
    return ask(conn, "measure"), time.monotonic() - t0


def ask(conn, command: str, timeout: float = 120.0) -> dict:
    """The server process's answer to ``command`` (it measures itself)."""
    conn.send(command)
    if not conn.poll(timeout):
        raise RuntimeError(f"the server process did not answer {command!r} within {timeout:g} s")
    return conn.recv()


def row(cycle: int, m: dict, waited: float, elapsed: float) -> str:
    return (f"{cycle:>6} {elapsed:>6.0f}s {m['rss_mib']:>8.1f} {m['fds']:>5} {m['threads']:>4} "
            f"{m['asyncio_tasks']:>5} {m['connections']:>5} {m['jobs']:>4} {m['job_folders']:>4} "
            f"{m['work_files']:>5} {m['stream_slots']:>5} {m['auth_waiters']:>4} {m['pending_headers']:>4} "
            f"{m['model_hooks']:>5} {m['gc_objects']:>8} {waited:>5.1f}s")


HEADER = (f"{'cycle':>6} {'time':>7} {'rss MiB':>8} {'fds':>5} {'thr':>4} {'tasks':>5} {'conns':>5} {'jobs':>4} "
          f"{'dirs':>4} {'files':>5} {'slots':>5} {'auth':>4} {'hdrs':>4} {'hooks':>5} {'gc objs':>8} {'settle':>6}")


#: measurements after warm-up below which no verdict is given (three in each half)
MIN_MARKS = 6


def no_verdict(marks: list[tuple[int, dict]], warm: int) -> str | None:
    """Why :func:`verdict` cannot be trusted on ``marks``, or ``None``: with one measurement in each
    half, a pool that grew once between them (a worker thread started) reads as a leak."""
    after = sum(c >= warm for c, _ in marks)
    if after >= MIN_MARKS:
        return None
    return (f"{after} measurements from cycle {warm} on; at least {MIN_MARKS} are needed to tell a leak from a "
            f"pool that grew once (more --cycles, a smaller --every or --warmup)")


def verdict(marks: list[tuple[int, dict]], warm: int, rss_slack: float) -> list[str]:
    """What grew: a count whose every measurement in the second half of the run (after warm-up)
    is above every one in the first half (pools and timers come and go; a leak only grows), a
    work dir that disagrees with the job table, and RSS whose median rose by more than the slack."""
    after = [m for c, m in marks if c >= warm]
    first, second = after[: max(1, len(after) // 2)], after[max(1, len(after) // 2):] or after[-1:]
    problems = []

    def grew(get, margin: float = 0.0) -> tuple[float, float] | None:
        low, high = min(get(m) for m in second), max(get(m) for m in first)
        return (high, low) if low > high + margin else None

    for k in COUNTS:
        if (g := grew(lambda m: m[k], margin=500 if k == "gc_objects" else 0)) is not None:
            problems.append(f"{k}: at most {g[0]} in the first half after warm-up, at least {g[1]} in the second")
    for k in ("orphan_folders", "missing_folders"):
        if any(m[k] for _, m in marks):
            problems.append(f"{k}: work dir and job table disagree ({[m[k] for _, m in marks]})")
    if max(m["jobs"] for _, m in marks) > SETTINGS["max_jobs_kept"]:
        problems.append(f"jobs: {[m['jobs'] for _, m in marks]} kept, over max_jobs_kept={SETTINGS['max_jobs_kept']}")
    names = set().union(*(m["types"] for m in after))
    for name in sorted(names):
        if (g := grew(lambda m: m["types"].get(name, 0), margin=5)) is not None:
            problems.append(f"live {name} objects: at most {g[0]} in the first half, at least {g[1]} in the second")
    rss = [m["rss_mib"] for m in first], [m["rss_mib"] for m in second]
    rise = sorted(rss[1])[len(rss[1]) // 2] - sorted(rss[0])[len(rss[0]) // 2]
    if rise > rss_slack:
        problems.append(f"RSS: median +{rise:.1f} MiB from the first half to the second (slack {rss_slack:g} MiB)")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--every", type=int, default=100, help="measure every N cycles")
    ap.add_argument("--warmup", type=int, default=None, help="cycles before the baseline (default: 2 × --every)")
    ap.add_argument("--threads", type=int, default=1, help="the model's CPU threads")
    ap.add_argument("--linger", type=float, default=6.0,
                    help="seconds to wait once the server is idle before measuring (its 5 s close timers)")
    ap.add_argument("--rss-slack-mib", type=float, default=24.0, help="RSS growth after warm-up tolerated")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    ap.add_argument("--inject-leak", action="store_true",
                    help="check the checker: the server keeps an fd and 256 KiB per accepted upload")
    args = ap.parse_args()
    warm = args.warmup if args.warmup is not None else 2 * args.every

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=server_main, args=(child, SETTINGS, args.threads, args.inject_leak), daemon=True)
    server.start()
    while not parent.poll(1.0):
        if not server.is_alive():
            print("the server process died before it started (its traceback is above)", file=sys.stderr)
            return 2
    url = parent.recv()
    tmp = Path(tempfile.mkdtemp(prefix="videoxai-soak-"))
    driver = Driver(url, tmp)
    print(f"server {url} (pid {server.pid}); {args.cycles} cycles of {len(set(Driver.SCENARIOS))} scenarios",
          flush=True)
    print(HEADER, flush=True)
    t0 = time.monotonic()
    m, waited = settle(parent, 0.0)
    marks = [(0, m)]
    print(row(0, m, waited, 0.0), flush=True)
    for i in range(1, args.cycles + 1):
        driver.cycle(i - 1)
        if i % args.every == 0 or i == args.cycles:
            closing = time.monotonic()
            driver.reset_clients()
            m, waited = settle(parent, max(0.0, args.linger - (time.monotonic() - closing)))
            marks.append((i, m))
            print(row(i, m, waited, time.monotonic() - t0), flush=True)
    parent.send("stop")
    server.join(30)

    # no measurement after warm-up (fewer --cycles than --warmup): no verdict below, the last as both
    first, last = next((m for c, m in marks if c >= warm), marks[-1][1]), marks[-1][1]
    print(f"\n{args.cycles} cycles in {time.monotonic() - t0:.0f} s; scenarios run: "
          f"{sum(driver.outcomes.values())} checks")
    print(f"threads at the end: {last['thread_names']}")
    print(f"asyncio tasks at the end: {last['task_names']}")
    changed = {k: (first['types'].get(k, 0), v) for k, v in last["types"].items() if v != first["types"].get(k, 0)}
    print(f"live objects after warm-up → end (changed only): {changed}")
    if driver.surprises:
        print("unexpected answers:")
        for what, n in driver.surprises.most_common(20):
            print(f"  {n:>5} × {what}")
    if args.json:
        args.json.write_text(json.dumps({"marks": marks, "outcomes": driver.outcomes,
                                         "surprises": driver.surprises}, indent=1))
    if (why := no_verdict(marks, warm)) is not None:
        print(f"VERDICT: NONE: {why}")
        return 2
    problems = verdict(marks, warm, args.rss_slack_mib)
    if problems:
        print("VERDICT: LEAK SUSPECTED")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"VERDICT: no leak: from cycle {warm} to {marks[-1][0]} no count grew (fds {first['fds']} → "
          f"{last['fds']}, threads {first['threads']} → {last['threads']}, asyncio tasks {first['asyncio_tasks']} → "
          f"{last['asyncio_tasks']}, live objects {first['gc_objects']} → {last['gc_objects']}), "
          f"RSS {first['rss_mib']:.0f} → {last['rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
