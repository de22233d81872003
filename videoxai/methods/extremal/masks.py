"""The mask generator and the blur pyramid of extremal perturbation (TorchRay's, per frame).

The mask generator's smooth max is a hand-written autograd function (:class:`_SmoothMax`,
checked against TorchRay's formula) that processes a few masks at a time, in place; on CPU it runs about three
times faster than the plain autograd formula (0.10 s against 0.36 s forward + backward for the
demo model's 32 masks, one thread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...core import baselines
from ...core.batching import batched
from ...errors import InputError


class MaskGenerator:
    """TorchRay's smooth mask generator (per frame).

    Args:
        shape: ``(h, w)`` of the output mask.
        step: pixels between parameter cells (an integer).
        sigma: kernel size in pixels.
        coldness: sharpness of the smooth max (20).

    Attributes:
        shape_in: ``(hi, wi)`` of the parameter grid.
        shape_out: ``(Ho, Wo)`` of the padded mask (the output plus a margin of σ).
        margin: rows/cols of the padded mask before the output starts.
    """

    #: the most memory the kernel table (``(2r+1)² × Ho × Wo`` floats) may take: it grows with
    #: (σ / step)², and a σ near the frame's size with a fine step asks for terabytes
    MAX_TABLE_BYTES = 1 << 30

    def __init__(self, shape: tuple[int, int], step: int, sigma: float, coldness: float = 20.0,
                 device: torch.device | str = "cpu") -> None:
        if int(step) != step or step < 1:
            raise InputError(f"mask step must be a positive integer, got {step}")
        if sigma <= 0:
            raise InputError(f"mask sigma must be > 0, got {sigma}")
        self.shape, self.step, self.sigma, self.coldness = tuple(shape), int(step), float(sigma), coldness
        h, w = self.shape
        if step > min(h, w):
            raise InputError(f"step {step} is larger than the {h}x{w} frame the masks are drawn on; "
                             f"choose step ≤ {min(h, w)}")
        if sigma > min(h, w):
            raise InputError(f"sigma {sigma:g} is larger than the {h}x{w} frame the masks are drawn on; "
                             f"choose sigma ≤ {min(h, w)}")
        self.margin, self.padding, self.radius, self.shape_in, self.shape_mid, self.shape_up, self.shape_out = \
            self._geometry(self.shape, self.step, self.sigma)
        if not self._covers(self.shape, self.step, self.sigma):
            # TorchRay's padding covers the frame only while the cells are not much coarser than σ
            finest = max((s for s in range(1, self.step) if self._covers(self.shape, s, self.sigma)), default=1)
            raise InputError(f"step {step} is too coarse for sigma {sigma:g}: its masks would not cover the "
                             f"{h}x{w} frame; choose step ≤ {finest} or a larger sigma")
        k = 2 * self.radius + 1
        table = 4 * k * k * self.shape_out[0] * self.shape_out[1]
        if table > self.MAX_TABLE_BYTES:
            raise InputError(f"sigma {sigma:g} with step {step} needs a {table / 2 ** 30:.1f} GiB mask kernel "
                             f"table (at most {self.MAX_TABLE_BYTES / 2 ** 30:.0f} GiB); choose a larger step "
                             "or a smaller sigma")
        # weight[j, u, v]: kernel value between output pixel (u, v) and its j-th neighbour cell
        uy = torch.arange(self.shape_out[0], dtype=torch.float32)[:, None]
        ux = torch.arange(self.shape_out[1], dtype=torch.float32)[None, :]
        iy0 = torch.floor(self.shape_mid[0] / self.shape_up[0] * uy)
        ix0 = torch.floor(self.shape_mid[1] / self.shape_up[1] * ux)
        weight = torch.empty(k * k, *self.shape_out, dtype=torch.float32)
        for ky in range(k):
            for kx in range(k):
                iy = iy0 + ky - self.padding
                ix = ix0 + kx - self.padding
                dist = torch.sqrt((uy - (sigma + self.step * iy)) ** 2 + (ux - (sigma + self.step * ix)) ** 2)
                weight[ky * k + kx] = torch.exp(-2 * ((dist / sigma - 0.5).clamp(min=0) ** 2))
        self.weight = weight[None].to(device)

    @staticmethod
    def _geometry(shape: tuple[int, int], step: int, sigma: float):
        """TorchRay's sizes: margin, padding, radius, and the shapes in, mid, up and out."""
        margin = round(sigma)
        padding = 1 + math.ceil((sigma + sigma) / step)
        radius = 1 + math.ceil(sigma / step)
        shape_in = tuple(math.ceil(z / step) for z in shape)
        k = 2 * radius + 1
        shape_mid = tuple(z + 2 * padding - k + 1 for z in shape_in)
        shape_up = tuple(step * z for z in shape_mid)
        shape_out = tuple(z - step + 1 for z in shape_up)
        return margin, padding, radius, shape_in, shape_mid, shape_up, shape_out

    @classmethod
    def _covers(cls, shape: tuple[int, int], step: int, sigma: float) -> bool:
        """Whether the padded mask holds the frame after its margin (the crop of :meth:`__call__`)."""
        margin, *_, shape_out = cls._geometry(shape, step, sigma)
        return all(o >= margin + z for o, z in zip(shape_out, shape))

    def __call__(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K, 1, hi, wi)`` parameters → ``(cropped (K, 1, h, w), padded (K, 1, Ho, Wo))``."""
        k = 2 * self.radius + 1
        cols = F.unfold(params, (k, k), padding=(self.padding, self.padding))
        cols = cols.reshape(len(params), k * k, *self.shape_mid)
        m = _SmoothMax.apply(cols, self.weight, self.step, self.shape_out, self.coldness)
        m = m[:, None].clamp(0, 1)
        top = self.margin
        return m[..., top:top + self.shape[0], top:top + self.shape[1]], m

    def reference(self, params: torch.Tensor) -> torch.Tensor:
        """The padded mask computed as TorchRay writes it (plain autograd, memory-hungry): the
        yardstick that :class:`_SmoothMax` is tested against."""
        k = 2 * self.radius + 1
        m = F.unfold(params, (k, k), padding=(self.padding, self.padding))
        m = m.reshape(len(params), k * k, *self.shape_mid)
        m = F.interpolate(m, size=self.shape_up, mode="nearest")
        m = m[..., :self.shape_out[0], :self.shape_out[1]] * self.weight
        return (m * F.softmax(self.coldness * m, dim=1)).sum(1, keepdim=True).clamp(0, 1)


class _SmoothMax(torch.autograd.Function):
    """Nearest upsampling of the unfolded parameters, kernel weighting and smooth max, fused.

    The parameters are in [0, 1] (clamped after every step) and so are the kernel weights, which
    makes exp(c·(v − 1)) safe without the usual max subtraction.

    Written out by hand because the plain autograd version materialises several
    ``(K, (2r+1)², Ho, Wo)`` tensors per iteration (37 MB each for the demo model's 4 areas × 8
    frames): their allocation, not the arithmetic, dominated the cost. Here masks are processed a
    few at a time, the backward pass recomputes the per-chunk intermediates, and the gradient of
    out = Σ_j v_j softmax_j(c·v) is ∂out/∂v_j = softmax_j(c·v) · (1 + c·(v_j − out)).
    """

    CHUNK = 1 << 18  # elements per chunk of (masks × neighbours × pixels): about 1 MB

    @staticmethod
    def _weighted(cols: torch.Tensor, weight: torch.Tensor, step: int) -> torch.Tensor:
        """v = upsampled parameters × kernel weights: ``(n, J, mh, step, mw, step)`` in one pass."""
        _, j, mh, mw = cols.shape
        return cols[:, :, :, None, :, None] * weight.view(1, j, mh, step, mw, step)

    @staticmethod
    def forward(ctx, cols, weight, step, shape_out, coldness):
        n, _, mh, mw = cols.shape
        # the weights on the whole upsampled grid, zero where TorchRay crops it away
        full = F.pad(weight, (0, mw * step - shape_out[1], 0, mh * step - shape_out[0]))
        out = cols.new_empty(n, mh * step, mw * step)
        for sl in batched(n, max(1, _SmoothMax.CHUNK // full.numel())):
            v = _SmoothMax._weighted(cols[sl], full, step)
            e = v.mul(coldness).sub_(coldness).exp_()  # exp(c·(v − 1)): v ≤ 1, cannot overflow
            den = e.sum(1)
            out[sl] = (v.mul_(e).sum(1) / den).reshape(-1, mh * step, mw * step)
        ctx.save_for_backward(cols, full, out)
        ctx.step, ctx.coldness = step, coldness
        return out[:, :shape_out[0], :shape_out[1]]

    @staticmethod
    def backward(ctx, grad_out):
        cols, full, out = ctx.saved_tensors
        step, c = ctx.step, ctx.coldness
        n, j, mh, mw = cols.shape
        g_out = F.pad(grad_out, (0, mw * step - grad_out.shape[-1], 0, mh * step - grad_out.shape[-2]))
        g_out = g_out.reshape(n, 1, mh, step, mw, step)
        out = out.reshape(n, 1, mh, step, mw, step)
        grad = torch.empty_like(cols)
        for sl in batched(n, max(1, _SmoothMax.CHUNK // full.numel())):
            v = _SmoothMax._weighted(cols[sl], full, step)
            e = v.mul(c).sub_(c).exp_()
            scale = g_out[sl] / e.sum(1, keepdim=True)
            # in place on v: e · (1 + c·(v − out)) · grad / Σe · weight, then summed per cell
            g = v.sub_(out[sl]).mul_(c).add_(1).mul_(e).mul_(scale).mul_(full.view(1, j, mh, step, mw, step))
            grad[sl] = g.sum((3, 5))
        return grad, None, None, None, None


class BlurPyramid:
    """The perturbation operator Φ(x; m): ``levels`` increasingly perturbed copies of each frame.

    Args:
        frames: ``(T, 3, h, w)`` pixels in [0, 1].
        levels: pyramid levels L (8); level L−1 is the frame itself.
        kind: ``"blur"`` (level ℓ blurred with σ = (1 − ℓ/(L−1))·max_blur) or ``"fade"``
            (level ℓ = fade_to + (x − fade_to)·ℓ/(L−1)).
        fade_to: ``(3,)`` colour reached by ``"fade"`` (the model's mean colour: zero after
            normalisation, as in the reference).
    """

    def __init__(self, frames: torch.Tensor, levels: int = 8, max_blur: float = 20.0,
                 kind: str = "blur", fade_to: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        if levels < 2:
            raise InputError(f"the perturbation pyramid needs ≥ 2 levels, got {levels}")
        if kind not in ("blur", "fade"):
            raise InputError(f"perturbation must be 'blur' or 'fade', got {kind!r}")
        self.levels = levels
        out = []
        with torch.no_grad():
            for lvl in range(levels):
                s = 1 - lvl / (levels - 1)
                if lvl == levels - 1:
                    out.append(frames)
                elif kind == "blur":
                    out.append(baselines.blur(frames[None], sigma=s * max_blur)[0])
                else:
                    c = frames.new_tensor(fade_to).view(1, 3, 1, 1)
                    out.append(c + (frames - c) * (1 - s))
        self.pyramid = torch.stack(out, dim=-1).permute(0, 2, 3, 4, 1).contiguous()  # (T, h, w, L, 3)

    def apply(self, mask: torch.Tensor) -> torch.Tensor:
        """Masks ``(K, T, h, w)`` in [0, 1] → perturbed clips ``(K, T, 3, h, w)`` (differentiable in mask)."""
        t, h, w = self.pyramid.shape[:3]
        pos = mask * (self.levels - 1)
        lo = pos.detach().floor().long().clamp(0, self.levels - 1)
        frac = (pos - lo)[..., None]
        ti = torch.arange(t, device=mask.device)[None, :, None, None]
        yi = torch.arange(h, device=mask.device)[None, None, :, None]
        xi = torch.arange(w, device=mask.device)[None, None, None, :]
        y0 = self.pyramid[ti, yi, xi, lo]
        y1 = self.pyramid[ti, yi, xi, (lo + 1).clamp(max=self.levels - 1)]
        return (y0 + frac * (y1 - y0)).permute(0, 1, 4, 2, 3)




def smallest_area(gen: MaskGenerator, t: int) -> float:
    """The share of a ``t``-frame padded mask volume that one parameter cell at 1 (all others
    at 0) keeps (≥ ½): the smallest region the generator draws at full strength (a disc of
    radius ≈ 1.1 σ; 150 pixels of one frame at 64 px, 0.0032 of an 8-frame clip)."""
    p = torch.zeros(1, 1, *gen.shape_in, device=gen.weight.device, dtype=gen.weight.dtype)
    p[0, 0, gen.shape_in[0] // 2, gen.shape_in[1] // 2] = 1
    padded = gen(p)[1]
    return float((padded >= 0.5).sum()) / (t * padded.shape[-2] * padded.shape[-1])

