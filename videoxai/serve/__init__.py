"""The videoxai service: explanations of uploads (HTTP jobs) and live streams (WebSocket).

``create_app(model, settings)`` builds the ASGI app; ``videoxai serve`` runs it with uvicorn;
``videoxai stream`` (:mod:`videoxai.serve.client`) is its command-line client. The wire format is
in :mod:`videoxai.serve.protocol` and ``docs/protocol.md``.
"""

from .app import create_app
from .server import BackgroundServer, uvicorn_config
from .settings import ServeSettings

__all__ = ["create_app", "uvicorn_config", "BackgroundServer", "ServeSettings"]
