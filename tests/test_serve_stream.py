"""The WebSocket stream, against a real uvicorn server on loopback.

Each window the server explains is compared with ``vx.explain`` on the same frames; the
smoothing, the window schedule, back-pressure (live streams drop stale windows and say so) and
every kind of bad client (malformed messages, oversize frames, idle or vanished clients) are
checked, with other clients served correctly at the same time.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from typer.testing import CliRunner  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

import videoxai as vx  # noqa: E402
from conftest import tiny_hf  # noqa: E402
from videoxai.data.video import probe, write_video  # noqa: E402
from videoxai.models.hf import from_hf_module  # noqa: E402
from videoxai.serve import BackgroundServer, ServeSettings, create_app  # noqa: E402
from videoxai.serve.client import OverlaySaver, StreamClient, StreamError, encode_frame  # noqa: E402
from videoxai.serve.engine import downsample  # noqa: E402
from videoxai.serve.protocol import CompactArray, pack_frame  # noqa: E402

SETTINGS = ServeSettings(max_pixels=96 * 96, max_side=128, max_streams=6, map_size=16)
T = 8  # the tiny model's frames per window


@pytest.fixture(scope="module")
def model():
    return from_hf_module(tiny_hf("timesformer"))


@pytest.fixture(scope="module")
def served(model):
    app = create_app(model, SETTINGS)
    with BackgroundServer(app) as server:
        yield server, app


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(1).integers(0, 256, size=(24, 40, 48, 3), dtype=np.uint8)


def ws_url(server, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/api/stream" + query


def open_stream(server, query: str = ""):
    return connect(ws_url(server, query), compression=None, proxy=None, max_size=None, open_timeout=20)


def recv(ws, timeout: float = 30.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def start(ws, **fields) -> dict:
    ws.send(json.dumps({"type": "start", **fields}))
    ready = recv(ws)
    assert ready["type"] == "ready", ready
    return ready


def collect_until_end(ws, timeout: float = 60.0) -> list[dict]:
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = recv(ws, timeout=deadline - time.monotonic())
        out.append(msg)
        if msg["type"] == "end":
            return out
    raise AssertionError("no 'end' message")


def rgb(frame) -> bytes:
    return encode_frame(frame, "rgb")


def expected_windows(model, frames, starts):
    return [vx.explain(model, vx.Clip.from_array(frames[s:s + T], indices=np.arange(s, s + T)), method="staa")
            for s in starts]


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


# -- what a stream computes ------------------------------------------------------------------------


def test_file_stream_matches_library_and_smooths(served, model, frames):
    server, _ = served
    with open_stream(server) as ws:
        ready = start(ws, stride=4, live=False, smoothing=0.5, maps=["spatial", "raw"])
        assert (ready["window"], ready["stride"], ready["method"], ready["live"]) == (T, 4, "staa", False)
        assert ready["model"]["num_frames"] == T and ready["map_size"] == 16
        for f in frames[:20]:
            ws.send(rgb(f))
        ws.send(json.dumps({"type": "end"}))
        messages = collect_until_end(ws)
    windows = [m for m in messages if m["type"] == "window"]
    assert [m["type"] for m in messages if m["type"] not in ("window",)] == ["end"]
    assert messages[-1] == {"type": "end", "frames": 20, "windows": 4, "dropped": 0}
    assert [w["frame_indices"][0] for w in windows] == [0, 4, 8, 12]

    smoothed = None
    for w, exp in zip(windows, expected_windows(model, frames, [0, 4, 8, 12])):
        assert w["prediction"]["index"] == exp.target
        assert w["prediction"]["score"] == pytest.approx(exp.score, abs=1e-5)
        np.testing.assert_allclose(w["temporal"], exp.temporal, atol=1e-5)
        assert w["frame_indices"] == exp.frame_indices.tolist()
        np.testing.assert_allclose(CompactArray.model_validate(w["maps"]["raw"]).decode(), exp.raw,
                                   atol=float(exp.raw.max()) / 510 + 1e-7)
        # the spatial map is the moving average of the windows' downsampled maps, weight 0.5
        small = downsample(torch.from_numpy(exp.spatial)[None], 16)[0].numpy()
        smoothed = small if smoothed is None else 0.5 * small + 0.5 * smoothed
        got = CompactArray.model_validate(w["maps"]["spatial"])
        assert got.shape == [T, 13, 16]  # 40x48 frames, longer side 16
        np.testing.assert_allclose(got.decode(), smoothed, atol=got.scale / 510 + 1e-6)
        assert w["dropped_total"] == 0 and w["latency_ms"] >= w["compute_ms"] * 0.5


def test_stride_leaving_frames_uncovered_gets_a_tail_window(served, model, frames):
    server, _ = served
    with open_stream(server) as ws:
        start(ws, stride=8, live=False, smoothing=1.0)
        for f in frames[:21]:
            ws.send(rgb(f))
        ws.send(json.dumps({"type": "end"}))
        messages = collect_until_end(ws)
    windows = [m for m in messages if m["type"] == "window"]
    assert [w["frame_indices"][0] for w in windows] == [0, 8, 13]  # the tail covers frames 13..20
    exp = expected_windows(model, frames, [13])[0]
    np.testing.assert_allclose(windows[-1]["temporal"], exp.temporal, atol=1e-5)
    assert messages[-1]["windows"] == 3 and messages[-1]["frames"] == 21


def test_too_few_frames(served, frames):
    server, _ = served
    with open_stream(server) as ws:
        start(ws, live=False)
        for f in frames[:5]:
            ws.send(rgb(f))
        ws.send(json.dumps({"type": "end"}))
        messages = collect_until_end(ws)
    assert messages[0]["type"] == "error" and messages[0]["error"]["code"] == "too_few_frames"
    assert messages[0]["fatal"] is False
    assert messages[-1] == {"type": "end", "frames": 5, "windows": 0, "dropped": 0}


def test_jpeg_and_png_frames(served, model, frames):
    server, _ = served
    with open_stream(server) as ws:
        start(ws, stride=T, live=False)
        for i, f in enumerate(frames[:T]):
            ws.send(encode_frame(f, "png" if i % 2 else "jpeg", quality=95))
        ws.send(json.dumps({"type": "end"}))
        windows = [m for m in collect_until_end(ws) if m["type"] == "window"]
    assert len(windows) == 1 and windows[0]["frame_indices"] == list(range(T))
    # the server explains the pictures as decoded: PNG the frame itself, JPEG its lossy copy
    # (decoded here by Pillow from the same encoding), not black, swapped or transposed frames
    decoded = np.stack([f if i % 2 else _jpeg_copy(f, 95) for i, f in enumerate(frames[:T])])
    assert not np.array_equal(decoded[0], frames[0])     # the JPEG frames differ from the originals
    exp = expected_windows(model, decoded, [0])[0]
    assert windows[0]["prediction"]["index"] == exp.target
    assert windows[0]["prediction"]["score"] == pytest.approx(exp.score, abs=1e-5)
    np.testing.assert_allclose(windows[0]["temporal"], exp.temporal, atol=1e-5)


def _jpeg_copy(frame: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


# -- back-pressure ---------------------------------------------------------------------------------


def test_live_stream_drops_stale_windows_and_says_so(served, model, frames):
    server, app = served
    gate = threading.Event()
    blocker = threading.Thread(target=app.state.engine.call_sync, args=(gate.wait,), daemon=True)
    blocker.start()  # the model is "slow": busy until the gate opens
    try:
        with open_stream(server) as ws:
            start(ws, stride=2, live=True, smoothing=1.0)
            for f in frames:  # 24 frames → windows start at 0, 2, …, 16: nine windows
                ws.send(rgb(f))
            # window 0 waits for the model, the newest waits in the mailbox, the rest are dropped
            dropped = [recv(ws) for _ in range(7)]
            assert all(d["type"] == "dropped" and d["windows"] == 1 for d in dropped), dropped
            assert [d["first_frame"] for d in dropped] == [2, 4, 6, 8, 10, 12, 14]
            assert dropped[-1]["total"] == 7 and dropped[-1]["reason"]
            gate.set()
            ws.send(json.dumps({"type": "end"}))
            messages = collect_until_end(ws)
    finally:
        gate.set()
        blocker.join(10)
    windows = [m for m in messages if m["type"] == "window"]
    assert [w["frame_indices"][0] for w in windows] == [0, 16]  # the oldest and the newest survive
    assert windows[-1]["dropped_total"] == 7
    exp = expected_windows(model, frames, [16])[0]
    np.testing.assert_allclose(windows[-1]["temporal"], exp.temporal, atol=1e-5)
    assert messages[-1] == {"type": "end", "frames": 24, "windows": 2, "dropped": 7}


def test_file_stream_never_drops_under_back_pressure(served, frames):
    server, app = served
    gate = threading.Event()
    blocker = threading.Thread(target=app.state.engine.call_sync, args=(gate.wait,), daemon=True)
    blocker.start()
    received: list[dict] = []
    try:
        with open_stream(server) as ws:
            start(ws, stride=2, live=False)
            sender = threading.Thread(target=lambda: [ws.send(rgb(f)) for f in frames] + [
                ws.send(json.dumps({"type": "end"}))], daemon=True)
            sender.start()
            time.sleep(0.3)
            gate.set()
            received = collect_until_end(ws)
            sender.join(10)
    finally:
        gate.set()
        blocker.join(10)
    windows = [m for m in received if m["type"] == "window"]
    assert [w["frame_indices"][0] for w in windows] == list(range(0, 17, 2))
    assert not [m for m in received if m["type"] == "dropped"]


# -- bad clients -----------------------------------------------------------------------------------


def test_malformed_messages_get_errors_and_the_stream_goes_on(served, model, frames):
    server, _ = served
    good = frames[0]

    def expect_error(ws, code):
        msg = recv(ws)
        assert msg["type"] == "error" and msg["error"]["code"] == code and msg["fatal"] is False, msg
        return msg["error"]["message"]

    with open_stream(server) as ws:
        ws.send(rgb(good))
        assert expect_error(ws, "bad_message").endswith("before any frame")  # a frame before 'start'
        # a start sent as bytes was told to send a start, which it had
        ws.send(json.dumps({"type": "start"}).encode())
        assert "as a text message; this JSON came as a binary one" in expect_error(ws, "bad_message")
        ws.send("{not json")
        expect_error(ws, "bad_message")
        ws.send(json.dumps({"type": "start", "window": 5}))
        assert "exactly 8" in expect_error(ws, "bad_input")               # the model takes 8 frames
        ws.send(json.dumps({"type": "start", "stride": 9}))
        expect_error(ws, "bad_message")
        ws.send(json.dumps({"type": "start", "method": "nope"}))
        expect_error(ws, "unknown_method")
        ws.send(json.dumps({"type": "start", "bogus": 1}))
        expect_error(ws, "bad_message")
        start(ws, stride=T, live=False, smoothing=1.0)

        ws.send(json.dumps({"type": "start"}))
        expect_error(ws, "bad_message")                                   # already started
        ws.send(json.dumps({"type": "dance"}))
        expect_error(ws, "bad_message")
        ws.send(b"\x00\x01")
        expect_error(ws, "bad_frame")                                     # shorter than a length
        ws.send(struct.pack(">I", 10_000) + b"{}")
        expect_error(ws, "bad_frame")                                     # length beyond the message
        ws.send(pack_frame({"format": "gif"}, b""))
        expect_error(ws, "bad_frame")
        for ts in (float("nan"), float("inf")):  # echoed in a window message: JSON has neither (was null)
            ws.send(pack_frame({"format": "rgb", "width": 48, "height": 40, "ts": ts}, good.tobytes()))
            assert "ts" in expect_error(ws, "bad_frame")
        ws.send(pack_frame({"format": "jpeg"}, b"\xff\xd8 definitely not a jpeg"))
        expect_error(ws, "bad_frame")
        ws.send(encode_frame(good, "jpeg")[:-200])                        # truncated JPEG
        expect_error(ws, "bad_frame")
        ws.send(pack_frame({"format": "rgb", "width": 48, "height": 40}, good.tobytes()[:-1]))
        expect_error(ws, "bad_frame")
        ws.send(pack_frame({"format": "rgb"}, good.tobytes()))
        expect_error(ws, "bad_frame")                                     # raw frames need a size
        big = np.zeros((100, 100, 3), np.uint8)
        ws.send(encode_frame(big, "rgb"))
        assert "100x100" in expect_error(ws, "frame_too_large")
        ws.send(encode_frame(big, "png"))                                 # checked before decoding
        expect_error(ws, "frame_too_large")
        ws.send(rgb(good))
        ws.send(rgb(np.zeros((20, 20, 3), np.uint8)))
        assert "changed" in expect_error(ws, "bad_frame")

        for f in frames[1:T]:  # with the first good frame above: one full window
            ws.send(rgb(f))
        ws.send(json.dumps({"type": "end"}))
        messages = collect_until_end(ws)
    windows = [m for m in messages if m["type"] == "window"]
    assert len(windows) == 1 and messages[-1]["frames"] == T
    exp = expected_windows(model, np.concatenate([good[None], frames[1:T]]), [0])[0]
    np.testing.assert_allclose(windows[0]["temporal"], exp.temporal, atol=1e-5)


@pytest.mark.parametrize("field,value", [("target", True), ("stride", True), ("live", "yes"), ("smoothing", "0.5"),
                                         ("window", 8.0), ("method", "")])
def test_start_fields_of_the_wrong_json_type_are_refused_not_coerced(served, field, value):
    # lax validation read "target": true as class 1 and "live": "yes" as true, and "method": ""
    # meant the default method: a client's bug silently explained the wrong thing
    server, _ = served
    with open_stream(server) as ws:
        ws.send(json.dumps({"type": "start", field: value}))
        msg = recv(ws)
        assert msg["type"] == "error" and msg["error"]["code"] == "bad_message", msg
        assert field in msg["error"]["message"]
        start(ws, stride=T)  # the stream goes on


@pytest.mark.parametrize("size", [SETTINGS.max_message_bytes + 1, 16 << 20])
def test_message_over_the_size_limit_closes_only_that_stream(served, frames, size):
    # the client must be told why (1009): the server closed the socket with the rest of the
    # message unread, which resets the connection: the client's send failed (always at 16 MiB,
    # beyond the socket buffers) and its reader could lose the close frame (sometimes, at the limit)
    server, _ = served
    with open_stream(server) as ws:
        start(ws)
        ws.send(b"\0" * size)  # the server reads and drops the rest for a while, then closes
        with pytest.raises(ConnectionClosed) as info:
            while True:
                recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009, info.value
    with open_stream(server) as ws:  # the server is fine
        start(ws)


def test_abrupt_disconnects_release_their_slots(served, frames):
    server, app = served
    slots = app.state.slots
    wait_until(lambda: slots.active == 0)
    for _ in range(SETTINGS.max_streams + 2):  # more than the limit: slots must come back
        with contextlib.ExitStack() as stack:
            ws = stack.enter_context(open_stream(server))
            start(ws, stride=2, live=True)
            for f in frames[:10]:
                ws.send(rgb(f))
            ws.socket.close()  # no close handshake: the TCP connection just vanishes
            stack.pop_all()
    wait_until(lambda: slots.active == 0)
    with open_stream(server) as ws:
        start(ws, stride=T, live=False)
        for f in frames[:T]:
            ws.send(rgb(f))
        ws.send(json.dumps({"type": "end"}))
        assert collect_until_end(ws)[-1]["windows"] == 1


def test_stream_limit_busy(model, frames):
    app = create_app(model, ServeSettings(max_streams=1))
    with BackgroundServer(app) as server:
        with open_stream(server) as first:
            start(first)
            with open_stream(server) as second:
                msg = recv(second)
                assert msg["type"] == "error" and msg["fatal"] and msg["error"]["code"] == "busy"
                with pytest.raises(ConnectionClosed) as info:
                    recv(second)
                assert info.value.rcvd.code == 1013


def test_one_client_address_cannot_hold_every_stream_slot(model, frames):
    # one address opening streams held every slot, and every other client got 'busy' for as long as
    # it liked; now it gets its share, a fatal client_limit (close 1013, the reason said in the
    # close frame too), and another address (127.0.0.2 is loopback too) is still served
    app = create_app(model, ServeSettings(max_streams=3, max_streams_per_client=2))
    with BackgroundServer(app) as server, contextlib.ExitStack() as held:
        hog = [held.enter_context(open_stream(server)) for _ in range(2)]
        for ws in hog:
            start(ws, stride=T)
        with open_stream(server) as third:
            msg = recv(third)
            assert msg["type"] == "error" and msg["fatal"] and msg["error"]["code"] == "client_limit", msg
            assert "2 streams" in msg["error"]["message"] and "per client" in msg["error"]["message"], msg
            with pytest.raises(ConnectionClosed) as info:
                recv(third)
            assert info.value.rcvd.code == 1013 and info.value.rcvd.reason.startswith("client_limit: "), info.value
        other = connect(ws_url(server), compression=None, proxy=None, max_size=None, open_timeout=20,
                        source_address=("127.0.0.2", 0))
        with other:
            start(other, stride=T, live=False)
            for f in frames[:T]:
                other.send(rgb(f))
            other.send(json.dumps({"type": "end"}))
            assert [m["type"] for m in collect_until_end(other)] == ["window", "end"]
        hog.pop().close()  # the first address ends one of its streams: it may open another
        wait_until(lambda: app.state.slots.by_client.get("127.0.0.1") == 1)
        with open_stream(server) as again:
            start(again, stride=T)
    wait_until(lambda: app.state.slots.active == 0 and not app.state.slots.by_client)


def test_idle_client_is_closed(model):
    app = create_app(model, ServeSettings(stream_idle_timeout_s=0.5))
    with BackgroundServer(app) as server, open_stream(server) as ws:
        msg = recv(ws)
        assert msg["type"] == "error" and msg["fatal"] and msg["error"]["code"] == "idle"
        with pytest.raises(ConnectionClosed) as info:
            recv(ws)
        assert info.value.rcvd.code == 1008
        wait_until(lambda: app.state.slots.active == 0)


@pytest.mark.parametrize("live", [False, True])
def test_a_client_waiting_for_a_slow_window_is_not_idle(model, frames, live):
    # a client that sends a window's frames and waits for its result was closed as "idle" (and
    # its explanation cancelled) when the window took longer than stream_idle_timeout_s: the idle
    # clock ran while the server, not the client, owed the next move
    app = create_app(model, ServeSettings(stream_idle_timeout_s=0.4))
    engine = app.state.engine
    explain = engine.explain_window

    def slow(*args):
        time.sleep(1.2)  # three idle timeouts
        return explain(*args)

    engine.explain_window = slow
    with BackgroundServer(app) as server, open_stream(server) as ws:
        start(ws, live=live, stride=T)
        for f in frames[:T]:
            ws.send(rgb(f))
        msg = recv(ws)
        assert msg["type"] == "window" and msg["frame_indices"] == list(range(T)), msg
        # once the result is out, the client's turn: silence is idle again
        msg = recv(ws)
        assert msg["type"] == "error" and msg["fatal"] and msg["error"]["code"] == "idle", msg


def test_a_live_stream_client_whose_program_stops_taking_messages_is_told_why_it_was_dropped(model, frames):
    # the server aborts a client that reads nothing for stream_idle_timeout_s; a live StreamClient
    # whose program stopped taking messages (busy, at a breakpoint) while its frames went on was
    # told only that "the server stopped, or the network failed"
    app = create_app(model, ServeSettings(stream_idle_timeout_s=0.5))
    many = np.concatenate([frames] * 30)  # 480 frames at 60 fps: 8 s
    with BackgroundServer(app) as server:
        client = StreamClient(server.url, stride=2, fps=60, frame_format="rgb", timeout=30)
        messages = client.stream(iter(many))
        assert next(messages)["type"] == "ready"
        assert next(messages)["type"] in ("window", "dropped")  # frames go out from here on
        # the websockets client reads 16 messages ahead, then nothing: the server lets it go
        wait_until(lambda: app.state.slots.active == 0)
        with pytest.raises(StreamError) as info:
            for _ in messages:
                pass
    assert "or this program took no message from the stream for the server's 0.5 s" in str(info.value)


def test_fatal_errors_have_the_fields_of_every_other_error(model):
    # a fatal error (idle, busy, unauthorized, forbidden_origin) came with "frame_range": null,
    # a field the protocol gives only to a window's errors
    app = create_app(model, ServeSettings(max_streams=1, stream_idle_timeout_s=0.5))
    with BackgroundServer(app) as server:
        with connect(ws_url(server), origin="http://evil.example", open_timeout=20) as ws:
            msg = recv(ws)
            assert msg["error"]["code"] == "forbidden_origin" and set(msg) == {"type", "fatal", "error"}, msg
        with open_stream(server) as first:
            start(first)
            with open_stream(server) as second:
                msg = recv(second)
                assert msg["error"]["code"] == "busy" and set(msg) == {"type", "fatal", "error"}, msg
            msg = recv(first)
            assert msg["error"]["code"] == "idle" and set(msg) == {"type", "fatal", "error"}, msg


def test_api_key_on_streams(model):
    app = create_app(model, ServeSettings(api_key="k3y"))
    with BackgroundServer(app) as server:
        # no key anywhere: the first message is refused and the stream closed
        with open_stream(server) as ws:
            ws.send(json.dumps({"type": "start"}))
            msg = recv(ws)
            assert msg["type"] == "error" and msg["error"]["code"] == "unauthorized" and msg["fatal"]
        for wrong in ("wrong", "\ud800"):  # a lone surrogate: no UTF-8, was a traceback and no answer
            with open_stream(server) as ws:
                ws.send(json.dumps({"type": "start", "api_key": wrong}))
                assert recv(ws)["error"]["code"] == "unauthorized"
        # the key in the first message (browsers), in a header, or in the legacy query parameter
        with open_stream(server) as ws:
            assert start(ws, api_key="k3y")["type"] == "ready"
        with connect(ws_url(server), additional_headers={"X-API-Key": "k3y"}, open_timeout=10) as ws:
            assert start(ws)["type"] == "ready"
        with open_stream(server, "?api_key=k3y") as ws:
            start(ws)


def test_a_stream_that_sends_no_key_is_closed_after_the_auth_deadline(model, frames):
    # not after the (long) idle timeout, and it never takes the only slot meanwhile
    app = create_app(model, ServeSettings(api_key="k3y", max_streams=1, auth_timeout_s=0.5,
                                          stream_idle_timeout_s=600))
    with BackgroundServer(app) as server:
        with open_stream(server) as silent:
            with connect(ws_url(server), additional_headers={"X-API-Key": "k3y"}, open_timeout=10) as ws:
                assert start(ws)["type"] == "ready"
            try:
                msg = recv(silent, timeout=30)
                assert msg["fatal"] and msg["error"]["code"] == "unauthorized" and "0.5 s" in msg["error"]["message"]
                recv(silent, timeout=30)
                raise AssertionError("the connection stayed open")
            except ConnectionClosed:
                pass
        wait_until(lambda: app.state.slots.active == 0 and len(app.state.auth_waiters) == 0)
        with open_stream(server) as late:  # the deadline is for the first message only
            late.send(json.dumps({"type": "start", "api_key": "k3y"}))
            assert recv(late)["type"] == "ready"
            time.sleep(1.0)  # past the auth deadline, well within the idle timeout
            for f in frames[:T]:
                late.send(rgb(f))
            late.send(json.dumps({"type": "end"}))
            assert collect_until_end(late)[-1]["windows"] == 1


def test_concurrent_clients_with_a_bad_one_and_an_upload(served, model, frames, tmp_path):
    """Three good streams, one client sending garbage and one upload, all at once."""
    import httpx

    server, _ = served
    video = write_video(frames[:16], tmp_path / "clip.mp4", fps=10)
    results: dict[str, list] = {}
    errors: list[BaseException] = []
    offsets = {"a": 0, "b": 4, "c": 8}

    def good(name):
        try:
            client = StreamClient(server.url, stride=4, smoothing=1.0, frame_format="rgb", timeout=60)
            results[name] = list(client.stream(iter(frames[offsets[name]:offsets[name] + 16])))
        except BaseException as e:  # surfaced below
            errors.append(e)

    def bad():
        try:
            with open_stream(server) as ws:
                start(ws, live=True)
                for i in range(200):
                    ws.send(b"\x00" * (i % 7) if i % 2 else "][")
                ws.socket.close()
        except BaseException as e:
            errors.append(e)

    def job():
        try:
            with httpx.Client(base_url=server.url, trust_env=False, timeout=60) as c:
                status = c.post("/api/jobs", content=video.read_bytes()).json()
                while status["state"] in ("queued", "running"):
                    time.sleep(0.05)
                    status = c.get(status["links"]["status"]).json()
                results["job"] = [status]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=good, args=(n,)) for n in offsets] + [
        threading.Thread(target=bad), threading.Thread(target=job)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert results["job"][0]["state"] == "done"
    for name, offset in offsets.items():
        windows = [m for m in results[name] if m["type"] == "window"]
        assert not [m for m in results[name] if m["type"] in ("error", "dropped")]
        assert [w["frame_indices"][0] for w in windows] == [0, 4, 8]
        for w, exp in zip(windows, expected_windows(model, frames[offset:], [0, 4, 8])):
            np.testing.assert_allclose(w["temporal"], exp.temporal, atol=1e-5)


# -- the client and the CLI ------------------------------------------------------------------------


def test_stream_client_saves_an_overlay(served, frames, tmp_path):
    server, _ = served
    saver = OverlaySaver(tmp_path / "overlay.mp4", fps=10)
    client = StreamClient(server.url, stride=4)
    kinds = []
    for msg in client.stream(saver.tap(iter(frames[:20]))):
        kinds.append(msg["type"])
        if msg["type"] == "window":
            saver.add(msg)
    saver.close()
    assert kinds == ["ready"] + ["window"] * 4 + ["end"]
    info = probe(tmp_path / "overlay.mp4")
    assert (info["frames"], info["width"], info["height"]) == (20, 48, 40)


def test_stream_client_reports_refusal(model):
    app = create_app(model, ServeSettings(api_key="k"))
    with BackgroundServer(app) as server:
        with pytest.raises(StreamError, match="unauthorized"):
            list(StreamClient(server.url).stream(iter([])))


def test_stream_command(served, frames, tmp_path):
    from videoxai.cli import app as cli

    server, _ = served
    video = write_video(frames[:20], tmp_path / "clip.mp4", fps=10)
    result = CliRunner().invoke(cli, ["stream", str(video), "--server", server.url, "--stride", "4",
                                      "--save", str(tmp_path / "out.mp4")])
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("window ") for line in result.output.splitlines()) == 4
    assert "end: 20 frames, 4 windows, 0 dropped" in result.output
    assert probe(tmp_path / "out.mp4")["frames"] == 20
    result = CliRunner().invoke(cli, ["stream", str(video), "--server", server.url, "--json"])
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert lines[0]["type"] == "ready" and lines[-1]["type"] == "end"


def test_stream_command_puts_the_overlay_at_save_only_when_the_stream_ends(served, frames, tmp_path, monkeypatch,
                                                                         capsys):
    # the overlay was opened (truncated) before the stream: a stream that then failed deleted the
    # file at --save (the video being streamed, when --save named it), and one cut short (Ctrl-C)
    # left an overlay that looked whole
    import socket

    import videoxai.cli.serve as serve_cli
    from videoxai.cli import main

    server, _ = served
    video = write_video(frames[:20], tmp_path / "clip.mp4", fps=10)
    earlier = tmp_path / "overlay.mp4"
    earlier.write_bytes(video.read_bytes())  # an earlier stream's overlay
    kept = earlier.read_bytes()

    def run(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["stream", str(video), "--stride", "4", *args])
        return exit_info.value.code, capsys.readouterr().err.strip()

    assert run("--server", server.url, "--save", str(video)) == (
        2, f"error: --save {video} is the video being streamed; give another file name")
    with pytest.raises(SystemExit) as exit_info:  # named by a file: URL
        main(["stream", f"file:{video}", "--server", server.url, "--save", str(video)])
    assert exit_info.value.code == 2 and "is the video being streamed" in capsys.readouterr().err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, err = run("--server", f"http://127.0.0.1:{closed}", "--save", str(earlier))
    assert code == 2 and err.startswith("error: unreachable: cannot connect"), err
    assert earlier.read_bytes() == kept

    windows = []

    def interrupted_at_the_second_window(msg: dict) -> None:
        if msg["type"] == "window":
            windows.append(msg)
            if len(windows) == 2:  # the first window's frames are in the overlay already
                raise KeyboardInterrupt

    monkeypatch.setattr(serve_cli, "_print", interrupted_at_the_second_window)
    assert run("--server", server.url, "--save", str(earlier)) == (130, "aborted")
    assert earlier.read_bytes() == kept and len(windows) == 2
    monkeypatch.undo()
    main(["stream", str(video), "--stride", "4", "--server", server.url, "--save", str(earlier)])
    assert probe(earlier)["frames"] == 20 and f"overlay: {earlier}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "overlay.mp4"]  # no partial file left


def test_stream_client_refuses_a_server_address_without_a_host():
    from videoxai.errors import InputError

    for bad in ("", "http://", "http://127.0.0.1:99999", "ws://[::1", "http://[::1:8000"):  # a ']' left out: ValueError
        with pytest.raises(InputError, match=f"^server {re.escape(repr(bad))} is not an address such as "):
            StreamClient(bad)


def test_a_failing_window_is_reported_and_the_stream_goes_on(model, frames):
    from videoxai.errors import InputError

    app = create_app(model, ServeSettings())
    engine = app.state.engine
    original = engine.explain_window

    def flaky(window_frames, indices, index, *args):
        if index == 1:
            raise InputError("window 1 cannot be explained")
        return original(window_frames, indices, index, *args)

    engine.explain_window = flaky
    with BackgroundServer(app) as server:
        messages = list(StreamClient(server.url, stride=4, frame_format="rgb", timeout=30).stream(iter(frames[:20])))
    errors = [m for m in messages if m["type"] == "error"]
    assert errors == [{"type": "error", "fatal": False, "frame_range": [4, 11],
                       "error": {"code": "bad_input", "message": "window 1 cannot be explained"}}]
    assert [m["frame_indices"][0] for m in messages if m["type"] == "window"] == [0, 8, 12]
    assert messages[-1] == {"type": "end", "frames": 20, "windows": 3, "dropped": 0}


def test_stream_command_takes_the_target_by_index_or_name(served, frames, tmp_path, model):
    from videoxai.cli import app as cli

    server, _ = served
    video = write_video(frames[:8], tmp_path / "clip.mp4", fps=10)
    name = model.labels[3]
    for given in ("3", name, name.upper()):  # an index, the name, the name in another case
        result = CliRunner().invoke(cli, ["stream", str(video), "--server", server.url, "--json", "--target", given])
        assert result.exit_code == 0, result.output
        ready = next(json.loads(line) for line in result.output.splitlines() if '"ready"' in line)
        assert ready["target"] == 3, given
    result = CliRunner().invoke(cli, ["stream", str(video), "--server", server.url, "--target", "no such class"])
    # the server's one-line error (the CLI's main() prints it and exits 2)
    assert isinstance(result.exception, StreamError) and "has no class 'no such class'" in str(result.exception)


def test_an_error_quoting_a_huge_value_is_cut(served):
    # a 4 000-digit window (a valid JSON integer) was quoted whole in the bad_input error
    server, _ = served
    with open_stream(server) as ws:
        ws.send('{"type": "start", "window": ' + "9" * 4000 + "}")
        msg = recv(ws)
        message = msg["error"]["message"]
        assert msg["type"] == "error" and len(message) < 1100 and message.endswith("more characters cut)"), msg
        start(ws)  # and the stream goes on


def test_a_server_that_sends_json_nested_too_deep_is_named_as_not_speaking_the_protocol():
    # json.loads raised RecursionError, which the client let through: "error: RecursionError:
    # maximum recursion depth exceeded …" from the stream command, naming no server
    from websockets.sync.server import serve

    def handler(ws):
        ws.recv()  # the client's 'start'
        ws.send("[" * 100_000 + "]" * 100_000)

    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            with pytest.raises(StreamError) as info:
                list(StreamClient(f"http://127.0.0.1:{srv.socket.getsockname()[1]}", timeout=20)
                     .stream(iter(np.zeros((12, 16, 16, 3), np.uint8))))
        finally:
            srv.shutdown()
            thread.join(timeout=10)
    assert info.value.code == "protocol"
    assert "JSON nested too deep to read" in str(info.value) and "does not speak the videoxai stream protocol" \
        in str(info.value), str(info.value)


def test_a_frame_header_that_gives_a_key_twice_is_refused_not_half_taken():
    # pydantic's JSON reader kept the last: {"width": 2, …, "width": 1} was a 1-pixel-wide frame
    from videoxai.serve.protocol import ServiceError, unpack_frame

    head = b'{"format":"rgb","width":2,"height":1,"width":1}'
    with pytest.raises(ServiceError) as info:
        unpack_frame(struct.pack(">I", len(head)) + head + b"\0" * 6)
    assert (info.value.status, info.value.code, info.value.message) == \
        (400, "bad_frame", "the frame header must be valid JSON: key 'width' is given more than once")
    head = b'{"format":"rgb","width":2,"height":1,"ts":1}'  # one of each: read as before
    header, payload = unpack_frame(struct.pack(">I", len(head)) + head + b"\0" * 6)
    assert (header.width, header.height, header.ts, bytes(payload)) == (2, 1, 1.0, b"\0" * 6)
