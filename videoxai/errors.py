"""Exceptions raised by videoxai.

Every error a user can cause (a bad file, an unknown model, a clip of the wrong shape) is a
:class:`VideoXAIError` with a message that names what is wrong, so the CLI and the server can show
it as one line instead of a traceback from deep inside a dependency.
"""

from __future__ import annotations


class VideoXAIError(Exception):
    """Base class of every error videoxai raises on purpose."""


class VideoReadError(VideoXAIError):
    """A file is missing, is not a video, or cannot be decoded."""


class InputError(VideoXAIError, ValueError):
    """A clip, tensor or option has the wrong shape, type or value."""


class UnknownNameError(InputError, KeyError):
    """A name that no plug-in is registered under (method, metric, model, dataset kind, baseline);
    the message lists the registered names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownModelError(UnknownNameError):
    """A model spec names nothing that can be loaded."""


class UnknownMethodError(UnknownNameError):
    """A method name is not registered."""


class UnsupportedModelError(VideoXAIError):
    """A method cannot run on this kind of model (e.g. STAA on a 3D CNN without attention)."""
