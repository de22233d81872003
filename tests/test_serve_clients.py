"""The service and its stream client when the world is unlucky: a full disk, a server that is not
a videoxai server (or not this version of one), a stream that asks for more memory than a server
has. Real uvicorn servers on loopback, as in ``test_serve_http.py``; waits have generous
deadlines, never speed assertions.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import pathlib
import re
import socket
import struct
import threading
import time
import warnings
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

import httpx  # noqa: E402
from PIL import Image  # noqa: E402
from websockets.sync.client import connect  # noqa: E402
from websockets.sync.server import serve  # noqa: E402

import videoxai as vx  # noqa: E402
from conftest import tiny_hf  # noqa: E402
from test_serve_http import wait as wait_job  # noqa: E402
from videoxai.data.video import write_video  # noqa: E402
from videoxai.models.hf import from_hf_module  # noqa: E402
from videoxai.serve import BackgroundServer, ServeSettings, create_app  # noqa: E402
from videoxai.cli import main  # noqa: E402
from videoxai.errors import InputError  # noqa: E402
from videoxai.serve.client import StreamClient, StreamError, encode_frame, stream_frame  # noqa: E402
from videoxai.serve.access import client_key  # noqa: E402
from videoxai.serve.jobs import RESULT_NAME, UPLOAD_NAME  # noqa: E402
from videoxai.serve.protocol import FrameHeader, JobResult, ModelInfo, ReadyMessage, ServiceError  # noqa: E402
from videoxai.serve.frames import decode_frame  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return from_hf_module(tiny_hf("timesformer"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = np.random.default_rng(3).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    return write_video(frames, tmp_path_factory.mktemp("clients") / "clip.mp4", fps=10)


def disk_full_for(monkeypatch, method: str, name_starts: str) -> None:
    """Make ``Path.<method>`` fail with ENOSPC when it writes a file whose name starts so."""
    original = getattr(pathlib.Path, method)

    def full(self, *args, **kwargs):
        mode = args[0] if method == "open" and args else kwargs.get("mode", "w")
        if self.name.startswith(name_starts) and ("w" in mode or method == "write_text"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, method, full)


# -- a full disk -----------------------------------------------------------------------------------


def test_a_full_disk_is_a_clear_error_and_the_server_goes_on(model, video, monkeypatch):
    # an upload, or a job's result, that could not be written for want of space was a 500
    # 'internal error (OSError)' (and the upload's connection was dropped after it)
    app = create_app(model, ServeSettings())
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        with monkeypatch.context() as m:
            disk_full_for(m, "open", UPLOAD_NAME)
            r = client.post("/api/jobs", content=video.read_bytes())
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "disk_full" and "disk is full" in r.json()["error"]["message"]
        assert r.headers["retry-after"]
        assert not list(app.state.jobs.root.iterdir())  # the upload's folder is gone

        with monkeypatch.context() as m:
            disk_full_for(m, "write_text", pathlib.Path(RESULT_NAME).stem)
            r = client.post("/api/jobs", content=video.read_bytes())  # the same connection, kept alive
            assert r.status_code == 202, r.text
            status = wait_job(client, r.json()["id"])
        assert status["state"] == "failed" and status["error"]["code"] == "disk_full", status
        folder = app.state.jobs.root / status["id"]
        assert sorted(p.name for p in folder.iterdir()) == ["job.json"]  # no partial result or overlay left

        r = client.post("/api/jobs", content=video.read_bytes(), params={"overlay": "false"})
        assert wait_job(client, r.json()["id"])["state"] == "done"  # space again: served as usual


def test_an_ffmpeg_playlist_naming_itself_is_refused_before_ffmpeg_opens_it(model):
    # FFmpeg's concat demuxer recognises "ffconcat version 1.0" whatever the file's name: an
    # upload naming itself was opened again and again until the process ran out of file
    # descriptors (every request failing meanwhile); the job answered "Too many open files"
    app = create_app(model, ServeSettings())
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        r = client.post("/api/jobs", content=b"ffconcat version 1.0\nfile upload\nfile upload\n")
        assert r.status_code == 415 and r.json()["error"]["code"] == "bad_video", r.text
        assert "concat playlist" in r.json()["error"]["message"]
        assert not list(app.state.jobs.root.iterdir())


# -- HTTP as tools speak it ------------------------------------------------------------------------


def test_every_get_route_answers_head_as_get_without_the_body(model, video):
    # HEAD /api/health (what uptime monitors and `curl -I` send) was 405: the server looked down;
    # the result's and overlay's HEAD routes gave the OpenAPI schema duplicate operation ids
    app = create_app(model, ServeSettings(api_key="k"))
    headers = {"X-API-Key": "k"}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False,
                                                       headers=headers) as client:
        job = client.post("/api/jobs", content=video.read_bytes(), params={"overlay": "false"}).json()
        wait_job(client, job["id"])
        for path in ("/", "/api/health", "/api/info", f"/api/jobs/{job['id']}"):
            got, head = client.get(path), client.head(path)
            assert head.status_code == got.status_code == 200, (path, head.status_code)
            assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path
            assert int(head.headers["content-length"]) == len(got.content), path
        assert client.head("/api/info", headers={"X-API-Key": "wrong"}).status_code == 401  # the key still counts
        # the right key in the query string (the WebSocket's legacy form) is told where it belongs
        r = client.get("/api/info", params={"api_key": "k"}, headers={"X-API-Key": ""})
        assert r.status_code == 401 and "query parameter is read on the WebSocket only" in r.text, r.text
        assert client.head("/api/jobs/nope").status_code == 404
        r = client.get("/api/stream")  # the WebSocket endpoint, asked over plain HTTP
        assert r.status_code == 426 and r.headers["upgrade"] == "websocket", r.text
        assert r.json()["error"]["code"] == "websocket_required" and "ws://" in r.json()["error"]["message"]
    with warnings.catch_warnings():  # HEAD stays out of the schema: no operation id twice
        warnings.simplefilter("error")
        assert "head" not in app.openapi()["paths"]["/api/jobs/{job_id}/result"]


def test_pages_of_other_sites_cannot_upload_or_delete(model, video):
    # a multipart form POST is a "simple" cross-origin request: any page the user visited could
    # have the local server explain uploads (the browser only hid the answer)
    app = create_app(model, ServeSettings(allowed_origins=("https://friend.example",)))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        def post(origin):
            files = {"file": ("clip.mp4", video.read_bytes(), "video/mp4")}
            return client.post("/api/jobs", files=files, params={"overlay": "false"},
                               headers={"Origin": origin} if origin else {})

        for origin in ("https://evil.example", "null"):  # "null": a sandboxed frame or a file:// page
            r = post(origin)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_origin", r.text
        assert app.state.jobs.counts() == {} and not list(app.state.jobs.root.iterdir())
        mine = post(server.url)  # the viewer, served by this server
        assert mine.status_code == 202, mine.text
        assert post("https://friend.example").status_code == 202 and post(None).status_code == 202
        job = mine.json()["id"]
        r = client.delete(f"/api/jobs/{job}", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and client.get(f"/api/jobs/{job}").status_code == 200
        assert client.delete(f"/api/jobs/{job}", headers={"Origin": server.url}).status_code == 204


# -- slow uploads ----------------------------------------------------------------------------------


def raw_upload(server, length: int, headers: dict[str, str] | None = None) -> socket.socket:
    """A connection that has sent an upload's headers (and no body yet)."""
    host, port = server.url[len("http://"):].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    more = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"POST /api/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n{more}\r\n".encode())
    return sock


