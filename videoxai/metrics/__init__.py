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
frame_faithfulness     faithfulness    higher     Li et al.: Pearson r of frame attribution vs drop
pointing_game          localisation    higher     map peak on the annotation, per frame
energy                 localisation    higher     share of the map's mass on the annotation
iou                    localisation    higher     IoU of the map's top voxels and the annotation
temporal_grounding     localisation    higher     top frame inside the annotated window
sparseness             complexity      higher     Gini index of the map
randomisation          randomisation   lower      Spearman ρ to maps of randomised models
class_sensitivity      randomisation   lower      similarity to the map for another class
max_sensitivity        robustness      lower      largest relative map change under noise
local_lipschitz        robustness      lower      largest map change ÷ input change under noise
cost                   cost            lower      seconds (or passes, memory) of the explanation
=====================  ==============  =========  =============================================

\\* with the default ``order="morf"``; least-relevant-first reverses the direction. Deletion and
insertion take ``baseline="road"`` (ROAD's noisy linear imputation, :mod:`.road`). Each metric
object's ``higher_is_better`` is the one place the report reads the direction from.

A **blank** map (constant where the model looks: all zeros, or all equal) ranks nothing: the
metrics of its order (deletion, insertion, faithfulness, monotonicity, frame_faithfulness,
pointing_game, iou, temporal_grounding, randomisation, class_sensitivity's ρ) are undefined on it,
those of its values (energy, sparseness, the robustness distances, cost) keep their definition's
value (``Metric.ranks``, :func:`~videoxai.metrics.base.blank_reason`).

The reliability of a metric over a set of videos and methods is
:func:`~videoxai.metrics.reliability.reliability_alpha` (a table-level statistic, not a
per-explanation metric).
"""

from __future__ import annotations

from ..options import format_spec
from .base import Metric, MissingGroundTruth, Score, available, build, evaluate, get, parse_spec, register
from .class_sensitivity import ClassSensitivity
from .complexity import Sparseness, gini
from .cost import CostMetric
from .faithfulness import Faithfulness, Monotonicity
from .frame_faithfulness import FrameFaithfulness
from .insertion_deletion import Deletion, Insertion
from .localisation import Energy, PointingGame, TemporalGrounding, TopShareIoU
from .reliability import reliability_alpha
from .robustness import LocalLipschitz, MaxSensitivity
from .sanity import ModelRandomisation
from .units import UNITS, Partition, partition

#: the metrics ``--metrics all`` runs: every registered metric with its defaults, plus the
#: frame-unit (temporal) deletion and insertion curves. The metrics that re-run the method run on
#: an evaluation's first clips only: the randomisation check (4 stages × 3 seeds = 12 re-runs a
#: clip) and max-sensitivity (5 re-runs) on 5, class sensitivity (1 re-run) on 20. Left out for
#: their cost: local_lipschitz (as max_sensitivity, another 5 re-runs) and ROAD deletion and
#: insertion (``baseline=road``: a sparse linear solve per curve step, seconds per curve).
SUITE: tuple[str, ...] = ("deletion", "insertion", "deletion(unit=frame)", "insertion(unit=frame)",
                          "faithfulness", "monotonicity", "frame_faithfulness", "pointing_game", "energy",
                          "iou", "temporal_grounding", "sparseness", "randomisation(clips=5)",
                          "class_sensitivity(clips=20)", "max_sensitivity(clips=5)", "cost")

__all__ = ["Metric", "Score", "MissingGroundTruth", "available", "build", "evaluate", "get", "register",
           "parse_spec", "format_spec", "Deletion", "Insertion", "Faithfulness", "Monotonicity",
           "PointingGame", "Energy", "TopShareIoU", "TemporalGrounding", "Sparseness", "gini",
           "ModelRandomisation", "ClassSensitivity", "FrameFaithfulness", "MaxSensitivity", "LocalLipschitz",
           "CostMetric", "reliability_alpha", "UNITS", "Partition", "partition",
           "SUITE"]
