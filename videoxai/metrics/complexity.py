"""Complexity: how concentrated an explanation is.

**Sparseness** is the Gini index of the relevance values (Chalasani et al. 2020, as in Quantus):
with ``a`` sorted ascending (``i = 1 … n``),

    G = Σ_i (2i − n − 1) · a_i / (n · Σ_i a_i)

0 when every value is equal, ``(n − 1) / n`` when one value holds all the mass. Higher means a
more concentrated (sparser) map, which is taken as better — it is easier to read; it says nothing
about whether the map is *right* (that is what the faithfulness and localisation metrics are
for), so the report does not use it to rank methods.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import InputError
from .base import Metric, Score, register, view_mask


def gini(values: np.ndarray) -> float:
    """Gini index of non-negative ``values`` (any shape); ``nan`` if they sum to 0."""
    a = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if a.size == 0:
        raise InputError("gini of an empty array")
    if a[0] < 0:
        raise InputError("gini needs non-negative values")
    total = a.sum()
    if total <= 0:
        return float("nan")
    n = a.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * i - n - 1) * a).sum() / (n * total))


@register
class Sparseness(Metric):
    """Gini index of the map (higher: sparser).

    Options:
        of: ``"spatial"`` (the map's voxels inside the model's view) or ``"temporal"`` (the
            per-frame scores).
    """

    name = "sparseness"
    family = "complexity"
    bounds = (0.0, 1.0)  # a Gini index
    ranks = None         # of the values: a constant map's Gini is 0, an all-zero map's undefined (no mass)

    def __init__(self, *, of: Literal["spatial", "temporal"] = "spatial") -> None:
        self.of = of

    def compute(self, model, x, explanation, target, sample) -> Score:
        if self.of == "temporal":
            values = explanation.temporal
        else:
            t, h, w = explanation.spatial.shape
            # pixels the model never sees are zero in every map: they would make every map "sparse"
            values = explanation.spatial[view_mask(model, t, h, w).numpy()]
        g = gini(values)
        if np.isnan(g):
            return Score.undefined("the map is empty")
        return Score(g, details={"values": int(np.size(values))})