def test_a_trickling_upload_is_cut_off_and_slow_uploads_cannot_take_every_connection(model, video):
    # 10 bytes every 0.1 s never stalled for body_timeout_s: such an upload held its connection
    # for days, and enough of them every connection the server takes (then every request got 503)
    app = create_app(model, ServeSettings(body_timeout_s=0.5, min_upload_rate=2000))
    with BackgroundServer(app) as server:
        sock = raw_upload(server, 100_000)
        sock.settimeout(0.01)
        answer, deadline = b"", time.monotonic() + 30
        while not answer and time.monotonic() < deadline:
            try:
                sock.sendall(b"x" * 10)
                answer = sock.recv(4096)
            except socket.timeout:
                time.sleep(0.1)
            except OSError:  # the server closed: its answer was read or is lost
                break
        sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert "too slow" in json.loads(body)["error"]["message"] and "2000 bytes/s" in body.decode(), body

    app = create_app(model, ServeSettings(max_uploads=1))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        slow = raw_upload(server, 100_000)
        slow.sendall(b"x" * 100)
        deadline = time.monotonic() + 30
        while app.state.uploads == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = client.post("/api/jobs", content=video.read_bytes())
        assert r.status_code == 503 and r.json()["error"]["code"] == "busy" and r.headers["retry-after"], r.text
        assert client.get("/api/health").status_code == 200  # everything else is served meanwhile
        slow.close()  # the client leaves: its upload slot comes back
        while app.state.uploads and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.post("/api/jobs", content=video.read_bytes()).status_code == 202


def test_one_clients_slow_uploads_cannot_take_every_upload_slot(model, video):
    # uploads at the minimum rate (1 KiB/s) are never cut off, and max_uploads of them from one
    # address refused every other client's upload (503) for as long as they lasted: days
    app = create_app(model, ServeSettings(max_uploads=3, max_uploads_per_client=2))
    with BackgroundServer(app) as server:
        host, port = server.url[len("http://"):].rsplit(":", 1)
        slow = [raw_upload(server, 100_000) for _ in range(2)]
        for sock in slow:
            sock.sendall(b"x" * 100)
        wait_for(lambda: app.state.uploads == 2, "the two slow uploads are being received")
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            r = client.post("/api/jobs", content=video.read_bytes())
        assert r.status_code == 429 and r.headers["retry-after"], r.text
        assert r.json()["error"]["code"] == "client_limit" and "per client" in r.json()["error"]["message"], r.text
        # another address (127.0.0.2 is loopback too) uploads meanwhile
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False, transport=other) as client:
            r = client.post("/api/jobs", content=video.read_bytes(), params={"method": "saliency"})
        assert r.status_code == 202, r.text
        for sock in slow:
            sock.close()
        wait_for(lambda: app.state.uploads == 0 and not app.state.uploads_by_client, "the slow uploads are gone")
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            assert client.post("/api/jobs", content=video.read_bytes(), params={"method": "saliency"}).status_code \
                == 202  # the client's slots came back


def test_one_client_cannot_fill_the_job_queue(model, video):
    # one address that submitted a job as each ended kept the queue full, and every other client's
    # upload got 503 for as long as it liked; now it gets its share (429 client_limit, asked before
    # its video is received), and another address's job is taken meanwhile
    app = create_app(model, ServeSettings(max_queued_jobs=3, max_queued_jobs_per_client=2))
    with BackgroundServer(app) as server:
        gate = threading.Event()
        blocker = threading.Thread(target=app.state.engine.call_sync, args=(gate.wait,), daemon=True)
        blocker.start()  # holds the model thread: the jobs stay queued or running
        try:
            with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
                taken = [client.post("/api/jobs", content=video.read_bytes(), params={"method": "saliency"})
                         for _ in range(2)]
                assert [r.status_code for r in taken] == [202, 202], [r.text for r in taken]
                r = client.post("/api/jobs", content=video.read_bytes())
                assert r.status_code == 429 and r.headers["retry-after"] == "5", r.text
                assert r.json()["error"]["code"] == "client_limit", r.text
                assert "2 jobs queued or running" in r.json()["error"]["message"], r.text
                assert app.state.jobs.counts() in ({"queued": 2}, {"queued": 1, "running": 1})  # not taken
            other = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(base_url=server.url, timeout=30, trust_env=False, transport=other) as client:
                r = client.post("/api/jobs", content=video.read_bytes(), params={"method": "saliency"})
                assert r.status_code == 202, r.text
        finally:
            gate.set()
            blocker.join(10)
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            for job in taken:
                assert wait_job(client, job.json()["id"])["state"] == "done"
            # its jobs ended: the client may submit again
            assert client.post("/api/jobs", content=video.read_bytes(), params={"method": "saliency"}).status_code \
                == 202


