"""uvicorn's connection handling, hardened against clients that do not play along.

uvicorn bounds what a request may contain, but not how slowly it may arrive, nor what happens to a
connection whose peer stops reading:

* **Slow headers (slowloris).** A connection that never finishes its request headers is kept
  forever, and counts against ``limit_concurrency``: 70 such sockets made every request get 503.
  :class:`HTTPProtocol` closes a connection that has not sent complete headers within
  ``header_timeout_s``, and keeps at most ``max_pending_per_client`` *slow* connections (still
  without headers after :data:`PENDING_GRACE_S`) per client address and ``max_pending_connections``
  in all, the oldest closed first. Slow sockets can only displace each other, never a client that
  sends its request at once — nor a burst of such clients behind one address (a proxy, a parallel
  client), whose connections are all accepted before the first is read.
* **Peers that do not read.** When the app closes a WebSocket, uvicorn closes the transport
  gracefully, which waits for the write buffer to drain: with a peer that never reads, forever.
  :class:`WebSocketProtocol` aborts (RST) a connection that is still open a few seconds after the
  app has finished with it, or at once when the app marks its scope with
  :data:`~.stream_connection.ABORT_ON_CLOSE` (a stream that never authenticated: nothing to be
  polite to).
  Nor does a stream wait for its writes to block before it notices a peer that reads nothing:
  the kernel's buffers hold minutes of small results. After each message it sends, it pings the
  peer; a pong comes back only once the peer has read everything before the ping, and a peer
  that has not answered within ``stream_idle_timeout_s`` is aborted.
* **Downloads nobody reads.** A client that requests a result or an overlay larger than the
  socket buffers and reads nothing held its connection and response task forever.
  :class:`HTTPProtocol` aborts a connection whose writes stay paused (the peer reads nothing) for
  ``body_timeout_s``.
* **Refused bodies.** Answered before its body was read (413, 503 ``busy``, 401), a request's
  body is read and discarded by uvicorn, with no deadline once a byte of it has come, and a
  connection that then sent no next request had none either. :class:`HTTPProtocol` closes one
  whose refused body has not all come within ``body_timeout_s``, and gives the next request's
  headers their deadline.
* **Over the connection limit.** uvicorn answers a request that arrives while the server holds
  ``limit_concurrency`` connections (or requests) with a plain-text 503 from deep inside its
  protocol. :class:`HTTPProtocol` takes that check over and answers the API's JSON error
  (``busy``, with ``Retry-After``), as every other error is.
* **Request smuggling.** A request with both ``Content-Length`` and ``Transfer-Encoding`` is read
  by its chunks (h11, as RFC 9112 §6.3 says), and the connection was kept for the next request:
  a proxy in front that goes by ``Content-Length`` takes part of the body for another request
  than the server does, and the bytes after it were answered as a request of their own.
  :class:`HTTPProtocol` refuses such a request (400) and closes the connection, as the RFC
  requires of a server either way.
* **Secrets in logs.** Old clients pass the API key as ``?api_key=`` in the URL, which the access
  log prints. :class:`RedactApiKey` masks it in every uvicorn and videoxai log record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import time
from collections import OrderedDict, defaultdict

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .access import client_key
from .settings import ServeSettings
from .stream_connection import ABORT_ON_CLOSE

log = logging.getLogger("videoxai.serve")

#: seconds a WebSocket may stay open after the app has closed it (time for a polite peer to answer)
ABORT_AFTER_CLOSE_S = 5.0

#: seconds a WebSocket closed for a bad message (too large, not UTF-8) still reads and drops what
#: its peer sends, so that the close frame reaches it (see ``WebSocketProtocol.handle_parser_exception``)
LINGER_S = 2.0

#: seconds without complete headers before a connection counts against ``max_pending_per_client``
#: (at most half the header timeout). A burst of N connections is accepted in one go, before any
#: of them is read: counted at once, all but the newest few were closed unanswered.
PENDING_GRACE_S = 1.0

#: seconds a client refused for the connection limit is told to wait (idle keep-alive connections
#: are closed after 5 s, connections without headers within ``header_timeout_s``)
BUSY_RETRY_AFTER_S = 5

#: pending connections, young ones included, above which the oldest is closed at once
#: (``BURST_FACTOR × max_pending_connections``): a bound on sockets held within the grace period
BURST_FACTOR = 4


def _host(conn: "HTTPProtocol") -> str | None:
    return conn.client[0] if conn.client else None


def _client(conn: "HTTPProtocol") -> str | None:
    """The client ``conn`` counts as for ``max_pending_per_client`` (:func:`.access.client_key`)."""
    return client_key(_host(conn))


class _Pending:
    """Connections of one server that are still sending their request headers, oldest first."""

    def __init__(self) -> None:
        self.connections: OrderedDict[HTTPProtocol, float] = OrderedDict()
        self._check: asyncio.TimerHandle | None = None

    def add(self, conn: "HTTPProtocol", settings: ServeSettings) -> None:
        self.connections[conn] = time.monotonic()
        if len(self.connections) > BURST_FACTOR * settings.max_pending_connections:  # bounds open sockets
            next(iter(self.connections)).drop("too many connections are still sending headers")
        if self._check is None:
            self._check = conn.loop.call_later(_grace(settings), self._limit_slow, conn.loop, settings)

    def remove(self, conn: "HTTPProtocol") -> None:
        self.connections.pop(conn, None)

    def _limit_slow(self, loop: asyncio.AbstractEventLoop, settings: ServeSettings) -> None:
        """Close the oldest slow connections of each client beyond ``max_pending_per_client``, then
        the oldest of all beyond ``max_pending_connections``; check again when the next young one
        becomes slow (one timer per server, not per socket)."""
        self._check = None
        grace, now = _grace(settings), time.monotonic()
        slow: dict[str | None, list[HTTPProtocol]] = defaultdict(list)
        young = []
        for conn, since in self.connections.items():
            if now - since >= grace:
                slow[_client(conn)].append(conn)
            else:
                young.append(since)
        for conns in slow.values():
            for conn in conns[:max(0, len(conns) - settings.max_pending_per_client)]:
                conn.drop("too many connections of this client are still sending headers")
        remaining = [c for conns in slow.values() for c in conns if c in self.connections]
        remaining.sort(key=self.connections.__getitem__)
        for conn in remaining[:max(0, len(remaining) - settings.max_pending_connections)]:
            conn.drop("too many connections are still sending headers")
        if young:
            self._check = loop.call_later(max(0.0, min(young) + grace - now), self._limit_slow, loop, settings)


def _grace(settings: ServeSettings) -> float:
    return min(PENDING_GRACE_S, settings.header_timeout_s / 2)


class HTTPProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and per-client limits on
    connections that have not sent them (see the module docstring)."""

    settings: ServeSettings  # set by :func:`protocol_classes`

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's own limit check answers in plain text: disable it and check in _app instead
        self._concurrency_limit, self.limit_concurrency = self.limit_concurrency, None
        self._inner_app, self.app = self.app, self._app

    async def _app(self, scope, receive, send) -> None:
        """The app, or the JSON 503 ``busy`` when the server is at ``limit_concurrency``: uvicorn's
        check, made as this request's task starts rather than just before uvicorn creates it
        (hence ``>`` for the tasks, which now include this one)."""
        limit = self._concurrency_limit
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) > limit):
            log.warning("refusing a request: %d connections open, the limit is %d", len(self.connections), limit)
            await _send_busy(send)
            return
        size = _head_size(scope)
        if size > self.settings.max_header_bytes:
            # h11 bounds headers that arrive in pieces only (max_incomplete_event_size): 100 KB of
            # them sent at once were read and served
            await _send_error(send, 431, "headers_too_large", f"the request line and headers are {size} bytes; "
                                                              f"the server takes at most {self.settings.max_header_bytes}")
            return
        names = {name for name, _ in scope["headers"]}
        if b"content-length" in names and b"transfer-encoding" in names:
            # the two framings of a body together are a request-smuggling attempt, or a proxy that
            # will disagree with this server on where the body ends: refuse it, closing the
            # connection (RFC 9112 §6.3) so that nothing after it is read as a next request
            await _send_error(send, 400, "bad_request", "a request may not have both Content-Length and "
                                                        "Transfer-Encoding (RFC 9112 §6.3); send one of them")
            return
        started = False

        async def sending(message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._inner_app(scope, receive, sending)
        except asyncio.CancelledError:
            if not self._shutting_down:
                raise
            if started:  # a download its client had not finished reading: it cannot be completed
                log.warning("cutting off an answer to %s: the server is shutting down", _host(self) or "?")
                self.transport.abort()
                self.cycle.disconnected = True  # gone: nothing for uvicorn to complete, or to log
                return
            # the server stops (SIGINT/SIGTERM) and cancels what has not finished within
            # shutdown_timeout_s, mostly uploads still arriving: cancelled, each logged a
            # traceback ("Exception in ASGI application") and its client got a plain-text 500,
            # the answer to a bug
            await _send_error(send, 503, "busy", "the server is shutting down; send the request again once it "
                                                 "is back", [(b"retry-after", str(BUSY_RETRY_AFTER_S).encode())])

    _shutting_down = False

    def shutdown(self) -> None:
        """The server is stopping (uvicorn calls this on every connection)."""
        self._shutting_down = True
        super().shutdown()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = None
        self._wait_for_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if getattr(self, "_drain_timer", None) is not None and not self._draining():
            self._drain_done()  # the refused body is all in: the connection is kept for the next request
            if self.conn.their_state is h11.IDLE:
                self._wait_for_headers()  # uvicorn arms no keep-alive timeout after a drained body
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._headers_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self._wait_for_headers()  # keep-alive: the next request's headers get the same deadline
        elif self._draining():
            # answered before its body was read (413, 503, 401, 403): uvicorn reads the rest and
            # discards it, with no deadline once a byte of it has come (its keep-alive timeout
            # stops at the first byte), so a client that trickled a refused body held its
            # connection for ever. The rest must come within body_timeout_s, as an upload's must.
            self._drain_timer = self.loop.call_later(self.settings.body_timeout_s, self._drain_too_long)

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        self._reading_resumed()
        self._drain_done()
        super().connection_lost(exc)

    def _draining(self) -> bool:
        """Whether the response is sent and the request's body is still coming (to be discarded)."""
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY

    def _drain_done(self) -> None:
        if getattr(self, "_drain_timer", None) is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _drain_too_long(self) -> None:
        self._drain_timer = None
        log.debug("closing a connection from %s: the rest of a refused body took over %g s", _host(self) or "?",
                  self.settings.body_timeout_s)
        self.transport.abort()

    def pause_writing(self) -> None:
        """The peer has stopped reading (the kernel's buffers and the transport's are full): abort
        the connection unless it reads again within ``body_timeout_s``. A download nobody reads
        otherwise held its connection, and its response task, forever (and the server's shutdown
        for ``shutdown_timeout_s``)."""
        super().pause_writing()
        if getattr(self, "_write_timer", None) is None:
            self._write_timer = self.loop.call_later(self.settings.body_timeout_s, self._not_reading)

    def resume_writing(self) -> None:
        self._reading_resumed()
        super().resume_writing()

    def _reading_resumed(self) -> None:
        if getattr(self, "_write_timer", None) is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _not_reading(self) -> None:
        self._write_timer = None
        log.warning("aborting a connection from %s: it read nothing for %g s", _host(self) or "?",
                    self.settings.body_timeout_s)
        self.transport.abort()  # close() would wait for the buffer to drain: for ever

    def _pending(self) -> _Pending:
        state = self.server_state
        if not hasattr(state, "videoxai_pending"):
            state.videoxai_pending = _Pending()
        return state.videoxai_pending

    def _wait_for_headers(self) -> None:
        if self._header_timer is not None:
            return
        self._header_timer = self.loop.call_later(self.settings.header_timeout_s, self.drop,
                                                  f"no complete request headers within "
                                                  f"{self.settings.header_timeout_s:g} s")
        self._pending().add(self, self.settings)

    def _headers_done(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._pending().remove(self)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes h11 cannot parse, with the JSON error body of every other error
        (uvicorn's own is plain text, which clients of this API do not expect).

        The app's own answer to the request, if it comes after this one, goes nowhere: a request
        answered without reading its body (405, 401) whose body turned out malformed had the app
        answer a second time, which h11 refused with a traceback ("Exception in ASGI
        application"). A request already answered (its refused body malformed while it was
        drained) gets no second answer, only the connection closed: h11 raised from
        ``data_received`` ("Fatal error on transport", a traceback per such request)."""
        cycle = getattr(self, "cycle", None)
        if cycle is not None:
            cycle.disconnected = True  # uvicorn drops what the app sends from now on
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):  # IDLE: the headers did not parse
            log.debug("closing a connection from %s: %s after its answer", _host(self) or "?", msg)
            self.transport.close()
            return
        body = json.dumps({"error": {"code": "bad_request", "message": f"not a valid HTTP/1.1 request ({msg})"}})
        data = body.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=data),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def drop(self, reason: str) -> None:
        """Close a connection that has not sent its headers (no response: it asked nothing yet)."""
        self._headers_done()
        if not self.transport.is_closing():
            log.debug("closing a connection from %s: %s", self.client[0] if self.client else "?", reason)
        self.transport.abort()


def _head_size(scope) -> int:
    """Bytes of a request's line and headers as sent (``GET /p?q HTTP/1.1``, ``name: value`` each)."""
    query = scope.get("query_string") or b""
    line = len(scope.get("method", "GET")) + len(scope.get("raw_path") or scope["path"].encode()) + \
        (len(query) + 1 if query else 0) + len(" HTTP/1.1\r\n") + 1
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


async def _send_busy(send) -> None:
    """A JSON 503 ``busy`` (closing the connection, which is what the server is short of)."""
    await _send_error(send, 503, "busy", f"the server has too many open connections; try again in "
                                         f"{BUSY_RETRY_AFTER_S} s",
                      [(b"retry-after", str(BUSY_RETRY_AFTER_S).encode())])


async def _send_error(send, status: int, code: str, message: str,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error answered before the app sees the request, closing the connection (uvicorn
    closes it after a response that says ``Connection: close``)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-content-type-options", b"nosniff"), *(extra or []), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, but a connection the app is done with is aborted if the peer
    has not closed it within :data:`ABORT_AFTER_CLOSE_S` (a peer that does not read would
    otherwise keep it open forever), nothing is read from a peer while it is not reading what
    the server writes (uvicorn answers every ping at once, so a peer that floods pings and reads
    no pongs grew the write buffer without bound: 400 MiB of pings, +374 MiB), and a peer that has
    not read a message ``stream_idle_timeout_s`` after it was sent is aborted (read probes).

    A read probe is a ping sent after a message (one at a time; the next goes out when its pong
    comes back, if more was sent meanwhile, with the deadline of the first message it covers). TCP
    delivers in order and a WebSocket client answers a ping when it reads it, so the pong proves
    that the peer read every message before the ping.
    Waiting for a write to block instead let a client that sends frames and reads no result keep
    its stream for as long as the kernel's socket buffers took to fill (about a minute).
    """

    settings: ServeSettings | None = None  # set by :func:`protocol_classes`; None: no read probes
    _writes_blocked = False
    _probe: bytes | None = None            # payload of the read probe awaiting its pong
    _probe_timer: asyncio.TimerHandle | None = None
    _probes = 0
    _unprobed_since: float | None = None   # loop time of the first message sent after the probe
    _lingering = False                     # closed for a bad message: reading only to drop it

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        reject = self.conn.reject  # what accept() answers a bad handshake with, and uvicorn an unparsable one
        self.conn.reject = lambda status, text: _json_refusal(reject(status, text))
        self._inner_app, self.app = self.app, self._app

    async def _app(self, scope, receive, send) -> None:
        """The app, or a JSON 431 for a handshake over ``max_header_bytes`` (uvicorn passes an
        upgrade request on whole, bounded by h11 only when its headers arrive in pieces)."""
        size = _head_size(scope)
        if self.settings is not None and size > self.settings.max_header_bytes:
            body = json.dumps({"error": {"code": "headers_too_large", "message": f"the request line and headers "
                               f"are {size} bytes; the server takes at most {self.settings.max_header_bytes}"}})
            await send({"type": "websocket.http.response.start", "status": 431,
                        "headers": [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]})
            await send({"type": "websocket.http.response.body", "body": body.encode()})
            return
        await self._inner_app(scope, receive, send)

    def handle_cont(self, event) -> None:  # type: ignore[override]
        """A continuation fragment, appended to one buffer. uvicorn keeps every fragment as a bytes
        object of its own until the message ends: ``max_size`` bounds their bytes, not their
        number, and a message sent as a million 2-byte fragments held 50 MiB for 8 MiB on the
        wire (a whole ``max_message_bytes`` of them: 320 MiB per connection)."""
        buffer = self.frames[0] if len(self.frames) == 1 and isinstance(self.frames[0], bytearray) \
            else bytearray(b"".join(self.frames))
        buffer += event.data
        self.frames = [buffer]
        if event.fin:
            self.frames = [bytes(buffer)]
            self.send_receive_event_to_app()

    def send_receive_event_to_app(self) -> None:
        """A whole message to the app, or, for a text message that is not UTF-8, the close RFC 6455
        §8.1 asks for (1007) with a reason that says so: uvicorn closed with 1007 and no reason,
        and logged a traceback ("Invalid UTF-8 sequence received from client") for each such
        message a client cared to send."""
        if self.curr_msg_data_type == "text" and self.frames and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                bytes(data).decode()
            except UnicodeDecodeError as e:
                self.frames = []
                log.info("closing a stream from %s: a text message is not UTF-8", _host(self) or "?")
                self.conn.send_close(1007, f"bad_message: a text message is not valid UTF-8 (byte {e.start}); "
                                           "send JSON as UTF-8 text")
                self.handle_parser_exception()
                return
            self.frames = [data]
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:  # type: ignore[override]
        """Send the close frame the failure asks for (1009 for a message over ``ws_max_size``,
        1007, 1002), then close *lingering*: half-close our side and read and drop what the peer
        still sends for :data:`LINGER_S`, or until it closes.

        uvicorn closed the socket at once, with the rest of the refused message unread in the
        kernel's buffer; closing a socket with unread data sends a reset, and a reset makes the
        peer's kernel drop what it has not yet read, the close frame included: the client saw a
        connection reset, not "message too big" (how often depended on timing: a flaky test).
        """
        if self._lingering:  # uvicorn calls it again for every chunk after the failure
            return
        self._lingering = True
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._stop_probe()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # FIN after the close frame: the peer reads both, then sees the end
        # uvicorn closes the socket when the app returns unless a close timer is set
        self.close_timer = self.loop.call_later(LINGER_S, self._abort_if_open)

    def data_received(self, data: bytes) -> None:  # type: ignore[override]
        if self._lingering:
            return  # the rest of a refused message, or what followed it: dropped
        super().data_received(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writes_blocked = True
        self.transport.pause_reading()  # TCP now slows the peer until it reads

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writes_blocked = False
        if not self.read_paused:  # uvicorn's own pause: the app has not taken the last message yet
            self.transport.resume_reading()

    async def receive(self):  # type: ignore[override]
        message = await super().receive()
        if self._writes_blocked:  # uvicorn resumed reading as the app took the message
            self.transport.pause_reading()
        return message

    async def send(self, message) -> None:  # type: ignore[override]
        await super().send(message)
        if message["type"] == "websocket.send":
            if self._probe is None:
                self._send_probe(self.loop.time())
            elif self._unprobed_since is None:
                self._unprobed_since = self.loop.time()

    def _send_probe(self, since: float) -> None:
        """Ping the peer, which must answer within ``stream_idle_timeout_s`` of ``since`` (loop
        time of the oldest message the ping covers)."""
        if self.settings is None or self.close_sent or self.transport.is_closing():
            return
        self._probes += 1
        # unpredictable: a peer that reads nothing could otherwise answer "videoxai-read-1", -2, …
        # unasked, and keep its stream until the socket buffers filled (minutes of results)
        self._probe, self._unprobed_since = b"videoxai-read-%d-%s" % (self._probes, os.urandom(8).hex().encode()), None
        try:
            self.conn.send_ping(self._probe)
        except Exception:  # the connection is closing: nothing left to probe
            self._probe = None
            return
        self.transport.write(b"".join(self.conn.data_to_send()))
        self._probe_timer = self.loop.call_at(since + self.settings.stream_idle_timeout_s, self._not_reading)

    def handle_pong(self, event) -> None:  # type: ignore[override]
        if self._probe is None or bytes(event.data) != self._probe:
            super().handle_pong(event)  # uvicorn's keep-alive
            return
        since, self._unprobed_since = self._unprobed_since, None
        self._stop_probe()
        if since is not None:  # messages sent after that probe: ask again about them
            self._send_probe(since)

    def _stop_probe(self) -> None:
        self._probe = None
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None

    def _not_reading(self) -> None:
        self._probe_timer = None
        log.warning("aborting a stream from %s: it has not read what was sent to it %g s ago",
                    _host(self) or "?", self.settings.stream_idle_timeout_s)
        # close() would wait for the buffer to drain: for ever. The app sees a disconnect.
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_probe()
        super().connection_lost(exc)

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            if not self.disconnected and not self._lingering:  # a lingering close ends on its own
                # a session that never authenticated asks for no grace: waiting for such peers let
                # a stream of them hold connections for ABORT_AFTER_CLOSE_S each
                now = self.scope.get(ABORT_ON_CLOSE, False)
                self.loop.call_later(0.0 if now else ABORT_AFTER_CLOSE_S, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self.disconnected:
            self.transport.abort()


def _json_refusal(response):
    """A refused WebSocket handshake (a missing or malformed ``Sec-WebSocket-Key``, another
    protocol version) with the API's JSON error body: the websockets library answers in plain
    text, where every other error of the server is ``{"error": {"code", "message"}}``. (A 403 is
    the app's refusal before accepting, the ``Host`` check's: left as it is.)"""
    if response.status_code != 400:
        return response
    reason = bytes(response.body).decode("utf-8", "replace").strip() or response.reason_phrase
    body = json.dumps({"error": {"code": "bad_request", "message": reason}}).encode()
    headers = response.headers.copy()
    for name in ("Content-Type", "Content-Length"):
        del headers[name]
    headers["Content-Type"], headers["Content-Length"] = "application/json", str(len(body))
    headers["X-Content-Type-Options"] = "nosniff"
    return dataclasses.replace(response, headers=headers, body=body)


def protocol_classes(settings: ServeSettings) -> tuple[type[HTTPProtocol], type[WebSocketProtocol]]:
    """The two protocol classes bound to one server's settings (for ``uvicorn.Config``)."""
    http = type("VideoXAIHTTPProtocol", (HTTPProtocol,), {"settings": settings})
    ws = type("VideoXAIWebSocketProtocol", (WebSocketProtocol,), {"settings": settings})
    return http, ws


# -- secrets in logs -----------------------------------------------------------------------------

_KEY_IN_URL = re.compile(r"(api_key=)[^&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """``…?api_key=SECRET&x=1`` → ``…?api_key=***&x=1``."""
    return _KEY_IN_URL.sub(r"\1***", text)


class RedactApiKey(logging.Filter):
    """Masks ``api_key=…`` in a log record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install_log_redaction() -> None:
    """Add :class:`RedactApiKey` to the loggers that print URLs (once)."""
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "videoxai.serve"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactApiKey) for f in logger.filters):
            logger.addFilter(RedactApiKey())
