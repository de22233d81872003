"""The STAA paper's faithfulness and monotonicity, made well defined.

Both keep the **top share** of the explanation's units (pixels by default; ``unit="frame"`` keeps
the top frames by temporal score, which is how the reference scored temporal SHAP), replace the
rest by a baseline, and compare the model's output with the clean clip's through the
class-normalised logits ``norm(z) = (z − min z) / (max z − min z + 1e-8)``:

    similarity(p) = 1 − mean_c | norm(f(X))_c − norm(f(X'_p))_c |

``z = f(X)`` is what the model outputs: its logits, or its probabilities for a model wrapped with
``activation="none"``. With two outputs ``norm(z)`` is one-hot on the larger, so the similarity is
a pass/fail: about 1 while the kept part keeps the predicted class, 0 when it flips it. With one
output it is constant, and both metrics are undefined (``nan``).

* **faithfulness** = ``similarity(share)`` with ``share = 0.7`` (the reference keeps 70 %).
  Higher is better: the kept part alone reproduces the model's whole output.
* **monotonicity** = Kendall's τ_b between the kept share ``p ∈ {0.1, …, 0.9}`` and
  ``similarity(p)`` rounded to ``1e-6`` (the normalisation's ``+ 1e-8`` moves similarities by
  about that much, which is no evidence). Convention: **higher is better** — +1 when keeping more
  of the top of the map always brings the output closer to the clean one. (The reference correlates ``p`` with
  the *distance* ``1 − similarity``, where "more negative is better"; this is its negative.)

Fixed against the reference code: the kept region is the top of the explanation's own map at the
clip's resolution (the reference kept the top of a query × key attention matrix resized as if it
were an image); ``k = round(p·U)`` units are kept and ``k = 0`` keeps nothing (the reference's
``argsort[-0:]`` kept everything); ties are broken in a seeded random order, not raster order.
The baseline defaults to "fade": mid-grey 0.5 in pixel space. The reference zeroed the
*normalised* input, i.e. set pixels to the normalisation's mean colour, which is near grey but
not equal to it; ``baseline="mean_colour"`` uses the clip's own mean colour.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..core import baselines
from ..options import OptionError
from ..methods.base import check_baseline
from .base import BatchSize, Grid, Score, Seed, Segments, Share, Unit, register
from .units import UnitMetric


#: similarities closer than this are ties for monotonicity's rank correlation
SIMILARITY_TIE = 1e-6


class _KeepTop(UnitMetric):
    """Shared body: similarities of the clean output and the outputs with only the top kept.

    Options (of both metrics):
        baseline: what the units not kept become (a :mod:`~videoxai.core.baselines` name:
            ``"fade"``, grey 0.5; ``"mean_colour"``, ``"blur"``, ``"mean"``, ``"black"``,
            ``"freeze"``).
    """

    family = "faithfulness"

    def _setup(self, unit: str, baseline: str, grid: int, segments: int, batch_size: int, seed: int) -> None:
        check_baseline(self._owner(), baseline)
        self.baseline = baselines.get(baseline)
        self._units(unit, grid, segments, batch_size, seed)

    @staticmethod
    def single_output(model) -> Score | None:
        """Undefined for a model with one output: normalised over the classes (min to max), its
        logits are constant, and every map would score a perfect 1."""
        if model.num_classes < 2:
            return Score.undefined("the model has one output: its class-normalised logits are constant")
        return None

    def similarities(self, model, x: torch.Tensor, explanation, shares: Sequence[float]) -> tuple[np.ndarray, int]:
        """``similarity(p)`` for each share ``p`` ``(len(shares),)``, and the number of units."""
        clip = x[0]
        place, count = self.unit_order(model, clip, explanation, most_relevant_first=True)
        # entry 0 is the clean clip (everything kept); k = 0 for a share keeps nothing
        kept = torch.tensor([count + 1] + [int(round(p * count)) for p in shares])
        base = self.baseline(x)[0]

        def build(s: slice) -> torch.Tensor:
            keep = place.unsqueeze(0) < kept[s].to(place.device).view(-1, 1, 1, 1)
            return torch.where(keep.unsqueeze(2), clip, base)

        logits = self.forward_batched(model, len(kept), build, self.batch_size).double()
        lo, hi = logits.amin(1, keepdim=True), logits.amax(1, keepdim=True)
        norm = (logits - lo) / (hi - lo + 1e-8)
        sim = 1.0 - (norm[1:] - norm[:1]).abs().mean(1)
        return sim.cpu().numpy(), count


@register
class Faithfulness(_KeepTop):
    """STAA faithfulness: output similarity when only the top ``share`` of the units is kept.

    Options:
        share: fraction of the units kept, in [0, 1] (0.7 as in the reference).
    """

    name = "faithfulness"
    bounds = (0.0, 1.0)  # a similarity of class-normalised logits

    def __init__(self, *, share: Share = 0.7, unit: Unit = "pixel", baseline: str = "fade", grid: Grid = 16,
                 segments: Segments = 256, batch_size: BatchSize = 16, seed: Seed = 0) -> None:
        self.share = share
        self._setup(unit, baseline, grid, segments, batch_size, seed)

    def compute(self, model, x, explanation, target, sample) -> Score:
        if (undefined := self.single_output(model)) is not None:
            return undefined
        sim, units = self.similarities(model, x, explanation, [self.share])
        return Score(float(sim[0]), details={"units": units, "kept": int(round(self.share * units))})


@register
class Monotonicity(_KeepTop):
    """STAA monotonicity: Kendall τ_b between the kept share and the output similarity.

    Higher is better (+1: keeping more of the map's top always brings the output closer).
    ``nan`` when the similarity does not change at all over the shares (τ undefined).

    Options:
        shares: the kept fractions, each in [0, 1], at least two different (0.1 … 0.9 as in the reference).
    """

    name = "monotonicity"
    bounds = (-1.0, 1.0)  # Kendall's τ_b

    def __init__(self, *, shares: list[Share] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                 unit: Unit = "pixel", baseline: str = "fade", grid: Grid = 16, segments: Segments = 256,
                 batch_size: BatchSize = 16, seed: Seed = 0) -> None:
        if len(set(shares)) < 2:   # one share repeated: τ is undefined on every clip ("does not change")
            raise OptionError(f"{self._owner()}: option shares must list at least two different fractions, "
                              f"got {shares!r}")
        self.shares = shares
        self._setup(unit, baseline, grid, segments, batch_size, seed)

    def compute(self, model, x, explanation, target, sample) -> Score:
        from scipy.stats import kendalltau

        if (undefined := self.single_output(model)) is not None:
            return undefined
        sim, units = self.similarities(model, x, explanation, self.shares)
        curve = sim
        # similarities within SIMILARITY_TIE are ties: the normalisation's + 1e-8 alone moves them
        # by ~1e-8 / (max z − min z), which ranked the shares of a two-output model whose
        # prediction never changed (every similarity "about 1")
        ranked = np.round(sim / SIMILARITY_TIE)
        if np.ptp(ranked) == 0:
            return Score(math.nan, curve=curve, details={"undefined": "output does not change with the kept share",
                                                         "units": units})
        tau = kendalltau(self.shares, ranked).statistic
        return Score(float(tau), curve=curve, details={"units": units})