def test_one_clients_many_jobs_do_not_delete_the_results_of_others(model, video):
    # finished jobs beyond max_jobs_kept were deleted oldest first, whoever's they were: a client
    # that submitted max_jobs_kept small jobs in a row deleted every other client's results before
    # they were downloaded (a 404 for a job just seen done)
    app = create_app(model, ServeSettings(max_jobs_kept=2))
    with BackgroundServer(app) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as mine, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False,
                         transport=httpx.HTTPTransport(local_address="127.0.0.2")) as theirs:
        def job(client) -> str:
            r = client.post("/api/jobs", content=video.read_bytes(), params={"method": "saliency", "overlay": "false"})
            assert r.status_code == 202, r.text
            assert wait_job(client, r.json()["id"])["state"] == "done"
            return r.json()["id"]

        own = job(mine)
        burst = [job(theirs) for _ in range(3)]
        assert mine.get(f"/api/jobs/{own}/result").json()["id"] == own      # still there
        # the burst deleted its own, oldest first
        assert [theirs.get(f"/api/jobs/{j}").status_code for j in burst] == [404, 404, 200]
        newer = job(mine)  # now this client keeps the most: its oldest goes
        assert [mine.get(f"/api/jobs/{j}").status_code for j in (own, newer, burst[2])] == [404, 200, 200]


@pytest.mark.parametrize("host,key", [("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
                                      ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
                                      ("fe80::1%eth0", "fe80::/64"), ("::ffff:192.0.2.7", "192.0.2.7"),
                                      ("192.0.2.7", "192.0.2.7"), ("testclient", "testclient"), (None, None)])
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(host, key):
    assert client_key(host) == key


def test_addresses_of_one_ipv6_64_share_one_clients_limits(model, video):
    # one IPv6 host may take a new address of its /64 for each connection: counted per address, it
    # passed every per-client limit as a crowd of clients
    from fastapi.testclient import TestClient

    app = create_app(model, ServeSettings(max_queued_jobs=4, max_queued_jobs_per_client=1))
    with TestClient(app, base_url="http://localhost", client=("2001:db8::1", 4000)) as first:
        gate = threading.Event()
        blocker = threading.Thread(target=app.state.engine.call_sync, args=(gate.wait,), daemon=True)
        blocker.start()  # the jobs stay queued
        try:
            assert first.post("/api/jobs", content=video.read_bytes()).status_code == 202
            same = TestClient(app, base_url="http://localhost", client=("2001:db8::2:3", 4001))  # the same /64
            r = same.post("/api/jobs", content=video.read_bytes())
            assert r.status_code == 429 and r.json()["error"]["code"] == "client_limit", r.text
            other = TestClient(app, base_url="http://localhost", client=("2001:db8:0:1::1", 4002))  # another
            assert other.post("/api/jobs", content=video.read_bytes()).status_code == 202
        finally:
            gate.set()
            blocker.join(10)


def test_an_upload_with_a_content_coding_is_refused_naming_it(model, video):
    # a gzip-compressed upload was refused as "not a readable video file", and one sent as
    # Content-Encoding: br with a plain body was explained
    import gzip

    from fastapi.testclient import TestClient

    with TestClient(create_app(model, ServeSettings()), base_url="http://localhost") as client:
        for coding, body in (("gzip", gzip.compress(video.read_bytes())), ("br", video.read_bytes())):
            r = client.post("/api/jobs", content=body, headers={"Content-Encoding": coding})
            assert r.status_code == 415 and r.headers["accept-encoding"] == "identity", r.text
            assert r.json()["error"] == {"code": "unsupported_encoding", "message": f"the upload is sent with "
                                         f"Content-Encoding: {coding}; send the video file as it is (no content coding)"}
        assert client.post("/api/jobs", content=video.read_bytes(), headers={"Content-Encoding": "identity"},
                           params={"method": "saliency", "overlay": "false"}).status_code == 202


def test_queued_jobs_of_two_clients_run_in_turns(model, video):
    # first come, first served: one client's queued jobs (up to max_queued_jobs_per_client, each up
    # to max_forward_passes) all ran before another client's job, submitted later, could start
    app = create_app(model, ServeSettings(max_queued_jobs=6, max_queued_jobs_per_client=3))
    params = {"method": "saliency", "overlay": "false"}
    with BackgroundServer(app) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as mine, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False,
                         transport=httpx.HTTPTransport(local_address="127.0.0.2")) as theirs:
        gate = threading.Event()
        blocker = threading.Thread(target=app.state.engine.call_sync, args=(gate.wait,), daemon=True)
        blocker.start()  # the first job waits for the model; the others queue behind it
        try:
            ids = [mine.post("/api/jobs", content=video.read_bytes(), params=params).json()["id"] for _ in range(3)]
            wait_for(lambda: app.state.jobs.counts().get("running") == 1, "the first job runs")
            ids += [theirs.post("/api/jobs", content=video.read_bytes(), params=params).json()["id"]]
        finally:
            gate.set()
            blocker.join(10)
        started = {i: wait_job(mine, i)["started"] for i in ids}
    order = sorted(ids, key=started.__getitem__)
    assert order == [ids[0], ids[3], ids[1], ids[2]], order  # the other client's job runs second


def test_the_turns_of_clients_gone_are_forgotten(tmp_path):
    # one entry per client address ever served: a server up for months, or addresses by the
    # thousand, grew it without bound
    from videoxai.serve.jobs import Job, JobQueue

    jobs = JobQueue(None, ServeSettings(max_queued_jobs=2), tmp_path)
    for i in range(50):
        job = Job(id=f"{i:032x}", dir=tmp_path / str(i), request=None, video=None, client=f"192.0.2.{i}")
        jobs._jobs[job.id] = job
        jobs._pending.append(job)
        assert jobs._next() is job
        assert len(jobs._turns) <= 4 * 2 + 1


