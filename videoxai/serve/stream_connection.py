"""The WebSocket side of a stream session (:mod:`.stream`): the client's messages read with an
idle timeout, and read ahead while the session waits for the model, so that a client that leaves
is noticed at once; outgoing messages written by a sender task from a bounded queue, so that a
client that stops reading stalls nothing but its own session; and the close.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .protocol import ErrorMessage, ServiceError
from .settings import ServeSettings

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


_CLOSE = object()


class _Gone(Exception):
    """The client disconnected."""


class _Fatal(Exception):
    """End the session with an error message and a close code."""

    def __init__(self, error: ServiceError, close_code: int) -> None:
        super().__init__(error.message)
        self.error, self.close_code = error, close_code


def close_reason(error: ServiceError) -> str:
    """The close frame's reason for a refusal: ``code: message``, cut to the 123 bytes of UTF-8 a
    close frame holds (RFC 6455 §5.5), so that a client that reads only the close (a browser's
    ``CloseEvent.reason``) is told why too."""
    reason = f"{error.code}: {error.message}".encode()
    if len(reason) <= 123:
        return reason.decode()
    return reason[:120].decode("utf-8", "ignore") + "..."


def _size(msg: dict) -> int:
    return len(msg.get("bytes") or b"") + len(msg.get("text") or "")


class StreamConnection:
    """One client's WebSocket as a stream session uses it (see the module docstring). The idle
    clock of :meth:`_receive` stops while the session owes the client a window and restarts at
    its last answer (``_owed`` and ``_answered``, which the session keeps)."""

    def __init__(self, ws: WebSocket, settings: ServeSettings) -> None:
        self.ws, self.settings = ws, settings
        self._out: asyncio.Queue = asyncio.Queue(maxsize=OUTGOING_QUEUE)
        self._owed = 0            # windows handed to the runner whose result (or error) is not out yet
        self._answered = 0.0      # monotonic time the runner last finished a window
        self._main: asyncio.Task | None = None
        self._recv_task: asyncio.Task | None = None   # a receive started early (read-ahead)
        self._ahead: deque[dict] = deque()            # messages read ahead while the model was busy
        self._ahead_bytes = 0
        self._client_gone = False                     # the sender saw the client leave or stall
        self._closing = False

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
        await self._close(code, close_reason(error))

    async def _close(self, code: int, reason: str | None = None) -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        try:
            await asyncio.wait_for(self.ws.close(code, reason), timeout=5.0)
        except Exception:  # already closed by the client, or it does not read
            pass
