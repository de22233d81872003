"""Cost of an explanation, as measured when it was made (``Explanation.cost``).

Wall time, forward and backward passes (clips through the model) and peak memory are recorded by
:func:`videoxai.explain` around the method (see :mod:`videoxai.cost`), so cost comparisons between
methods are measurements, not claims. Lower is better. Seconds depend on the machine and on what
else runs on it; passes do not.
"""

from __future__ import annotations

from typing import Literal, get_args

from .base import Metric, Score, register

Measure = Literal["seconds", "forward_passes", "backward_passes", "peak_memory_mb"]
MEASURES = get_args(Measure)


@register
class CostMetric(Metric):
    """One measure of the explanation's recorded cost (lower is better).

    Options:
        measure: ``"seconds"``, ``"forward_passes"``, ``"backward_passes"`` or ``"peak_memory_mb"``.
    """

    name = "cost"
    family = "cost"
    bounds = (0.0, float("inf"))
    _higher_is_better = False

    def __init__(self, *, measure: Measure = "seconds") -> None:
        self.measure = measure

    def compute(self, model, x, explanation, target, sample) -> Score:
        cost = explanation.cost
        return Score(float(getattr(cost, self.measure)), details=cost.to_dict())