def test_one_client_cannot_hold_every_connection_with_requests_in_progress(model, video):
    # downloads read a few kilobytes at a time (never stalled long enough to be cut off) held a
    # connection each, and one address holding every connection the server takes had every other
    # client refused with 503; requests in progress are bounded per client (uploads here, which
    # hold their requests as long as they send)
    app = create_app(model, ServeSettings(max_requests_per_client=2, max_uploads_per_client=8))
    with BackgroundServer(app) as server:
        held = [raw_upload(server, 100_000) for _ in range(2)]
        for sock in held:
            sock.sendall(b"x" * 100)
        wait_for(lambda: app.state.uploads == 2, "the two uploads are in progress")
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            r = client.get("/api/health")
            assert r.status_code == 429 and r.headers["retry-after"] == "5", r.text
            assert r.json()["error"]["code"] == "client_limit" and "2 requests in progress" in r.text, r.text
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False, transport=other) as client:
            assert client.get("/api/health").status_code == 200
            assert client.post("/api/jobs", content=video.read_bytes(), params={"method": "saliency"}).status_code \
                == 202
        for sock in held:
            sock.close()
        wait_for(lambda: app.state.uploads == 0, "the uploads are gone")
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            assert client.get("/api/health").status_code == 200  # its requests came back


@pytest.mark.parametrize("proxies", [(), ("127.0.0.1",)])
def test_a_forged_x_forwarded_for_neither_escapes_the_clients_limits_nor_takes_anothers(model, proxies):
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: any program on the server's machine
    # named a new address with each request and passed every per-client limit, or named another
    # client and took its slots. It is read only from proxies the operator names.
    app = create_app(model, ServeSettings(max_requests_per_client=2, max_uploads_per_client=8,
                                          forwarded_allow_ips=proxies))
    with BackgroundServer(app) as server:
        held = [raw_upload(server, 100_000, headers={"X-Forwarded-For": "127.0.0.2"}) for _ in range(2)]
        for sock in held:
            sock.sendall(b"x" * 100)
        wait_for(lambda: app.state.uploads == 2, "the two uploads are in progress")
        assert app.state.uploads_by_client == {"127.0.0.2" if proxies else "127.0.0.1": 2}
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False,
                          headers={"X-Forwarded-For": "198.51.100.7"}) as client:
            r = client.get("/api/health")
        victim = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False, transport=victim) as client:
            theirs = client.get("/api/health")
        for sock in held:
            sock.close()
    if proxies:  # a named proxy's header names the client: the clients behind it are told apart
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 429 and r.json()["error"]["code"] == "client_limit", r.text
        assert theirs.status_code == 200, theirs.text  # the uploads that named it took none of its slots


def test_serve_trusts_x_forwarded_for_only_from_the_proxies_it_is_given(monkeypatch, capsys):
    import uvicorn

    configs = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config))
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    serve = ["serve", "--model", "demo", "--port", "0"]
    for args, trusted in [([], None), (["--forwarded-allow-ips", "10.0.0.5, 10.1.0.0/16"], "10.0.0.5,10.1.0.0/16"),
                          (["--forwarded-allow-ips", "10.0.0.9/24"], "10.0.0.0/24"),  # as uvicorn parses it
                          (["--forwarded-allow-ips", "10.0.0.5,*"], "*")]:
        main(serve + args)
        config = configs.pop()
        assert config.proxy_headers is (trusted is not None), args
        assert trusted is None or config.forwarded_allow_ips == trusted, config.forwarded_allow_ips
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # the variable uvicorn reads is still honoured
    main(serve)
    assert configs.pop().forwarded_allow_ips == "127.0.0.1"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # uvicorn took a typo for a name that matches no proxy
        main(serve + ["--forwarded-allow-ips", "10.0.0.5,proxy.lan"])
    assert exit_info.value.code == 2 and not configs
    assert capsys.readouterr().err.strip() == ("error: --forwarded-allow-ips: 'proxy.lan' is not an IP address or "
                                              "network (e.g. 10.0.0.5, 10.0.0.0/24, *)")


@pytest.mark.parametrize("option", ["--max-upload-mb", "--shutdown-timeout"])
def test_serve_refuses_an_infinite_limit_before_loading_the_model(option, capsys, monkeypatch):
    # inf passed gt=0: `--max-upload-mb inf` served, and every upload failed with a 500 OverflowError
    import videoxai.models

    monkeypatch.setattr(videoxai.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "0", option, "inf"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {option}: Input should be a finite number, got inf"


def test_serve_refuses_an_empty_api_key(capsys, monkeypatch):
    # `--api-key "$KEY"` with KEY unset served with the key "", which an empty `Authorization:
    # Bearer` or `?api_key=` gave, while the server said a key was required
    import videoxai.models

    monkeypatch.setattr(videoxai.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for args, env in [(["--api-key", ""], None), ([], " ")]:
        if env is not None:
            monkeypatch.setenv("VIDEOXAI_API_KEY", env)
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--port", "0", *args])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip() == ("error: --api-key: the key is empty (a variable set to nothing?); "
                                                   "give a key, or none for a server that needs no key")



def test_serve_refuses_an_api_key_no_header_can_carry(capsys, monkeypatch):
    # a key read from a file with its final newline (a Kubernetes secret, an env file) served, and
    # every HTTP request was a 401: header values are trimmed and hold no control characters
    import videoxai.models

    monkeypatch.setattr(videoxai.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for key in ("s3cret\n", " s3cret", "s3c\x1bret"):
        monkeypatch.setenv("VIDEOXAI_API_KEY", key)
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--port", "0"])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.startswith("error: --api-key: the key starts or ends with a space or "
                                                            "line break, or holds a control character"), (key, err)
    assert ServeSettings(api_key="s3 cr ét").api_key == "s3 cr ét"  # spaces inside, and beyond ASCII, are fine


@pytest.mark.parametrize("host", ["", "localhost:8000", "http://0.0.0.0", "[::1]"])
def test_serve_refuses_a_host_with_a_port_or_scheme_naming_host(host, capsys, monkeypatch):
    # the server answers to the name it listens on (it joins --allowed-host), and such a --host
    # was refused as "--allowed-host: … is not a host name", an option the command did not give
    import videoxai.models

    monkeypatch.setattr(videoxai.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "0", "--host", host])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith(f"error: --host {host!r}: give the address or name to "
                                                        "listen on") and "--allowed-host" not in err, err


