"""Name → class registries, shared by methods and metrics, and the plugin-package import.

A registry is filled by a class decorator (``@register``); the package that holds the classes,
one per module, is imported on first look-up, so adding a method or a metric is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (a dotted name) once; modules register themselves."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")


class Registry(Generic[T]):
    """Classes by their ``name`` attribute.

    Args:
        kind: what is registered, for messages (``"method"``).
        unknown: the error raised for an unknown name.
        package: imported (all its modules) on the first look-up; ``None``: nothing to import.
    """

    def __init__(self, kind: str, unknown: type[Exception], package: str | None = None) -> None:
        self.kind, self.unknown, self.package = kind, unknown, package
        self._classes: dict[str, T] = {}
        self._loaded = package is None

    def register(self, cls: T) -> T:
        """Class decorator: make ``cls`` available under ``cls.name``."""
        if self._classes.get(cls.name, cls) is not cls:
            raise ValueError(f"{self.kind} name {cls.name!r} registered twice")
        self._classes[cls.name] = cls
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
            raise self.unknown(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._classes)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first: a module that looks itself up while importing must not recurse
            import_submodules(self.package)
