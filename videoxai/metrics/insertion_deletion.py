"""Causal insertion and deletion curves (Petsiuk et al.'s RISE metric, as the video-attribution
reference code runs it).

Units (pixels, patches, superpixels or frames, see :mod:`videoxai.metrics.units`) are ranked by
the explanation and switched in ``n = min(n_steps, U)`` equal steps; after step ``s`` the first
``round(s·U/n)`` units of the order are switched (deletion: ``U − round((n − s)·U/n)``, the same
number except where ``s·U/n`` is a half-integer, so that a deletion step keeps exactly what the
insertion step ``n − s`` restores):

* **deletion** starts from the clip and replaces switched units by the baseline;
* **insertion** starts from the baseline and restores switched units from the clip.

Order ``"morf"`` switches the most relevant units first, ``"lerf"`` the least relevant first.
The curve is the probability of the target after each step (``model.probabilities``: the softmax
of the logits, or their sigmoid), ``p_0 … p_n``, and the score is its area over the fraction of
units switched, by the trapezoidal rule:

    AUC = (Σ_s p_s − p_0/2 − p_n/2) / n

Which way is better: insertion-MoRF and deletion-LeRF **higher**, deletion-MoRF and
insertion-LeRF **lower**. Insertion-MoRF and deletion-LeRF switch the same sets of units (and so,
with a baseline clip, give the same AUC; ROAD's fill and noise differ between them), as do
deletion-MoRF and insertion-LeRF.

The default baseline is ``"fade"``: **mid-grey 0.5** in pixel space, a fixed colour for every
clip. (The reference code set removed pixels to zero in normalised space, which is the
normalisation's mean colour; for the ImageNet/Kinetics means that is close to, but not, grey: on
one demo clip the AUC differs by 0.13.) ``baseline="mean_colour"`` uses the clip's own mean
colour instead; ``baseline`` takes any name of :mod:`videoxai.core.baselines` (``blur``,
``fade``, ``mean`` — the clip's mean *frame* —, ``mean_colour``, ``black``, ``freeze``), or
``"road"``: ROAD's noisy linear imputation of the removed pixels from their neighbours in space
and time (:mod:`videoxai.metrics.road`), which avoids the out-of-distribution artefact of a
flat fill. Perturbed clips go through the model ``batch_size`` at a time.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar, Literal

import torch

from ..core import baselines
from ..methods.base import SEED_RANGE, check_baseline
from ..options import Opt
from .base import BatchSize, Grid, Score, Segments, Unit, register
from .road import NoisyLinearImputer
from .units import UnitMetric

ORDERS = ("morf", "lerf")
#: the ``baseline`` that imputes removed pixels from their neighbours (:mod:`.road`)
ROAD = "road"
#: the curves' seed also draws ROAD's noise (step ``s`` from its own generator, :func:`step_generator`)
CurveSeed = Annotated[int, dataclasses.replace(SEED_RANGE, help="order among tied values, and ROAD's noise: "
                                                                "same seed, same score")]


class _CausalCurve(UnitMetric):
    """Shared body of :class:`Deletion` and :class:`Insertion`.

    Options:
        order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first). Lower AUC is
            better for deletion-MoRF and insertion-LeRF, higher for insertion-MoRF and deletion-LeRF.
        baseline: what a removed unit becomes: ``"fade"`` (grey 0.5), ``"mean_colour"``,
            ``"blur"``, ``"mean"`` (mean frame), ``"black"``, ``"freeze"`` or ``"road"``.
        n_steps: points of the curve after its start: ``min(n_steps, units)`` equal steps.
        grid: patch lattice per frame (``unit="patch"``).
        segments: SLIC supervoxels per clip (``unit="superpixel"``).
        batch_size: perturbed clips per forward pass.
        seed: order among units of equal relevance, and ROAD's noise (``baseline="road"``).
    """

    family = "faithfulness"
    bounds = (0.0, 1.0)  # the area under a probability curve
    deletes: ClassVar[bool]

    def __init__(self, *, unit: Unit = "patch", order: Literal["morf", "lerf"] = "morf", baseline: str = "fade",
                 n_steps: Annotated[int, Opt(ge=1, aliases=("steps",))] = 32, grid: Grid = 16, segments: Segments = 256,
                 batch_size: BatchSize = 16, seed: CurveSeed = 0) -> None:
        check_baseline(self._owner(), baseline, extra=(ROAD,))
        # ROAD depends on which pixels are removed at each step: it is an imputer, not a clip
        self.imputer = NoisyLinearImputer() if baseline == ROAD else None
        self.baseline = None if self.imputer else baselines.get(baseline)
        self.order, self.n_steps = order, n_steps
        self._units(unit, grid, segments, batch_size, seed)

    @property
    def higher_is_better(self) -> bool:
        # a good map makes the target vanish fast when its top units go, or come back fast
        morf = self.order == "morf"
        return morf != self.deletes

    def compute(self, model, x, explanation, target, sample) -> Score:
        probs, units = self.curve(model, x, explanation, target)
        n = probs.numel() - 1
        auc = (probs.sum() - probs[0] / 2 - probs[-1] / 2) / n
        return Score(float(auc), curve=probs.cpu().numpy(), details={"units": units, "steps": n})

    def curve(self, model, x: torch.Tensor, explanation, target: int) -> tuple[torch.Tensor, int]:
        """Target probabilities ``(n + 1,)`` along the curve, and the number of units."""
        clip = x[0]                                                            # (T, 3, H, W)
        place, count = self.unit_order(model, clip, explanation, self.order == "morf")
        n = min(self.n_steps, count)
        steps = torch.arange(n + 1, dtype=torch.float64)
        if self.deletes:
            # the complement of insertion's step n − s: deletion-LeRF keeps at every step exactly
            # what insertion-MoRF restores (and deletion-MoRF what insertion-LeRF does); one
            # rounding for both broke that where s·U/n is a half-integer (3 frames in 2 steps:
            # both switched 2 at the midpoint, and their AUCs differed by 0.05)
            switched = count - torch.round((n - steps) * count / n).long()
        else:
            switched = torch.round(steps * count / n).long()
        if self.imputer is None:
            base = self.baseline(x)[0]
            start, end = (clip, base) if self.deletes else (base, clip)

            def build(s: slice) -> torch.Tensor:
                mask = place.unsqueeze(0) < switched[s].to(place.device).view(-1, 1, 1, 1)   # (b, T, H, W)
                return torch.where(mask.unsqueeze(2), end, start)
        else:
            def build(s: slice) -> torch.Tensor:
                mask = place.unsqueeze(0) < switched[s].to(place.device).view(-1, 1, 1, 1)
                # the pixels that hold the clip's values: not yet deleted / already inserted
                # (pixels the model never sees stay as they start: kept in deletion, not in insertion)
                kept = ~mask if self.deletes else mask
                # each step's noise from its own generator (seed, step): one generator for the
                # batch gave another draw to each step when batch_size changed, and another score
                steps = range(n + 1)[s]
                return self.imputer(clip, kept, [step_generator(self.seed, i) for i in steps])

        logits = self.forward_batched(model, n + 1, build, self.batch_size)
        return model.probabilities(logits)[:, target].double(), count


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of ROAD's noise at ``step`` of a curve with ``seed``."""
    # modulo 2⁶⁴, the generator's range (as the robustness metrics' noise)
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % 2 ** 64)


@register
class Deletion(_CausalCurve):
    """Deletion curve AUC: units replaced by the baseline in the given order (see module docs).

    Options: see :class:`_CausalCurve` (shared with :class:`Insertion`).
    """

    name = "deletion"
    deletes = True


@register
class Insertion(_CausalCurve):
    """Insertion curve AUC: units restored from the clip onto the baseline in the given order.

    Options as :class:`Deletion`; with ``order="morf"`` higher AUC is better.
    """

    name = "insertion"
    deletes = False
