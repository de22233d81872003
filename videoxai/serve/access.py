"""Who may use the server: the ``Origin`` and API-key checks, shared by the HTTP routes
(:mod:`.app`) and the WebSocket stream (:mod:`.stream`) so that both let clients in by the same
rules, the bounds on streams open at once and on sockets still waiting for their key, and who
counts as one client for the per-client limits (:func:`client_key`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

from .settings import ServeSettings


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
    if not given:
        return False
    # surrogatepass: JSON may carry a lone surrogate ("\\ud800"), which plain UTF-8 cannot encode: a
    # stream whose first message sent one as its key ended with a traceback and no close frame
    key = settings.api_key.encode("utf-8", "surrogatepass")
    ok = hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key)
    try:
        # a header's bytes are read as Latin-1: browsers send 'é' so (one byte), but curl sends a key
        # typed in a UTF-8 terminal as its UTF-8 bytes, read as 'Ã©', and the right key was a 401
        ok |= hmac.compare_digest(given.encode("latin-1"), key)
    except UnicodeEncodeError:  # not bytes read as Latin-1: the key as typed (JSON, a query string)
        pass
    return ok


def client_key(host: str | None) -> str | None:
    """The client an address counts as for the per-client limits: an IPv6 address by its /64
    network, an IPv4-mapped IPv6 address as the IPv4 address, anything else as it is.

    One IPv6 host is given a /64 (2^64 addresses) by its provider, and may take a new one of
    them for each connection: counted per address, it passed every per-client limit (uploads,
    queued jobs, streams, slow sockets) as a crowd of clients. A /64 counts as one client, as a
    NAT's IPv4 address does.
    """
    if not host:
        return host
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # a zone index (fe80::1%eth0) is not an address
    except ValueError:  # a Unix socket's path, a test client's name
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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
    """Counts live sessions against ``max_streams``, and each client address's against
    ``per_client`` (event-loop only, so no lock): one address opening streams as fast as they
    ended held every slot, and every other client was refused ``busy`` for as long as it liked."""

    def __init__(self, limit: int, per_client: int | None = None) -> None:
        self.limit, self.active = limit, 0
        self.per_client = per_client if per_client is not None else limit
        self.by_client: dict[str | None, int] = {}

    def try_acquire(self, client: str | None = None) -> bool:
        """Take a slot for ``client``; ``False`` when the server serves ``limit`` streams (see
        :meth:`client_full` for the per-client limit, asked first)."""
        if self.active >= self.limit:
            return False
        self.active += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        return True

    def client_full(self, client: str | None) -> bool:
        """Whether ``client`` already holds ``per_client`` streams."""
        return self.by_client.get(client, 0) >= self.per_client

    def release(self, client: str | None = None) -> None:
        self.active = max(0, self.active - 1)
        left = self.by_client.get(client, 0) - 1
        if left > 0:
            self.by_client[client] = left
        else:
            self.by_client.pop(client, None)
