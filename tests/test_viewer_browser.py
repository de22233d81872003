"""The viewer page in a real headless Chromium with a fake camera, against a real server.

Chromium is driven through its DevTools protocol over a WebSocket (no WebDriver needed): the
page streams the fake camera to the server and must draw the overlay and the temporal curve from
the windows it receives; then it uploads a file, and a non-video, through the upload form.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from websockets.sync.client import connect  # noqa: E402

from conftest import tiny_hf  # noqa: E402
from videoxai.data.video import write_video  # noqa: E402
from videoxai.models.hf import from_hf_module  # noqa: E402
from videoxai.serve import BackgroundServer, ServeSettings, create_app  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p),
                None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                                         "(apt-get install chromium); the viewer test needs it")


class DevTools:
    """The smallest useful Chrome DevTools Protocol client: commands in, results out."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params):
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)


class Page:
    def __init__(self, tools: DevTools, url: str) -> None:
        self.tools = tools
        target = tools.call("Target.createTarget", url=url)["targetId"]
        self.session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.call("Runtime.enable", self.session)

    def js(self, expression: str):
        r = self.tools.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True,
                            awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, timeout: float = 45.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        state = self.js("JSON.stringify(Object.assign({}, window.videoxaiViewer || {}, {lastWindow: null}))")
        raise AssertionError(f"timed out waiting for {expression}; viewer state: {state}")

    def set_file(self, selector: str, path: Path) -> None:
        root = self.tools.call("DOM.getDocument", self.session)["root"]["nodeId"]
        node = self.tools.call("DOM.querySelector", self.session, nodeId=root, selector=selector)["nodeId"]
        self.tools.call("DOM.setFileInputFiles", self.session, nodeId=node, files=[str(path)])

    def page_errors(self) -> list[dict]:
        return [e for e in self.tools.events if e.get("method") == "Runtime.exceptionThrown"]


@pytest.fixture(scope="module")
def served():
    app = create_app(from_hf_module(tiny_hf("timesformer")), ServeSettings())
    with BackgroundServer(app) as server:
        yield server, app


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = (profile / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "about:blank"],
        stdout=log, stderr=log, env={**os.environ, "HOME": str(profile), "TMPDIR": str(profile)})  # its temp files stay here
    try:
        port_file = profile / "DevToolsActivePort"  # Chromium writes its port and path here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start: {(profile / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, proxy=None, compression=None,
                     open_timeout=30) as ws:
            yield DevTools(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_live_camera_overlay_and_curve(served, browser):
    server, app = served
    page = Page(browser, server.url + "/")
    page.wait("window.videoxaiViewer && window.videoxaiViewer.info !== null")
    assert page.js("document.getElementById('method').value") == "staa"
    page.js("document.getElementById('send-fps').value = '15'; document.getElementById('live-start').click()")
    page.wait("window.videoxaiViewer.windows >= 3 && window.videoxaiViewer.overlayDraws > 0")
    state = page.js("""(() => { const s = window.videoxaiViewer, w = s.lastWindow;
        return {errors: s.errors, sent: s.sent, shape: w.maps.spatial.shape, frames: w.frame_indices,
                ready: s.ready.window, sum: w.temporal.reduce((a, b) => a + b, 0)}; })()""")
    assert state["errors"] == [] and state["sent"] >= 8
    assert state["ready"] == 8 and len(state["frames"]) == 8 and abs(state["sum"] - 1) < 1e-4
    t, h, w = state["shape"]
    assert t == 8 and max(h, w) == 32 and w > h  # the fake camera is landscape
    # the curve and the overlay are drawn: coloured pixels on the curve, heat colours on the video
    drawn = page.js("""(() => { const c = document.getElementById('live-curve');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 60) n++; return n; })()""")
    assert drawn > 50
    assert "%" in page.js("document.getElementById('live-label').textContent")
    page.js("document.getElementById('live-stop').click()")
    page.wait("!window.videoxaiViewer.running")
    deadline = time.monotonic() + 20
    while app.state.slots.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.slots.active == 0
    assert page.page_errors() == []


def test_upload_shows_overlay_and_errors(served, browser, tmp_path):
    server, _ = served
    rng = np.random.default_rng(0)
    video = write_video(rng.integers(0, 256, size=(16, 48, 64, 3), dtype=np.uint8), tmp_path / "clip.mp4", fps=8)
    page = Page(browser, server.url + "/")
    page.wait("window.videoxaiViewer && window.videoxaiViewer.info !== null")
    page.js("document.getElementById('tab-upload').click()")
    page.set_file("#upload-file", video)
    page.js("document.getElementById('sampling').value = 'windows'; document.getElementById('upload-start').click()")
    page.wait("window.videoxaiViewer.job && window.videoxaiViewer.job.state === 'done'")
    result = page.js("""(() => { const j = window.videoxaiViewer.job;
        return {windows: j.result.windows.length, frames: j.result.frame_indices.length,
                src: document.getElementById('overlay-video').src,
                pred: document.getElementById('job-pred').textContent}; })()""")
    assert result["windows"] == 3 and result["frames"] == 16  # stride 4 over 16 frames
    assert result["src"].startswith("blob:") and "%" in result["pred"]

    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    page.set_file("#upload-file", text)
    page.js("document.getElementById('upload-start').click()")
    page.wait("window.videoxaiViewer.job && window.videoxaiViewer.job.state === 'failed'")
    banner = page.js("document.getElementById('banner').textContent")
    assert "bad_video" in banner and not page.js("document.getElementById('banner').classList.contains('hidden')")
    assert page.page_errors() == []


def test_upload_with_no_method_chosen_leaves_it_to_the_server(served, browser, tmp_path):
    # with no method in the list (it did not load) the viewer sent method="", which the server now
    # refuses (422): the field must be left out, so that the server's default is used
    server, _ = served
    video = write_video(np.random.default_rng(1).integers(0, 256, size=(8, 48, 64, 3), dtype=np.uint8),
                        tmp_path / "clip.mp4", fps=8)
    page = Page(browser, server.url + "/")
    page.wait("window.videoxaiViewer && window.videoxaiViewer.info !== null")
    page.js("document.getElementById('method').innerHTML = ''; document.getElementById('tab-upload').click()")
    page.set_file("#upload-file", video)
    page.js("document.getElementById('upload-start').click()")
    page.wait("window.videoxaiViewer.job && ['done', 'failed'].includes(window.videoxaiViewer.job.state)")
    job = page.js("window.videoxaiViewer.job")
    assert job["state"] == "done", job.get("error")
    assert job["result"]["method"] == "staa"
    assert page.page_errors() == []
