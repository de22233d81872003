"""Integrated Gradients (Sundararajan, Taly & Yan, 2017) on the pixels of a clip.

The attribution of pixel i is ``(x_i − x'_i) · ∫₀¹ ∂y/∂x_i (x' + α (x − x')) dα``, the path
integral of the target logit's gradient on the straight line from a baseline clip ``x'`` to the
clip ``x``. It is complete: the attributions sum to ``y(x) − y(x')`` up to the quadrature error
(``return_convergence_delta=True`` reports that error per clip).

The integral is a quadrature over ``n_steps`` points with the rules and the arithmetic of Captum's
``IntegratedGradients`` (default ``"gausslegendre"``), so with the same ``n_steps``, ``quadrature`` (Captum's ``method``) and
baseline the signed attributions equal Captum's. Steps are evaluated ``internal_batch_size``
clips per forward pass (Captum's meaning: a batch of B clips runs ``internal_batch_size // B``
steps at a time, at least one), the knob that keeps a video model within memory.

Baselines (``baseline=``): ``"black"`` (Captum's default, zeros), ``"blur"`` (each frame blurred:
removes detail, keeps colours and layout), ``"mean"`` (every frame replaced by the clip's mean frame:
removes motion and timing, so the attribution shows what *changes* over time), ``"freeze"``,
``"fade"`` (see :mod:`videoxai.core.baselines`), a callable on the pixel batch, or a tensor that
broadcasts to ``(B, T, 3, H, W)``.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal

import numpy as np
from scipy.special import roots_legendre
import torch

from ..core import baselines
from ..errors import InputError
from ..options import Opt, OptionError
from .base import Target, check_baseline, register
from .gradients import (ChannelReduce, InputGradientMethod, PixelAttribution, check_pixels,
                        frozen_parameters, target_gradients)

BaselineOption = str | Callable[[torch.Tensor], torch.Tensor] | torch.Tensor


def _riemann(kind: str) -> Callable[[int], tuple[list[float], list[float]]]:
    def rule(n: int) -> tuple[list[float], list[float]]:
        if n < 2:
            raise InputError(f"riemann_{kind} needs n_steps ≥ 2, got {n}")
        weights = [1 / n] * n
        if kind == "trapezoid":
            weights[0] /= 2
            weights[-1] /= 2
            alphas = torch.linspace(0, 1, n)
        else:
            lo, hi = {"left": (0, 1 - 1 / n), "middle": (1 / (2 * n), 1 - 1 / (2 * n)),
                      "right": (1 / n, 1)}[kind]
            alphas = torch.linspace(lo, hi, n)
        return alphas.tolist(), weights
    return rule


#: above this many nodes SciPy's Gauss–Legendre rule (a banded eigenvalue solve: O(n) memory,
#: O(n²) time) replaces NumPy's (Captum's: a dense one, O(n²) memory and O(n³) time; 7.8 s at
#: 3 000 nodes against SciPy's 0.2 s); the two agree to 1e-13, and at every usual ``n_steps``
#: the nodes are Captum's bit for bit
EXACT_CAPTUM_NODES = 256

#: the most path steps: each is a forward and a backward pass, the quadrature's error is far below
#: float32's long before, and SciPy's nodes alone take 1.7 s at this size (minutes at 10⁵, and a
#: service's n_steps=10⁶ held a CPU for hours before any pass)
MAX_STEPS = 10_000


def _gauss_legendre(n: int) -> tuple[list[float], list[float]]:
    if n <= EXACT_CAPTUM_NODES:
        nodes, weights = np.polynomial.legendre.leggauss(n)
    else:
        nodes, weights = roots_legendre(n)
    return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()


#: quadrature rules ``n → (alphas, weights)`` on [0, 1], computed exactly as Captum computes them
#: (float32 ``linspace`` for the Riemann nodes, float64 Gauss–Legendre).
QUADRATURES: dict[str, Callable[[int], tuple[list[float], list[float]]]] = {
    "gausslegendre": _gauss_legendre,
    **{f"riemann_{k}": _riemann(k) for k in ("left", "right", "middle", "trapezoid")},
}
Quadrature = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]


@register
class IntegratedGradients(InputGradientMethod):
    """Integrated Gradients; see the module docstring.

    Args:
        n_steps: quadrature points on the path (forward + backward passes per clip); at least
            2 for the Riemann rules.
        quadrature: the rule (:data:`QUADRATURES`): ``"gausslegendre"`` (Captum's default) or
            ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``, ``"riemann_trapezoid"``.
            Captum's name for it, ``method``, is an alias (read in a spec or the class's own call;
            ``vx.explain``'s ``method`` is the method's name).
        baseline: the path's start: a :mod:`~videoxai.core.baselines` name (``"black"``,
            Captum's zeros; ``"blur"``, ``"mean"``, ``"mean_colour"``, ``"freeze"``, ``"fade"``),
            a callable ``(B, T, 3, H, W) → same`` or a tensor that broadcasts to the pixels, with
            values in [0, 1] as the pixels' (a uint8 tensor: 0–255, as a clip's frames).
        internal_batch_size: path points × clips per forward + backward pass, as in Captum: a
            batch of B clips runs ``internal_batch_size // B`` steps at a time, at least one
            (memory: the map only in its last bits).
        return_convergence_delta: also compute ``Σ attribution − (y(x) − y(x'))`` per clip (one
            more forward pass), kept as ``extras["convergence_delta"]``.
    """

    name = "integrated_gradients"
    paper = 'Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017'

    def __init__(self, model, n_steps: Annotated[int, Opt(ge=1, le=MAX_STEPS)] = 50,
                 quadrature: Annotated[Quadrature, Opt(aliases=("method",))] = "gausslegendre",
                 baseline: BaselineOption = "black", internal_batch_size: Annotated[int, Opt(ge=1)] = 4,
                 channel_reduce: ChannelReduce = "abs", return_convergence_delta: bool = False) -> None:
        super().__init__(model, channel_reduce)
        check_baseline(self._owner(), baseline)  # unknown names fail now, with the list of names
        if quadrature.startswith("riemann") and n_steps < 2:
            raise OptionError(f"{self._owner()}: option n_steps must be an integer ≥ 2 with quadrature={quadrature}, "
                              f"got {n_steps}")
        self.n_steps = int(n_steps)
        self.quadrature = quadrature
        self.alphas, self.weights = QUADRATURES[quadrature](self.n_steps)
        self.baseline = baseline
        self.internal_batch_size = int(internal_batch_size)
        self.return_convergence_delta = bool(return_convergence_delta)

    def baseline_clip(self, x: torch.Tensor) -> torch.Tensor:
        """The path's start for pixels ``x`` ``(B, T, 3, H, W)``, same shape."""
        if isinstance(self.baseline, torch.Tensor):
            # uint8 values are pixels on a 0–255 scale, as in a clip's frames (Clip.from_array)
            given = self.baseline / 255 if self.baseline.dtype == torch.uint8 else self.baseline
            if not torch.isfinite(given).all():
                # else the path's NaN reached the maps, and the error blamed an option's scale or the model
                raise InputError("integrated_gradients: baseline tensor holds NaN or infinite values")
            wrong = baselines.range_error("integrated_gradients", "baseline tensor has", given)
            if wrong:
                raise InputError(wrong)
            try:
                return given.to(x.device, x.dtype).expand_as(x)
            except RuntimeError:
                # x is what vx.explain hands the method, rarely the user's frames: say which pixels
                raise InputError(f"integrated_gradients: baseline of shape {tuple(self.baseline.shape)} "
                                 f"does not broadcast to the pixels explained, {tuple(x.shape)} (vx.explain "
                                 "explains the model's view of the frames, its crop box at its input size; "
                                 "working_size='full' explains the frames at their own size)") from None
        out = baselines.get(self.baseline)(x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            # a user's function returning a number or an array failed on ``out.shape`` (AttributeError)
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"integrated_gradients: baseline returned {got}, expected a tensor of "
                             f"shape {tuple(x.shape)}")
        if not torch.isfinite(out).all():
            # the maps came out non-finite, and the error blamed an option's scale or the model
            raise InputError("integrated_gradients: baseline returned NaN or infinite values")
        wrong = baselines.range_error("integrated_gradients", "baseline returned", out)
        if wrong:
            raise InputError(wrong)
        return out.to(x.device, x.dtype)

    def forward_passes(self, num_frames: int) -> int:
        # the clean clip, the path, and the baseline's own pass for the convergence delta
        return self.n_steps + 1 + int(self.return_convergence_delta)

    def attribute_pixels(self, inputs: torch.Tensor, target: Target = None) -> PixelAttribution:
        x = check_pixels(self.model, inputs)
        target, logits = self.target_and_logits(x, target, need_logits=self.return_convergence_delta)
        start = self.baseline_clip(x)
        b = x.shape[0]
        steps_per_pass = max(1, self.internal_batch_size // b)
        total = torch.zeros_like(x)
        with frozen_parameters(self.model):
            for sl in self.batches(self.n_steps, steps_per_pass, "path steps"):
                alphas = self.alphas[sl]
                # Captum's expression, term for term, so that the numbers agree to the last bits
                path = torch.cat([start + a * (x - start) for a in alphas])       # (k·B, T, 3, H, W)
                grads, _ = target_gradients(self.model, path, target.repeat(len(alphas)))
                w = torch.tensor(self.weights[sl]).float().to(x.device).view(-1, 1)
                total += (grads.reshape(len(alphas), -1) * w).reshape(len(alphas), *x.shape).sum(0)
        values = total * (x - start)
        extras = None
        if self.return_convergence_delta:
            start_logits = self.clean_logits(start)
            gap = (logits - start_logits).gather(1, target[:, None])[:, 0]
            extras = {"convergence_delta": values.flatten(1).sum(1) - gap}
        return PixelAttribution(values=values, target=target, logits=logits, extras=extras)
