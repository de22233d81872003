"""LIME for video: a weighted linear surrogate over superpixels or supervoxels (the STAA paper's
spatial baseline, made spatio-temporal).

1. The crop the model sees is segmented with SLIC (scikit-image) at the model's input
   resolution: superpixels in every frame (``superpixels="frame"``, each a separate feature, so
   the surrogate also says which *frames* matter) or supervoxels over the clip (``"clip"``).
2. ``n_samples`` binary vectors z are drawn (each feature kept with probability 1/2; the first
   sample keeps everything, as in LIME); a sample's clip keeps the pixels of its kept features
   and shows the baseline elsewhere. The model scores every sample, ``batch_size`` at a time.
3. Each sample is weighted by LIME's kernel ``√exp(−d² / kernel_width²)`` (Captum's
   ``exp(−d² / 2·kernel_width²)``), d being the cosine distance between z and the all-ones
   vector (the unperturbed clip).
4. A weighted ridge regression (closed form, float64, unpenalised intercept; ``alpha``) fits the
   scores; its positive coefficients, painted onto their superpixels, are the map.

The reference run used ``lime_image`` on single frames of an image model with a binary top-10
mask; here the map keeps the coefficients' magnitudes and every frame is explained jointly.

Defaults were chosen on 16 validation clips of the synthetic benchmark with the bundled 3D CNN
(top frame in the evidence window / peak pixel on the evidence object, over all 16 clips;
``python benchmarks/perturbation_quality.py --model demo-cnn --methods lime --split val --clips 16
--threads 1`` with ``--option lime.KEY=VALUE`` for the others; measured again on 2026-12-06,
after commit 59effda gave the kernel LIME's square root): supervoxels (96, mean baseline)
1.00 / 0.78; per-frame superpixels (48 per frame) 1.00 / 0.61, (32) 1.00 / 0.46; blur or black
baselines were worse (0.94 / 0.76, 0.94 / 0.67). The kernel before that fix (LIME's at width
0.18 instead of 0.25, ``kernel_width=0.177`` now) scores the default the same (1.00 / 0.78, the
same IoU 0.306 on the 15 clips whose blurred copy loses the class): its maps differ by at most
0.006 (correlation above 0.9999 on the first 3 clips).
``extras["surrogate_r2"]`` is the weighted R² of the fit (how linear the model looks locally)
and ``extras["n_features"]`` the number of superpixels.
"""

from __future__ import annotations

import torch

from typing import Annotated, Literal

from ..options import Opt, OptionError
from .base import BaselineName, BatchSize, Output, Seed, register
from .perturbation import Canvas, ClipResult, PerturbationMethod
from .segments import slic_segments


