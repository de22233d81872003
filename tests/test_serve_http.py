"""The HTTP side of the service, against a real uvicorn server on loopback.

Uploads are explained by the same code as ``vx.explain``, so every result is checked against the
library run locally on the same frames; bad inputs must give JSON errors with the right status
and leave the server serving.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

import videoxai as vx  # noqa: E402
from conftest import tiny_hf  # noqa: E402
from videoxai.data.video import probe, write_video  # noqa: E402
from videoxai.models.hf import from_hf_module  # noqa: E402
from videoxai.serve import BackgroundServer, ServeSettings, create_app  # noqa: E402
from videoxai.serve.engine import Engine, downsample  # noqa: E402
from videoxai.serve.jobs import UPLOAD_NAME, JobQueue, count_windows, merge_temporal  # noqa: E402
from videoxai.serve.protocol import CompactArray, JobRequest, VideoInfo, WindowResult  # noqa: E402

SETTINGS = ServeSettings(max_upload_mb=0.25, max_frames=60, max_pixels=160 * 120, max_side=200,
                         max_queued_jobs=2, max_jobs_kept=8, map_size=16)


@pytest.fixture(scope="module")
def model():
    return from_hf_module(tiny_hf("timesformer"))


@pytest.fixture(scope="module")
def served(model):
    app = create_app(model, SETTINGS)
    with BackgroundServer(app) as server:
        yield server, app


@pytest.fixture
def client(served):
    server, _ = served
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(20, 48, 64, 3), dtype=np.uint8)
    out = {"frames": frames, "short": write_video(frames, root / "short.mp4", fps=10)}
    out["long"] = write_video(rng.integers(0, 256, size=(70, 24, 32, 3), dtype=np.uint8), root / "long.avi", fps=10)
    out["wide"] = write_video(rng.integers(0, 256, size=(8, 128, 256, 3), dtype=np.uint8), root / "wide.mp4", fps=10)
    data = out["short"].read_bytes()
    out["truncated"] = root / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) * 6 // 10])
    out["text"] = root / "notes.mp4"
    out["text"].write_text("this is not a video\n" * 20)
    return out


def upload(client, path, **params):
    return client.post("/api/jobs", content=path.read_bytes(), params=params,
                       headers={"content-type": "video/mp4"})


def wait(client, job_id, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]["message"]


def assert_window_matches(window: dict, exp: vx.Explanation, map_size: int):
    w = WindowResult.model_validate(window)
    assert w.prediction.index == exp.target
    assert w.prediction.score == pytest.approx(exp.score, abs=1e-5)
    np.testing.assert_allclose(w.temporal, exp.temporal, atol=1e-5)
    assert w.frame_indices == exp.frame_indices.tolist()
    want = downsample(torch.from_numpy(exp.spatial)[None], map_size)[0].numpy()
    got = w.maps.spatial.decode()
    assert got.shape == want.shape and max(got.shape[1:]) == min(map_size, max(exp.spatial.shape[1:]))
    np.testing.assert_allclose(got, want, atol=w.maps.spatial.scale / 510 + 1e-6)  # uint8 quantisation
    assert w.top[0].index == exp.target and [t.score for t in w.top] == sorted([t.score for t in w.top], reverse=True)


# -- happy paths -----------------------------------------------------------------------------------


def test_health_and_info(client, model):
    assert client.get("/api/health").json() == {"status": "ok"}
    info = client.get("/api/info").json()
    assert info["model"]["num_frames"] == model.num_frames and info["model"]["labels"] == model.labels
    assert "staa" in info["methods"] and info["default_method"] == "staa"
    assert info["limits"]["max_frames"] == 60 and info["limits"]["api_key_required"] is False
    assert "api_key" not in info["limits"] and "work_dir" not in info["limits"]


def test_upload_uniform_matches_library(client, model, videos):
    r = upload(client, videos["short"])
    assert r.status_code == 202, r.text
    status = wait(client, r.json()["id"])
    assert status["state"] == "done" and status["progress"] == 1.0 and status["windows_done"] == 1
    result = client.get(status["links"]["result"]).json()

    clip = vx.read_video(videos["short"], num_frames=model.num_frames)
    exp = vx.explain(model, clip, method="staa")
    assert result["method"] == "staa" and result["video"]["frames"] == 20
    assert result["video"]["width"] == 64 and result["video"]["height"] == 48
    assert len(result["windows"]) == 1
    assert_window_matches(result["windows"][0], exp, SETTINGS.map_size)
    assert result["prediction"]["index"] == exp.target
    assert result["frame_indices"] == clip.indices.tolist()
    np.testing.assert_allclose(result["temporal"], exp.temporal, atol=1e-5)

    overlay = client.get(status["links"]["overlay"])
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "video/mp4"
    path = videos["short"].parent / "overlay_uniform.mp4"
    path.write_bytes(overlay.content)
    info = probe(path)
    assert info["frames"] == model.num_frames and info["width"] == 64  # the clip's frames, captioned below


def test_multipart_sliding_windows_match_library(client, model, videos):
    files = {"file": ("short.mp4", videos["short"].read_bytes(), "video/mp4")}
    data = {"sampling": "windows", "stride": "4", "maps": "spatial,raw", "map_dtype": "float16"}
    r = client.post("/api/jobs", files=files, data=data)
    assert r.status_code == 202, r.text
    status = wait(client, r.json()["id"])
    assert status["state"] == "done", status
    result = client.get(status["links"]["result"]).json()

    clips = list(vx.sliding_windows(videos["short"], num_frames=model.num_frames, stride=4))
    assert len(result["windows"]) == len(clips) == count_windows(20, model.num_frames, 4) == 4
    for window, clip in zip(result["windows"], clips):
        exp = vx.explain(model, clip, method="staa")
        assert_window_matches(window, exp, SETTINGS.map_size)
        raw = CompactArray.model_validate(window["maps"]["raw"])
        assert raw.dtype == "float16" and raw.shape == list(exp.raw.shape)
        np.testing.assert_allclose(raw.decode(), exp.raw, rtol=2e-3, atol=raw.scale * 1e-3)
    # every source frame is covered once in the merged curve, which sums to 1
    assert result["frame_indices"] == list(range(20))
    assert sum(result["temporal"]) == pytest.approx(1.0, abs=1e-6)
    windows = [WindowResult.model_validate(w) for w in result["windows"]]
    assert merge_temporal(windows) == (result["frame_indices"], pytest.approx(result["temporal"]))

    overlay = client.get(status["links"]["overlay"])
    path = videos["short"].parent / "overlay_windows.mp4"
    path.write_bytes(overlay.content)
    assert probe(path)["frames"] == 20  # every source frame once, written window by window


def test_sliding_window_overlay_draws_each_source_frame_once(client, videos, monkeypatch):
    """Every frame of every window was drawn and 7 of 8 thrown away at stride 1 (the writer keeps
    each source frame once): at 1080p drawing took twice as long as explaining. Now only the frames
    a window adds are drawn."""
    from videoxai.serve import jobs

    drawn = []

    def counting(exp, clip, **kwargs):
        out = render_frames(exp, clip, **kwargs)
        drawn.append(len(out))
        return out

    render_frames = jobs.render_frames
    monkeypatch.setattr(jobs, "render_frames", counting)
    files = {"file": ("short.mp4", videos["short"].read_bytes(), "video/mp4")}
    status = wait(client, client.post("/api/jobs", files=files, data={"sampling": "windows", "stride": "2"}).json()["id"])
    assert status["state"] == "done", status
    assert len(drawn) == len(client.get(status["links"]["result"]).json()["windows"]) > 2
    assert sum(drawn) == 20                                 # the video's frames, each once
    path = videos["short"].parent / "overlay_stride2.mp4"
    path.write_bytes(client.get(status["links"]["overlay"]).content)
    assert probe(path)["frames"] == 20


def test_merge_temporal_averages_overlapping_windows():
    def window(index, frames, scores):
        return WindowResult(index=index, frame_indices=frames, temporal=scores, compute_ms=0.0, top=[],
                            prediction={"index": 0, "label": "a", "score": 1.0}, maps={})

    # frame 1 is in both windows (0.5 and 0.25 → mean 0.375); the repeated frame 3 counts once
    # for its window, with the sum of its scores
    frames, scores = merge_temporal([window(0, [0, 1], [0.5, 0.5]), window(1, [1, 3, 3], [0.25, 0.25, 0.5])])
    assert frames == [0, 1, 3]
    raw = np.array([0.5, 0.375, 0.75])
    np.testing.assert_allclose(scores, raw / raw.sum())


def test_an_app_served_again_after_its_server_stopped_still_explains(model, videos):
    """The first server's shutdown closed the app's model thread for good: served again (a
    notebook's second BackgroundServer), every job and stream window failed with 'internal'."""
    app = create_app(model, SETTINGS)
    for _ in range(2):
        with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
            status = wait(c, upload(c, videos["short"], overlay="false").json()["id"])
            assert status["state"] == "done", status
            ref = vx.explain(model, vx.read_video(videos["short"], num_frames=model.num_frames), method="staa")
            window = c.get(f"/api/jobs/{status['id']}/result").json()["windows"][0]
            np.testing.assert_allclose(window["temporal"], ref.temporal, atol=1e-5)


def test_delete_job(client, videos):
    job = upload(client, videos["short"], overlay="false").json()
    wait(client, job["id"])
    assert_error(client.get(f"/api/jobs/{job['id']}/overlay.mp4"), 404, "not_found")
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert_error(client.get(f"/api/jobs/{job['id']}"), 404, "not_found")


def test_files_deleted_while_they_are_sent_are_sent_whole(model, videos):
    # a DELETE (or the eviction of old jobs) may remove a job's files between the route's answer
    # and its body: the body must still be the file, never a 500 or a response cut off
    app = create_app(model, SETTINGS)

    async def delete_on_start(scope, receive, send):
        async def send_then_delete(message):
            if message["type"] == "http.response.start" and message["status"] == 200:
                app.state.jobs.delete(scope["path"].split("/")[3])  # a concurrent DELETE, at the worst moment
            await send(message)
        file_get = scope["type"] == "http" and scope["method"] == "GET" and scope["path"].count("/") == 4
        await app(scope, receive, send_then_delete if file_get else send)

    delete_on_start.state = app.state  # BackgroundServer reads the settings from here
    with BackgroundServer(delete_on_start) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        for name in ("result", "overlay.mp4"):
            job = upload(c, videos["short"]).json()
            assert wait(c, job["id"])["state"] == "done"
            path = app.state.jobs.get(job["id"]).dir / ("result.json" if name == "result" else name)
            whole = path.read_bytes()
            r = c.get(f"/api/jobs/{job['id']}/{name}")
            assert r.status_code == 200 and r.content == whole, (r.status_code, len(r.content), len(whole))
            assert not path.exists()
            assert_error(c.get(f"/api/jobs/{job['id']}/{name}"), 404, "not_found")


def test_range_requests_of_job_files(client, videos):
    # valid ranges are served (206), bad ones are JSON errors like every other (starlette's own were
    # plain text), and a unit other than bytes is ignored (RFC 9110 §14.2): the whole file, 200
    status = wait(client, upload(client, videos["short"]).json()["id"])
    for link in (status["links"]["result"], status["links"]["overlay"]):
        whole = client.get(link).content
        size = len(whole)
        head = client.head(link)                 # size and type without the body (it was 405)
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == size
        assert head.headers["accept-ranges"] == "bytes"
        r = client.get(link, headers={"Range": "bytes=2-9"})
        assert r.status_code == 206 and r.content == whole[2:10] and r.headers["content-range"] == f"bytes 2-9/{size}"
        r = client.get(link, headers={"Range": "bytes=-5"})
        assert r.status_code == 206 and r.content == whole[-5:]
        r = client.get(link, headers={"Range": "bytes=0-0,4-5"})
        assert r.status_code == 206 and r.headers["content-type"].startswith("multipart/byteranges")
        for bad in ("bytes=abc", "bytes=5-1", "bytes", "bytes=-"):
            assert "Range" in assert_error(client.get(link, headers={"Range": bad}), 400, "bad_range"), bad
        for beyond in ("bytes=999999999-", f"bytes={size}-", "bytes=0-1,999999999-1000000000"):
            r = client.get(link, headers={"Range": beyond})
            assert_error(r, 416, "range_not_satisfiable")
            assert r.headers["content-range"] == f"bytes */{size}", beyond
        for ignored in ("items=0-1", ",".join(["0-0"] * 101).join(["bytes=", ""])):  # too many ranges: all
            r = client.get(link, headers={"Range": ignored})
            assert r.status_code == 200 and r.content == whole, ignored
        # If-Range naming another version: the range is not used, however bad it is
        r = client.get(link, headers={"Range": "bytes=abc", "If-Range": '"other"'})
        assert r.status_code == 200 and r.content == whole


# -- bad inputs ----------------------------------------------------------------------------------


def test_not_a_video(client, videos):
    message = assert_error(upload(client, videos["text"]), 415, "bad_video")
    assert "/tmp" not in message and "upload" in message  # the server's paths stay private


def test_a_still_picture_or_a_one_frame_video_is_refused_at_upload(client, videos, tmp_path):
    # a PNG was accepted and explained as 8 copies of its one frame
    from PIL import Image

    Image.fromarray(videos["frames"][0]).save(tmp_path / "still.png")
    for still in (tmp_path / "still.png", write_video(videos["frames"][:1], tmp_path / "one.mp4", fps=10)):
        message = assert_error(upload(client, still), 415, "bad_video")
        assert message.startswith("the upload has 1 frame (a still picture)") and "2 frames or more" in message
    r = upload(client, write_video(videos["frames"][:2], tmp_path / "two.mp4", fps=10))   # two frames move
    assert r.status_code == 202 and wait(client, r.json()["id"])["state"] == "done"


def test_empty_upload(client):
    assert_error(client.post("/api/jobs", content=b""), 400, "bad_upload")


def test_truncated_file_fails_with_a_clear_error(client, videos):
    r = upload(client, videos["truncated"])
    if r.status_code == 202:  # the header survived the cut: decoding finds the damage
        status = wait(client, r.json()["id"])
        assert status["state"] == "failed" and status["error"]["code"] == "bad_video", status
        assert "truncat" in status["error"]["message"]
        assert_error(client.get(status["links"]["result"]), 409, "job_failed")
    else:
        assert_error(r, 415, "bad_video")


def test_oversize_upload_declared(client):
    body = b"\0" * (SETTINGS.max_upload_bytes + 1)
    assert_error(client.post("/api/jobs", content=body), 413, "upload_too_large")


def test_oversize_upload_streamed_without_length(client):
    def chunks():  # chunked transfer: no Content-Length, the limit is enforced while reading
        for _ in range(SETTINGS.max_upload_bytes // 65536 + 2):
            yield b"\0" * 65536

    assert_error(client.post("/api/jobs", content=chunks()), 413, "upload_too_large")


def test_too_many_frames_and_pixels(client, videos):
    assert "60" in assert_error(upload(client, videos["long"]), 413, "video_too_long")
    assert "256x128" in assert_error(upload(client, videos["wide"]), 413, "video_too_large")


def test_an_unknown_method_is_told_the_methods_this_servers_model_takes(client, model, videos):
    """The refusal listed every registered method, also those this model cannot take (stabn,
    saliency_tubes for a TimeSformer): a client that picked one was refused again."""
    message = assert_error(upload(client, videos["short"], method="no_such_method"), 400, "unknown_method")
    offered = message.split("this server's model takes: ")[1].split(", ")
    assert offered == client.get("/api/info").json()["methods"]
    assert "stabn" not in offered and "staa" in offered


@pytest.mark.parametrize("params, status, code", [
    ({"method": "no_such_method"}, 400, "unknown_method"),
    ({"options": "{not json"}, 400, "bad_request"),
    ({"options": json.dumps({"no_such_option": 1})}, 400, "bad_input"),
    ({"sampling": "everything"}, 422, "bad_request"),
    ({"target": "99"}, 400, "bad_input"),
    ({"unknown_field": "1"}, 422, "bad_request"),
    ({"method": ""}, 422, "bad_request"),  # was the default method, silently
    ({"stride": "4"}, 422, "bad_request"),  # sampling=uniform has no stride: it was ignored, silently
    ({"target": "9" * 5000}, 422, "bad_request"),  # past Python's 4300 digits: a 500 and a traceback
])
def test_bad_job_parameters(client, videos, params, status, code):
    message = assert_error(upload(client, videos["short"], **params), status, code)
    if status == 422:
        assert next(iter(params)) in message  # names the field


def test_a_parameter_given_twice_is_refused_not_half_taken(client, videos):
    # the last one was taken: maps=spatial&maps=raw asked for both maps and got the raw one only,
    # and a form field silently overrode the query's
    r = client.post("/api/jobs", content=videos["short"].read_bytes(), params=[("maps", "spatial"), ("maps", "raw")],
                    headers={"content-type": "video/mp4"})
    message = assert_error(r, 422, "bad_request")
    assert message.startswith("maps: given more than once") and "maps=spatial,raw" in message
    files = {"file": ("short.mp4", videos["short"].read_bytes(), "video/mp4")}
    r = client.post("/api/jobs", files=files, data={"sampling": "windows"}, params={"sampling": "uniform"})
    assert assert_error(r, 422, "bad_request").startswith("sampling: given more than once")
    r = client.post("/api/jobs", files=files, data={"overlay": ["false", "false"]})
    assert assert_error(r, 422, "bad_request").startswith("overlay: given more than once")
    # an option given twice in the JSON: json keeps the last one
    r = upload(client, videos["short"], options='{"layers": 1, "layers": 2}')
    assert "key 'layers' is given more than once" in assert_error(r, 400, "bad_request")


def test_an_omitted_method_is_the_default_and_an_empty_one_is_refused(client, videos):
    status = wait(client, upload(client, videos["short"], overlay="false").json()["id"])
    # no overlay asked for: no link to one (it led to a 404), as the result says
    assert status["links"].get("overlay") is None and client.get(status["links"]["result"]).json().get("overlay") is None
    assert client.get(status["links"]["result"]).json()["method"] == "staa"
    files = {"file": ("short.mp4", videos["short"].read_bytes(), "video/mp4")}
    message = assert_error(client.post("/api/jobs", files=files, data={"method": ""}), 422, "bad_request")
    assert message.startswith("method:")


def test_target_by_name_as_the_library_takes_it(client, model, videos):
    # was 422 "Input should be a valid integer" where the CLI and vx.explain take class names
    name = model.labels[2]
    r = upload(client, videos["short"], target=name.upper())                 # case-insensitive
    assert r.status_code == 202, r.text
    result = client.get(wait(client, r.json()["id"])["links"]["result"]).json()
    assert result["windows"][0]["prediction"]["index"] == 2 and result["windows"][0]["prediction"]["label"] == name
    message = assert_error(upload(client, videos["short"], target=name[:-1] + "9"), 400, "bad_input")
    assert f"has no class {name[:-1] + '9'!r}; close matches: " in message and repr(name) in message
    assert "-1 out of range" in assert_error(upload(client, videos["short"], target="-1"), 400, "bad_input")


def test_a_multipart_upload_is_read_whatever_the_case_of_its_media_type(client, videos):
    # "Multipart/Form-Data" was taken for a raw body: the whole form was written as the video
    body = (b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
            b"Content-Type: video/mp4\r\n\r\n" + videos["short"].read_bytes() +
            b'\r\n--XX\r\nContent-Disposition: form-data; name="method"\r\n\r\nsaliency\r\n--XX--\r\n')
    r = client.post("/api/jobs", content=body, headers={"content-type": "Multipart/Form-Data; boundary=XX"})
    assert r.status_code == 202, r.text
    status = wait(client, r.json()["id"])
    assert status["state"] == "done", status
    result = client.get(status["links"]["result"]).json()
    assert result["method"] == "saliency" and result["video"]["frames"] == 20  # the form's field, the file


def test_malformed_multipart(client):
    r = client.post("/api/jobs", content=b"--xyz\r\nnot a part",
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 400 and r.json()["error"]["code"] in ("bad_upload",), r.text
    r = client.post("/api/jobs", files={"other": ("a.txt", b"abc", "text/plain")})
    assert_error(r, 400, "bad_upload")
    # a 'file' part without a filename is a form field: it was "no 'file' field" or, past 64 KiB,
    # "Part exceeded maximum size", with no word of the missing filename
    for size in (1000, 100_000):
        body = b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + b"\0" * size + b"\r\n--B--\r\n"
        r = client.post("/api/jobs", content=body, headers={"content-type": "multipart/form-data; boundary=B"})
        assert "send the video as a file, with a filename" in assert_error(r, 400, "bad_upload")
    # a field of the job's over 64 KiB is not the video: it was told to send the video with a filename
    body = b'--B\r\nContent-Disposition: form-data; name="options"\r\n\r\n{"a": "' + b"x" * 70_000 + b'"}\r\n--B--\r\n'
    r = client.post("/api/jobs", content=body, headers={"content-type": "multipart/form-data; boundary=B"})
    assert assert_error(r, 400, "bad_upload") == ("malformed multipart upload: Part exceeded maximum size of 64KB. "
                                                  "(the form field 'options' is over 64 KiB; the job's fields are "
                                                  "short text, its options at most 64 KiB of JSON)")


def test_a_multipart_upload_cut_short_is_refused_as_such(client, videos):
    # starlette returns the parts complete so far: a body cut inside the file was refused as having
    # "no 'file' field", and one cut after the file was a job without the fields that followed it
    file_part = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
                 b"Content-Type: video/mp4\r\n\r\n" + videos["short"].read_bytes() + b"\r\n")
    field_part = b'--B\r\nContent-Disposition: form-data; name="sampling"\r\n\r\nwindows\r\n'
    for body in (file_part[: len(file_part) // 2], file_part + field_part):
        r = client.post("/api/jobs", content=body, params={"overlay": "false"},
                        headers={"content-type": "multipart/form-data; boundary=B"})
        assert "ends before its closing boundary" in assert_error(r, 400, "bad_upload")
    r = client.post("/api/jobs", content=file_part + field_part + b"--B--\r\n", params={"overlay": "false"},
                    headers={"content-type": "multipart/form-data; boundary=B"})
    assert r.status_code == 202, r.text


def test_unknown_routes_and_jobs_are_json_404(client):
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.get("/api/jobs/0123"), 404, "not_found")
    assert_error(client.put("/api/health"), 405, "method_not_allowed")


def test_abrupt_disconnect_mid_upload_leaves_nothing_behind(served, client, videos):
    server, app = served
    host, port = server.url.removeprefix("http://").split(":")
    before = set(app.state.jobs.root.iterdir())
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: video/mp4\r\n"
                  b"Content-Length: 200000\r\n\r\n" + videos["short"].read_bytes()[:5000])
        time.sleep(0.2)  # let the server start writing the upload
    deadline = time.monotonic() + 10
    # new folders only: an earlier test's job may be evicted meanwhile (max_jobs_kept)
    while set(app.state.jobs.root.iterdir()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(app.state.jobs.root.iterdir()) - before  # the partial upload's folder is gone
    assert client.get("/api/health").status_code == 200
    r = upload(client, videos["short"], overlay="false")
    assert r.status_code == 202 and wait(client, r.json()["id"])["state"] == "done"


def test_full_queue_refuses_with_retry_after(served, client, videos):
    _, app = served
    engine = app.state.engine
    deadline = time.monotonic() + 30
    while app.state.jobs.counts().get("queued", 0) + app.state.jobs.counts().get("running", 0):
        assert time.monotonic() < deadline, "earlier jobs did not finish"
        time.sleep(0.05)
    gate = threading.Event()
    blocker = threading.Thread(target=engine.call_sync, args=(gate.wait,), daemon=True)
    blocker.start()  # holds the model thread: the first job waits in its first window
    try:
        ids = [upload(client, videos["short"], overlay="false") for _ in range(SETTINGS.max_queued_jobs)]
        assert all(r.status_code == 202 for r in ids), [r.text for r in ids]
        r = upload(client, videos["short"])
        assert_error(r, 503, "busy")
        assert r.headers["retry-after"] == "5"
        assert client.get("/api/health").status_code == 200  # the event loop is not blocked
        # told before it sends the video: the whole upload was received only to be refused (here,
        # where the client sends no more, it waited for the rest until the body timed out)
        host, port = served[0].url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as s:
            s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: video/mp4\r\n"
                      b"Content-Length: 200000\r\n\r\n" + videos["short"].read_bytes()[:1000])
            head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 503 "), head
    finally:
        gate.set()
        blocker.join(10)
    assert all(wait(client, r.json()["id"])["state"] == "done" for r in ids)


# -- restarts ------------------------------------------------------------------------------------


def test_finished_jobs_survive_a_restart_with_the_same_work_dir(model, videos, tmp_path):
    # before, a restart forgot every job (404) although its files were still in the work dir
    settings = SETTINGS.model_copy(update={"work_dir": str(tmp_path)})
    with BackgroundServer(create_app(model, settings)) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        done = wait(c, upload(c, videos["short"]).json()["id"])
        gone = wait(c, upload(c, videos["short"], overlay="false").json()["id"])
        assert c.delete(f"/api/jobs/{gone['id']}").status_code == 204
        result, overlay = c.get(done["links"]["result"]).content, c.get(done["links"]["overlay"]).content
    with BackgroundServer(create_app(model, settings)) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        assert c.get(f"/api/jobs/{done['id']}").json() == done
        assert c.get(done["links"]["result"]).content == result
        assert c.get(done["links"]["overlay"]).content == overlay
        message = assert_error(c.get(f"/api/jobs/{gone['id']}"), 404, "not_found")
        assert "restart" not in message  # this server keeps its jobs: a restart is not why
        new = wait(c, upload(c, videos["short"], overlay="false").json()["id"])  # and goes on as usual
        assert new["state"] == "done"
        assert c.delete(f"/api/jobs/{done['id']}").status_code == 204
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == [new["id"]]


def test_a_second_server_on_a_work_dir_is_refused_and_leaves_the_firsts_jobs_alone(model, videos, tmp_path):
    # it would have taken the first server's running jobs for a crash's leftovers: failed them
    # and deleted their uploads
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from videoxai.cli import app as cli
    from videoxai.errors import InputError

    settings = SETTINGS.model_copy(update={"work_dir": str(tmp_path)})
    with BackgroundServer(create_app(model, settings)) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        job = upload(c, videos["short"], overlay="false").json()
        with pytest.raises(InputError, match=r"in use by another videoxai server \(pid \d+ .*another --work-dir"):
            with TestClient(create_app(model, settings)):  # runs the second app's startup
                pass
        result = CliRunner().invoke(cli, ["serve", "--work-dir", str(tmp_path), "--model", "demo"])
        assert isinstance(result.exception, InputError) and "in use by another videoxai server" in str(result.exception)
        assert wait(c, job["id"])["state"] == "done"
    with BackgroundServer(create_app(model, settings)):  # free again once the first has stopped
        pass


def test_jobs_cut_short_by_a_restart_fail_with_a_reason_not_404(model, videos, tmp_path):
    settings = SETTINGS.model_copy(update={"work_dir": str(tmp_path / "live")})
    app = create_app(model, settings)
    gate = threading.Event()
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        blocker = threading.Thread(target=app.state.engine.call_sync, args=(gate.wait,), daemon=True)
        blocker.start()  # holds the model thread: the first job runs, the second waits
        try:
            running = upload(c, videos["short"]).json()
            queued = upload(c, videos["short"]).json()
            deadline = time.monotonic() + 30
            while c.get(f"/api/jobs/{running['id']}").json()["state"] != "running":
                assert time.monotonic() < deadline, "the first job did not start"
                time.sleep(0.05)
            # the server dies now: what it leaves is its work dir as it is
            shutil.copytree(tmp_path / "live", tmp_path / "dead")
        finally:
            gate.set()
            blocker.join(10)
    (tmp_path / "dead" / "jobs" / "0123456789abcdef0123456789abcdef").mkdir()  # an upload cut off mid-way
    restarted = SETTINGS.model_copy(update={"work_dir": str(tmp_path / "dead")})
    with BackgroundServer(create_app(model, restarted)) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        for job in (running, queued):
            status = c.get(f"/api/jobs/{job['id']}").json()
            assert status["state"] == "failed" and status["error"]["code"] == "server_restarted", status
            assert "restarted" in status["error"]["message"] and status["finished"] is not None
            message = assert_error(c.get(job["links"]["result"]), 409, "job_failed")
            assert "restarted" in message
            assert not (tmp_path / "dead" / "jobs" / job["id"] / "upload").exists()
    assert sorted(p.name for p in (tmp_path / "dead" / "jobs").iterdir()) == sorted([running["id"], queued["id"]])


def test_a_job_stopped_with_the_server_fails_at_the_restart(model, videos, tmp_path):
    # a graceful stop cancels queued and running jobs; they are not 'cancelled' (nobody asked)
    engine = Engine(model, "staa")
    jobs = JobQueue(engine, SETTINGS, tmp_path)  # no worker started: the job stays queued
    job_id, folder = jobs.new_dir()
    shutil.copy(videos["short"], folder / UPLOAD_NAME)
    jobs.submit(job_id, folder, JobRequest(overlay=False), VideoInfo(frames=20, fps=10.0, width=64, height=48,
                                                                       duration=2.0))
    jobs.stop()
    again = JobQueue(engine, SETTINGS, tmp_path)
    again.start()
    try:
        status = again.status(job_id)
        assert status.state == "failed" and status.error.code == "server_restarted"
    finally:
        again.stop()
        engine.close()


def test_an_unknown_job_of_a_temporary_work_dir_may_have_been_lost_in_a_restart(client):
    message = assert_error(client.get("/api/jobs/0123456789abcdef0123456789abcdef"), 404, "not_found")
    assert "restarted" in message and "--work-dir" in message


# -- API key -------------------------------------------------------------------------------------


def test_api_key(model, videos):
    app = create_app(model, ServeSettings(api_key="s3cret"))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, trust_env=False, timeout=30) as c:
        assert c.get("/api/health").status_code == 200  # liveness needs no key
        assert c.get("/").status_code == 200  # nor does the viewer page (it asks for the key)
        assert_error(c.get("/api/info"), 401, "unauthorized")
        assert_error(c.get("/api/info", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert_error(upload(c, videos["short"]), 401, "unauthorized")
        assert c.get("/api/info", headers={"X-API-Key": "s3cret"}).json()["limits"]["api_key_required"] is True
        assert c.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200




def test_an_api_key_beyond_ascii_is_taken_as_curl_and_as_browsers_send_it(model):
    # header bytes are read as Latin-1: a browser sends 'é' as one byte, curl as the two UTF-8 bytes
    # a terminal typed, which were refused (401) although the key was right
    app = create_app(model, ServeSettings(api_key="sécret ключ"))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, trust_env=False, timeout=30) as c:
        utf8 = "sécret ключ".encode()
        assert c.get("/api/info", headers={"X-API-Key": utf8}).status_code == 200
        assert c.get("/api/info", headers={"Authorization": b"Bearer " + utf8}).status_code == 200
        assert_error(c.get("/api/info", headers={"X-API-Key": "sécret ключа".encode()}), 401, "unauthorized")
    app = create_app(model, ServeSettings(api_key="sécret"))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, trust_env=False, timeout=30) as c:
        for sent in ("sécret".encode("latin-1"), "sécret".encode()):  # a browser's bytes, curl's bytes
            assert c.get("/api/info", headers={"X-API-Key": sent}).status_code == 200, sent
        assert_error(c.get("/api/info", headers={"X-API-Key": b"secret"}), 401, "unauthorized")


def test_serve_command(tmp_path, videos, monkeypatch):
    """``videoxai serve`` loads a saved model directory and serves it with the given options."""
    import uvicorn
    from typer.testing import CliRunner

    from videoxai.cli import app as cli

    tiny_hf("timesformer").save_pretrained(tmp_path / "model")
    servers: list = []
    run = uvicorn.Server.run

    def recorded_run(self, *args, **kwargs):  # keep a handle to stop the server the CLI starts
        servers.append(self)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(uvicorn.Server, "run", recorded_run)
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(CliRunner().invoke(
        cli, ["serve", "--model", str(tmp_path / "model"), "--port", "0", "--api-key", "k", "--max-frames", "30"])))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (servers and servers[0].started):
            assert thread.is_alive() and time.monotonic() < deadline, outcome and outcome[0].output
            time.sleep(0.05)
        server = servers[0]
        assert server.config.host == "127.0.0.1" and server.config.ws_max_size == ServeSettings().max_message_bytes
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30) as c:
            assert_error(c.get("/api/info"), 401, "unauthorized")
            info = c.get("/api/info", headers={"X-API-Key": "k"}).json()
            assert info["model"]["family"] == "timesformer" and info["limits"]["max_frames"] == 30
            r = c.post("/api/jobs", content=videos["short"].read_bytes(), headers={"X-API-Key": "k"})
            assert r.status_code == 202
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(30)
    assert outcome[0].exit_code == 0, outcome[0].output
    serving = next(line for line in outcome[0].output.splitlines() if line.startswith("serving"))
    assert f"on http://127.0.0.1:{port} " in serving, serving  # the port --port 0 got, not ':0'