@pytest.mark.parametrize("name", ["", ".", "http://viewer.lan", "viewer.lan:8000"])
def test_serve_refuses_an_allowed_host_that_is_no_host_name(name, capsys, monkeypatch):
    # each was taken and matched no request, silently ("." matched every name with its final dot,
    # 'evil.example.'); IP addresses, the --host the server listens on, stay allowed
    import videoxai.models
    from videoxai.core.hosts import host_allowed

    monkeypatch.setattr(videoxai.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert host_allowed((".",), "evil.example.")  # why "." may not pass
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "0", "--allowed-host", name])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: --allowed-host: {name!r} is not a host name (e.g. myhost.lan, "
                                               ".corp.example for a domain and its subdomains, or * for any): no "
                                               "scheme, port or path")
    assert ServeSettings(allowed_hosts=("::1", "127.0.0.1", ".corp.example", "*")).allowed_hosts[:3] == \
        ("::1", "127.0.0.1", ".corp.example")



def test_an_international_allowed_host_is_taken_in_the_ascii_form_browsers_send(model):
    # 'bücher.example' was refused as 'not a host name: no scheme, port or path'; browsers send it
    # as xn--bcher-kva.example in the Host header, which is what it must match
    settings = ServeSettings(allowed_hosts=("Bücher.example", ".straße.example"))
    assert settings.allowed_hosts == ("xn--bcher-kva.example", ".xn--strae-oqa.example")  # as Chrome writes ß
    with BackgroundServer(create_app(model, settings)) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        assert c.get("/api/health", headers={"Host": "xn--bcher-kva.example"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "www.xn--strae-oqa.example"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "buecher.example"}).json()["error"]["code"] == "forbidden_host"


def wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.02)


def test_the_rest_of_a_refused_upload_cannot_hold_its_connection(model):
    # refused before its body was read (413 here; 503 busy and 401 alike), uvicorn reads the rest
    # and discards it with no deadline once a byte of it came: trickled, it held its connection
    # for ever; and a connection that sent all of it had no deadline for its next request either
    app = create_app(model, ServeSettings(max_upload_mb=0.25, body_timeout_s=0.5, header_timeout_s=0.5))
    with BackgroundServer(app) as server:
        connections = server.server.server_state.connections
        for length, rest in ((100_000_000, b"x"), (300_000, b"x" * 300_000)):  # trickled / sent whole
            sock = raw_upload(server, length)
            port_here = sock.getsockname()[1]

            def held() -> bool:
                return any(c.client and c.client[1] == port_here for c in list(connections))

            assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
            sock.sendall(rest)
            deadline = time.monotonic() + 30
            while held() and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x" if length > len(rest) else b"")  # a byte every 0.1 s never stalls
                time.sleep(0.1)
            assert not held(), f"the server still holds the connection ({length}-byte body, {len(rest)} sent)"
            sock.close()


def test_a_download_nobody_reads_is_cut_off(model, video):
    # a client that asked for a result larger than the socket buffers and read nothing held its
    # connection and response task forever (and the server's shutdown for shutdown_timeout_s)
    app = create_app(model, ServeSettings(body_timeout_s=0.5))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        job = client.post("/api/jobs", content=video.read_bytes(), params={"overlay": "false"}).json()
        assert wait_job(client, job["id"])["state"] == "done"
        # as large as a long video's maps (sliding windows, 256-pixel float16 maps), without the wait
        size = 11_000_000  # more than the kernel buffers on both sides hold (4 MiB at most here)
        (app.state.jobs.root / job["id"] / RESULT_NAME).write_bytes(b" " * size)
        connections = server.server.server_state.connections
        host, port = server.url[len("http://"):].rsplit(":", 1)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            sock.sendall(f"GET /api/jobs/{job['id']}/result HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            port_here = sock.getsockname()[1]

            def held() -> bool:
                return any(c.client and c.client[1] == port_here for c in list(connections))

            sock.settimeout(30)
            assert sock.recv(1, socket.MSG_PEEK)  # the server took the connection and is answering
            deadline = time.monotonic() + 30
            while held() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not held(), "the server still holds the download nobody reads"
            sock.settimeout(10)
            received = 0
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            assert received < size  # cut off, not sent whole
        r = client.get(f"/api/jobs/{job['id']}/result")  # a client that reads is served
        assert r.status_code == 200 and len(r.content) == size


# -- memory of a stream ----------------------------------------------------------------------------


def test_a_stream_window_longer_than_the_models_is_bounded_in_bytes():
    # a model that takes any length accepted a stream window of up to max_frames (1800) frames of
    # up to max_pixels each: 11 GiB of full-HD frames held by one stream
    model = vx.load_model("demo-cnn")
    assert not model.fixed_num_frames and model.num_frames == 8
    settings = ServeSettings(max_window_mb=0.02, default_method="gradcam")  # 20 971 bytes
    app = create_app(model, settings)
    big, small = np.full((40, 48, 3), 7, np.uint8), np.full((12, 12, 3), 7, np.uint8)
    with BackgroundServer(app) as server:
        url = server.url.replace("http://", "ws://") + "/api/stream"
        with connect(url, open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start", "window": 32, "stride": 32, "live": False}))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            ws.send(encode_frame(big, "rgb"))  # 32 × 5760 bytes
            msg = json.loads(ws.recv(timeout=30))
            assert msg["type"] == "error" and not msg["fatal"] and msg["error"]["code"] == "window_too_large", msg
            text = msg["error"]["message"]
            assert "32 frames of 48x40" in text and "0.02 MiB" in text, text
            assert "at most 218 pixels" in text and "at most 8 frames" in text, text  # 20971 // 96, the model's 8
            for _ in range(32):  # smaller frames fit: the stream goes on
                ws.send(encode_frame(small, "rgb"))
            ws.send(json.dumps({"type": "end"}))
            messages = [json.loads(ws.recv(timeout=30)) for _ in range(2)]
        assert [m["type"] for m in messages] == ["window", "end"], messages
        assert len(messages[0]["frame_indices"]) == 32 and messages[1]["frames"] == 32
        # the model's own window is taken at any size within the pixel limit, as uploads are
        ready = list(StreamClient(server.url, stride=8, frame_format="rgb", timeout=30).stream(iter([big] * 8)))
        assert [m["type"] for m in ready] == ["ready", "window", "end"], ready


# -- frames in other encodings ---------------------------------------------------------------------


def test_a_sixteen_bit_grey_png_frame_is_scaled_not_clipped():
    # Pillow's convert("RGB") clips 16-bit grey at 255: a depth or thermal camera's frame
    # (values 0 … 65535) reached the model 99.6 % white
    grey = (np.arange(48 * 40, dtype=np.uint32).reshape(40, 48) * 34).astype(np.uint16)  # 0 … 65246
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    frame = decode_frame(FrameHeader(format="png", width=48, height=40), memoryview(buf.getvalue()), ServeSettings())
    want = np.rint(grey / 257.0).astype(np.uint8)  # the same brightness in 8 bits
    assert frame.shape == (40, 48, 3) and frame.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(frame[..., channel], want)


@pytest.mark.parametrize("fmt, size", [("jpeg", (65535, 65535)), ("png", (60000, 60000)), ("jpeg", (4000, 4000))])
def test_a_frame_whose_header_claims_a_huge_size_is_refused_as_too_large(fmt, size):
    # a header over Pillow's own bomb limit (179 M pixels) was refused as an undecodable frame
    # (bad_frame, Pillow's "decompression bomb DOS attack"), not as frame_too_large like any other
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format=fmt.upper())
    data = bytearray(buf.getvalue())
    at = data.find(b"\xff\xc0") + 5 if fmt == "jpeg" else data.find(b"IHDR") + 4
    data[at:at + (4 if fmt == "jpeg" else 8)] = (struct.pack(">HH", size[1], size[0]) if fmt == "jpeg"
                                                  else struct.pack(">II", *size))
    if fmt == "png":  # a PNG chunk's CRC covers its type and data
        data[at + 13:at + 17] = struct.pack(">I", zlib.crc32(bytes(data[at - 4:at + 13])))
    with pytest.raises(ServiceError) as e:
        decode_frame(FrameHeader(format=fmt), memoryview(bytes(data)), ServeSettings())
    assert (e.value.status, e.value.code) == (413, "frame_too_large"), e.value.message
    assert "2073600 pixels" in e.value.message


@pytest.mark.parametrize("orientation, quarter_turns", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_a_jpeg_frame_is_explained_the_way_up_its_exif_orientation_says(orientation, quarter_turns):
    """A phone stores its frames as the sensor reads them and tags how to turn them (browsers
    honour the tag); a frame stored sideways was explained sideways. Tag 6 is "turn 90° clockwise"
    (np.rot90 by -1), 8 counter-clockwise, 3 by 180°; the header may give either size."""
    rng = np.random.default_rng(0)
    stored = np.repeat(np.repeat(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8), 8, 0), 8, 1)  # 40 x 48
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", quality=95, exif=exif)
    as_stored = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))  # the JPEG's own pixels
    want = np.rot90(as_stored, quarter_turns)
    for size in ((None, None), want.shape[1::-1], as_stored.shape[1::-1]):
        header = FrameHeader(format="jpeg", width=size[0], height=size[1])
        frame = decode_frame(header, memoryview(buf.getvalue()), ServeSettings())
        np.testing.assert_array_equal(frame, want)
    if quarter_turns % 2:   # neither size: refused, naming the displayed one
        with pytest.raises(ServiceError, match=r"header says 40x40 but the jpeg image is 40x48"):
            decode_frame(FrameHeader(format="jpeg", width=40, height=40), memoryview(buf.getvalue()), ServeSettings())


