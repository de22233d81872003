"""A bound on the HTTP requests one client has in progress at once.

The server takes ``limit_concurrency`` connections in all (:func:`~.server.uvicorn_config`), and
answers every request past it with 503 ``busy``. Idle keep-alive connections and ones still
sending their headers are bounded per client already (:class:`~.transport.HTTPProtocol`), and
uploads and streams have limits of their own, but nothing bounded the other requests one client
kept going: downloads of a result read a few kilobytes at a time (never stalled long enough to be
cut off) held a connection each, and one address holding ``limit_concurrency`` of them had every
other client refused for as long as it liked. :class:`ClientRequests` refuses (429
``client_limit``) a client's request past ``max_requests_per_client`` in progress.

It counts by the address the app sees (:func:`~.access.client_key`): the peer's, or the one a
trusted reverse proxy names in ``X-Forwarded-For`` (``forwarded_allow_ips``, :func:`~.server.uvicorn_config`),
so that clients behind it are told apart.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .access import client_key
from .http_errors import _error_response
from .protocol import ServiceError


class ClientRequests:
    """ASGI middleware: at most ``limit`` HTTP requests in progress per client (WebSockets have
    ``max_streams_per_client``). ``active`` maps a client to its requests in progress."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.active: dict[str | None, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = client_key(scope["client"][0] if scope.get("client") else None)
        held = self.active.get(client, 0)
        if held >= self.limit:
            error = ServiceError(429, "client_limit", f"this client already has {held} requests in progress, the "
                                                      "server's limit per client; wait for one to finish",
                                 headers={"Retry-After": "5"})
            return await _error_response(error)(scope, receive, send)
        self.active[client] = held + 1  # the event loop's only: no lock
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.active[client] - 1
            if left:
                self.active[client] = left
            else:
                del self.active[client]
