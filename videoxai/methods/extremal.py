"""Extremal perturbation for video: 2D-EP, 3D-EP and STEP (Li et al., TCSVT 2021 / WACV 2021).

Fong et al.'s extremal perturbation (TorchRay) carried to video, following the authors' code
(``perturbation_area.py``; research/perturbation.md §1). For each target area a, a mask
m ∈ [0, 1]^{T×h×w} is optimised so that the clip perturbed outside m keeps the target (the
*preserve* game) while m covers about a of the clip:

    E(m) = w_r · reward(m) + λ_t · L_area(m; a) + μ_t · L_K(m; a)

* **Mask** (:class:`MaskGenerator`): per frame, a coarse parameter grid (one cell every ``step``
  pixels) is spread by the kernel k(z) = exp(−2·max(z − ½, 0)²), z = distance/σ, and neighbouring
  contributions are combined by a smooth max, Σ v·softmax(20·v). There is no temporal coupling
  in the generator; time enters through the area and L_K terms.
* **Perturbation** (:class:`BlurPyramid`): 8 levels per frame, level ℓ blurred with
  σ = (1 − ℓ/7)·σ_max (or faded towards the model's mean colour); a mask value m picks the linear
  blend of levels ⌊7m⌋ and ⌊7m⌋+1, so m = 1 keeps the pixel and m = 0 is fully blurred.
* **Reward**: preserve −log p_c(Φ(x; m)); delete −log(1 − p_c(Φ(x; 1 − m))); dual: both.
* **Area** (:func:`area_loss`): the sorted (shuffled first, to break ties) *padded* mask is
  pulled towards a vector of (1 − a)·V zeros and a·V ones: over each frame (2D-EP) or over the
  whole volume (3D-EP, STEP). Its weight grows, λ_t = 300 · 2.83^{t/iterations} (the recipe's
  300 · 1.0008668^t over 1200 iterations).
* **L_K** (STEP only, :func:`smoothness_loss`): the padded mask is convolved with a binary
  ellipsoid of K_t frames × k × k pixels at spatial stride k, normalised by the kernel's sum;
  of the sorted responses the top ``ceil(a·V / int(K_t·k²·π/6))`` are pulled to 1 and the rest
  to 0, so the kept region is made of whole ellipsoidal tubes. Weight μ_t = 300 after the
  first 1/12 of the iterations (the recipe's 100 of 1200).
* The areas are optimised **jointly**, one batch of clips per
  iteration (split by ``batch_size`` with exact gradient accumulation, since E is a sum over
  areas). The map is the sum of the areas' masks (the recipe's; by default each divided by its
  area first, see below), Gaussian-smoothed per frame (the recipe's σ = 10 px at 112 px; 5 px by
  default) and divided by its maximum. ``exp.meta["evidence"]`` is the probability the kept
  area's mask carries (:meth:`ExtremalPerturbation.evidence`) and ``evidence_share`` the best
  kept mask's share of the intact clip's probability: near 0 when the model gives the mask no
  signal (a randomised model), where the mask is shaped by the area prior alone and the map
  is left blank (``min_evidence``).

Sizes in pixels (step 7, σ 11, σ_max 20, k = 11, final σ 10) are the recipe's at its 112-px
input and scale with the model's input size (the L_K kernel size is kept odd). The optimiser is
the recipe's SGD (momentum and dampening 0.9; lr 0.1 at the default 150 iterations, the
recipe's 0.05 at its 1200 with ``preset="paper"``); its schedules are defined on the fraction
of the run, so ``iterations`` below the recipe's 1200 keep their shape. ``optimizer="adam"`` is
available but not the default: Adam rescales every parameter's step to the same size, which
erases the difference between the reward's strong gradient on the evidence and the regularisers'
weak one everywhere else, and on the analytic test model STEP then drifts off the evidence (the
preserved probability fell to 0.12 where SGD keeps 0.99).

**Defaults that differ from the recipe** (``preset="paper"`` restores it; see
:class:`ExtremalPerturbation`): the dual game instead of preserve alone, a ladder of small areas
with the map kept from the smallest area that holds ≥ 90 % of the best preserved probability,
150 iterations, the kept masks summed as densities (each divided by its area) and smoothed with
σ = 5 px at 112 px instead of 10, and a blank map when the kept masks carry less than
``min_evidence`` (10 %) of the target's probability. On the synthetic benchmark the recipe's
preserve game is satisfied by the evidence of a single frame, and its areas (≥ 5 % of the clip)
dwarf evidence of 0.2–0.6 %.
Without the evidence test a model that ignores the masks (destroyed weights) still gets a map
ranked like the trained model's (Spearman ρ 0.76 on a 3D-CNN clip): the area term drives a·V
voxels to 1 wherever the faintest gradient points, and blurring changes the clip most at its
highest-contrast structure, the object, whatever the weights. How the masks become one map
was chosen on validation clips (the same optimised masks combined several ways; 9 object clips
of the synthetic benchmark's ``"val"`` split per model and method): summed as they are, the
largest kept mask holds most of the map's mass, spread over frames and background the smaller
ones leave out, so the map's top frame often falls outside the evidence (STEP on the 3D CNN:
0.44 of clips in the window; as densities 0.78; 3D-EP 0.78 → 1.00); and the recipe's final
smoothing, a display step over masks that are already smooth (the generator's σ is 11 px),
moves the peak towards the centre of mass of the kept region, beside the evidence when that
region is lopsided; at 2 px the peak is decided by small differences inside a mask's plateau,
which the alignment to the frames shifts. Through ``vx.explain`` (3D-EP, top frame in the window
/ peak on the object / pointing / IoU), the recipe's map → densities with 2 px → with 5 px:
3D CNN 0.78 / 0.62 / 0.88 / 0.227 → 1.00 / 0.69 / 0.85 / 0.322 → 1.00 / 0.77 / 0.91 / 0.329;
TimeSformer 1.00 / 0.73 / 0.89 / 0.292 → 1.00 / 0.65 / 0.94 / 0.333 → 1.00 / 0.73 / 0.94 / 0.334.
Summing every area as densities (``keep=0``) did as well or slightly better there, but lets the
smallest areas, which fail to hold evidence larger than themselves, put their concentrated
weight wherever they settled; the ``keep`` rule is kept for models whose evidence is larger
than this benchmark's. STEP also differs in its L_K geometry (:class:`STEP`).

Deliberate differences from the reference code: it runs on CPU and GPU (no
``torch.cuda.set_device``), writes no files, blurs with reflected borders (TorchRay pads with
zeros, darkening the edges), draws its tie-breaking shuffles from a seeded generator, and checks
that the clip is long enough for the L_K kernel (the reference crashes inside ``conv3d``). The
model's parameters are never touched: gradients are taken for the mask only. The mask
generator's smooth max is a hand-written autograd function (:class:`_SmoothMax`, checked against
TorchRay's formula) that processes a few masks at a time, in place; on CPU it runs about three
times faster than the plain autograd formula (0.10 s against 0.36 s forward + backward for the
demo model's 32 masks, one thread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F

from ..core import baselines
from ..core.batching import batched
from ..core.refine import gaussian_blur_2d
from ..errors import InputError
from ..options import Opt, as_list
from .base import BatchSize, Seed, register
from .perturbation import Canvas, ClipResult, PerturbationMethod, check_fits

#: the recipe's sizes, in pixels of its 112 × 112 input
_REF_SIDE = 112
_REF = {"step": 7, "sigma": 11.0, "max_blur": 20.0, "kernel_size": 11, "final_sigma": 10.0}
#: λ_t growth over a whole run: 1.0008668 ** 1200
AREA_GROWTH = 1.0008668 ** 1200
#: π/6, the share of an ellipsoid in its bounding box, as the recipe writes it
ELLIPSOID_SHARE = 0.5236
#: ``areas="auto"``: a ladder of areas, doubling, from about a quarter of a small object's share
#: of the clip to the recipe's smallest, optimised jointly; the map keeps the smallest area whose
#: preserved score is within ``keep`` of the best one and every larger one
#: ``"auto"`` (the ladder below), or one or several fractions of the clip in (0, 1) (one: a list of one)
Areas = Annotated[Sequence[float] | float | Literal["auto"] | None,
                  Opt(gt=0, lt=1, normalise=lambda v: as_list(v) if isinstance(v, (int, float, list, tuple)) else v)]

AREA_LADDER = (0.0025, 0.005, 0.01, 0.02, 0.05)
#: the recipe's areas for its UCF101 runs (``preset="paper"``)
PAPER_AREAS = (0.05, 0.1, 0.15, 0.5)


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

    def __init__(self, shape: tuple[int, int], step: int, sigma: float, coldness: float = 20.0,
                 device: torch.device | str = "cpu") -> None:
        if int(step) != step or step < 1:
            raise InputError(f"mask step must be a positive integer, got {step}")
        if sigma <= 0:
            raise InputError(f"mask sigma must be > 0, got {sigma}")
        self.shape, self.step, self.sigma, self.coldness = tuple(shape), int(step), float(sigma), coldness
        self.margin = round(sigma)
        self.padding = 1 + math.ceil((sigma + sigma) / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = tuple(math.ceil(z / step) for z in self.shape)
        k = 2 * self.radius + 1
        self.shape_mid = tuple(z + 2 * self.padding - k + 1 for z in self.shape_in)
        self.shape_up = tuple(self.step * z for z in self.shape_mid)
        self.shape_out = tuple(z - self.step + 1 for z in self.shape_up)
        # weight[j, u, v]: kernel value between output pixel (u, v) and its j-th neighbour cell
        uy = torch.arange(self.shape_out[0], dtype=torch.float32)[:, None]
        ux = torch.arange(self.shape_out[1], dtype=torch.float32)[None, :]
        iy0 = torch.floor(self.shape_mid[0] / self.shape_up[0] * uy)
        ix0 = torch.floor(self.shape_mid[1] / self.shape_up[1] * ux)
        weight = torch.empty(k * k, *self.shape_out)
        for ky in range(k):
            for kx in range(k):
                iy = iy0 + ky - self.padding
                ix = ix0 + kx - self.padding
                dist = torch.sqrt((uy - (sigma + self.step * iy)) ** 2 + (ux - (sigma + self.step * ix)) ** 2)
                weight[ky * k + kx] = torch.exp(-2 * ((dist / sigma - 0.5).clamp(min=0) ** 2))
        self.weight = weight[None].to(device)

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


def area_loss(padded: torch.Tensor, areas: torch.Tensor, per_frame: bool,
              order: torch.Tensor | None = None) -> torch.Tensor:
    """L_area of padded masks ``(A, T, Ho, Wo)`` for target areas ``(A,)`` → ``(A,)``.

    ``mean((sort(m) − r)²)`` with r = (1 − a)·V zeros then ones, over the whole volume
    (V = T·Ho·Wo) or, ``per_frame``, over each frame (V = Ho·Wo) and then averaged over frames.
    ``order`` (a permutation of the flattened elements) is applied before sorting so that ties
    are broken at random, as in the reference.
    """
    a_, t = padded.shape[:2]
    flat = padded.reshape(a_, t, -1) if per_frame else padded.reshape(a_, 1, -1)
    if order is not None:
        flat = flat[..., order]
    v = flat.shape[-1]
    zeros = (v * (1 - areas)).long()                                           # int(V·(1−a))
    ref = (torch.arange(v, device=padded.device)[None] >= zeros[:, None]).to(padded.dtype)
    return ((flat.sort(-1).values - ref[:, None]) ** 2).mean(-1).mean(-1)


def ellipsoid_kernel(frames: int, rows: int, cols: int, shape: str = "ellipsoid",
                     grid: str = "ends") -> torch.Tensor:
    """The binary L_K kernel ``(frames, rows, cols)``: 1 where √(v₁² + v₂² + v₃²) ≤ 1
    (``"cylinder"``: the temporal coordinate is ignored).

    ``grid="ends"`` samples each v on ``linspace(−1, 1)`` as the recipe does: the first and last
    frame then lie on the ellipsoid's poles and hold one voxel each (a 2-frame kernel is two
    voxels). ``"centres"`` samples the centres of n equal cells of [−1, 1]
    (±(1 − 1/n), …), so every frame of the kernel holds a disc of about its share.
    """
    if shape not in ("ellipsoid", "cylinder"):
        raise InputError(f"kernel_shape must be 'ellipsoid' or 'cylinder', got {shape!r}")
    if grid not in ("ends", "centres"):
        raise InputError(f"kernel_grid must be 'ends' or 'centres', got {grid!r}")

    def axis(n: int) -> torch.Tensor:
        if grid == "ends" or n == 1:
            return torch.linspace(-1, 1, n, dtype=torch.float64)
        return torch.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=torch.float64)

    v1, v2, v3 = torch.meshgrid(axis(frames), axis(rows), axis(cols), indexing="ij")
    r2 = v2 ** 2 + v3 ** 2 + (v1 ** 2 if shape == "ellipsoid" else 0)
    return (r2.sqrt() <= 1).float()


def tube_count(area: float, volume: int, kernel: torch.Tensor, rule: str = "recipe") -> int:
    """How many L_K windows a mask of ``area`` × ``volume`` voxels should fill.

    ``"recipe"``: ``ceil(a·V / int(K_t·k·k·0.5236))``, the nominal ellipsoid's share of its box.
    ``"kernel"``: ``max(1, round(a·V / ΣK))``, the voxels the discrete kernel really holds, to the
    nearest whole tube. The recipe's rule was made for areas of many tubes; for areas of one or
    two it overshoots (ceil turns 1.2 tubes into 2), and the nominal share undercounts an
    ``"ends"`` kernel's voxels (ΣK = 52 against 102 at 4 × 7 × 7).
    """
    kt, kh, kw = kernel.shape
    if rule == "recipe":
        return math.ceil(area * volume / int(kt * kh * kw * ELLIPSOID_SHARE))
    if rule == "kernel":
        return max(1, round(area * volume / float(kernel.sum())))
    raise InputError(f"tubes must be 'recipe' or 'kernel', got {rule!r}")


def smoothness_loss(padded: torch.Tensor, areas: torch.Tensor, kernel: torch.Tensor,
                    order: torch.Tensor | None = None, tubes: str = "recipe",
                    norm: str = "parts") -> torch.Tensor:
    """STEP's L_K of padded masks ``(A, T, Ho, Wo)`` → ``(A,)``.

    ĉ = conv3d(m, K, stride (1, k, k)) / ΣK; with ``top`` = :func:`tube_count` (the recipe's
    ``ceil(a·T·Ho·Wo / int(K_t·k·k·0.5236))`` by default), L_K = mean over the ``top`` largest ĉ
    of (ĉ − 1)² + mean over the rest of ĉ² (``norm="parts"``, the recipe's; an empty part
    contributes 0, where the reference would produce NaN), or ``norm="windows"``: the same
    squared errors summed over all N windows and divided by N.
    """
    a_, t, ho, wo = padded.shape
    kt, kh, kw = kernel.shape
    c = F.conv3d(padded[:, None], kernel[None, None].to(padded), stride=(1, kh, kw))
    c = c.reshape(a_, -1) / kernel.sum()
    if order is not None:  # shuffled before sorting: ties broken at random, as in the reference
        c = c[:, order]
    c = c.sort(-1, descending=True).values
    out = []
    for i, a in enumerate(areas.tolist()):
        top = min(tube_count(a, t * ho * wo, kernel, tubes), c.shape[1])
        if norm == "windows":  # every window weighs 1/N, as every voxel weighs 1/V in L_area
            out.append((((c[i, :top] - 1) ** 2).sum() + (c[i, top:] ** 2).sum()) / c.shape[1])
            continue
        on = ((c[i, :top] - 1) ** 2).mean() if top > 0 else c.new_zeros(())
        off = (c[i, top:] ** 2).mean() if top < c.shape[1] else c.new_zeros(())
        out.append(on + off)
    return torch.stack(out)


def log_reward(logits: torch.Tensor, target: int, game: str) -> torch.Tensor:
    """``(K,)`` −log p (``"preserve"``) or −log(1 − p) (``"delete"``) of the target, computed stably."""
    logp = logits.float().log_softmax(-1)
    if game == "preserve":
        return -logp[:, target]
    others = torch.cat([logp[:, :target], logp[:, target + 1:]], dim=1)
    return -others.logsumexp(-1)


class ExtremalPerturbation(PerturbationMethod):
    """The shared optimisation of 2D-EP, 3D-EP and STEP; each variant overrides :meth:`regulariser`.

    Args (common to the three; ``None`` takes the value of ``preset``):
        preset: ``"default"`` (the defaults below, chosen on the synthetic benchmark, see the
            README) or ``"paper"`` (the recipe as written: areas (0.05, 0.1, 0.15, 0.5), the
            preserve game, 1200 iterations, lr 0.05, the map summing every area's mask, smoothed
            with σ = 10 px at 112 px; STEP's K_t half the clip). Options given explicitly win over the preset.
        areas: target areas (fractions of the padded mask volume), optimised jointly, or
            ``"auto"`` (default): the ladder ``AREA_LADDER`` (0.0025 … 0.05), each rung raised to
            at least the smallest region the mask generator can draw (:meth:`clip_areas`), of
            which the map keeps the areas selected by ``keep``. Evidence in a video is often far smaller than
            the recipe's smallest area (a 9-px object in 3 of 8 frames is 0.4 % of the clip), and
            a mask forced to 5 % of the clip spreads into the background.
        keep: the map sums the masks of the smallest area whose preserved score (the target's
            probability on the clip perturbed outside the mask; for ``game="delete"`` one minus
            the probability with the mask removed) is at least ``keep`` × the best area's score,
            and of every larger area. ``0`` sums every area (the recipe's map).
        weighting: how the kept masks are summed: ``"density"`` (default: each divided by its
            target area, so every area weighs the same) or ``"sum"`` (the recipe's: as they
            are, so the largest dominates); see :meth:`combine`.
        iterations: optimisation steps (default 150; the recipe's 1200).
        game: ``"dual"`` (default: preserve + delete, the recipe's own sum), ``"preserve"``
            (the recipe's runs) or ``"delete"``. Preserving alone is under-determined in time: a
            model that needs its evidence in one frame only is content with a mask on one frame.
        perturbation: ``"blur"`` (the recipe's default) or ``"fade"``.
        levels: pyramid levels (8).
        max_blur, step, sigma, final_sigma: pixel sizes on the model grid; ``None`` scales the
            recipe's values at 112 px (20, 7, 11, 10) to the model's input size, except
            ``final_sigma``, the smoothing of the finished map, which the default preset scales
            from 5 px (the recipe's 10 px displaced the map's peak from the evidence; module
            docstring).
        optimizer: ``"sgd"`` (the recipe's, momentum and dampening 0.9) or ``"adam"`` (not
            recommended, see the module docstring).
        lr: learning rate for a mask cell of the recipe's size (default 0.1 for 150 iterations;
            the recipe's 0.05 for 1200). A finer ``step`` than the scaled recipe's multiplies it
            by (recipe step / step)², since a cell then covers fewer pixels and receives a
            proportionally smaller gradient from every term.
        reward_weight, area_weight: w_r (1) and λ_0 (300).
        area_growth: factor by which λ grows over the whole run (the recipe's ≈ 2.83).
        min_evidence: the least share of the target's probability (:meth:`evidence` over the
            probability of the intact clip, or over chance, 1 / classes, if that is larger; the
            best of the kept areas) that the masks must
            carry for the map to rank voxels (default 0.1; the recipe: 0, no test). Below it the
            map is 0 everywhere: the model's output does not depend on the masks, which were
            placed by the area prior and by gradients too faint to change the output (on a model
            with destroyed weights, where the image's high-contrast structure — the object —
            still draws them; the map would then rank voxels the same on any model).
        batch_size: perturbed clips per forward pass (areas × games; smaller values split the
            areas over several passes with the same result).
        seed: seeds the tie-breaking shuffles.
    """

    per_frame_area: ClassVar[bool] = False
    # 150 iterations × 5 areas × 2 games forward and backward per clip (about 30 s on 2 CPU
    # cores for the demo model): an evaluation's `--methods all` runs them on its first clips only
    evaluation_clips = 10
    #: option values per preset, for the options left at ``None``
    PRESETS: ClassVar[dict[str, dict]] = {
        "default": {"areas": "auto", "keep": 0.9, "iterations": 150, "game": "dual", "lr": 0.1,
                    "min_evidence": 0.1, "weighting": "density", "final_sigma_at_112": 5.0},
        "paper": {"areas": PAPER_AREAS, "keep": 0.0, "iterations": 1200, "game": "preserve", "lr": 0.05,
                  "min_evidence": 0.0, "weighting": "sum", "final_sigma_at_112": _REF["final_sigma"]},
    }

    def __init__(self, model, preset: Literal["default", "paper"] = "default", areas: Areas = None,
                 keep: Annotated[float, Opt(ge=0, le=1)] | None = None,
                 iterations: Annotated[int, Opt(ge=1)] | None = None,
                 game: Literal["preserve", "delete", "dual"] | None = None,
                 perturbation: Literal["blur", "fade"] = "blur", levels: Annotated[int, Opt(ge=2)] = 8,
                 max_blur: float | None = None, step: Annotated[int, Opt(ge=1)] | None = None,
                 sigma: Annotated[float, Opt(gt=0)] | None = None,
                 final_sigma: float | None = None, optimizer: Literal["adam", "sgd"] = "sgd",
                 lr: Annotated[float, Opt(gt=0)] | None = None,
                 reward_weight: float = 1.0, area_weight: float = 300.0,
                 area_growth: Annotated[float, Opt(gt=0)] = AREA_GROWTH,
                 min_evidence: Annotated[float, Opt(ge=0, le=1)] | None = None,
                 weighting: Literal["density", "sum"] | None = None, batch_size: BatchSize = 32,
                 seed: Seed = 0) -> None:
        super().__init__(model)
        self._setup(batch_size=batch_size, seed=seed)
        given = {"areas": areas, "keep": keep, "iterations": iterations, "game": game, "lr": lr,
                 "min_evidence": min_evidence, "weighting": weighting}
        chosen = {k: self.PRESETS[preset][k] if v is None else v for k, v in given.items()}
        areas, keep, iterations, game, lr = (chosen[k] for k in ("areas", "keep", "iterations", "game", "lr"))
        self.min_evidence = float(chosen["min_evidence"])
        self.weighting = chosen["weighting"]
        self.auto_areas = areas == "auto"
        if self.auto_areas:
            areas = AREA_LADDER
        areas = tuple(float(a) for a in areas)
        if not areas:
            raise InputError(f"{self.name}: areas must be 'auto' or fractions in (0, 1), got none")
        self.preset = preset
        self.areas = tuple(sorted(areas))
        self.keep = float(keep)
        self.iterations = int(iterations)
        self.game = game
        self.perturbation = perturbation
        self.levels = int(levels)
        self.sizes = {"max_blur": max_blur, "step": step, "sigma": sigma, "final_sigma": final_sigma}
        # sizes at the recipe's 112 px, scaled to the model's input where an option is left at None
        self.reference_sizes = {**_REF, "final_sigma": self.PRESETS[preset]["final_sigma_at_112"]}
        self.optimizer = optimizer
        self.lr = float(lr)
        self.reward_weight = float(reward_weight)
        self.area_weight = float(area_weight)
        self.area_growth = float(area_growth)

    # -- what the variants override ----------------------------------------------------------------
    def regulariser(self, padded: torch.Tensor, areas: torch.Tensor, progress: float,
                    orders: dict[str, torch.Tensor]) -> torch.Tensor:
        """The constraint terms of E for padded masks ``(A, T, Ho, Wo)`` → ``(A,)``.

        ``progress`` is the fraction of the run done (weights are scheduled on it); ``orders``
        are this iteration's tie-breaking shuffles (:meth:`draw_orders`).
        """
        weight = self.area_weight * self.area_growth ** progress
        return weight * area_loss(padded, areas, self.per_frame_area, orders["area"])

    def draw_orders(self, generator: torch.Generator, t: int, padded: tuple[int, int]) -> dict[str, torch.Tensor]:
        """One iteration's shuffles, drawn before the areas are split into batches so that the
        result does not depend on ``batch_size``."""
        n = padded[0] * padded[1] * (1 if self.per_frame_area else t)
        return {"area": torch.randperm(n, generator=generator)}

    def check_clip(self, t: int, padded: tuple[int, int]) -> None:
        """Raise :class:`InputError` if a clip of ``t`` frames cannot be explained."""

    # -- the optimisation ------------------------------------------------------------------------
    def size(self, key: str, side: int) -> float:
        v = self.sizes.get(key)
        return float(v) if v is not None else self.reference_sizes[key] * side / _REF_SIDE

    def forward_passes(self, num_frames: int) -> int:
        games = 2 if self.game == "dual" else 1
        return self.iterations * len(self.areas) * games + 3     # + the clip, + intact and blurred

    def explain_clip(self, canvas: Canvas, target: int, generator: torch.Generator) -> ClipResult:
        device = canvas.pixels.device
        t, (h, w) = canvas.num_frames, canvas.grid
        side = min(h, w)
        step = max(1, round(self.size("step", side)))
        # the lr is set for cells of the (scaled) recipe's size: a finer grid gets (ratio)² more
        lr = self.lr * (self.size("step", side) / step) ** 2 if self.sizes["step"] is not None else self.lr
        gen = MaskGenerator((h, w), step, self.size("sigma", side), device=device)
        self.check_clip(t, gen.shape_out)
        frames = canvas.to_grid(canvas.pixels)[0]                                   # (T, 3, h, w)
        pyramid = BlurPyramid(frames, self.levels, self.size("max_blur", side), self.perturbation,
                              fade_to=self.model.preprocess.mean)
        clip_areas = self.clip_areas(gen, t)
        n_areas = len(clip_areas)
        areas = torch.tensor(clip_areas, device=device)
        params = torch.ones(n_areas, t, 1, *gen.shape_in, device=device, requires_grad=True)
        opt = (torch.optim.Adam([params], lr=lr) if self.optimizer == "adam" else
               torch.optim.SGD([params], lr=lr, momentum=0.9, dampening=0.9))
        games = ["preserve", "delete"] if self.game == "dual" else [self.game]
        per_pass = max(1, self.batch_size // len(games))
        last_p = torch.zeros(n_areas, len(games), dtype=torch.float64)

        with torch.enable_grad():  # also when called under torch.no_grad()
            for it in self.progress(range(self.iterations), self.iterations, "optimising masks"):
                progress = it / self.iterations
                orders = {k: v.to(device) for k, v in self.draw_orders(generator, t, gen.shape_out).items()}
                opt.zero_grad(set_to_none=True)
                grad = torch.zeros_like(params)
                for sl in batched(n_areas, per_pass):
                    p = params[sl]
                    mask, padded = gen(p.reshape(-1, 1, *gen.shape_in))
                    mask = mask.reshape(-1, t, h, w)
                    padded = padded.reshape(-1, t, *gen.shape_out)
                    clips = torch.cat([pyramid.apply(mask if g == "preserve" else 1 - mask) for g in games])
                    logits = self.model(canvas.paste(_to_box(canvas, clips)))
                    k = mask.shape[0]
                    reward = sum(log_reward(logits[j * k:(j + 1) * k], target, g)
                                 for j, g in enumerate(games))
                    energy = (self.reward_weight * reward
                              + self.regulariser(padded, areas[sl], progress, orders)).sum()
                    grad[sl] += torch.autograd.grad(energy, params)[0][sl]
                    with torch.no_grad():
                        probs = logits.double().softmax(-1)[:, target].reshape(len(games), k).T
                        last_p[sl] = probs.cpu()
                params.grad = grad
                opt.step()
                with torch.no_grad():
                    params.clamp_(0, 1)

        with torch.no_grad():
            mask, padded = gen(params.reshape(-1, 1, *gen.shape_in))
            mask = mask.reshape(n_areas, t, h, w)
            # the references the evidence is measured from: the clip intact (mask 1) and fully
            # perturbed (mask 0)
            ends = pyramid.apply(torch.stack([torch.ones_like(mask[0]), torch.zeros_like(mask[0])]))
            p_intact, p_blurred = self.model(canvas.paste(_to_box(canvas, ends))).double().softmax(-1)[:, target].cpu()
            chosen = self.select(last_p)
            evidence = self.evidence(last_p, float(p_intact), float(p_blurred))
            # the share of the target's probability the kept masks carry (the best of them), on
            # a scale no smaller than chance (1 / classes): a class the model gives less than
            # chance cannot pass on a tiny absolute change (0.014 of 0.08 on a demo-cnn clip
            # with its classifier re-initialised)
            share = evidence[chosen:].max() / max(float(p_intact), 1 / self.model.num_classes)
            total = gaussian_blur_2d(self.combine(mask, areas, last_p, chosen)[None],
                                     self.size("final_sigma", side))[0]
            total = total / total.amax().clamp_min(1e-12)
            if self.min_evidence > 0 and share < self.min_evidence:
                # no evidence: the masks were placed by the area prior and by gradients too
                # faint to change the output; their ranking would not come from the model
                total = torch.zeros_like(total)
        # the area the loss constrains is that of the padded mask (the cropped one is larger
        # wherever the mask avoids the margin). The loss pulls the sorted mask towards a·V ones
        # and zeros in L2, which tolerates a faint residue (0.01 everywhere costs 1e-4 a voxel):
        # the area is the share of voxels the mask keeps (≥ ½), its mean is reported beside it
        padded = padded.reshape(n_areas, -1)
        reached = (padded >= 0.5).float().mean(1)
        return ClipResult(maps=total, extras={"areas": areas.float(), "area_reached": reached,
                                              "area_mean": padded.mean(1).float(),
                                              "area_chosen": areas[chosen].float(),
                                              "evidence": evidence[chosen].float(),
                                              "evidence_share": share.float(),
                                              "probability": last_p.float()})

    def clip_areas(self, gen: MaskGenerator, t: int) -> tuple[float, ...]:
        """The areas optimised for a clip of ``t`` frames: those given, or for ``areas="auto"`` the
        ladder with every rung raised to at least :func:`smallest_area` (of the clip's volume; of
        one frame for 2D-EP, whose areas are per frame; duplicates merged): a
        mask cannot keep fewer voxels than one parameter cell's bump, so a smaller target is
        overshot whatever the optimiser does (0.0025 reached 0.004 at 64 px, 1.6 ×)."""
        if not self.auto_areas:
            return self.areas
        # 2D-EP's areas are per frame: every frame must keep its share, so the floor is one bump
        # in one frame's padded mask (0.025 at 64 px)
        floor = smallest_area(gen, 1 if self.per_frame_area else t)
        return tuple(sorted({max(a, floor) for a in self.areas}))

    def evidence(self, probability: torch.Tensor, intact: float, blurred: float) -> torch.Tensor:
        """``(A,)`` how much of the target's probability each area's mask carries, from the last
        iteration's probabilities ``(A, games)`` and the target's probability on the clip
        ``intact`` and fully perturbed (``blurred``). Each game against its own reference:
        preserve, what keeping the mask adds to the fully perturbed clip (p_kept − p_blurred);
        delete, what removing it takes from the intact clip (p_intact − p_removed); dual, the
        smaller of the two (the mask must be sufficient *and* necessary). Near 0 or below for a
        model that gives the mask no signal (e.g. one with destroyed weights), whose masks are
        then placed by the area prior and by gradients too faint to change the output."""
        kept = probability[:, 0] - blurred
        if self.game == "preserve":
            return kept
        removed = intact - probability[:, -1]
        return removed if self.game == "delete" else torch.minimum(kept, removed)

    def combine(self, masks: torch.Tensor, areas: torch.Tensor, probability: torch.Tensor,
                chosen: int) -> torch.Tensor:
        """The map (before smoothing) from the areas' masks ``(A, T, h, w)`` and their target
        ``areas`` ``(A,)``: the masks from the ``chosen`` area upwards, summed as they are
        (``weighting="sum"``, the recipe's) or each divided by its target area (``"density"``),
        so that every area's mask weighs the same when it meets its target (one that overshoots
        weighs more: it did keep more), and a voxel that the small areas keep ranks above one
        that only the large ones keep. Summed as they are, the largest area dominates: its mask
        holds most of the map's mass, spread over frames and background the smaller areas leave
        out, and the top frame of the map is then often outside the evidence (STEP on the 3D
        CNN, 9 validation clips: top frame in the window 0.44 summed, 0.78 as densities)."""
        kept = masks[chosen:]
        if self.weighting == "density":
            kept = kept / areas[chosen:].to(kept)[:, None, None, None]
        return kept.sum(0)

    def select(self, probability: torch.Tensor) -> int:
        """Index of the smallest area the map keeps, from the last iteration's target
        probabilities ``(A, games)`` (areas ascending): the first whose preserved score is at
        least ``keep`` × the best (``keep = 0``: the first, so every area is summed)."""
        if self.game == "delete":
            score = 1 - probability[:, 0]
        else:
            score = probability[:, 0]
        ok = (score >= self.keep * score.max()).nonzero()
        return int(ok[0]) if len(ok) else 0


def smallest_area(gen: MaskGenerator, t: int) -> float:
    """The share of a ``t``-frame padded mask volume that one parameter cell at 1 (all others
    at 0) keeps (≥ ½): the smallest region the generator draws at full strength (a disc of
    radius ≈ 1.1 σ; 150 pixels of one frame at 64 px, 0.0032 of an 8-frame clip)."""
    p = torch.zeros(1, 1, *gen.shape_in, device=gen.weight.device)
    p[0, 0, gen.shape_in[0] // 2, gen.shape_in[1] // 2] = 1
    padded = gen(p)[1]
    return float((padded >= 0.5).sum()) / (t * padded.shape[-2] * padded.shape[-1])


def _to_box(canvas: Canvas, clips: torch.Tensor) -> torch.Tensor:
    """Grid-resolution clips ``(K, T, 3, h, w)`` → crop-box resolution (identity when equal)."""
    _, _, bh, bw = canvas.box
    if clips.shape[-2:] == (bh, bw):
        return clips
    k, t = clips.shape[:2]
    return F.interpolate(clips.reshape(k * t, 3, *clips.shape[-2:]), size=(bh, bw), mode="bilinear",
                         align_corners=False).reshape(k, t, 3, bh, bw)


@register
class EP2D(ExtremalPerturbation):
    """2D-EP: one mask per frame, the area constraint applied to each frame separately."""

    name = "ep2d"
    paper = ('Fong, Patrick & Vedaldi, Understanding Deep Networks via Extremal Perturbations and '
             'Smooth Masks, ICCV 2019; Li et al., Towards Visually Explaining Video Understanding '
             'Networks with Perturbation, WACV 2021 / TCSVT 2021')
    per_frame_area = True


@register
class EP3D(ExtremalPerturbation):
    """3D-EP: one mask per frame, a single area constraint over the whole T×h×w volume."""

    name = "ep3d"
    paper = ('Fong, Patrick & Vedaldi, Understanding Deep Networks via Extremal Perturbations and '
             'Smooth Masks, ICCV 2019; Li et al., Towards Visually Explaining Video Understanding '
             'Networks with Perturbation, WACV 2021 / TCSVT 2021')
    per_frame_area = False


@register
class STEP(ExtremalPerturbation):
    """STEP: 3D-EP plus the spatio-temporal smoothness term L_K (ellipsoid kernel).

    Args (besides those of :class:`ExtremalPerturbation`):
        kernel_frames: K_t, frames spanned by the ellipsoid; ``None`` → half the clip (the
            recipe's 8 of 16). A clip shorter than K_t is an error.
        kernel_size: its rows and columns (and the stride of the convolution), in grid pixels;
            ``None`` → the recipe's 11 at 112 px, scaled to the model's input and rounded to an
            odd size ≥ 3 (7 for the 64-px demo model).
        kernel_shape: ``"ellipsoid"`` or ``"cylinder"`` (ignores time inside the kernel).
        smooth_weight: μ (300).
        smooth_start: fraction of the run before L_K is switched on (the recipe's 100/1200).
        kernel_grid: where the ellipsoid is sampled (:func:`ellipsoid_kernel`): ``"centres"``
            (default) or the recipe's ``"ends"``, whose first and last frames hold one voxel each.
        tubes: how many windows L_K fills for an area (:func:`tube_count`): ``"kernel"``
            (default, the nearest whole number of the kernel's voxels) or ``"recipe"``.
        smooth_norm: how L_K averages (:func:`smoothness_loss`): ``"windows"`` (default: the
            squared errors of all N windows summed and divided by N, as L_area divides by the
            voxels) or the recipe's ``"parts"`` (the mean over the filled windows plus the mean
            over the rest). The recipe's form weighs each filled window 1/top: made for areas of
            dozens of tubes (29 of 1296 windows at its smallest area), it makes a lone tube's
            term hundreds of times stronger than the area term at the areas evidence in a short
            clip needs (1–4 tubes of 605 windows at 64 px), and the mask, which the generator
            cannot fill to exactly 1 over a tube without spilling past it, overshot its area 4–5 ×
            (0.0025 → 0.011); averaged over all windows it reaches 1.01–1.05 × from 0.005 up.
    """

    name = "step"
    #: the L_K geometry of each preset (for the options left at ``None``)
    GEOMETRY: ClassVar[dict[str, dict]] = {
        "default": {"kernel_grid": "centres", "tubes": "kernel", "smooth_norm": "windows"},
        "paper": {"kernel_grid": "ends", "tubes": "recipe", "smooth_norm": "parts"}}
    paper = ('Fong, Patrick & Vedaldi, Understanding Deep Networks via Extremal Perturbations and '
             'Smooth Masks, ICCV 2019; Li et al., Towards Visually Explaining Video Understanding '
             'Networks with Perturbation, WACV 2021 / TCSVT 2021')
    per_frame_area = False

    def __init__(self, model, preset: str = "default", areas: Sequence[float] | str | None = None,
                 keep: float | None = None, iterations: int | None = None, game: str | None = None,
                 perturbation: str = "blur", levels: int = 8,
                 max_blur: float | None = None, step: int | None = None, sigma: float | None = None,
                 final_sigma: float | None = None, optimizer: str = "sgd", lr: float | None = None,
                 reward_weight: float = 1.0, area_weight: float = 300.0,
                 area_growth: Annotated[float, Opt(gt=0)] = AREA_GROWTH,
                 kernel_frames: Annotated[int, Opt(ge=1)] | None = None,
                 kernel_size: Annotated[int, Opt(ge=1)] | None = None,
                 kernel_shape: Literal["ellipsoid", "cylinder"] = "ellipsoid",
                 smooth_weight: Annotated[float, Opt(ge=0)] = 300.0,
                 smooth_start: Annotated[float, Opt(ge=0, le=1)] = 100 / 1200,
                 kernel_grid: Literal["ends", "centres"] | None = None,
                 tubes: Literal["recipe", "kernel"] | None = None,
                 smooth_norm: Literal["parts", "windows"] | None = None,
                 min_evidence: Annotated[float, Opt(ge=0, le=1)] | None = None,
                 weighting: Literal["density", "sum"] | None = None,
                 batch_size: BatchSize = 32, seed: Seed = 0) -> None:
        super().__init__(model, preset=preset, areas=areas, keep=keep, iterations=iterations, game=game,
                         perturbation=perturbation, levels=levels, max_blur=max_blur, step=step,
                         sigma=sigma, final_sigma=final_sigma, optimizer=optimizer, lr=lr,
                         reward_weight=reward_weight, area_weight=area_weight,
                         area_growth=area_growth, min_evidence=min_evidence, weighting=weighting,
                         batch_size=batch_size, seed=seed)
        self.kernel_frames = None if kernel_frames is None else int(kernel_frames)
        self.kernel_size = None if kernel_size is None else int(kernel_size)
        self.kernel_shape = kernel_shape
        self.smooth_weight = float(smooth_weight)
        self.smooth_start = float(smooth_start)
        geometry = self.GEOMETRY[preset]
        self.kernel_grid = kernel_grid or geometry["kernel_grid"]
        self.tubes = tubes or geometry["tubes"]
        self.smooth_norm = smooth_norm or geometry["smooth_norm"]
        self._kernel: torch.Tensor | None = None

    def check_clip(self, t: int, padded: tuple[int, int]) -> None:
        side = min(self.model.input_size)
        kt = self.kernel_frames or max(1, t // 2)
        # the recipe's 11 px at 112 px, scaled and kept odd: an even size puts no grid point on
        # the ellipsoid's axis, which leaves its first and last frames empty
        k = self.kernel_size or max(3, 2 * round((_REF["kernel_size"] * side / _REF_SIDE - 1) / 2) + 1)
        check_fits(self.name, "L_K kernel", (kt, k, k), (t, *padded))
        self._kernel = ellipsoid_kernel(kt, k, k, self.kernel_shape, self.kernel_grid)
        if self._kernel.sum() == 0:
            raise InputError(f"step: a {kt}x{k}x{k} {self.kernel_shape} kernel contains no voxel; "
                             "use an odd kernel_size of at least 3")

    def regulariser(self, padded, areas, progress, orders):
        reg = super().regulariser(padded, areas, progress, orders)
        if self.smooth_weight > 0 and progress > self.smooth_start:
            reg = reg + self.smooth_weight * smoothness_loss(padded, areas, self._kernel, orders["smooth"],
                                                             self.tubes, self.smooth_norm)
        return reg

    def draw_orders(self, generator, t, padded):
        orders = super().draw_orders(generator, t, padded)
        kt, k, _ = self._kernel.shape
        windows = (t - kt + 1) * ((padded[0] - k) // k + 1) * ((padded[1] - k) // k + 1)
        orders["smooth"] = torch.randperm(windows, generator=generator)
        return orders