def test_the_stream_client_sends_float_frames_as_the_library_reads_them():
    # a float frame in [0, 1] (what vx.Clip takes) was cast to uint8: 0.7 became 0, a black frame
    import torch

    frame = np.linspace(0, 1, 40 * 48 * 3, dtype=np.float32).reshape(40, 48, 3)
    want = np.rint(frame * 255).astype(np.uint8)
    np.testing.assert_array_equal(stream_frame(frame), want)
    np.testing.assert_array_equal(stream_frame(torch.from_numpy(frame)), want)
    payload = encode_frame(frame, "rgb")
    np.testing.assert_array_equal(np.frombuffer(payload[-want.size:], np.uint8).reshape(want.shape), want)
    for bad, says in [(frame * 255, "must lie in [0, 1]"), (frame[..., 0], "grey?"),
                      (frame.transpose(2, 0, 1), "channels first?"), (want.astype(np.int64), "dtype int64")]:
        with pytest.raises(InputError, match=re.escape(says)):
            encode_frame(bad, "jpeg")


# -- the protocol's models read what the server sends ----------------------------------------------


def test_the_protocol_models_read_the_servers_own_messages(model, video):
    # results and 'ready' are sent without their null fields, which the models required: a job
    # without an overlay failed JobResult.model_validate ('overlay: Field required'), and the
    # stream client refused the 'ready' of a stream with no target
    app = create_app(model, ServeSettings())
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        job = client.post("/api/jobs", content=video.read_bytes(), params={"overlay": "false"}).json()
        assert wait_job(client, job["id"])["state"] == "done"
        body = client.get(f"/api/jobs/{job['id']}/result").json()
        assert "overlay" not in body
        result = JobResult.model_validate(body)
        assert result.overlay is None and result.video.frames == 10
        messages = list(StreamClient(server.url, stride=8, timeout=30).stream(iter(np.zeros((8, 16, 16, 3), np.uint8))))
    assert [m["type"] for m in messages] == ["ready", "window", "end"] and "target" not in messages[0]


def test_a_job_the_worker_cannot_clean_up_after_does_not_stop_the_queue(model, video, monkeypatch):
    # an error outside the job's own work (its upload could not be deleted: a disk remounted
    # read-only) ended the worker thread: every later job stayed 'queued' for ever
    original = pathlib.Path.unlink

    def read_only(self, *args, **kwargs):
        if self.name == UPLOAD_NAME:
            raise OSError(errno.EROFS, "Read-only file system")
        return original(self, *args, **kwargs)

    app = create_app(model, ServeSettings())
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        monkeypatch.setattr(pathlib.Path, "unlink", read_only)
        ids = [client.post("/api/jobs", content=video.read_bytes(), params={"overlay": "false"}).json()["id"]
               for _ in range(2)]
        assert [wait_job(client, i, timeout=30)["state"] for i in ids] == ["done", "done"]
        monkeypatch.undo()
        assert client.get(f"/api/jobs/{ids[1]}/result").json()["video"]["frames"] == 10


