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
client has sent, up to :data:`~.stream_connection.READ_AHEAD_BYTES` (far more than a client
that follows the protocol has in flight), so that a client that leaves is noticed at once and
its slot freed, whatever the model is busy with. A session holds at most ``window`` frames plus that read-ahead,
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
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from starlette.websockets import WebSocket

from ..data.windows import WindowPlanner
from ..work import WorkBudget
from .access import AuthWaiters, StreamSlots, authorised, client_key, origin_allowed
from .engine import Engine, ExplainSpec, Smoothing, check_batch
from .frames import decode_frame
from .protocol import (DroppedMessage, EndAck, EndMessage, ErrorInfo, ErrorMessage, ReadyMessage, ServiceError,
                       StartMessage, WindowMessage, loads_json, parse_client_text, to_service_error, unpack_frame)
from .settings import ServeSettings
from .stream_connection import (ABORT_ON_CLOSE, CLOSE_INTERNAL, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TRY_LATER,
                                StreamConnection, _Fatal, _Gone, _size, close_reason)

log = logging.getLogger("videoxai.serve")


@dataclass
class _Window:
    index: int
    start: int
    frames: list[np.ndarray]
    ts: float | None
    arrived: float  # monotonic time the window's last frame arrived


_END = object()


class StreamSession(StreamConnection):
    """Serves one WebSocket client (see the module docstring)."""

    def __init__(self, ws: WebSocket, engine: Engine, settings: ServeSettings, slots: StreamSlots,
                 auth: AuthWaiters | None = None) -> None:
        super().__init__(ws, settings)
        self.engine, self.slots = engine, slots
        self.auth = auth if auth is not None else AuthWaiters(settings.max_pending_connections)
        self._mailbox: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._frames = 0          # frames accepted
        self._windows = 0         # windows formed (explained or dropped)
        self._explained = 0
        self._dropped = 0
        self._planner: WindowPlanner | None = None  # where windows start (shared with files and clips)
        self._size: tuple[int, int] | None = None
        self._buffer: deque[np.ndarray] = deque()
        self._last_ts: float | None = None
        self._smoothing: Smoothing | None = None
        self._cancel = threading.Event()              # stops this session's explanation in flight

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
        client = client_key(ws.client.host if ws.client else None)
        if self.slots.active < self.slots.limit and self.slots.client_full(client):
            # one address opening streams as others ended held every slot: the others were told "busy"
            await self._close_with(ServiceError(429, "client_limit", f"this client already has "
                                                f"{self.slots.per_client} streams open, the server's limit per "
                                                "client; end one first"), CLOSE_TRY_LATER)
            return
        if not self.slots.try_acquire(client):
            await self._close_with(ServiceError(503, "busy", f"the server already serves {self.slots.limit} "
                                                             "streams; try again later"), CLOSE_TRY_LATER)
            return
        self._main = asyncio.current_task()
        sender = asyncio.create_task(self._send_loop(), name="videoxai-stream-sender")
        runner: asyncio.Task | None = None
        close_code, reason = CLOSE_NORMAL, None
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
            close_code, reason = f.close_code, close_reason(f.error)
        except Exception:  # a bug must end this session only, with a message, never the server
            log.exception("stream session failed")
            self._queue_nowait(ErrorMessage(fatal=True, error=ErrorInfo(code="internal",
                                                                        message="internal error; see the server log")))
            close_code = CLOSE_INTERNAL
        finally:
            self._closing = True
            self.slots.release(client)
            self._cancel.set()  # an explanation in flight stops at its next batch
            if runner is not None and not runner.done():
                runner.cancel()
            if self._recv_task is not None and not self._recv_task.done():
                self._recv_task.cancel()
            await self._stop_sender(sender)
            await self._close(close_code, reason)

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
                # a start sent as a binary message (ws.send(json_bytes)) was told to send a start
                as_text = (" as a text message; this JSON came as a binary one (frames only are binary)"
                           if msg["bytes"].lstrip()[:1] == b"{" else " before any frame")
                self._error(ServiceError(400, "bad_message", f"send a 'start' message{as_text}"))
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
