"""One WebSocket stream: frames in, one explained window per ``stride`` frames out.

A session has three parts that never block each other:

* the **receiver** (the handler's own task) reads messages, decodes frames off the event loop
  and appends them to a ring buffer of ``window`` frames; every ``stride`` frames it hands the
  buffer's frames to the runner through a one-slot mailbox;
* the **runner** takes windows from the mailbox and explains them on the model thread
  (:class:`~videoxai.serve.engine.Engine`), one at a time, in order;
* the **sender** writes outgoing messages from a bounded queue.

Back-pressure: a window waits in the mailbox while the runner is busy. For a *live* stream a
newer window replaces a waiting one, and the client is told which frames were skipped (a camera
cannot wait, so stale windows are dropped and results stay current). For a *file* stream
(``live: false``) the receiver waits for the mailbox to empty and TCP flow control slows the
client to the model's pace; nothing is dropped. While it waits it still reads ahead what the
client has sent, up to :data:`READ_AHEAD_BYTES` (far more than a client that follows the
protocol has in flight), so that a client that leaves is noticed at once and its slot freed,
whatever the model is busy with. A session holds at most ``window`` frames plus that read-ahead,
one window in flight, one waiting and a bounded outgoing queue.

Whichever part sees the client go (the receiver reads a close, the sender fails to write, or the
sender times out on a client that does not read) ends the whole session: the slot is released,
the explanation in flight is cancelled (:mod:`videoxai.work`), and the connection is closed. A
client that reads nothing is seen long before a write blocks: the transport pings it after each
message and aborts it when no pong comes back within ``stream_idle_timeout_s``
(:class:`~.transport.WebSocketProtocol`), which the receiver sees as a disconnect.

Errors are messages, never tracebacks: a bad frame or a bad message gets a non-fatal ``error``
and the stream goes on; protocol abuse the server cannot recover from (bad credentials, idle
too long, a client that stops reading) gets a fatal one and the socket is closed. Whatever a
client does, only its own session is affected.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..data.windows import WindowPlanner
from ..work import WorkBudget
from .engine import Engine, ExplainSpec, Smoothing, check_batch
from .protocol import (DroppedMessage, EndAck, EndMessage, ErrorInfo, ErrorMessage, FrameHeader, ReadyMessage,
                       ServiceError, StartMessage, WindowMessage, loads_json, parse_client_text,
                       to_service_error, unpack_frame)
from .settings import ServeSettings

log = logging.getLogger("videoxai.serve")

#: WebSocket close codes (RFC 6455 §7.4.1)
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_TRY_LATER = 1000, 1008, 1009, 1011, 1013

#: outgoing messages a session may queue before its runner waits for the client to read
OUTGOING_QUEUE = 32

#: bytes / messages a file stream reads ahead while the model is busy (beyond: TCP back-pressure)
READ_AHEAD_BYTES = 16 * 2**20
READ_AHEAD_MESSAGES = 1024


#: ASGI scope key a session sets to have the transport abort its connection as soon as the app
#: is done with it, instead of waiting for the peer's close (:class:`~.transport.WebSocketProtocol`)
ABORT_ON_CLOSE = "videoxai.abort_on_close"


class AuthWaiters:
    """Sessions still waiting for their API key, oldest first (event-loop only, so no lock).

    They hold no stream slot, but each holds a connection, which uvicorn's ``limit_concurrency``
    counts: without a bound, a few hundred sockets that never authenticate made every HTTP request
    get 503. Beyond ``limit`` the oldest is told to give up: a client that has the key sends it in
    its first message, so only sockets that say nothing stay long enough to be displaced.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: OrderedDict[object, asyncio.Event] = OrderedDict()

    @contextmanager
    def waiting(self, session: object) -> Iterator[asyncio.Event]:
        """Register ``session`` while it waits; the event is set when a newer one displaces it."""
        displaced = asyncio.Event()
        self._waiting[session] = displaced
        while len(self._waiting) > self.limit:
            _, oldest = self._waiting.popitem(last=False)
            oldest.set()
        try:
            yield displaced
        finally:
            self._waiting.pop(session, None)

    def __len__(self) -> int:
        return len(self._waiting)


