"""The optimisation shared by 2D-EP, 3D-EP and STEP (see :mod:`videoxai.methods.extremal`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F

from ...core.batching import batched
from ...core.refine import gaussian_blur_2d
from ...errors import InputError, UnsupportedModelError
from ...options import Opt, OptionError, as_list
from ..base import BatchSize, Seed
from ..gradients import frozen_parameters, leaf_gradients
from ..perturbation import Canvas, ClipResult, PerturbationMethod
from .energy import area_loss, log_reward
from .masks import BlurPyramid, MaskGenerator, smallest_area

#: the papers every variant cites (``Method.paper``)
PAPER = ('Fong, Patrick & Vedaldi, Understanding Deep Networks via Extremal Perturbations and '
         'Smooth Masks, ICCV 2019; Li et al., Towards Visually Explaining Video Understanding '
         'Networks with Perturbation, WACV 2021 / TCSVT 2021')
#: the recipe's sizes, in pixels of its 112 × 112 input
_REF_SIDE = 112
_REF = {"step": 7, "sigma": 11.0, "max_blur": 20.0, "kernel_size": 11, "final_sigma": 10.0}
#: λ_t growth over a whole run: 1.0008668 ** 1200
AREA_GROWTH = 1.0008668 ** 1200
#: ``"auto"`` (the ladder below), or one or several fractions of the clip in (0, 1) (one: a list of one)
Areas = Annotated[Sequence[float] | float | Literal["auto"] | None,
                  Opt(gt=0, lt=1, normalise=lambda v: as_list(v) if isinstance(v, (int, float, list, tuple)) else v)]
#: the pixel sizes and weights of the energy, declared once for the three variants (STEP repeats
#: the signature): a blur of 0 makes every pyramid level the frame itself, so the mask has no
#: gradient (the optimiser then divides by zero), and a negative weight or smoothing turns a
#: penalty into a reward or is ignored without a word
MaxBlur = Annotated[float | None, Opt(gt=0)]
MaskStep = Annotated[int | None, Opt(ge=1)]
MaskSigma = Annotated[float | None, Opt(gt=0)]
FinalSigma = Annotated[float | None, Opt(ge=0)]
Weight = Annotated[float, Opt(ge=0)]
#: the most of any one frame an area's mask may keep (3D-EP and STEP): a share of the padded
#: frame (1: no cap, the recipe's volume constraint) or ``"bump"`` (one parameter cell's bump,
#: the smallest region the generator draws)
MaxFrameArea = Annotated[float | Literal["bump"], Opt(gt=0, le=1)]
#: iterations of the refinement stage (cells and bumps half as wide, started from the finished masks)
FineIterations = Annotated[int, Opt(ge=0)] | None
#: the mask parameters' value before the first step (the recipe's 1: every voxel kept)
MaskInit = Annotated[float, Opt(ge=0, le=1)]
#: where each area's refinement starts: its own finished mask, or that of the smallest larger area
#: that won its game where its own lost (:meth:`winning_sources`)
FineStart = Literal["own", "winner"]
#: each pyramid level is a blurred copy of the clip held in memory (the recipe uses 8)
MAX_LEVELS = 64
#: the mask lives in [0, 1]: a step of 10 crosses it ten times (an lr above float32's range
#: was a RuntimeError inside the optimiser)
LearningRate = Annotated[float, Opt(gt=0, le=10)] | None
#: ``areas="auto"``: a ladder of areas, doubling, from about a quarter of a small object's share
#: of the clip to the recipe's smallest, optimised jointly; the map keeps the smallest area whose
#: preserved score is within ``keep`` of the best one and every larger one
AREA_LADDER = (0.0025, 0.005, 0.01, 0.02, 0.05)
#: the recipe's areas for its UCF101 runs (``preset="paper"``)
PAPER_AREAS = (0.05, 0.1, 0.15, 0.5)


class ExtremalPerturbation(PerturbationMethod):
    """The shared optimisation of 2D-EP, 3D-EP and STEP; each variant overrides :meth:`regulariser`.

    :meth:`attribute` returns ``maps (B, T, h, w)`` on the model's input grid ``h × w``
    (``space="crop"``), in [0, 1] (each clip's map divided by its maximum; 0 everywhere below
    ``min_evidence``), and per clip in ``extras`` the areas, the areas reached and the evidence.

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
        weighting: how the kept masks are summed: ``"score"`` (default: each divided by its
            target area and multiplied by its score in the game, :meth:`game_scores`, so that a
            mask that keeps the class but whose removal does not remove it adds little),
            ``"density"`` (each divided by its target area, so every area
            weighs the same) or ``"sum"`` (the recipe's: as they are, so the largest dominates);
            see :meth:`combine`.
        iterations: optimisation steps (default 150; the recipe's 1200).
        fine_iterations: iterations of a second stage on a grid twice as fine (cells
            ``step // 2`` apart, bumps of σ / 2), started from the finished masks
            (:meth:`refined`), with the regularisers at their final weights and the same number
            of voxels per area. Default: a fifth of ``iterations`` for 3D-EP and STEP (30 at 150; on
            the synthetic benchmark the peak lands on the object more often and the IoU rises,
            docs/experiments/extremal-perturbation.md, "Round 9"), none for 2D-EP (not measured) and
            for ``preset="paper"``. Each
            costs what an iteration of the first stage costs.
        max_frame_area: the most of any one frame that an area's mask may keep, as a share of the
            padded frame, or ``"bump"``: one parameter cell's bump (:func:`smallest_area` of one
            frame, 150 px of a 64-px frame); 1 (default): no cap, the recipe's constraint over the
            volume. 3D-EP and STEP only (2D-EP's areas are per frame already). An area a
            is capped at max(cap, a) of each frame, so that its a·V voxels always fit. The cap
            stays inside the recipe's area term, adding none: the sorted mask is still pulled to
            a·V ones, taken from the largest voxels but at most the cap's from one frame
            (:func:`area_loss`), so a cap of 1 is 3D-EP's constraint and a cap of a 2D-EP's (a
            in every frame), and the reward alone decides which frames. With ``"bump"`` a rung of k bumps spreads
            over at least k frames, one bump each: where the evidence is redundant in time (one
            frame of the object keeps the class, but removing it leaves the class to the others)
            the small rungs otherwise stack their budget in one frame and lose the delete game
            (docs/experiments/extremal-perturbation.md, "Round 11" and "Round 12"). Not a default: see "Round 12".
        init: the value every mask parameter starts from (the recipe's 1: the preserve game
            starts from the intact clip, the delete game from the fully perturbed one); the
            refinement stage starts from the finished masks whatever it is. Not a default (0.5
            lost on the 3D CNN's validation clips: docs/experiments/extremal-perturbation.md, "Round 14").
        fine_start: where each area's refinement starts: ``"own"`` (default), its own finished
            mask; ``"winner"``, for an area that lost its game (a score under half the best's),
            the finished mask of the smallest larger area that won (:meth:`winning_sources`), so
            that it shrinks from a mask holding evidence that is redundant in time in every
            frame. Not a default (it lost on the TimeSformer's test clips: "Round 14").
        game: ``"dual"`` (default: preserve + delete, the recipe's own sum), ``"preserve"``
            (the recipe's runs) or ``"delete"``. Preserving alone is under-determined in time: a
            model that needs its evidence in one frame only is content with a mask on one frame.
        perturbation: ``"blur"`` (the recipe's default) or ``"fade"``.
        levels: levels of the perturbation pyramid, from fully perturbed to the frame itself
            (the recipe's 8); each is a copy of the clip in memory.
        max_blur: σ in pixels of the model's input grid of the most blurred level; ``None``
            scales the recipe's 20 px at 112 px to the model's input size.
        step: pixels of the model's input grid between the mask's parameter cells; ``None``
            scales the recipe's 7 px at 112 px. At most the grid's side, and fine enough for
            ``sigma`` to cover the frame (checked on the clip).
        sigma: width in pixels of the model's input grid of each cell's smooth bump; ``None``
            scales the recipe's 11 px at 112 px. At most the grid's side.
        final_sigma: σ in pixels of the model's input grid of the Gaussian smoothing of the
            finished map (0: none); ``None`` scales 5 px at 112 px (``preset="paper"``: the
            recipe's 10 px, which displaced the map's peak from the evidence; see
            :mod:`videoxai.methods.extremal`).
        optimizer: ``"sgd"`` (the recipe's, momentum and dampening 0.9) or ``"adam"`` (not
            recommended, see :mod:`videoxai.methods.extremal`).
        lr: learning rate for a mask cell of the recipe's size (default 0.1 for 150 iterations;
            the recipe's 0.05 for 1200). A finer ``step`` than the scaled recipe's (rounded)
            multiplies it by (recipe step / step)², a coarser one divides it likewise, since a
            cell then covers fewer (more) pixels and receives a proportionally smaller (larger)
            gradient from every term.
        reward_weight: w_r, the weight of the game's reward −log p in the energy (1).
        area_weight: λ_0, the area term's weight at the start of the run (the recipe's 300).
        area_growth: factor by which λ grows over the whole run (the recipe's ≈ 2.83).
        min_evidence: the least share of the target's probability (:meth:`evidence` over the
            probability of the intact clip, or over chance, 1 / classes, if that is larger; of
            the kept areas, averaged with their weights in the map) that the masks must
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
    # the masks follow the gradient of the game's reward (quantized layers drop it: the masks
    # were shaped by the area term alone, without a word)
    uses_gradients = True
    #: ``fine_iterations`` left to the default preset, as a share of ``iterations``: measured for
    #: 3D-EP and STEP (docs/experiments/extremal-perturbation.md, round 9), not for 2D-EP, so 0 here
    fine_share: ClassVar[float] = 0.0
    # 150 iterations (3D-EP and STEP: + 30 refining) × 5 areas × 2 games forward and backward
    # per clip (about 30–40 s on 2 CPU cores for the demo model): an evaluation's
    # `--methods all` runs them on its first clips only
    evaluation_clips = 10
    #: option values per preset, for the options left at ``None``
    PRESETS: ClassVar[dict[str, dict]] = {
        "default": {"areas": "auto", "keep": 0.9, "iterations": 150, "game": "dual", "lr": 0.1,
                    "min_evidence": 0.1, "weighting": "score", "final_sigma_at_112": 5.0,
                    "fine_iterations": None},
        "paper": {"areas": PAPER_AREAS, "keep": 0.0, "iterations": 1200, "game": "preserve", "lr": 0.05,
                  "min_evidence": 0.0, "weighting": "sum", "final_sigma_at_112": _REF["final_sigma"],
                  "fine_iterations": 0},
    }

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
                 min_evidence: Annotated[float, Opt(ge=0, le=1)] | None = None,
                 weighting: Literal["score", "density", "sum"] | None = None, batch_size: BatchSize = 32,
                 seed: Seed = 0, fine_iterations: FineIterations = None,
                 max_frame_area: MaxFrameArea = 1.0, init: MaskInit = 1.0,
                 fine_start: FineStart = "own") -> None:
        super().__init__(model)
        self._setup(batch_size=batch_size, seed=seed)
        given = {"areas": areas, "keep": keep, "iterations": iterations, "game": game, "lr": lr,
                 "min_evidence": min_evidence, "weighting": weighting, "fine_iterations": fine_iterations}
        chosen = {k: self.PRESETS[preset][k] if v is None else v for k, v in given.items()}
        areas, keep, iterations, game, lr = (chosen[k] for k in ("areas", "keep", "iterations", "game", "lr"))
        self.min_evidence = float(chosen["min_evidence"])
        self.weighting = chosen["weighting"]
        self.auto_areas = areas == "auto"
        if self.auto_areas:
            areas = AREA_LADDER
        areas = tuple(float(a) for a in areas)
        if not areas:
            raise OptionError(f"{self._owner()}: option areas must be 'auto' or fractions in (0, 1), got none")
        self.preset = preset
        self.areas = tuple(sorted(areas))
        self.keep = float(keep)
        self.iterations = int(iterations)
        fine = chosen["fine_iterations"]
        # by default a share of the first stage's iterations, so a short run stays short
        self.fine_iterations = int(fine) if fine is not None else round(self.fine_share * self.iterations)
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
        if max_frame_area != 1 and self.per_frame_area:
            raise OptionError(f"{self._owner()}: option max_frame_area caps a share of each frame in a constraint "
                              f"over the whole clip; {self.name}'s areas are per frame already (every frame keeps "
                              "its area), so it has nothing to cap: use ep3d or step")
        self.max_frame_area = max_frame_area
        self.init = float(init)
        self.fine_start = fine_start

    # -- what the variants override ----------------------------------------------------------------
    def regulariser(self, padded: torch.Tensor, areas: torch.Tensor, progress: float,
                    orders: dict[str, torch.Tensor], caps: torch.Tensor | None = None) -> torch.Tensor:
        """The constraint terms of E for padded masks ``(A, T, Ho, Wo)`` → ``(A,)``.

        ``progress`` is the fraction of the run done (weights are scheduled on it); ``orders``
        are this iteration's tie-breaking shuffles (:meth:`draw_orders`); ``caps`` ``(A,)`` the
        most of one frame each area may keep (``max_frame_area``; ``None``: no cap).
        """
        weight = self.area_weight * self.area_growth ** progress
        return weight * area_loss(padded, areas, self.per_frame_area, orders["area"], frame_caps=caps)

    def frame_cap(self, gen: MaskGenerator) -> float | None:
        """``max_frame_area`` as a share of one of ``gen``'s padded frames; ``None`` for 1, the
        recipe's loss, which the capped one equals (not run, so the default's maps keep their bits)."""
        if self.max_frame_area == 1:
            return None
        return smallest_area(gen, 1) if self.max_frame_area == "bump" else float(self.max_frame_area)

    def draw_orders(self, generator: torch.Generator, t: int, padded: tuple[int, int]) -> dict[str, torch.Tensor]:
        """One iteration's shuffles, drawn before the areas are split into batches so that the
        result does not depend on ``batch_size``."""
        n = padded[0] * padded[1] * (1 if self.per_frame_area else t)
        return {"area": torch.randperm(n, generator=generator)}

    def check_clip(self, t: int, padded: tuple[int, int]) -> None:
        """Raise :class:`InputError` if a clip of ``t`` frames cannot be explained."""

    def resolved_geometry(self, t: int) -> dict:
        """A variant's own options as run on a clip of ``t`` frames (after :meth:`check_clip`),
        for :attr:`ClipResult.resolved`."""
        return {}

    # -- the optimisation ------------------------------------------------------------------------
    def size(self, key: str, side: int) -> float:
        v = self.sizes.get(key)
        return float(v) if v is not None else self.reference_sizes[key] * side / _REF_SIDE

    def forward_passes(self, num_frames: int) -> int:
        games = 2 if self.game == "dual" else 1
        # + the clip, + intact and blurred
        return (self.iterations + self.fine_iterations) * self._area_count(num_frames) * games + 3

    def _area_count(self, t: int) -> int:
        """How many areas a clip of ``t`` frames on the model's grid is optimised for: with the
        default ladder, the rungs :meth:`clip_areas` leaves after raising the small ones to the
        smallest area a mask can keep and merging duplicates (2D-EP at 64 px: 2 of 5, so its
        600 passes were estimated as 1 500 and the service refused jobs that fitted its limit)."""
        if not self.auto_areas:
            return len(self.areas)
        h, w = self.model.input_size
        side = min(h, w)
        try:
            gen = MaskGenerator((h, w), max(1, round(self.size("step", side))), self.size("sigma", side))
        except InputError:  # step or sigma against the grid: explaining fails and says why
            return len(self.areas)
        return len(self.clip_areas(gen, t))

    def _logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model's logits ``(N, C)`` for clips ``(N, T, 3, H, W)``, at most :attr:`batch_size`
        clips per forward pass. The dual game sends each area's clip once per game, and the end
        clips (intact and blurred) go in one pass: with ``batch_size=1``, which a network that
        takes one clip at a time needs, they went through in twos and it failed. One pass whenever
        they fit (any ``batch_size`` of 2 or more), so those maps keep their bits."""
        if pixels.shape[0] <= self.batch_size:
            return self.model(pixels)
        return torch.cat([self.model(part) for part in pixels.split(self.batch_size)])

    def explain_clip(self, canvas: Canvas, target: int, generator: torch.Generator) -> ClipResult:
        device = canvas.pixels.device
        t, (h, w) = canvas.num_frames, canvas.grid
        side = min(h, w)
        step = max(1, round(self.size("step", side)))
        # the lr is set for cells of the (scaled) recipe's size: a finer grid gets (ratio)² more.
        # Against the recipe's step as it is used (rounded): a step given explicitly was compared
        # with itself, so the documented scaling never happened (step=2 at 64 px ran at lr 0.1,
        # not 0.4); rounded, the default's step given explicitly makes the same map
        recipe_step = max(1, round(self.reference_sizes["step"] * side / _REF_SIDE))
        lr = self.lr * (recipe_step / step) ** 2
        try:
            gen = MaskGenerator((h, w), step, self.size("sigma", side), device=device)
        except InputError as e:  # step or sigma against the grid: their ranges depend on the model
            raise OptionError(f"{self.name}: {e}") from None
        self.check_clip(t, gen.shape_out)
        frames = canvas.to_grid(canvas.pixels)[0]                                   # (T, 3, h, w)
        pyramid = BlurPyramid(frames, self.levels, self.size("max_blur", side), self.perturbation,
                              fade_to=self.model.preprocess.mean)
        clip_areas = self.clip_areas(gen, t)
        n_areas = len(clip_areas)
        # float32 whatever the caller's default dtype (a float64 default moved the maps' bits)
        areas = torch.tensor(clip_areas, device=device, dtype=torch.float32)
        params = torch.full((n_areas, t, 1, *gen.shape_in), self.init, device=device, dtype=torch.float32,
                            requires_grad=True)
        cap = self.frame_cap(gen)
        last_p = self.optimise(gen, params, areas, self.iterations, lr, canvas, pyramid, target, generator,
                               frame_cap=cap)
        volume = t * gen.shape_out[0] * gen.shape_out[1]  # the areas are shares of this stage's padded volume
        if self.fine_iterations:
            if self.fine_start == "winner":
                params = params.detach()[self.winning_sources(self.game_scores(last_p))]
            gen, params = self.refined(gen, params, canvas)
            self.check_clip(t, gen.shape_out)
            # the same number of voxels kept: the finer grid's padded margin is narrower (and the
            # same number per frame under max_frame_area: the coarse stage's cap, a coarse bump
            # for "bump", not the fine grid's smaller one)
            ratio = volume / (t * gen.shape_out[0] * gen.shape_out[1])
            fine_lr = self.lr * (recipe_step / gen.step) ** 2
            last_p = self.optimise(gen, params, areas * ratio, self.fine_iterations, fine_lr, canvas, pyramid,
                                   target, generator, final=True, frame_cap=None if cap is None else cap * ratio)

        with torch.no_grad():
            mask, padded = gen(params.reshape(-1, 1, *gen.shape_in))
            mask = mask.reshape(n_areas, t, h, w)
            # the references the evidence is measured from: the clip intact (mask 1) and fully
            # perturbed (mask 0)
            ends = pyramid.apply(torch.stack([torch.ones_like(mask[0]), torch.zeros_like(mask[0])]))
            p_intact, p_blurred = self.model.probabilities(self._logits(canvas.paste(canvas.to_box(ends))).double())[:, target].cpu()
            chosen = self.select(last_p)
            evidence = self.evidence(last_p, float(p_intact), float(p_blurred))
            scores = self.game_scores(last_p)
            share = self.evidence_share(last_p, float(p_intact), float(p_blurred), areas, chosen)
            total = gaussian_blur_2d(self.combine(mask, areas, chosen, scores)[None],
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
        # after a refinement the finer grid's padded volume is smaller: shares of the first's
        scale = padded.shape[1] / volume
        reached = (padded >= 0.5).float().mean(1) * scale
        # per frame, as shares of the first stage's padded frame (what max_frame_area caps)
        frame_reached = (padded.reshape(n_areas, t, -1) >= 0.5).float().mean(-1) * scale
        resolved = {"areas": list(clip_areas), "keep": self.keep, "iterations": self.iterations,
                    "fine_iterations": self.fine_iterations, "game": self.game, "lr": self.lr,
                    "min_evidence": self.min_evidence, "weighting": self.weighting,
                    "max_blur": self.size("max_blur", side), "step": step,
                    "sigma": self.size("sigma", side), "final_sigma": self.size("final_sigma", side),
                    **self.resolved_geometry(t)}
        return ClipResult(maps=total, extras={"areas": areas.float(), "area_reached": reached,
                                              "frame_area_reached": frame_reached.float(),
                                              "area_mean": (padded.mean(1) * scale).float(),
                                              "area_chosen": areas[chosen].float(),
                                              "evidence": evidence[chosen].float(),
                                              "evidence_share": share.float(),
                                              "probability": last_p.float()},
                          resolved=resolved)

    def optimise(self, gen: MaskGenerator, params: torch.Tensor, areas: torch.Tensor, iterations: int,
                 lr: float, canvas: Canvas, pyramid: BlurPyramid, target: int, generator: torch.Generator,
                 final: bool = False, frame_cap: float | None = None) -> torch.Tensor:
        """Run ``iterations`` steps on the mask parameters ``(A, T, 1, hi, wi)`` (in place) and
        return the last iteration's target probabilities ``(A, games)``. The regularisers'
        weights follow the run's progress, or stay at their final values (``final``: the
        refinement stage, which continues a finished run). ``frame_cap``: the most of one padded
        frame an area's mask may keep (:meth:`frame_cap`), raised to the area itself where that
        is larger (a·V voxels fit in T frames of a each)."""
        device = params.device
        t, (h, w) = canvas.num_frames, canvas.grid
        n_areas = params.shape[0]
        opt = (torch.optim.Adam([params], lr=lr) if self.optimizer == "adam" else
               torch.optim.SGD([params], lr=lr, momentum=0.9, dampening=0.9))
        games = ["preserve", "delete"] if self.game == "dual" else [self.game]
        per_pass = max(1, self.batch_size // len(games))
        last_p = torch.zeros(n_areas, len(games), dtype=torch.float64)
        caps = None if frame_cap is None else areas.clamp(min=frame_cap)

        # gradients of the masks only: with the model's parameters frozen nothing lands in their .grad
        with torch.enable_grad(), frozen_parameters(self.model):  # also when called under torch.no_grad()
            for it in self.progress(range(iterations), iterations,
                                    "refining masks" if final else "optimising masks"):
                progress = 1.0 if final else it / iterations
                orders = {k: v.to(device) for k, v in self.draw_orders(generator, t, gen.shape_out).items()}
                opt.zero_grad(set_to_none=True)
                grad = torch.zeros_like(params)
                for sl in batched(n_areas, per_pass):
                    p = params[sl]
                    mask, padded = gen(p.reshape(-1, 1, *gen.shape_in))
                    mask = mask.reshape(-1, t, h, w)
                    padded = padded.reshape(-1, t, *gen.shape_out)
                    clips = torch.cat([pyramid.apply(mask if g == "preserve" else 1 - mask) for g in games])
                    logits = self._logits(canvas.paste(canvas.to_box(clips)))
                    if not logits.requires_grad:
                        # the masks move by the reward's gradient: without one the area term alone
                        # shaped them, and the all-zero map was put down to a model the perturbation
                        # does not move
                        raise UnsupportedModelError(
                            f"the logits of {self.model.name} do not depend on the pixels in autograd's graph: "
                            "the network runs (part of) its forward under torch.no_grad() or "
                            "torch.inference_mode(), detaches a tensor, or computes its output without its "
                            f"input (a constant); {self.name} moves its masks by that gradient (perturbation "
                            "methods such as rise and occlusion need none)")
                    k = mask.shape[0]
                    reward = sum(log_reward(logits[j * k:(j + 1) * k], target, g, self.model.activation)
                                 for j, g in enumerate(games))
                    energy = (self.reward_weight * reward
                              + self.regulariser(padded, areas[sl], progress, orders,
                                                 None if caps is None else caps[sl])).sum()
                    # by backward, which a network checkpointed with use_reentrant=True accepts
                    grad[sl] += leaf_gradients(energy, [params])[0][sl]
                    with torch.no_grad():
                        probs = self.model.probabilities(logits.double())[:, target].reshape(len(games), k).T
                        last_p[sl] = probs.cpu()
                params.grad = grad
                opt.step()
                with torch.no_grad():
                    params.clamp_(0, 1)

        return last_p

    def refined(self, gen: MaskGenerator, params: torch.Tensor,
                canvas: Canvas) -> tuple[MaskGenerator, torch.Tensor]:
        """The refinement stage's generator (cells ``step // 2`` apart, or closer where that grid
        would not cover the frame; bumps of σ / 2) and its
        parameters ``(A, T, 1, hi', wi')``, set so that the fine masks start where the coarse
        ones ended: each cell takes the finished coarse mask's value at the cell's centre, after
        a minimum filter of radius ⌊σ' / 2⌋ px. The fine kernel is flat within σ' / 2 of its
        cell, so a cell at v keeps v over that radius and the plain samples drew the kept
        region about 1.4 × as large (demo 3D CNN, 64 px: 226 voxels for 148); eroded, 156."""
        t = canvas.num_frames
        sigma = gen.sigma / 2
        # TorchRay's padding covers the frame only while the cells are not much coarser than σ,
        # and halving both does not always keep that (step 9, σ 11 at 24 px: step 4, σ 5.5 does
        # not), so the coarsest step up to step // 2 that covers; a step of 1 always does
        step = max((s for s in range(1, max(1, gen.step // 2) + 1) if MaskGenerator._covers(gen.shape, s, sigma)),
                   default=1)
        try:
            fine = MaskGenerator(gen.shape, step, sigma, device=params.device)
        except InputError as e:
            raise OptionError(f"{self.name}: option fine_iterations: {e}") from None
        with torch.no_grad():
            padded = gen(params.reshape(-1, 1, *gen.shape_in))[1]                 # (A·T, 1, Ho, Wo)
            r = int(fine.sigma // 2)
            if r:
                padded = -F.max_pool2d(-padded, 2 * r + 1, stride=1, padding=r)
            # a fine cell i sits at σ' + step'·i of its padded mask, i.e. at that minus its
            # margin in the frame, and at that plus the coarse margin in the coarse padded mask
            idx = [(fine.sigma + fine.step * torch.arange(n, device=params.device, dtype=torch.float32)
                    - fine.margin + gen.margin).round().long().clamp(0, size - 1)
                   for n, size in zip(fine.shape_in, gen.shape_out)]
            start = padded[:, 0][:, idx[0][:, None], idx[1][None, :]]
        start = start.reshape(len(params), t, 1, *fine.shape_in).clone().requires_grad_(True)
        return fine, start

    def winning_sources(self, scores: torch.Tensor) -> torch.Tensor:
        """``(A,)`` for each area (ascending), the area whose finished mask its refinement starts
        from under ``fine_start="winner"``: its own where it won its game (a score at least half
        the best area's, :meth:`game_scores`), else the smallest larger area that won (its own if
        none did)."""
        won = scores >= 0.5 * scores.max()
        source = torch.arange(len(scores))
        for i in range(len(scores)):
            if not won[i]:
                larger = won[i + 1:].nonzero()
                if len(larger):
                    source[i] = i + 1 + int(larger[0])
        return source

    def blank_map_reason(self, extras: dict) -> str | None:
        # the evidence test blanked the map: the generic line blamed the model ("its output may
        # not change"), where a run of a few iterations had simply not moved the masks yet
        share = extras.get("evidence_share")
        if self.min_evidence <= 0 or share is None or float(torch.as_tensor(share).reshape(-1)[0]) >= self.min_evidence:
            return None
        share = float(torch.as_tensor(share).reshape(-1)[0])
        return (f"its masks carry {share:.1%} of the target's probability, under min_evidence="
                f"{self.min_evidence:g}, so the map is left blank: the model gave them no signal, or "
                f"{self.iterations} iterations were too few to find one; min_evidence=0 shows the masks as they are")

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

    def evidence_share(self, probability: torch.Tensor, intact: float, blurred: float,
                       areas: torch.Tensor, chosen: int) -> torch.Tensor:
        """The share of the target's probability that the kept masks carry (the test of
        ``min_evidence``): their :meth:`evidence`, averaged with their weights in the map
        (:meth:`mass_weights`), over the intact clip's probability or chance (1 / classes),
        whichever is larger — a class the model gives less than chance cannot pass on a tiny
        absolute change (0.014 of 0.08 on a demo-cnn clip with its classifier re-initialised).
        Averaged, not the best kept mask's: on a TimeSformer whose classifier and last block
        were re-drawn, STEP's largest rung carried 0.13 of the probability while the four
        smaller ones, most of the map's mass, carried none (−0.006 to 0.000), and the map
        stayed on the object where RISE's had turned against it."""
        evidence = self.evidence(probability, intact, blurred)[chosen:]
        weights = self.mass_weights(areas, chosen, self.game_scores(probability)).to(evidence)
        mean = (weights * evidence).sum() / weights.sum().clamp_min(1e-12)
        return mean / max(float(intact), 1 / self.model.num_classes)

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

    def combine(self, masks: torch.Tensor, areas: torch.Tensor, chosen: int,
                scores: torch.Tensor | None = None) -> torch.Tensor:
        """The map (before smoothing) from the areas' masks ``(A, T, h, w)``, their target
        ``areas`` ``(A,)`` and their ``scores`` ``(A,)`` in the game (:meth:`game_scores`): the
        masks from the ``chosen`` area upwards, summed as they are (``weighting="sum"``, the
        recipe's), each divided by its target area (``"density"``), or as densities weighted by
        their scores (``"score"``, the default).

        As densities every area's mask weighs the same when it meets its target (one that
        overshoots weighs more: it did keep more), and a voxel that the small areas keep ranks
        above one that only the large ones keep. Summed as they are, the largest area dominates:
        its mask holds most of the map's mass, spread over frames and background the smaller
        areas leave out, and the top frame of the map is then often outside the evidence (STEP on
        the 3D CNN, 9 validation clips: top frame in the window 0.44 summed, 0.78 as densities).
        Weighted by score, a kept mask counts as much as it won its game. In the dual game a
        small mask that keeps the object in one frame preserves the class, but when the object is
        in four frames removing that frame leaves the class (score ≈ 0.07 where the mask that
        holds all four scores 0.92); as a plain density that small mask, at 1 / 0.0032 a voxel,
        filled the map's top voxels with one frame (TimeSformer, 9 validation clips: IoU 3D-EP
        0.343 → 0.355, STEP 0.291 → 0.366, other scores unchanged; 3D CNN unchanged)."""
        kept = masks[chosen:]
        if self.weighting == "sum":
            return kept.sum(0)
        weight = self.mass_weights(areas, chosen, scores).to(kept) / areas[chosen:].to(kept)
        return torch.einsum("a,athw->thw", weight, kept)

    def mass_weights(self, areas: torch.Tensor, chosen: int, scores: torch.Tensor | None = None) -> torch.Tensor:
        """``(A − chosen,)`` how much each kept mask adds to the map's mass (:meth:`combine`),
        up to a common factor, when it meets its target area: its area for ``weighting="sum"``,
        1 for ``"density"``, its game score for ``"score"`` — relative to the best (the map is
        divided by its maximum anyway, and tiny scores must not underflow it); when every kept
        mask lost its game (possible only with ``min_evidence=0``), 1 each."""
        kept = areas[chosen:].double()
        if self.weighting == "sum":
            return kept
        if self.weighting == "score" and scores is not None:
            votes = scores[chosen:].double()
            best = float(votes.max())
            if best > 0:
                return votes / best
        return torch.ones_like(kept)

    def game_scores(self, probability: torch.Tensor) -> torch.Tensor:
        """``(A,)`` each area's score in its game, from the last iteration's target probabilities
        ``(A, games)``: preserve, the probability the mask keeps; delete, one minus the
        probability left when it is removed; dual, the smaller of the two (the mask must be
        sufficient *and* necessary): :meth:`evidence` against the fixed references 1 (intact) and
        0 (fully perturbed) instead of the clip's own, since it weighs masks against each other
        where :meth:`evidence` decides whether there is any."""
        return self.evidence(probability, intact=1.0, blurred=0.0)

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

