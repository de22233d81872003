"""Running the app: uvicorn configured to the limits in the app's settings, a server on a
background thread for notebooks, tests and benchmarks, and the lock that keeps one server per
work dir.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fastapi import FastAPI

from ..core.folder_lock import FolderLock
from ..errors import InputError
from .settings import ServeSettings


@contextmanager
def work_dir_lock(work_dir: str | Path) -> Iterator[None]:
    """The lock one server holds on its ``work_dir`` while it runs (the folder is created).

    Raises:
        InputError: another server holds it, or its file system has no locks (Lustre mounted
            without ``-o flock`` answers ENOSYS: an OSError traceback at startup before).
    """
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    lock = FolderLock(work_dir, "another videoxai server", "stop it, or give this one another --work-dir")
    try:
        lock.__enter__()
    except OSError as e:
        raise InputError(f"cannot lock the work dir {work_dir} ({e.strerror or e}): one server per work dir "
                         "cannot be ensured there; give a --work-dir on a local disk") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def uvicorn_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **kwargs):
    """A :class:`uvicorn.Config` whose transport limits match the app's settings.

    The WebSocket message limit is one raw frame at the pixel limit (uvicorn closes a stream
    that sends more with code 1009), and uvicorn queues few messages per connection, so a client
    that sends faster than the server reads is slowed by TCP, not buffered in memory.

    ``X-Forwarded-For`` is read only from the settings' ``forwarded_allow_ips``: by default uvicorn
    trusts it from ``127.0.0.1`` and ``::1`` (or from ``$FORWARDED_ALLOW_IPS``), and a client on the
    server's machine that named a new address with each request passed every per-client limit.
    """
    import uvicorn

    from .transport import install_log_redaction, protocol_classes

    settings: ServeSettings = app.state.settings
    http, ws = protocol_classes(settings)
    # limit_concurrency counts open connections: room for those still sending headers (bounded by
    # the HTTP protocol), the streams still to authenticate (bounded by AuthWaiters), every stream
    # and a margin of requests
    options = dict(ws_max_size=settings.max_message_bytes, ws_max_queue=4, http=http, ws=ws,
                   limit_concurrency=2 * settings.max_pending_connections + 4 * settings.max_streams + 64,
                   timeout_keep_alive=5, h11_max_incomplete_event_size=settings.max_header_bytes,
                   timeout_graceful_shutdown=settings.shutdown_timeout_s, log_level="warning",
                   proxy_headers=bool(settings.forwarded_allow_ips),
                   forwarded_allow_ips=",".join(settings.forwarded_allow_ips) or None)
    options.update(kwargs)
    config = uvicorn.Config(app, host=host, port=port, **options)
    install_log_redaction()  # after Config, which (re)configures uvicorn's loggers
    return config


class BackgroundServer:
    """Run the app with uvicorn on a background thread (notebooks, tests, benchmarks).

    >>> with BackgroundServer(create_app(model)) as server:
    ...     print(server.url)          # http://127.0.0.1:<free port>

    Args:
        app: the app from :func:`create_app`.
        host: interface (loopback by default).
        port: 0 picks a free port.
        **kwargs: more :class:`uvicorn.Config` options.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, **kwargs) -> None:
        import uvicorn

        # uvicorn installs signal handlers only on the main thread, so a background one is safe
        self.server = uvicorn.Server(uvicorn_config(app, host=host, port=port, **kwargs))
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> "BackgroundServer":
        self._thread = threading.Thread(target=self.server.run, name="videoxai-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (is the port free?)")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
