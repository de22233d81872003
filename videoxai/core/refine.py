"""Refinement of raw maps: the STAA paper's "dynamic thresholding" and "attention focusing",
made deterministic and usable on the output of every method.

The reference code draws its threshold at random between the 70th and 90th percentiles; here the
threshold comes from each clip's own distribution (Otsu's between-class variance, or the mean),
so the same map always gives the same result. Steps, in order, on ``(B, T, h, w)`` maps at the
method's resolution (cheap, and independent of the video's size):

1. light spatial Gaussian smoothing (``spatial_sigma``, a fraction of the map's shorter side),
2. threshold from the clip's distribution, zeroing below it (``threshold``),
3. focusing: a power ``focus`` > 1 moves the mass onto the strongest regions,
4. temporal Gaussian smoothing across frames (``temporal_sigma``, in map frames).

Across the windows of a stream, :class:`StreamSmoother` applies an exponential moving average.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import InputError


@dataclass(frozen=True)
class Refine:
    """Refinement settings; ``Refine.off()`` does nothing, ``Refine()`` is the default."""

    threshold: Literal["otsu", "mean", "none"] = "otsu"
    focus: float = 2.0
    spatial_sigma: float = 0.04
    temporal_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.threshold not in ("otsu", "mean", "none"):
            raise InputError(f"refine threshold must be 'otsu', 'mean' or 'none', got {self.threshold!r}")
        values = {"focus": self.focus, "spatial_sigma": self.spatial_sigma, "temporal_sigma": self.temporal_sigma}
        for name, v in values.items():
            # NaN passed the comparisons below and turned every map into NaN
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise InputError(f"refine {name} must be a finite number, got {v!r}")
        if self.focus <= 0 or self.spatial_sigma < 0 or self.temporal_sigma < 0:
            raise InputError("refine focus must be > 0 and sigmas ≥ 0")

    @classmethod
    def off(cls) -> "Refine":
        return cls(threshold="none", focus=1.0, spatial_sigma=0.0, temporal_sigma=0.0)

    @property
    def is_off(self) -> bool:
        return self == Refine.off()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, value) -> "Refine":
        """``None``/``False`` → off, ``True`` → defaults, a dict or ``Refine`` → as given."""
        if value is None or value is False:
            return cls.off()
        if value is True:
            return cls()
        if isinstance(value, Refine):
            return value
        if isinstance(value, dict):
            # named here: the constructor's TypeError ("Refine.__init__() got an unexpected keyword
            # argument 'focsu'") said neither which settings there are nor what to type
            names = [f.name for f in fields(cls)]
            unknown = [k for k in value if k not in names]
            if unknown:
                raise InputError(f"refine has no setting {unknown[0]!r}; its settings are {', '.join(names)}")
            return cls(**value)
        raise InputError(f"refine must be True/False, a dict or a Refine, got {type(value).__name__}")

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """``(B, T, h, w)`` non-negative → refined ``(B, T, h, w)``, each clip scaled to max 1."""
        if self.is_off:
            return maps
        x = maps.float()
        if self.spatial_sigma > 0:
            x = gaussian_blur_2d(x, self.spatial_sigma * min(x.shape[-2:]))
        x = normalise_max(x)
        if self.threshold != "none":
            tau = (otsu_threshold(x) if self.threshold == "otsu" else x.flatten(1).mean(1))
            x = torch.where(x >= tau.view(-1, 1, 1, 1), x, torch.zeros_like(x))
        if self.focus != 1.0:
            x = x.pow(self.focus)
        if self.temporal_sigma > 0:
            x = gaussian_blur_time(x, self.temporal_sigma)
        return normalise_max(x)


def normalise_max(x: torch.Tensor) -> torch.Tensor:
    """Scale each clip of ``(B, …)`` so that its maximum is 1 (all-zero clips stay zero)."""
    peak = x.flatten(1).amax(1).clamp_min(1e-12)
    return x / peak.view(-1, *([1] * (x.ndim - 1)))


def _gaussian_kernel(sigma: float, device, dtype, length: int) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ``3σ`` for an axis of ``length`` cells, the radius at
    most ``8 · length``: far beyond the axis the kernel only weighs replicated edge cells, and a
    σ of 10⁶ asked for a 786 GB pad. Every σ up to 2.6 lengths keeps its full 3σ radius."""
    radius = max(1, math.ceil(min(3 * sigma, 8 * length)))  # min first: 3σ may be inf
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur_2d(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over the last two dims of ``(B, T, h, w)`` (reflect padding)."""
    if sigma <= 0.3:  # below a third of a cell the kernel is a delta
        return x
    b, t, h, w = x.shape
    k = _gaussian_kernel(sigma, x.device, x.dtype, length=max(h, w))
    r = k.numel() // 2
    y = x.reshape(b * t, 1, h, w)
    mode = "reflect" if min(h, w) > r else "replicate"
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(b, t, h, w)


def gaussian_blur_time(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur along T of ``(B, T, h, w)`` (replicate padding at the clip's ends)."""
    b, t, h, w = x.shape
    k = _gaussian_kernel(sigma, x.device, x.dtype, length=t)
    r = k.numel() // 2
    y = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, t)
    y = F.conv1d(F.pad(y, (r, r), mode="replicate"), k.view(1, 1, -1))
    return y.reshape(b, h, w, t).permute(0, 3, 1, 2)


def otsu_threshold(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Otsu's threshold of each clip of ``(B, …)`` values in [0, 1]: ``(B,)``.

    Maximises the between-class variance of a 256-bin histogram (Otsu, 1979).
    """
    flat = x.flatten(1).clamp(0, 1)
    idx = (flat * (bins - 1)).round().long()
    hist = torch.zeros(flat.shape[0], bins, device=x.device, dtype=torch.float64)
    hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    p = hist / hist.sum(1, keepdim=True)
    centres = torch.linspace(0, 1, bins, device=x.device, dtype=torch.float64)
    w0 = p.cumsum(1)
    mu = (p * centres).cumsum(1)
    mu_t = mu[:, -1:]
    between = (mu_t * w0 - mu) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    best = between.argmax(1)
    return (centres[best] + 0.5 / (bins - 1)).to(x.dtype)


class StreamSmoother:
    """Exponential moving average of maps and temporal scores across the windows of a stream.

    ``alpha`` is the weight of the newest window (1 = no smoothing).
    """

    def __init__(self, alpha: float = 0.5) -> None:
        if not 0 < alpha <= 1:
            raise InputError(f"stream smoothing alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._state: torch.Tensor | None = None

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        if self._state is None or self._state.shape != maps.shape:
            self._state = maps.clone()
        else:
            self._state = self.alpha * maps + (1 - self.alpha) * self._state
        return self._state

    def reset(self) -> None:
        self._state = None
