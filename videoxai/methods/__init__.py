"""Attribution methods, one per file, each registered under its name.

``available()`` lists the names; ``get(name)`` returns the class. Every module in this package is
imported on first use, so adding a method is adding a file with a ``@register``-ed class.
"""

from __future__ import annotations

from .base import Attribution, Method, available, get, register


__all__ = ["Attribution", "Method", "available", "get", "register"]