def test_the_viewer_and_its_files_carry_a_content_security_policy(client):
    # second line of defence behind text-only insertion: no inline script, no other origin, no framing
    from videoxai.core.page_headers import PAGE_POLICY

    for path in ("/", "/static/viewer.js", "/static/viewer.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == PAGE_POLICY and "script-src 'self';" in PAGE_POLICY
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    # the API answers need no policy (and /docs loads FastAPI's page from a CDN), but are never sniffed
    info = client.get("/api/info")
    assert "content-security-policy" not in info.headers and info.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in client.get("/docs").headers


def test_links_and_the_viewer_work_behind_a_proxy_that_serves_the_app_under_a_prefix(model, videos):
    """Behind a reverse proxy serving the app under /vx (uvicorn --root-path /vx), the job links
    were /api/jobs/… — outside the prefix, so a client following them reached another site or
    a 404 — and the viewer loaded /static/… and /api/… from the site's root."""
    import re

    from fastapi.testclient import TestClient

    from videoxai.serve.app import STATIC

    app = create_app(model, SETTINGS.model_copy(update={"allowed_hosts": ("testserver",)}))
    with TestClient(app, root_path="/vx") as c:
        status = c.post("/vx/api/jobs", content=videos["short"].read_bytes(), params={"overlay": "true"},
                        headers={"content-type": "video/mp4"}).json()
        base = f"/vx/api/jobs/{status['id']}"
        assert status["links"] == {"status": base, "result": f"{base}/result", "overlay": f"{base}/overlay.mp4"}
        deadline = time.monotonic() + 60
        while status["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.05)
            status = c.get(status["links"]["status"]).json()
        assert status["state"] == "done" and status["links"]["status"] == base
        result = c.get(status["links"]["result"])
        assert result.status_code == 200 and result.json()["overlay"] == f"{base}/overlay.mp4"
        assert result.json()["id"] == status["id"] and result.json()["windows"]
        assert c.get(result.json()["overlay"]).content[4:8] == b"ftyp"   # the MP4 itself
        # the viewer's own URLs are relative: below the prefix, as the page itself is
        page = c.get("/vx/").text
        script = (STATIC / "viewer.js").read_text()
        urls = re.findall(r'(?:href|src)="([^"]+)"', page) + re.findall(r'(?:api|URL)\(["`]([^"`$?]+)', script)
        assert {"static/viewer.css", "static/viewer.js", "api/info", "api/stream", "api/jobs"} <= set(urls), urls
        assert not [u for u in urls if u.startswith("/")], urls
        for u in ("static/viewer.css", "static/viewer.js", "api/info"):
            assert c.get(f"/vx/{u}").status_code == 200, u
        # the page and its files keep their security headers under the prefix (they were matched
        # against the path with the prefix in it: '/vx/' was no page)
        for u in ("/vx/", "/vx/static/viewer.js"):
            headers = c.get(u).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY", u
        assert "content-security-policy" not in c.get("/vx/api/info").headers
    with TestClient(app) as c:   # served at the root, as before
        status = c.post("/api/jobs", content=videos["short"].read_bytes(), headers={"content-type": "video/mp4"})
        assert status.json()["links"]["status"] == f"/api/jobs/{status.json()['id']}"


def test_a_large_result_behind_a_prefix_is_sent_as_stored_not_parsed_again(model, videos, tmp_path):
    # behind a proxy's prefix the result was parsed and written again to put the prefix in its
    # overlay link: each download of a result of hundreds of MiB held it three times over
    import tracemalloc

    import httpx

    with BackgroundServer(create_app(model, SETTINGS), root_path="/vx") as server, \
            httpx.Client(base_url=server.url, timeout=60) as c:
        status = wait(c, c.post("/api/jobs", content=videos["short"].read_bytes(),
                                params={"overlay": "true", "method": "saliency"}).json()["id"])
        assert status["state"] == "done", status
        path = server.server.config.app.state.jobs.get(status["id"]).result_path
        stored = json.loads(path.read_bytes())
        stored["windows"] = stored["windows"] * 6000  # some 16 MiB, written as the worker writes it
        path.write_text(json.dumps(stored, separators=(",", ":")))
        size = path.stat().st_size
        assert size > 8 * 2**20
        tracemalloc.start()
        try:
            with c.stream("GET", f"/api/jobs/{status['id']}/result") as r, open(tmp_path / "got.json", "wb") as out:
                assert r.status_code == 200 and r.headers["content-type"] == "application/json"
                for chunk in r.iter_raw():
                    out.write(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    body = (tmp_path / "got.json").read_bytes()
    result = json.loads(body)
    assert result["overlay"] == f"/vx/api/jobs/{status['id']}/overlay.mp4"
    assert len(result["windows"]) == len(stored["windows"]) and int(r.headers["content-length"]) == len(body)
    assert peak < size / 2, f"a {size / 2**20:.0f} MiB result took {peak / 2**20:.0f} MiB to send"


def test_the_stream_asked_over_http_behind_a_prefix_names_the_address_with_the_prefix(model):
    """Behind a proxy serving the app under /vx, a plain GET of /vx/api/stream was told to connect
    to ws://HOST:PORT/api/stream: outside the prefix, another site or a 404."""
    from fastapi.testclient import TestClient

    app = create_app(model, SETTINGS.model_copy(update={"allowed_hosts": ("testserver",)}))
    with TestClient(app, root_path="/vx") as c:
        r = c.get("/vx/api/stream")
    assert r.status_code == 426 and r.json()["error"]["code"] == "websocket_required"
    assert r.json()["error"]["message"].startswith("/vx/api/stream is a WebSocket endpoint: connect to "
                                                   "ws://HOST:PORT/vx/api/stream ("), r.text


def test_serve_takes_the_proxys_prefix_from_root_path(monkeypatch):
    """`videoxai serve` had no way to set the prefix the links above honour: --root-path reaches
    uvicorn's config (a trailing '/' as proxies write it dropped), and a value that is no URL path
    is one line before the model loads."""
    import uvicorn
    from typer.testing import CliRunner

    from videoxai.cli import app as cli
    from videoxai.errors import InputError

    configs = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config))
    result = CliRunner().invoke(cli, ["serve", "--model", "demo", "--port", "0", "--root-path", "/vx/"])
    assert result.exit_code == 0, result.output
    assert configs[0].root_path == "/vx" and "behind the proxy under /vx/" in result.output
    for bad in ("vx", "/vx?a=1"):
        result = CliRunner().invoke(cli, ["serve", "--model", "demo", "--root-path", bad])
        assert isinstance(result.exception, InputError), result.output
        assert str(result.exception) == f"--root-path {bad!r}: a URL path starting with '/', e.g. /vx"


def test_a_work_dir_on_a_file_system_without_locks_is_one_line_not_a_traceback(model, tmp_path, monkeypatch):
    # Lustre mounted without -o flock answers flock() with ENOSYS: `serve --work-dir` and the
    # app's startup failed with an OSError traceback
    import errno
    import fcntl

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from videoxai.cli import app as cli
    from videoxai.errors import InputError

    def no_locks(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    said = rf"cannot lock the work dir {re.escape(str(tmp_path))} \(Function not implemented\): .* on a local disk"
    with pytest.raises(InputError, match=said):
        with TestClient(create_app(model, SETTINGS.model_copy(update={"work_dir": str(tmp_path)}))):
            pass
    result = CliRunner().invoke(cli, ["serve", "--work-dir", str(tmp_path), "--model", "demo"])
    assert isinstance(result.exception, InputError) and re.search(said, str(result.exception))


def test_a_method_not_allowed_is_answered_with_every_method_the_address_takes(client, videos):
    # GET and HEAD are two routes (and DELETE a third): starlette's Allow named the first route's
    # methods only, so PUT /api/jobs/ID was told 'Allow: HEAD', as if the job could not be read
    job_id = upload(client, videos["short"], overlay="false").json()["id"]
    for method, path, allowed in [("PUT", f"/api/jobs/{job_id}", "DELETE, GET, HEAD"),
                                  ("OPTIONS", f"/api/jobs/{job_id}/result", "GET, HEAD"),
                                  ("PATCH", "/api/jobs", "POST"), ("POST", "/", "GET, HEAD")]:
        r = client.request(method, path)
        message = assert_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == allowed and message.endswith(f"this address takes {allowed}"), (path, message)
    wait(client, job_id)


def test_an_address_that_is_no_job_id_or_no_route_is_named_as_such(client):
    # an id the server never hands out was told it "was deleted (by a DELETE, …)", echoed whole
    for job_id in ("....", "%C3%A9t%C3%A9", "0123", "a" * 5000, "0123456789ABCDEF0123456789ABCDEF"):
        for r in (client.get(f"/api/jobs/{job_id}"), client.get(f"/api/jobs/{job_id}/result"),
                  client.delete(f"/api/jobs/{job_id}")):
            message = assert_error(r, 404, "not_found")
            assert "is not a job id" in message and "deleted" not in message and len(message) < 200, message
    # a path separator in the id (or any unknown address) was a bare 'Not Found'
    for path in ("/api/jobs/a%2Fb", "/api/jobs/0123456789abcdef0123456789abcdef/raw.npz", "/api/" + "x" * 3000):
        message = assert_error(client.get(path), 404, "not_found")
        assert message.startswith("no such address: '/api/") and "/docs" in message and len(message) < 200, message


def test_a_work_folder_removed_or_replaced_by_a_file_while_serving(model, videos, tmp_path):
    # a /tmp cleaner removing the folder, or an operator's mistake: every upload was a 500
    # 'internal error (FileNotFoundError)' with a traceback in the log, for as long as the server ran
    settings = SETTINGS.model_copy(update={"work_dir": str(tmp_path / "work")})
    with BackgroundServer(create_app(model, settings)) as server, \
            httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        shutil.rmtree(tmp_path / "work")
        assert wait(c, upload(c, videos["short"], overlay="false").json()["id"])["state"] == "done"
        shutil.rmtree(tmp_path / "work")
        (tmp_path / "work").write_text("not a folder")
        message = assert_error(upload(c, videos["short"], overlay="false"), 503, "storage_unavailable")
        assert str(tmp_path) not in message  # the server's paths stay in its log
        (tmp_path / "work").unlink()
        assert wait(c, upload(c, videos["short"], overlay="false").json()["id"])["state"] == "done"


def test_a_target_index_in_digits_other_than_0_to_9_is_refused_for_jobs_and_streams(served, client, videos):
    # '٣' was class 3 (Python reads it so), as `videoxai explain --target ٣` was before it refused it
    for target in ("٣", "３", "+٣"):
        message = assert_error(upload(client, videos["short"], target=target), 422, "bad_request")
        assert message.startswith("target: ") and "digits other than 0-9" in message, message
    from websockets.sync.client import connect

    server, _ = served
    with connect(server.url.replace("http://", "ws://") + "/api/stream", proxy=None, open_timeout=20) as ws:
        ws.send(json.dumps({"type": "start", "target": "٣"}))
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and "digits other than 0-9" in error["error"]["message"], error


def test_a_video_curl_d_sent_as_a_form_is_refused_naming_curls_option(client, videos):
    # `curl -d @clip.mp4` sends the file as a URL-encoded form without its line-break bytes: the
    # answer was only "not a readable video file", which named nothing the client could change
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = client.post("/api/jobs", content=videos["text"].read_bytes().replace(b"\n", b""), headers=form)
    assert "send it with curl --data-binary @clip.mp4" in assert_error(r, 415, "bad_video")
    # --data-binary sends the same header with the file whole: a video as any other
    r = client.post("/api/jobs", content=videos["short"].read_bytes(), headers=form, params={"overlay": "false"})
    assert r.status_code == 202 and wait(client, r.json()["id"])["state"] == "done", r.text
    message = assert_error(client.post("/api/jobs", content=b"not a video", headers={"content-type": "video/mp4"}),
                           415, "bad_video")
    assert "curl" not in message  # a raw body's bytes are as the client sent them


def test_a_form_with_a_second_file_part_says_the_fields_are_text(client, videos):
    # curl -F file=@clip.mp4 -F options=@opts.json: 'Too many files. Maximum number of files is 1.'
    r = client.post("/api/jobs", files={"file": ("a.mp4", videos["short"].read_bytes(), "video/mp4"),
                                        "options": ("opts.json", b'{"n_samples": 10}', "application/json")})
    message = assert_error(r, 400, "bad_upload")
    assert "the form takes one file, the video as 'file'" in message and "-F 'options=<opts.json'" in message
