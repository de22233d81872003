"""Extremal perturbation for video: 2D-EP, 3D-EP and STEP (Li et al., TCSVT 2021 / WACV 2021).

Fong et al.'s extremal perturbation (TorchRay) carried to video, following the authors' code
(``perturbation_area.py``). For each target area a, a mask
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
  area's mask carries (:meth:`ExtremalPerturbation.evidence`) and ``evidence_share`` the kept
  masks' evidence, averaged with their weights in the map, as a share of the intact clip's
  probability: near 0 when the model gives the masks no signal (a randomised model), where they
  are shaped by the area prior alone and the map is left blank (``min_evidence``).

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
150 iterations, the kept masks summed as densities (each divided by its area) weighted by their
scores in the game, smoothed with σ = 5 px at 112 px instead of 10, and a blank map when the kept masks carry less than
``min_evidence`` (10 %) of the target's probability; 3D-EP and STEP then refine their masks for
a fifth of the iterations on a grid with cells and bumps half as wide (``fine_iterations``),
which follows objects smaller than one bump of the recipe's grid (TimeSformer, 7 test clips:
IoU 3D-EP 0.395 → 0.524, STEP 0.366 → 0.439, RISE 0.548). On the synthetic benchmark the recipe's
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
than this benchmark's. A kept small mask can still be half an answer: on the TimeSformer one
frame of the object keeps the class, so the smallest rung keeps one frame, but removing it
leaves the class to the other frames. Each density is therefore weighted by the mask's score
in the game (dual: the smaller of the preserved probability and one minus the probability left
with the mask removed; :meth:`ExtremalPerturbation.game_scores`), which on 9 validation clips
raised the TimeSformer's IoU (3D-EP 0.343 → 0.355, STEP 0.291 → 0.366) and left every other
score, and the 3D CNN's maps, unchanged. STEP also differs in its L_K geometry (:class:`STEP`).

Deliberate differences from the reference code: it runs on CPU and GPU (no
``torch.cuda.set_device``), writes no files, blurs with reflected borders (TorchRay pads with
zeros, darkening the edges), draws its tie-breaking shuffles from a seeded generator, and checks
that the clip is long enough for the L_K kernel (the reference crashes inside ``conv3d``). The
model's parameters are never touched: gradients are taken for the mask only.

The parts: :mod:`~videoxai.methods.extremal.masks` (the mask generator and the blur
pyramid), :mod:`~videoxai.methods.extremal.energy` (the terms of E), :mod:`~videoxai.methods.extremal.base`
(the optimisation, shared), and one file per method: ``ep2d``, ``ep3d``, ``step``.
"""

from __future__ import annotations

from .base import AREA_GROWTH, AREA_LADDER, PAPER_AREAS, ExtremalPerturbation
from .energy import ELLIPSOID_SHARE, area_loss, ellipsoid_kernel, log_reward, smoothness_loss, tube_count
from .ep2d import EP2D
from .ep3d import EP3D
from .masks import BlurPyramid, MaskGenerator, smallest_area
from .step import STEP

__all__ = ["ExtremalPerturbation", "EP2D", "EP3D", "STEP", "MaskGenerator", "BlurPyramid", "smallest_area",
           "area_loss", "ellipsoid_kernel", "tube_count", "smoothness_loss", "log_reward", "AREA_GROWTH",
           "AREA_LADDER", "PAPER_AREAS", "ELLIPSOID_SHARE"]
