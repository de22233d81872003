"""Which ``Host`` names the server answers to: a guard against DNS rebinding.

A page on ``evil.example`` can re-point its own name at ``127.0.0.1`` after loading. The
browser then treats the local server as the page's own origin: it may upload, read results and
open streams, and the WebSocket ``Origin`` check sees the same host on both sides. What the
attacker cannot change is the name in the ``Host`` header, which stays ``evil.example``.

So the server answers only to the names it is known by: every IP address, ``localhost`` and
names under ``.localhost`` (which resolve only to loopback), and the names in
``allowed_hosts``. This is the rule of Vite's ``server.allowedHosts`` and of Django's
``ALLOWED_HOSTS``. A server reached by its DNS name (``myhost.lan:8000``) needs that name in
``allowed_hosts`` (``videoxai serve --allowed-host myhost.lan``; ``*`` turns the check off).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

# plain ASGI (no web framework imported): the service and the ST-ABN editor both use it
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

__all__ = ["host_allowed", "HostCheck"]


def host_name(host_header: str) -> str | None:
    """The name of a ``Host`` header, lower case, without port or brackets (``None`` if malformed)."""
    try:
        return urlsplit("//" + host_header.strip()).hostname
    except ValueError:
        return None


def host_allowed(allowed_hosts: tuple[str, ...], host_header: str | None) -> bool:
    """Whether a request's ``Host`` header names this server.

    Args:
        allowed_hosts: extra names (``"myhost.lan"``), suffixes (``".corp.example"``: the name and
            every name under it) or ``"*"`` (any name).
        host_header: the header's value; ``None`` (HTTP/1.0 clients) is allowed, since browsers
            always send one.
    """
    if host_header is None or "*" in allowed_hosts:
        return True
    name = host_name(host_header)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True  # an address cannot be re-pointed by DNS
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):
        return True
    for allowed in (a.lower() for a in allowed_hosts):
        if name == allowed.lstrip(".") or (allowed.startswith(".") and name.endswith(allowed)):
            return True
    return False


class HostCheck:
    """ASGI middleware: refuse requests and WebSockets whose ``Host`` is not one of the server's names.

    HTTP gets a 400 with a JSON error, by default the service's (``{"error": {"code":
    "forbidden_host", "message": …}}``, as :class:`videoxai.serve.protocol.ErrorResponse`);
    ``error_body`` makes another application's body from the message (the ST-ABN editor's
    ``{"error": message}``) and ``remedy`` ends the message with how that application is told
    its name. A WebSocket is closed before it is accepted (the client sees 403).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 allowed_hosts: tuple[str, ...],
                 error_body: Callable[[str], dict] | None = None,
                 remedy: str = "start it with --allowed-host NAME (ServeSettings.allowed_hosts) if that is its name") -> None:
        self.app, self.allowed_hosts = app, tuple(allowed_hosts)
        self.error_body = error_body or (lambda message: {"error": {"code": "forbidden_host", "message": message}})
        self.remedy = remedy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"]
        if len(values) <= 1 and host_allowed(self.allowed_hosts, values[0] if values else None):
            return await self.app(scope, receive, send)
        shown = values[0][:100] if len(values) == 1 else f"{len(values)} Host headers"
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "Host not allowed"})
            return
        message = f"this server does not answer to the name {shown!r}; {self.remedy}"
        body = json.dumps(self.error_body(message)).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
