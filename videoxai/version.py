"""The package's version, read from its installed metadata: pyproject.toml is the one source."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("videoxai")
except PackageNotFoundError:  # a source tree used without installing it
    __version__ = "0+unknown"