class StreamSlots:
    """Counts live sessions against ``max_streams`` (event-loop only, so no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.active = limit, 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active = max(0, self.active - 1)


@dataclass
class _Window:
    index: int
    start: int
    frames: list[np.ndarray]
    ts: float | None
    arrived: float  # monotonic time the window's last frame arrived


_END = object()
_CLOSE = object()


class _Gone(Exception):
    """The client disconnected."""


class _Fatal(Exception):
    """End the session with an error message and a close code."""

    def __init__(self, error: ServiceError, close_code: int) -> None:
        super().__init__(error.message)
        self.error, self.close_code = error, close_code


#: the EXIF tag of a frame's orientation (1: stored upright)
_ORIENTATION = 0x0112

#: Pillow's modes of a 16-bit grey image ("I": older Pillow's for a 16-bit grey PNG)
_SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16B", "I;16L", "I"})


def decode_frame(header: FrameHeader, payload: memoryview, settings: ServeSettings) -> np.ndarray:
    """A frame message's pixels as ``(H, W, 3)`` uint8, within the server's resolution limits."""
    if header.format == "rgb":
        if header.width is None or header.height is None:
            raise ServiceError(400, "bad_frame", "raw 'rgb' frames need width and height in the header")
        _check_size(header.width, header.height, settings)
        need = header.width * header.height * 3
        if len(payload) != need:
            raise ServiceError(400, "bad_frame", f"a {header.width}x{header.height} rgb frame has {need} bytes, "
                                                 f"got {len(payload)}")
        return np.frombuffer(payload, dtype=np.uint8).reshape(header.height, header.width, 3)

    from PIL import Image, ImageOps, UnidentifiedImageError

    fmt = {"jpeg": "JPEG", "png": "PNG"}[header.format]
    try:
        with Image.open(io.BytesIO(payload), formats=[fmt]) as stored:
            # the size is in the image header: check it before decoding a single pixel (a
            # rotation keeps the pixel count and the longer side)
            _check_size(stored.width, stored.height, settings)
            # a phone stores its frames as the sensor reads them, with an EXIF Orientation tag
            # that browsers and viewers honour: explained as stored, the frame was sideways
            # (transposed only where tagged: exif_transpose copies even an upright frame)
            im = ImageOps.exif_transpose(stored) if stored.getexif().get(_ORIENTATION, 1) != 1 else stored
            if (header.width, header.height) not in ((None, None), (im.width, im.height),
                                                     (stored.width, stored.height)):
                raise ServiceError(400, "bad_frame", f"the header says {header.width}x{header.height} but the "
                                                     f"{header.format} image is {im.width}x{im.height}")
            if im.mode in _SIXTEEN_BIT_GREY:
                # 16-bit grey PNG (depth, thermal, medical cameras): Pillow's convert("RGB") clips
                # at 255 instead of scaling, so all but the darkest 1/256 of the range was white
                grey = np.rint(np.asarray(im, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8)
                rgb = np.repeat(grey[..., None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"))
    except ServiceError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ServiceError(400, "bad_frame", f"cannot decode the {header.format} frame: {e}") from None
    return rgb


def _check_size(width: int, height: int, settings: ServeSettings) -> None:
    if max(width, height) > settings.max_side or width * height > settings.max_pixels:
        raise ServiceError(413, "frame_too_large",
                           f"frame {width}x{height} exceeds the server's limit ({settings.max_pixels} pixels, "
                           f"{settings.max_side} per side)")


def origin_allowed(settings: ServeSettings, origin: str | None, host: str | None) -> bool:
    """Whether a WebSocket's (or an upload's) ``Origin`` may use this server: no Origin (not a browser), the
    server's own (same host and port as the ``Host`` header), or one of ``allowed_origins``.

    Browsers let any page open a WebSocket to any address, cookies and all; without this check
    a page on another site could drive a server on the visitor's own machine.
    """
    if not origin:
        return True
    if origin in settings.allowed_origins or "*" in settings.allowed_origins:
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(host) and netloc.lower() == host.lower()


def authorised(settings: ServeSettings, header_key: str | None, authorization: str | None,
               query_key: str | None = None) -> bool:
    """Whether a request carries the server's API key (always true when none is set)."""
    if settings.api_key is None:
        return True
    given = header_key or query_key
    if given is None and authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), settings.api_key.encode())