def weighted_ridge(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                   alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted ridge regression with an unpenalised intercept, in closed form.

    Minimises ``Σ_i w_i (y_i − b − x_i·β)² + alpha·|β|²`` (as scikit-learn's ``Ridge`` with
    ``sample_weight``).

    Args:
        x: ``(N, F)`` features; y: ``(N,)`` targets; w: ``(N,)`` non-negative sample weights.

    Solves the smaller of the two equivalent systems: the ``F × F`` normal equations when there
    are no more features than samples, else the ``N × N`` dual, ``β = Xᵀ(XXᵀ + αI)⁻¹y`` on the
    weighted, centred data (the same β: ``(XᵀX + αI)⁻¹Xᵀ = Xᵀ(XXᵀ + αI)⁻¹``). Memory is
    ``O(N·F + min(N, F)²)``: 20 000 superpixels and 500 samples need 80 MB, where the
    ``F × F`` Gram matrix took 3.2 GB (and 100 000 got the process killed). With ``alpha = 0``
    the dual is singular (centring removes a dimension); its pseudo-inverse gives the
    minimum-norm fit.

    Returns ``(β (F,), b (), weighted R²)`` in float64.
    """
    x, y, w = x.double(), y.double(), w.double()
    ws = w.sum()
    xm = (w[:, None] * x).sum(0) / ws
    # the mean taken about the first score: when every score is the same (a model the samples do
    # not move), yc is exactly 0 and so is β, where (w·y).sum() / w.sum() is off by a rounding
    # error, whose 1e-32 coefficients made a full-contrast map of noise
    ym = y[0] + (w * (y - y[0])).sum() / ws
    xc, yc = x - xm, y - ym
    n, f = x.shape
    if f <= n:
        gram = xc.T @ (w[:, None] * xc) + alpha * torch.eye(f, dtype=x.dtype, device=x.device)
        beta = torch.linalg.solve(gram, xc.T @ (w * yc))
    else:
        sw = w.sqrt()
        xw, yw = sw[:, None] * xc, sw * yc
        kernel = xw @ xw.T
        if alpha > 0:
            dual = torch.linalg.solve(kernel + alpha * torch.eye(n, dtype=x.dtype, device=x.device), yw)
        else:
            dual = torch.linalg.pinv(kernel, hermitian=True) @ yw
        beta = xw.T @ dual
    intercept = ym - xm @ beta
    resid = yc - xc @ beta
    total = (w * yc * yc).sum()
    r2 = 1 - (w * resid * resid).sum() / total if total > 0 else torch.ones((), dtype=x.dtype)
    return beta, intercept, r2


@register
class LIME(PerturbationMethod):
    """LIME over superpixels (per frame) or supervoxels (over the clip); see the module docstring.

    Args:
        n_samples: perturbed clips (the surrogate's training set); 500 by default (the STAA
            paper used 400–1000).
        superpixels: ``"clip"`` (SLIC supervoxels, the default) or ``"frame"`` (SLIC per frame).
        n_segments: supervoxels in the clip (``"clip"``) or superpixels per frame (``"frame"``);
            ``None`` → 12·T supervoxels (96 for 8 frames), or 48 per frame. At most the clip's
            voxels (or a frame's pixels) on the model's grid; more is an error.
        compactness: SLIC's balance of colour against position (higher: squarer segments).
        smoothing: σ (pixels) of SLIC's Gaussian pre-smoothing of each frame, or ``"auto"``
            (none unless grain makes the segmentation collapse; see
            :func:`~videoxai.methods.segments.superpixels`). 0 is the former behaviour.
        kernel_width: width of the exponential kernel on the cosine distance (LIME's 0.25).
        alpha: ridge penalty (scikit-learn's and LIME's default 1).
        baseline: what replaces an absent superpixel (a :mod:`~videoxai.core.baselines` name,
            or a function ``(B, T, 3, H, W) → same``).
        output: ``"probability"`` or ``"logit"`` of the target.
        batch_size: perturbed clips per forward pass.
        seed: seeds the samples.
    """

    name = "lime"
    paper = ('Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any '
             'Classifier, KDD 2016')

    def __init__(self, model, n_samples: Annotated[int, Opt(ge=2)] = 500,
                 superpixels: Literal["frame", "clip"] = "clip",
                 n_segments: Annotated[int | None, Opt(ge=1)] = None,
                 compactness: Annotated[float, Opt(gt=0)] = 10.0,
                 smoothing: Annotated[float | Literal["auto"], Opt(ge=0)] = "auto",
                 kernel_width: Annotated[float, Opt(gt=0)] = 0.25, alpha: Annotated[float, Opt(ge=0)] = 1.0,
                 baseline: BaselineName = "mean", output: Output = "probability",
                 batch_size: BatchSize = 8, seed: Seed = 0) -> None:
        super().__init__(model)
        self._setup(batch_size=batch_size, output=output, seed=seed, baseline=baseline)
        self.n_samples = int(n_samples)
        self.superpixels = superpixels
        self.n_segments = None if n_segments is None else int(n_segments)
        self.compactness = float(compactness)
        self.smoothing = smoothing
        self.kernel_width = float(kernel_width)
        self.alpha = float(alpha)

    def forward_passes(self, num_frames: int) -> int:
        self.check_segments(num_frames, self.model.input_size)
        return self.n_samples + 1

    def check_segments(self, num_frames: int, grid: tuple[int, int]) -> None:
        """Raise :class:`~videoxai.options.OptionError` if ``n_segments`` asks for more superpixels
        than the clip has pixels on the model's grid (per frame, or in the clip for supervoxels):
        SLIC would stop at one segment a pixel, a surrogate with a feature per pixel and a handful
        of samples; or if ``smoothing`` is wider than the grid's frames (SLIC would cut a frame
        blurred to one colour)."""
        h, w = grid
        if self.smoothing != "auto" and self.smoothing > max(h, w):
            raise OptionError(f"{self._owner()}: option smoothing: smoothing σ {self.smoothing:g} px is larger than "
                              f"the frames SLIC cuts ({w}x{h} px): it would blur each to one colour; choose "
                              f"smoothing ≤ {max(h, w)} or auto")
        if self.n_segments is None:
            return
        limit, where = ((h * w, f"pixels in a {h}x{w} frame") if self.superpixels == "frame" else
                        (num_frames * h * w, f"voxels in the clip ({num_frames} x {h} x {w})"))
        if self.n_segments > limit:
            raise OptionError(f"{self.name}: n_segments={self.n_segments} is more than the {limit} {where} on the "
                             f"model's grid; choose n_segments ≤ {limit}")

    def blank_map_reason(self, extras: dict) -> str | None:
        if int(extras["n_features"].reshape(-1)[0]) == 1:
            # SLIC places its seeds on a regular grid, and a few asked for can leave one seed: the
            # map is one coefficient painted everywhere whatever the model does
            asked = f"n_segments={self.n_segments}" if self.n_segments is not None else "the default n_segments"
            return (f"SLIC cut the clip into one segment ({asked}): a single feature ranks nothing; "
                    "ask for more segments")
        return None

    def explain_clip(self, canvas: Canvas, target: int, generator: torch.Generator) -> ClipResult:
        t = canvas.num_frames
        self.check_segments(t, canvas.grid)
        n_seg = self.n_segments or (48 if self.superpixels == "frame" else 12 * t)
        labels, sigma = slic_segments(canvas.to_grid(canvas.pixels)[0], n_seg, mode=self.superpixels,
                                      compactness=self.compactness, smoothing=self.smoothing)
        labels = labels.to(canvas.pixels.device)                                      # (T, h, w)
        n_features = int(labels.max()) + 1
        z = torch.randint(0, 2, (self.n_samples, n_features), generator=generator).bool()
        z[0] = True
        zf = z.to(canvas.pixels.device, torch.float32)
        fill = self.baseline(canvas)

        def make(sl: slice) -> torch.Tensor:
            return canvas.compose(zf[sl][:, labels], fill, mode="nearest-exact")

        y = self.scores(make, self.n_samples, target, f"{self.n_samples} samples")
        kept = z.sum(1).double()
        cosine = torch.where(kept > 0, (kept / n_features).sqrt(), torch.zeros_like(kept))
        # LIME's kernel, sqrt(exp(-d² / w²)) (without the square root the weights were those of
        # LIME at a width √2 smaller); divided before squaring: kernel_width ** 2 overflows a
        # Python float above 1.3e154
        weights = torch.exp(-0.5 * ((1 - cosine) / self.kernel_width) ** 2).to(y.device)
        if self.n_samples > 1 and not bool((weights[1:] > 0).any()):
            # only the intact clip keeps a weight: the surrogate fits one point, and its
            # coefficients were 0, a blank map blamed on the model
            nearest = float((1 - cosine[1:]).min())
            raise OptionError(f"{self._owner()}: option kernel_width: {self.kernel_width:g} gives every perturbed "
                              f"sample weight 0 (the nearest is at cosine distance {nearest:.3g} from the clip); "
                              f"choose kernel_width ≥ {nearest / 3:.3g} (LIME's is 0.25)")
        beta, _, r2 = weighted_ridge(zf, y, weights, self.alpha)
        maps = beta.clamp_min(0).float()[labels]                                      # (T, h, w)
        return ClipResult(maps=maps, extras={"surrogate_r2": r2.float(),
                                             "n_features": torch.tensor(n_features)},
                          resolved={"n_segments": n_seg, "smoothing": sigma})
