"""videoxai — explain video classifiers: where and when the evidence for a prediction lies.

>>> import videoxai as vx
>>> model = vx.load_model("demo")
>>> clip = vx.read_video("clip.mp4", num_frames=model.num_frames)
>>> exp = vx.explain(model, clip, method="staa")
>>> vx.render(exp, clip, "overlay.mp4")
"""

from __future__ import annotations

from . import methods, metrics
from .clip import Clip
from .cost import Cost
from .errors import (InputError, UnknownMethodError, UnknownModelError, UnknownNameError, UnsupportedModelError,
                     VideoReadError, VideoXAIError)
from .core.refine import Refine
from .explain import explain
from .explanation import Explanation
from .models import load_model, wrap
from .models.base import VideoModel
from .stabn import loader as _stabn_loader  # noqa: F401  registers the "stabn" loader and demo-stabn
from .timeline import VideoExplanation, explain_video
from .version import __version__  # from the package metadata (pyproject.toml)


def read_video(path, num_frames: int | None = None, **kwargs) -> Clip:
    """Decode a video file into a :class:`Clip` (see :func:`videoxai.data.video.read_video`)."""
    from .data.video import read_video as _read
    return _read(path, num_frames=num_frames, **kwargs)


def sliding_windows(path_or_clip, num_frames: int, stride: int | None = None, **kwargs):
    """Iterate over windows of ``num_frames`` frames (see :func:`videoxai.data.video.sliding_windows`)."""
    from .data.video import sliding_windows as _windows
    return _windows(path_or_clip, num_frames=num_frames, stride=stride, **kwargs)


def render(exp: Explanation, clip: Clip, path, **kwargs):
    """Write an overlay video (``.mp4`` or ``.gif`` by suffix) (see :func:`videoxai.viz.overlay.render`)."""
    from .viz.overlay import render as _render
    return _render(exp, clip, path, **kwargs)


__all__ = ["Clip", "Cost", "Explanation", "Refine", "VideoModel", "explain", "explain_video", "VideoExplanation", "load_model", "wrap",
           "read_video", "sliding_windows", "render", "methods", "metrics", "VideoXAIError", "InputError",
           "VideoReadError", "UnknownModelError", "UnknownMethodError", "UnknownNameError", "UnsupportedModelError", "__version__"]