def _size(msg: dict) -> int:
    return len(msg.get("bytes") or b"") + len(msg.get("text") or "")


class StreamSession:
    """Serves one WebSocket client (see the module docstring)."""

    def __init__(self, ws: WebSocket, engine: Engine, settings: ServeSettings, slots: StreamSlots,
                 auth: AuthWaiters | None = None) -> None:
        self.ws, self.engine, self.settings, self.slots = ws, engine, settings, slots
        self.auth = auth if auth is not None else AuthWaiters(settings.max_pending_connections)
        self._out: asyncio.Queue = asyncio.Queue(maxsize=OUTGOING_QUEUE)
        self._mailbox: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._frames = 0          # frames accepted
        self._windows = 0         # windows formed (explained or dropped)
        self._explained = 0
        self._dropped = 0
        self._owed = 0            # windows handed to the runner whose result (or error) is not out yet
        self._answered = 0.0      # monotonic time the runner last finished a window
        self._planner: WindowPlanner | None = None  # where windows start (shared with files and clips)
        self._size: tuple[int, int] | None = None
        self._buffer: deque[np.ndarray] = deque()
        self._last_ts: float | None = None
        self._smoothing: Smoothing | None = None
        self._main: asyncio.Task | None = None
        self._recv_task: asyncio.Task | None = None   # a receive started early (read-ahead)
        self._ahead: deque[dict] = deque()            # messages read ahead while the model was busy
        self._ahead_bytes = 0
        self._cancel = threading.Event()              # stops this session's explanation in flight
        self._client_gone = False                     # the sender saw the client leave or stall
        self._closing = False

    # -- entry point -----------------------------------------------------------------------------
    async def run(self) -> None:
        ws = self.ws
        await ws.accept()
        if not origin_allowed(self.settings, ws.headers.get("origin"), ws.headers.get("host")):
            await self._close_with(ServiceError(403, "forbidden_origin", "this server does not accept streams from "
                                                "pages of other sites (Origin not allowed)"), CLOSE_POLICY)
            return
        try:
            await self._authenticate()
        except (_Gone, _Fatal) as e:
            if self._recv_task is not None:  # a first message that did not come in time
                self._recv_task.cancel()
            if isinstance(e, _Fatal):
                await self._close_with(e.error, e.close_code)
            return
        if not self.slots.try_acquire():
            await self._close_with(ServiceError(503, "busy", f"the server already serves {self.slots.limit} "
                                                             "streams; try again later"), CLOSE_TRY_LATER)
            return
        self._main = asyncio.current_task()
        sender = asyncio.create_task(self._send_loop(), name="videoxai-stream-sender")
        runner: asyncio.Task | None = None
        close_code = CLOSE_NORMAL
        try:
            start, spec = await self._negotiate()
            runner = asyncio.create_task(self._run_windows(spec), name="videoxai-stream-runner")
            await self._receive_frames(start)
            await self._finish(start, runner)
        except _Gone:
            pass
        except asyncio.CancelledError:
            if not self._client_gone:  # server shutdown: let the cancellation through
                raise
            close_code = CLOSE_POLICY
        except _Fatal as f:
            self._queue_nowait(ErrorMessage(fatal=True, error=f.error.info()))
            close_code = f.close_code
        except Exception:  # a bug must end this session only, with a message, never the server
            log.exception("stream session failed")
            self._queue_nowait(ErrorMessage(fatal=True, error=ErrorInfo(code="internal",
                                                                        message="internal error; see the server log")))
            close_code = CLOSE_INTERNAL
        finally:
            self._closing = True
            self.slots.release()
            self._cancel.set()  # an explanation in flight stops at its next batch
            if runner is not None and not runner.done():
                runner.cancel()
            if self._recv_task is not None and not self._recv_task.done():
                self._recv_task.cancel()
            await self._stop_sender(sender)
            await self._close(close_code)

    # -- phases ----------------------------------------------------------------------------------
    async def _authenticate(self) -> None:
        """Check the API key: a header, the legacy ``api_key`` query parameter, or the ``api_key``
        field of the first message (browsers cannot set headers on a WebSocket, and URLs end up
        in logs). That message is then handled as usual.

        This comes before the stream slot is taken, and the first message must come within
        ``auth_timeout_s`` (not the idle timeout), while at most ``max_pending_connections``
        sockets wait (:class:`AuthWaiters`): sockets without the key can hold neither a slot nor,
        for long or in number, a connection, so they cannot lock out a client that has it.
        """
        ws = self.ws
        if authorised(self.settings, ws.headers.get("x-api-key"), ws.headers.get("authorization"),
                      ws.query_params.get("api_key")):
            return
        with self.auth.waiting(self) as displaced:
            msg = await self._first_message(displaced)
        key = None
        if msg.get("text") is not None:
            try:
                data = loads_json(msg["text"], "the first message", code="bad_message")
                key = data.get("api_key") if isinstance(data, dict) else None
            except ServiceError:
                pass
        if not isinstance(key, str) or not authorised(self.settings, key, None):
            raise _Fatal(ServiceError(401, "unauthorized", "missing or wrong API key (send the X-API-Key header, "
                                                           "or api_key in the first message)"), CLOSE_POLICY)
        self._ahead.appendleft(msg)  # handled by _negotiate like any first message
        self._ahead_bytes += _size(msg)

    async def _first_message(self, displaced: asyncio.Event) -> dict:
        """The first message of a client yet to authenticate; :class:`_Fatal` (and the connection
        aborted, not closed politely: such a peer need not be waited for) when it does not come
        within ``auth_timeout_s`` or a newer socket displaces this one."""
        task, bumped = self._next_message(), asyncio.ensure_future(displaced.wait())
        try:
            await asyncio.wait({task, bumped}, timeout=self.settings.auth_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            bumped.cancel()
        if task.done():
            return self._take(task)
        self.ws.scope[ABORT_ON_CLOSE] = True
        if displaced.is_set():
            raise _Fatal(ServiceError(503, "busy", "too many connections are waiting to authenticate; send the API "
                                                   "key in the first message"), CLOSE_TRY_LATER)
        raise _Fatal(ServiceError(401, "unauthorized", f"no API key within {self.settings.auth_timeout_s:g} s (send "
                                                       "the X-API-Key header, or api_key in the first message)"),
                     CLOSE_POLICY)

    async def _negotiate(self) -> tuple[StartMessage, ExplainSpec]:
        """Wait for a valid ``start``; answer ``ready``. Invalid ones get a non-fatal error."""
        while True:
            msg = await self._receive()
            if "bytes" in msg and msg["bytes"] is not None:
                self._error(ServiceError(400, "bad_message", "send a 'start' message before any frame"))
                continue
            try:
                start = parse_client_text(msg.get("text") or "")
                if not isinstance(start, StartMessage):
                    raise ServiceError(400, "bad_message", "send a 'start' message first")
                window = self.engine.window_size(start.window, self.settings.max_frames)
                stride = start.stride if start.stride is not None else max(1, window // 2)
                if stride > window:
                    raise ServiceError(400, "bad_message",
                                       f"stride {stride} must be between 1 and the window ({window})")
                spec = await asyncio.to_thread(self.engine.prepare, start.method, start.options, start.target,
                                              start.maps, start.map_size or self.settings.map_size, start.map_dtype,
                                              window)
                check_batch(spec, self.settings.max_batch_size)
                limit = self.settings.max_forward_passes
                if spec.passes_per_window is not None and spec.passes_per_window > limit:
                    raise ServiceError(413, "work_limit", f"{spec.method_name} with these options needs about "
                                                          f"{spec.passes_per_window} forward passes per window; "
                                                          f"the server's limit is {limit}")
            except Exception as e:
                err = to_service_error(e)
                if err.status >= 500:
                    log.exception("stream negotiation failed")
                self._error(err)
                continue
            start = start.model_copy(update={"window": window, "stride": stride})
            smoothing = start.smoothing if start.smoothing is not None else self.settings.stream_smoothing
            self._smoothing = Smoothing(smoothing)
            self._buffer = deque(maxlen=window)
            self._planner = WindowPlanner(window, stride, tail="shift")
            await self._queue(ReadyMessage(
                window=window, stride=stride, method=spec.method_name, options=spec.options, target=spec.target,
                live=start.live, smoothing=smoothing, maps=list(spec.maps), map_size=spec.map_size,
                map_dtype=spec.map_dtype, model=self.engine.info(), limits=self.settings.public()))
            return start, spec

    async def _receive_frames(self, start: StartMessage) -> None:
        """Read frames until ``end``; a disconnect raises :class:`_Gone`."""
        while True:
            msg = await self._receive()
            data = msg.get("bytes")
            if data is None:
                try:
                    parsed = parse_client_text(msg.get("text") or "")
                except ServiceError as e:
                    self._error(e)
                    continue
                if isinstance(parsed, EndMessage):
                    return
                self._error(ServiceError(400, "bad_message", "the stream has already started; "
                                                             "open a new connection to change its settings"))
                continue
            try:
                if len(data) > self.settings.max_message_bytes:
                    raise ServiceError(413, "frame_too_large", f"a {len(data)}-byte message exceeds the limit of "
                                                               f"{self.settings.max_message_bytes} bytes")
                header, payload = unpack_frame(data)
                if header.format == "rgb":
                    frame = decode_frame(header, payload, self.settings)
                else:  # image decoding takes milliseconds: keep it off the event loop
                    frame = await asyncio.to_thread(decode_frame, header, payload, self.settings)
                self._check_frame_size(frame, start.window)
            except ServiceError as e:
                self._error(e)
                continue
            await self._accept_frame(frame, header.ts, start)

    def _check_frame_size(self, frame: np.ndarray, window: int) -> None:
        size = frame.shape[:2]
        if self._size is None:
            self._check_window_bytes(*size, window)
            self._size = size
        elif size != self._size:
            raise ServiceError(400, "bad_frame", f"frame size changed from {self._size[1]}x{self._size[0]} to "
                                                 f"{size[1]}x{size[0]}; one stream takes frames of one size")

    def _check_window_bytes(self, height: int, width: int, window: int) -> None:
        """Refuse (413 ``window_too_large``) the first frame when ``window`` such frames exceed
        ``max_window_mb``: the stream holds a window's frames, and they are copied again while they
        are explained. A window of the model's own length is always taken (an upload's windows
        are that long, at the same pixel limit)."""
        frame_bytes = height * width * 3
        need, limit, own = window * frame_bytes, self.settings.max_window_bytes, self.engine.model.num_frames
        if window <= own or need <= limit:
            return
        raise ServiceError(413, "window_too_large",
                           f"a window of {window} frames of {width}x{height} is {need / 2**20:.0f} MiB; the server's "
                           f"limit is {self.settings.max_window_mb:g} MiB per stream window: send frames of at most "
                           f"{limit // (3 * window)} pixels, or open a stream with a window of at most "
                           f"{max(own, limit // frame_bytes)} frames")

    async def _accept_frame(self, frame: np.ndarray, ts: float | None, start: StartMessage) -> None:
        self._frames += 1
        self._buffer.append(frame)
        self._last_ts = ts
        _, span = self._planner.push()
        if span is not None:  # the buffer holds exactly this window
            window = _Window(index=span.index, start=span.start, frames=list(self._buffer), ts=ts,
                             arrived=time.monotonic())
            self._windows += 1
            await self._post(window, start)

    async def _post(self, window: _Window, start: StartMessage) -> None:
        self._owed += 1
        if not start.live:
            # waits for the runner (back-pressure), still noticing a client that leaves
            await self._watching(self._mailbox.put(window))
        else:
            if self._mailbox.full():
                stale: _Window = self._mailbox.get_nowait()
                self._owed -= 1
                self._dropped += 1
                self._queue_nowait(DroppedMessage(windows=1, first_frame=stale.start,
                                                  last_frame=stale.start + len(stale.frames) - 1,
                                                  total=self._dropped))
            self._mailbox.put_nowait(window)
        # Yield once so that an idle runner takes the window now: messages already buffered by
        # the server are read without suspending, and would otherwise replace it first.
        await asyncio.sleep(0)

    async def _finish(self, start: StartMessage, runner: asyncio.Task) -> None:
        """Explain the frames the last stride left uncovered, wait for the runner, answer ``end``."""
        file_start = start.model_copy(update={"live": False})
        if self._frames < start.window:
            self._error(ServiceError(400, "too_few_frames", f"the stream ended after {self._frames} frames; "
                                                            f"a window needs {start.window}"))
        elif (span := self._planner.finish()) is not None:  # the last window is never dropped
            tail = _Window(index=span.index, start=span.start, frames=list(self._buffer),
                           ts=self._last_ts, arrived=time.monotonic())
            self._windows += 1
            await self._post(tail, file_start)
        await self._watching(self._mailbox.put(_END))
        await self._watching(asyncio.shield(runner))
        await self._queue(EndAck(frames=self._frames, windows=self._explained, dropped=self._dropped))

    # -- runner ------------------------------------------------------------------------------------
    async def _run_windows(self, spec: ExplainSpec) -> None:
        while True:
            window = await self._mailbox.get()
            if window is _END:
                return
            try:
                await self._explain(window, spec)
            finally:
                self._owed -= 1
                self._answered = time.monotonic()

    async def _explain(self, window: _Window, spec: ExplainSpec) -> None:
        """Explain one window and queue its result, or its non-fatal error."""
        indices = list(range(window.start, window.start + len(window.frames)))
        end = window.start + len(window.frames)
        try:
            _, result, smoothed = await self.engine.call(
                self.engine.explain_window, window.frames, indices, window.index, spec, self._smoothing, None,
                self._cancel, WorkBudget(self.settings.max_forward_passes))
        except Exception as e:
            err = to_service_error(e)
            if err.status >= 500:
                log.exception("explaining a stream window failed")
            self._queue_nowait(ErrorMessage(fatal=False, error=err.info(), frame_range=[window.start, end - 1]))
            return
        self._explained += 1
        latency = (time.monotonic() - window.arrived) * 1000.0
        await self._queue(WindowMessage(**result.model_dump(), smoothed=smoothed, ts=window.ts,
                                        latency_ms=latency, dropped_total=self._dropped))

    # -- I/O ---------------------------------------------------------------------------------------
    def _next_message(self) -> asyncio.Task:
        """The task receiving the client's next message (started once, awaited until it is done)."""
        if self._recv_task is None:
            self._recv_task = asyncio.ensure_future(self.ws.receive())
        return self._recv_task

    def _take(self, task: asyncio.Task) -> dict:
        """The message of a finished receive; :class:`_Gone` on disconnect."""
        self._recv_task = None
        try:
            msg = task.result()
        except (WebSocketDisconnect, RuntimeError):
            raise _Gone() from None
        if msg["type"] == "websocket.disconnect":
            raise _Gone()
        return msg

    async def _receive(self) -> dict:
        """The next message; :class:`_Gone` on disconnect, :class:`_Fatal` when idle too long.

        Idle is the client's silence while the server owes it nothing: the clock runs from this
        wait or the last window's answer, whichever is later, and stops while a window is being
        explained or waits to be (a client that paces itself by results waits for them, and a
        window may take longer than the timeout)."""
        if self._ahead:
            msg = self._ahead.popleft()
            self._ahead_bytes -= _size(msg)
            return msg
        task, since, timeout = self._next_message(), time.monotonic(), self.settings.stream_idle_timeout_s
        while True:
            left = timeout if self._owed else max(since, self._answered) + timeout - time.monotonic()
            if left <= 0:
                raise _Fatal(ServiceError(408, "idle", f"no message for {timeout:g} s"), CLOSE_POLICY)
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=left)
                break
            except asyncio.TimeoutError:
                continue
            except (WebSocketDisconnect, RuntimeError):
                break  # _take turns it into _Gone
        return self._take(task)

    async def _watching(self, waiting):
        """Await ``waiting`` (the model's pace) while reading ahead what the client sends meanwhile,
        so that a client that leaves is noticed at once (:class:`_Gone`) whatever the model is
        doing. Past :data:`READ_AHEAD_BYTES` / :data:`READ_AHEAD_MESSAGES` reading stops and TCP
        slows the client; a client that leaves then is noticed when a send to it fails.
        """
        task = asyncio.ensure_future(waiting)
        try:
            while not task.done():
                if self._ahead_bytes >= READ_AHEAD_BYTES or len(self._ahead) >= READ_AHEAD_MESSAGES:
                    await task
                    break
                incoming = self._next_message()
                await asyncio.wait({task, incoming}, return_when=asyncio.FIRST_COMPLETED)
                if incoming.done():
                    msg = self._take(incoming)
                    self._ahead.append(msg)
                    self._ahead_bytes += _size(msg)
            return task.result()
        finally:
            if not task.done():
                task.cancel()

    async def _queue(self, message: BaseModel) -> None:
        """Queue a message, waiting while the client is behind on reading."""
        await self._out.put(message.model_dump_json(exclude_none=True))

    def _queue_nowait(self, message: BaseModel) -> None:
        """Queue an advisory message; skipped when the client is not reading anyway."""
        try:
            self._out.put_nowait(message.model_dump_json(exclude_none=True))
        except asyncio.QueueFull:
            pass

    def _error(self, err: ServiceError) -> None:
        self._queue_nowait(ErrorMessage(fatal=False, error=err.info()))

    async def _send_loop(self) -> None:
        """Write queued messages. A client that stops reading for the idle timeout, or whose
        connection fails, ends the whole session (its receiver may be blocked on the runner,
        which may be blocked on this queue: nobody else would notice)."""
        while True:
            item = await self._out.get()
            if item is _CLOSE:
                return
            try:
                await asyncio.wait_for(self.ws.send_text(item), timeout=self.settings.stream_idle_timeout_s)
            except Exception:  # timed out (not reading) or disconnected
                self._client_gone = True
                if self._main is not None and not self._closing:
                    self._main.cancel()
                return

    async def _stop_sender(self, sender: asyncio.Task) -> None:
        try:
            self._out.put_nowait(_CLOSE)
        except asyncio.QueueFull:
            sender.cancel()
        try:
            await asyncio.wait_for(sender, timeout=5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
            sender.cancel()

    async def _close_with(self, error: ServiceError, code: int) -> None:
        try:
            message = ErrorMessage(fatal=True, error=error.info()).model_dump_json(exclude_none=True)
            await asyncio.wait_for(self.ws.send_text(message), timeout=5.0)
        except Exception:
            pass
        await self._close(code)

    async def _close(self, code: int) -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        try:
            await asyncio.wait_for(self.ws.close(code), timeout=5.0)
        except Exception:  # already closed by the client, or it does not read
            pass
