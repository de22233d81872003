"""Security headers for the pages the service and the ST-ABN editor serve.

Both pages show text that comes from users' models and data (class names, file names): the
scripts insert it as text, never as markup, and tests check that. A Content-Security-Policy is the
second line: should a string ever reach the page as markup, an inline ``<script>``, an
``onerror=`` attribute or a ``javascript:`` link does not run, and nothing is fetched from another
origin. The pages load only their own files (``/static/…``), talk only to their own server (HTTP
and WebSocket: ``'self'`` covers both), and show frames and overlays as ``blob:`` or ``data:``
URLs. ``frame-ancestors 'none'`` keeps another site from framing the page (clickjacking the
editor's Save button, say).

The policy goes on the pages and their static files only: FastAPI's ``/docs`` loads its script
from a CDN, and the JSON API needs none. Every response gets ``X-Content-Type-Options: nosniff``
(a result file is never sniffed into HTML).
"""

from __future__ import annotations

from .hosts import Receive, Scope, Send

#: what the viewer and the editor need, and nothing more
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
               "media-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")

__all__ = ["PAGE_POLICY", "PageHeaders"]


class PageHeaders:
    """ASGI middleware: the policy on the page (``/``) and ``/static/…``; ``nosniff`` everywhere.

    Args:
        app: the ASGI app.
        pages: paths that are pages (exact), besides everything under ``/static/``.
    """

    def __init__(self, app, pages: tuple[str, ...] = ("/",)) -> None:
        self.app, self.pages = app, pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope.get("path", ""), scope.get("root_path", "") or ""
        if root and path.startswith(root):
            # served under a proxy's prefix (--root-path /vx) the path includes it, as ASGI says
            # (uvicorn 0.55): '/vx/' was no page, and the viewer lost its policy and DENY
            path = path[len(root):] or "/"
        page = path in self.pages or path.startswith("/static/")
        extra = [(b"x-content-type-options", b"nosniff")]
        if page:
            extra += [(b"content-security-policy", PAGE_POLICY.encode()), (b"referrer-policy", b"no-referrer"),
                      (b"x-frame-options", b"DENY")]

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k, v) for k, v in extra if k not in names)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
