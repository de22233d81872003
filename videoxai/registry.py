"""Name → plug-in registries (methods, metrics, model loaders, dataset kinds, baselines) and the
plug-in package import.

A registry is filled by a decorator (``@register`` for a class with a ``name``, or
``@REGISTRY.register(name="…")`` for a function); the package that holds the plug-ins, one per
module, is imported on first look-up, so adding a method, a metric or a loader is adding a file.
An unknown name raises the registry's error (an :class:`~videoxai.errors.UnknownNameError`),
which lists the names that are registered.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def import_submodules(package: str) -> list:
    """Import every module of ``package`` (a dotted name), in name order; modules register
    themselves (plug-ins) or are handed to the caller (CLI command modules)."""
    pkg = importlib.import_module(package)
    return [importlib.import_module(f"{package}.{info.name}")
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name)]


class Registry(Generic[T]):
    """Classes by their ``name`` attribute.

    Args:
        kind: what is registered, for messages (``"method"``).
        unknown: the error raised for an unknown name.
        package: imported (all its modules) on the first look-up; ``None``: nothing to import.
        check: called with ``(name, plug-in)`` as each registers; raises to refuse it.
    """

    def __init__(self, kind: str, unknown: type[Exception], package: str | None = None,
                 check: Callable[[str, T], None] | None = None) -> None:
        self.kind, self.unknown, self.package, self.check = kind, unknown, package, check
        self._classes: dict[str, T] = {}
        self._loaded = package is None

    def register(self, cls: T | None = None, *, name: str | None = None):
        """Decorator: make ``cls`` available under ``name`` (default: ``cls.name``).

        ``@registry.register`` for a class with a ``name``; ``@registry.register(name="x")`` for
        anything else (a loader function, a baseline).
        """
        if cls is None:
            return lambda obj: self.register(obj, name=name)
        key = name if name is not None else cls.name
        if self._classes.get(key, cls) is not cls:
            raise ValueError(f"{self.kind} name {key!r} registered twice")
        if self.check is not None:
            self.check(key, cls)
        self._classes[key] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for plugins and tests that register a class for a while)."""
        self._classes.pop(name, None)

    def get(self, name: str) -> T:
        """The class registered under ``name``; ``unknown`` naming the alternatives if none is."""
        self._load()
        try:
            return self._classes[name]
        except KeyError:
            # a typo ('salency') is answered first with what it was probably meant to be
            close = difflib.get_close_matches(str(name).lower(), self.names(), n=2, cutoff=0.7)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise self.unknown(f"unknown {self.kind} {name!r}{hint}; available: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._classes)

    def items(self) -> dict[str, T]:
        """Name → plug-in, in registration order."""
        self._load()
        return dict(self._classes)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._classes

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first: a module that looks itself up while importing must not recurse
            import_submodules(self.package)
