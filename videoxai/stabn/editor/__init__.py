"""The browser editor of temporal attention (``videoxai stabn edit``); see :mod:`.app`."""

from .app import create_app

__all__ = ["create_app"]
