"""Attribution methods, one per file, each registered under its name.

``available()`` lists the names; ``get(name)`` returns the class. Every module in this package is
imported on first use, so adding a method is adding a file with a ``@register``-ed class.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Attribution, Method, available, batched, get, register

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["Attribution", "Method", "available", "get", "register", "batched"]