# -- servers that are not (this version of) a videoxai server --------------------------------------

READY = ReadyMessage(window=8, stride=4, method="staa", options={}, target=None, live=False, smoothing=0.5,
                     maps=["spatial"], map_size=32, map_dtype="uint8", limits={},
                     model=ModelInfo(name="m", family="f", num_frames=8, input_size=[32, 32], fixed_num_frames=True,
                                     labels=["a", "b"])).model_dump_json()


def drain(ws) -> None:
    with contextlib.suppress(Exception):
        while True:
            ws.recv()


# each: what the fake server does after the client's 'start', and what the client must say
FOREIGN = {
    "not_json": (lambda ws: ws.send("HTTP/1.1 200 OK, hello"), "which is not JSON"),
    "not_an_object": (lambda ws: ws.send("[1, 2]"), "not a JSON object with a 'type'"),
    "binary": (lambda ws: ws.send(b"\x00\x01"), "binary message"),
    "another_first_message": (lambda ws: ws.send(json.dumps({"type": "hello", "version": 2})),
                              "first message is 'hello', not 'ready'"),
    "a_ready_without_its_fields": (lambda ws: (ws.send(json.dumps({"type": "ready", "window": 8})), drain(ws)),
                                   "'ready' message has stride: field required"),
    "a_window_without_its_frames": (lambda ws: (ws.send(READY), ws.send(json.dumps({"type": "window", "index": 0})),
                                                drain(ws)), "'window' message has frame_indices"),
    "an_error_without_its_fields": (lambda ws: ws.send(json.dumps({"type": "error", "fatal": True, "error": "no"})),
                                    "'error' message has error"),
}


@contextlib.contextmanager
def fake_server(behave):
    def handler(ws):
        ws.recv()  # the client's 'start'
        behave(ws)

    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.socket.getsockname()[1]}"
        finally:
            srv.shutdown()
            thread.join(timeout=10)


@pytest.mark.parametrize("case", list(FOREIGN))
def test_a_server_that_speaks_another_protocol_is_named_as_such(case):
    # the client took any JSON for its own protocol: a text answer raised json's 'Expecting value',
    # a list "'list' object has no attribute 'get'", a 'ready' without its window a KeyError in
    # the sending thread (and then a 60 s wait), a window without frames a KeyError 'frame_indices'
    behave, says = FOREIGN[case]
    frames = iter(np.zeros((12, 16, 16, 3), np.uint8))
    with fake_server(behave) as url:
        with pytest.raises(StreamError) as info:
            list(StreamClient(url, timeout=20).stream(frames))
    assert info.value.code == "protocol"
    message = str(info.value)
    assert says in message and "/api/stream does not speak the videoxai stream protocol" in message, message


