"""Baselines: what a pixel, a region or a frame is replaced by when it is "absent".

Shared by Integrated Gradients (the path's start), the perturbation methods (absent segments,
superpixels, occluded windows) and the deletion/insertion metrics. Each baseline maps a pixel
batch ``(B, T, 3, H, W)`` in [0, 1] to a batch of the same shape; they are registered by name so
that options and CLI flags can name them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import UnknownNameError
from ..registry import Registry

Baseline = Callable[[torch.Tensor], torch.Tensor]
BASELINES: Registry[Baseline] = Registry("baseline", UnknownNameError)


def _register(name: str):
    return BASELINES.register(name=name)


@_register("black")
def black(x: torch.Tensor) -> torch.Tensor:
    """All-zero pixels."""
    return torch.zeros_like(x)


def _exact_mean(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``x.mean(dims, keepdim=True)`` summed in float64 a frame at a time, in ``x``'s dtype.

    Equal values average to themselves exactly (their float64 sum is exact, and so is its quotient):
    float32's mean of a still clip's 8 equal frames was off by a rounding error (1e-7), so the
    "mean" baseline differed from the clip everywhere, and occlusion, RISE, temporal SHAP and
    Integrated Gradients painted that rounding as a full-contrast map with no warning. A frame at a
    time: a 4K clip in float64 would be 1.6 GB.
    """
    inner = tuple(d for d in dims if d != 1)
    acc = None
    for t in range(x.shape[1]):
        frame = x[:, t:t + 1].double()
        part = frame.sum(inner, keepdim=True) if inner else frame
        acc = part if acc is None else acc + part
    count = x.shape[1] * math.prod(x.shape[d] for d in inner)
    return (acc / count).to(x.dtype)


@_register("mean")
def mean_frame(x: torch.Tensor) -> torch.Tensor:
    """Every frame replaced by the clip's mean frame (removes motion and the object's timing)."""
    return _exact_mean(x, (1,)).expand_as(x).clone()


@_register("mean_colour")
def mean_colour(x: torch.Tensor) -> torch.Tensor:
    """Every pixel replaced by the clip's mean colour (one RGB value per clip): what "zeros in
    normalised space" means when the normalisation's mean is the clip's own."""
    return _exact_mean(x, (1, 3, 4)).expand_as(x).clone()


@_register("freeze")
def freeze(x: torch.Tensor) -> torch.Tensor:
    """Every frame replaced by the clip's first frame (a still video)."""
    return x[:, :1].expand_as(x).clone()


@_register("fade")
def fade(x: torch.Tensor) -> torch.Tensor:
    """Mid-grey (0.5) pixels."""
    return torch.full_like(x, 0.5)


@_register("blur")
def blur(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Each frame blurred with a Gaussian of ``sigma`` (default: 1/20 of the shorter side)."""
    b, t, c, h, w = x.shape
    sigma = sigma if sigma is not None else max(1.0, min(h, w) / 20)
    # 3σ, but at most 8 frame lengths (as core.refine's kernel): far beyond the frame the kernel
    # only weighs replicated edge pixels, and ep3d's max_blur=1e9 asked for a pad of 3e9 pixels
    radius = max(1, min(int(3 * sigma), 8 * max(h, w)))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = (k / k.sum())
    y = x.reshape(b * t * c, 1, h, w)
    mode = "reflect" if min(h, w) > radius else "replicate"
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(b, t, c, h, w)


def range_error(owner: str, what: str, x: torch.Tensor) -> str | None:
    """The message for a baseline ``x`` whose values leave the pixels' [0, 1] (the clip's own
    tolerance, 1e-6), else ``None``: pixels on a 0–255 scale (a baseline made from uint8 frames)
    ran from 255 to the clip, and the map said nothing, with no error."""
    lo, hi = float(x.min()), float(x.max())
    if lo >= -1e-6 and hi <= 1 + 1e-6:
        return None
    return (f"{owner}: {what} values in [{lo:.3g}, {hi:.3g}], but pixels lie in [0, 1]; divide values on a "
            "0–255 scale by 255")


def get(name: str | Baseline) -> Baseline:
    """A baseline by name (``"black"``, ``"blur"``, ``"mean"``, ``"mean_colour"``, ``"freeze"``,
    ``"fade"``) or a callable."""
    if callable(name):
        return name
    return BASELINES.get(name)


def available() -> list[str]:
    return BASELINES.names()
