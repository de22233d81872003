"""Objective metrics of video explanations.

Every metric is an object with documented options, called with one calling discipline::

    import videoxai as vx
    metric = vx.metrics.Deletion(unit="frame", baseline="blur")
    score = metric(model, clip, explanation)            # a Score: .value, .curve, .details
    metric.higher_is_better                             # False: deletion-MoRF wants a low AUC

or by spec, as the CLI does: ``vx.metrics.build("deletion(unit=frame)")`` and the function form
``vx.metrics.evaluate("deletion", model, clip, explanation, unit="frame")``.

=====================  ==============  =========  =============================================
name                   family          better     what it measures
=====================  ==============  =========  =============================================
deletion               faithfulness    lower*     AUC of the target probability as units go
insertion              faithfulness    higher*    AUC as units come back onto a baseline
faithfulness           faithfulness    higher     STAA: output kept by the top 70 % of the map
monotonicity           faithfulness    higher     STAA: Kendall τ of kept share vs output match
pointing_game          localisation    higher     map peak on the annotation, per frame
energy                 localisation    higher     share of the map's mass on the annotation
iou                    localisation    higher     IoU of the map's top voxels and the annotation
temporal_grounding     localisation    higher     top frame inside the annotated window
sparseness             complexity      higher     Gini index of the map
randomisation          randomisation   lower      Spearman ρ to maps of randomised models
cost                   cost            lower      seconds (or passes, memory) of the explanation
=====================  ==============  =========  =============================================

\\* with the default ``order="morf"``; least-relevant-first reverses the direction. Each metric
object's ``higher_is_better`` is the one place the report reads the direction from.

The reliability of a metric over a set of videos and methods is
:func:`~videoxai.metrics.reliability.reliability_alpha` (a table-level statistic, not a
per-explanation metric).
"""

from __future__ import annotations

from .base import (Metric, MissingGroundTruth, Score, available, build, evaluate, format_spec, get,
                   parse_spec, register)
from .complexity import Sparseness, gini
from .cost import CostMetric
from .faithfulness import Faithfulness, Monotonicity
from .insertion_deletion import Deletion, Insertion
from .localisation import Energy, PointingGame, TemporalGrounding, TopShareIoU
from .reliability import reliability_alpha
from .sanity import ModelRandomisation
from .units import UNITS, Partition, partition

#: the metrics ``--metrics all`` runs: every registered metric with its defaults, plus the
#: frame-unit (temporal) deletion and insertion curves; the randomisation check (which re-runs
#: the method once per randomised block) on an evaluation's first 5 clips only
SUITE: tuple[str, ...] = ("deletion", "insertion", "deletion(unit=frame)", "insertion(unit=frame)",
                          "faithfulness", "monotonicity", "pointing_game", "energy", "iou",
                          "temporal_grounding", "sparseness", "randomisation(clips=5)", "cost")

__all__ = ["Metric", "Score", "MissingGroundTruth", "available", "build", "evaluate", "get", "register",
           "parse_spec", "format_spec", "Deletion", "Insertion", "Faithfulness", "Monotonicity",
           "PointingGame", "Energy", "TopShareIoU", "TemporalGrounding", "Sparseness", "gini",
           "ModelRandomisation", "CostMetric", "reliability_alpha", "UNITS", "Partition", "partition",
           "SUITE"]