def test_stream_command_against_a_foreign_or_failing_server_exits_with_one_line(capsys, video):
    def close_mid_stream(ws):
        ws.send(READY)
        ws.recv()  # a frame
        ws.close(1011)

    def close_with_a_reason(ws):  # a fatal error whose message was lost: the close frame says why
        ws.send(READY)
        ws.recv()
        ws.close(1013, "client_limit: this client already has 4 streams open")

    def drop_mid_stream(ws):  # no close frame: the server's process died
        ws.send(READY)
        ws.recv()
        ws.socket.shutdown(socket.SHUT_RDWR)

    def ready_then_silent(ws):  # a server busy with a slow method's window
        ws.send(READY)
        drain(ws)

    for behave, says in [(FOREIGN["not_json"][0], "protocol: "),
                         (ready_then_silent, "timeout: no message from the server for 0.5 s (a window of a slow "
                                             "method can take longer: a larger timeout, videoxai stream --timeout"),
                         (close_mid_stream, "closed: the server closed the stream (code 1011)"),
                         (close_with_a_reason, "(code 1013: client_limit: this client already has 4 streams open)"),
                         (drop_mid_stream, "closed: the connection to the server was lost")]:
        with fake_server(behave) as url, pytest.raises(SystemExit) as exit_info:
            main(["stream", str(video), "--server", url, "--timeout", "0.5"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err


@pytest.mark.parametrize("args,says", [(["--live", "--fps", "-5"], "--fps must be a positive, finite number"),
                                       (["--live", "--fps", "0"], "--fps must be a positive, finite number"),
                                       (["--fps", "12"], "add --live, or drop --fps"),
                                       # inf sent every frame at once, as -5 did
                                       (["--live", "--fps", "inf"], "--fps must be a positive, finite number"),
                                       # the server refused these, naming its protocol's field, not the option
                                       (["--window", "0"], "--window must be 1 frame or more, got 0"),
                                       (["--stride", "-1"], "--stride must be 1 frame or more, got -1"),
                                       # named the video: 'clip.mp4: max_side must be >= 1'
                                       (["--max-side", "-1"], "--max-side must be a number of pixels")])
def test_stream_command_refuses_a_send_rate_it_would_not_use(capsys, video, args, says):
    # --fps -5 streamed every frame at once, and --fps on a file (streamed at the server's pace)
    # was ignored; both silently. Refused before any connection (the server here does not exist),
    # as are a window, stride or frame size no stream can have.
    with pytest.raises(SystemExit) as exit_info:
        main(["stream", str(video), "--server", "http://127.0.0.1:9", *args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and says in err and len(err.splitlines()) == 1, err


def test_stream_command_that_explained_nothing_exits_with_the_servers_reason(model, capsys, tmp_path):
    # a video shorter than one window printed the server's too_few_frames error and exited 0
    short = write_video(np.zeros((3, 32, 32, 3), np.uint8), tmp_path / "short.mp4", fps=10)
    with BackgroundServer(create_app(model, ServeSettings())) as server, pytest.raises(SystemExit) as exit_info:
        main(["stream", str(short), "--server", server.url])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert err.splitlines() == ["error too_few_frames: the stream ended after 3 frames; a window needs 8"]


def test_serve_command_on_a_port_in_use_says_so_before_loading_the_model(capsys, monkeypatch):
    # it loaded the model, printed 'serving … on http://127.0.0.1:PORT', then uvicorn's log line
    # and exit status 3
    import videoxai.models

    monkeypatch.setattr(videoxai.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--port", str(port)])
    out = capsys.readouterr()
    assert exit_info.value.code == 2 and "serving" not in out.out
    assert out.err.strip() == (f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another server "
                               "on it? --port 0 picks a free one)")


def test_the_stream_clients_frames_are_held_to_max_pixels_at_their_shown_size(tmp_path):
    """video_frames converted a stream URL's frames without read_video's limit (309f9b0): 256x256
    frames whose pixels claim to be 100 times as wide as tall came out 25600x256 whatever the limit
    (an 8192x8192 one: 20 GB a frame). A file and a stream URL (FFmpeg's async: protocol) alike."""
    from conftest import wide_pixels_video
    from videoxai.data.video import FrameTooLargeError
    from videoxai.serve.client import video_frames

    path = wide_pixels_video(tmp_path / "wide_pixels.mp4")
    for source in (str(path), f"async:{path}"):
        message = re.escape(f"{source}: its frames are shown at 25600x256 (stored 256x256, pixels 100 as wide as "
                            "tall), over the limit of 1000000 pixels per frame; give max_side to read them smaller")
        with pytest.raises(FrameTooLargeError, match=f"^{message}$"):
            next(video_frames(source, max_pixels=1_000_000))
        assert [f.shape for f in video_frames(source, max_side=512, max_pixels=1_000_000)] == [(5, 512, 3)] * 3
        assert next(video_frames(source)).shape == (256, 25600, 3)  # within the default limit


# -- a server's messages are bounded in size ------------------------------------------------------

def announce(ws, size: int) -> None:
    """Write the header of a text frame announcing ``size`` bytes (a server's frames are not
    masked), and a few of them: a client that reads on waits for the rest, one that takes the
    header's word refuses it at once."""
    ws.socket.sendall(b"\x81\x7f" + size.to_bytes(8, "big") + b'{"type": "window", ')


def test_a_server_message_over_the_clients_bound_is_refused_naming_its_size(capsys, video):
    """The client took messages of any size (websockets' max_size=None): a broken or hostile
    server that announced a 1 TiB message had it wait for all of it (buffering what came), here
    until the timeout. The frame header's length is checked against the bound before any of the
    message is read: 16 MiB before the 'ready' and, for a 'ready' of small windows, after it;
    ``max_message_bytes`` sets another for the whole stream. In the CLI, one line."""
    frames = np.zeros((12, 16, 16, 3), np.uint8)

    def ready_then_huge(ws):
        ws.send(READY)
        ws.recv()  # a frame: the client has read the 'ready'
        announce(ws, 2**40)
        drain(ws)

    def huge_first(ws):
        announce(ws, 2**24 + 1)
        drain(ws)

    def ready_then_text(ws):
        ws.send(READY)
        ws.recv()
        ws.send(json.dumps({"type": "note", "text": "x" * 2000}))
        drain(ws)

    said = "over this client's limit of 16777216 bytes"
    for behave, client, says in [
            (ready_then_huge, StreamClient, f"a message of 1099511627776 bytes, {said} (derived from its 'ready'"),
            (huge_first, StreamClient, f"a message of 16777217 bytes, {said} (the default before its 'ready')"),
            (ready_then_text, lambda url, timeout: StreamClient(url, timeout=timeout, max_message_bytes=1000),
             "a message of 2028 bytes, over this client's limit of 1000 bytes (max_message_bytes); give a larger")]:
        with fake_server(behave) as url, pytest.raises(StreamError) as info:
            list(client(url, timeout=10).stream(iter(frames)))
        assert info.value.code == "message_too_large" and says in str(info.value), str(info.value)
    with fake_server(ready_then_huge) as url, pytest.raises(SystemExit) as exit_info:
        main(["stream", str(video), "--server", url, "--timeout", "10"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: message_too_large: the server sent a message of 1099511627776 bytes"), err
    with pytest.raises(InputError, match=r"^max_message_bytes must be a positive whole number of bytes, got 0$"):
        StreamClient("http://127.0.0.1:9", max_message_bytes=0)


def test_the_bound_after_the_ready_is_what_its_windows_may_hold():
    """A 'ready' of long windows of large float16 maps announces messages over the 16 MiB taken
    before it: the bound is raised to twice the largest window it may send (64 frames of 256 x 256
    spatial and 224 x 224 raw maps, 2 bytes a value in base64, 2 classes: 39 636 168 bytes), and
    a message of 30 MB arrives whole, one of 40 MB is refused."""
    from videoxai.serve.client import DEFAULT_MAX_MESSAGE_BYTES, message_limit

    big = json.loads(READY)
    big.update(window=64, map_size=256, map_dtype="float16", maps=["spatial", "raw"])
    big["model"]["input_size"] = [224, 224]
    maps = -(-64 * (256 * 256 + 224 * 224) * 2 // 3) * 4
    assert message_limit(big) == 2 * (maps + 4 * (len('"a"') + 64) + 64 * 64 + 65536) == 39_636_168
    assert message_limit(json.loads(READY)) == DEFAULT_MAX_MESSAGE_BYTES  # small windows: the floor
    for size, arrives in ((30_000_000, True), (40_000_000, False)):
        def behave(ws, size=size):
            ws.send(json.dumps(big))
            ws.recv()
            if size < 39_636_168:
                ws.send(json.dumps({"type": "note", "text": "x" * (size - 30)}))
                ws.send(json.dumps({"type": "end", "frames": 1, "windows": 0, "dropped": 0}))
            else:
                announce(ws, size)
            drain(ws)

        with fake_server(behave) as url:
            stream = StreamClient(url, timeout=10).stream(iter(np.zeros((12, 16, 16, 3), np.uint8)))
            if arrives:
                assert [len(m.get("text", "")) for m in stream] == [0, size - 30, 0]
            else:
                with pytest.raises(StreamError, match="a message of 40000000 bytes, over this client's limit of "
                                                      "39636168 bytes"):
                    list(stream)
