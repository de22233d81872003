"""STEP: 3D-EP plus the spatio-temporal smoothness term L_K (Li et al., TCSVT 2021)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch

from ...options import Opt, OptionError
from ..base import BatchSize, Seed, register
from ..perturbation import check_fits
from .base import (_REF, _REF_SIDE, AREA_GROWTH, MAX_LEVELS, PAPER, Areas, ExtremalPerturbation, FinalSigma,
                   FineIterations, FineStart, LearningRate, MaskInit, MaskSigma, MaskStep, MaxBlur, MaxFrameArea, Weight)
from .energy import ellipsoid_kernel, smoothness_loss


@register
class STEP(ExtremalPerturbation):
    """STEP: 3D-EP plus the spatio-temporal smoothness term L_K (ellipsoid kernel).

    Args (besides those of :class:`ExtremalPerturbation`):
        kernel_frames: K_t, frames spanned by the ellipsoid; ``None`` → half the clip (the
            recipe's 8 of 16). At most the clip's frames.
        kernel_size: the ellipsoid's rows and columns (and the stride of the convolution), in
            pixels of the model's input grid, at most the padded mask's side;
            ``None`` → the recipe's 11 at 112 px, scaled to the model's input and rounded to an
            odd size ≥ 3 (7 for the 64-px demo model).
        kernel_shape: ``"ellipsoid"`` or ``"cylinder"`` (ignores time inside the kernel).
        smooth_weight: μ, the weight of L_K in the energy once it is on (the recipe's 300; 0
            turns it off, leaving 3D-EP).
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
    paper = PAPER
    per_frame_area = False
    #: a refinement of a fifth of the iterations, as 3D-EP (:attr:`EP3D.fine_share`): on 9
    #: validation clips per bundled model the IoU 0.338 → 0.414 (3D CNN), 0.366 → 0.414
    #: (TimeSformer), docs/experiments/extremal-perturbation.md, "Round 9"
    fine_share = 0.2

    def __init__(self, model, preset: Literal["default", "paper"] = "default", areas: Areas = None,
                 keep: Annotated[float, Opt(ge=0, le=1)] | None = None,
                 iterations: Annotated[int, Opt(ge=1)] | None = None,
                 game: Literal["preserve", "delete", "dual"] | None = None,
                 perturbation: Literal["blur", "fade"] = "blur", levels: Annotated[int, Opt(ge=2, le=MAX_LEVELS)] = 8,
                 max_blur: MaxBlur = None, step: MaskStep = None, sigma: MaskSigma = None,
                 final_sigma: FinalSigma = None, optimizer: Literal["adam", "sgd"] = "sgd",
                 lr: LearningRate = None,
                 reward_weight: Weight = 1.0, area_weight: Weight = 300.0,
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
                 weighting: Literal["score", "density", "sum"] | None = None,
                 batch_size: BatchSize = 32, seed: Seed = 0, fine_iterations: FineIterations = None,
                 max_frame_area: MaxFrameArea = 1.0, init: MaskInit = 1.0,
                 fine_start: FineStart = "own") -> None:
        super().__init__(model, preset=preset, areas=areas, keep=keep, iterations=iterations, game=game,
                         perturbation=perturbation, levels=levels, max_blur=max_blur, step=step,
                         sigma=sigma, final_sigma=final_sigma, optimizer=optimizer, lr=lr,
                         reward_weight=reward_weight, area_weight=area_weight,
                         area_growth=area_growth, min_evidence=min_evidence, weighting=weighting,
                         batch_size=batch_size, seed=seed, fine_iterations=fine_iterations,
                         max_frame_area=max_frame_area, init=init, fine_start=fine_start)
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

    def kernel_shape_for(self, t: int) -> tuple[int, int]:
        """``(K_t, k)``: the L_K kernel's frames and side for a clip of ``t`` frames."""
        side = min(self.model.input_size)
        kt = self.kernel_frames or max(1, t // 2)
        # the recipe's 11 px at 112 px, scaled and kept odd: an even size puts no grid point on
        # the ellipsoid's axis, which leaves its first and last frames empty
        k = self.kernel_size or max(3, 2 * round((_REF["kernel_size"] * side / _REF_SIDE - 1) / 2) + 1)
        return kt, k

    def resolved_geometry(self, t: int) -> dict:
        kt, k = self.kernel_shape_for(t)
        return {"kernel_frames": kt, "kernel_size": k, "kernel_grid": self.kernel_grid, "tubes": self.tubes,
                "smooth_norm": self.smooth_norm}

    def check_clip(self, t: int, padded: tuple[int, int]) -> None:
        kt, k = self.kernel_shape_for(t)
        check_fits(self._owner(), "kernel_frames / kernel_size", "L_K kernel", (kt, k, k), (t, *padded))
        self._kernel = ellipsoid_kernel(kt, k, k, self.kernel_shape, self.kernel_grid)
        if self._kernel.sum() == 0:
            raise OptionError(f"{self._owner()}: option kernel_size: a {kt}x{k}x{k} {self.kernel_shape} kernel contains no voxel; "
                             "use an odd kernel_size of at least 3")

    def regulariser(self, padded, areas, progress, orders, caps=None):
        reg = super().regulariser(padded, areas, progress, orders, caps)
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
