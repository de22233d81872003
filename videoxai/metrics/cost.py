"""Cost of an explanation, as measured when it was made (``Explanation.cost``).

Wall time, forward and backward passes (clips through the model) and peak memory are recorded by
:func:`videoxai.explain` around the method (see :mod:`videoxai.cost`), so cost comparisons between
methods are measurements, not claims. Lower is better. Seconds depend on the machine and on what
else runs on it; passes do not. An explanation whose cost was never measured (a bare map, an
Explanation made by hand: zero seconds) has no cost score (``nan``), not a cost of 0.
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
    ranks = None         # the map is not read

    def __init__(self, *, measure: Measure = "seconds") -> None:
        self.measure = measure

    def compute(self, model, x, explanation, target, sample) -> Score:
        cost = explanation.cost
        # a bare map, or an Explanation made by hand, has the zero Cost nobody measured (every
        # measured call takes some time): scored 0, it ranked first on cost, as free
        if explanation.method == "map" or cost.seconds <= 0:
            return Score.undefined("the explanation's cost was not measured (a bare map or an Explanation "
                                   "made by hand; vx.explain records it)", **cost.to_dict())
        return Score(float(getattr(cost, self.measure)), details=cost.to_dict())
