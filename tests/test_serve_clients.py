"""The service and its stream client when the world is unlucky: a full disk, a server that is not
a videoxai server (or not this version of one), a stream that asks for more memory than a server
has. Real uvicorn servers on loopback, as in ``test_serve_http.py``; waits have generous
deadlines, never speed assertions.
"""

from __future__ import annotations

import errno
import pathlib
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

import httpx  # noqa: E402

from conftest import tiny_hf  # noqa: E402
from videoxai.data.video import write_video  # noqa: E402
from videoxai.models.hf import from_hf_module  # noqa: E402
from videoxai.serve import BackgroundServer, ServeSettings, create_app  # noqa: E402
from videoxai.serve.jobs import RESULT_NAME, UPLOAD_NAME  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return from_hf_module(tiny_hf("timesformer"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = np.random.default_rng(3).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    return write_video(frames, tmp_path_factory.mktemp("clients") / "clip.mp4", fps=10)


def wait_job(client, job_id, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


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
