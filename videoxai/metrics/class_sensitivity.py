"""Class sensitivity (Sixt et al. 2020; Quantus' ``RandomLogit``): does the map change with the class?

The clip is explained again for another class, drawn with a seed from the classes other than the
explained one (as Quantus draws it: ``RandomState(seed).randint(0, C − 1)`` indexes the other
classes in order), and the two maps are compared over the voxels the model sees:

* ``similarity="spearman"``: Spearman's ρ of the two maps (as the randomisation check: a blank
  map for the other class counts as ρ = 0, it keeps none of the ranking);
* ``similarity="ssim"``: the structural similarity of the flattened maps, with the data range of
  both (Quantus' default for RandomLogit).

**Lower is better**: an explanation of *why this class* should differ from one of *why that
class*. A map that reads class-agnostic evidence, such as STAA's attention (the same for every
target unless ``gradient_weighted=True``), scores 1; so does any map that ignores the target. It
says nothing about whether either map is right; read it beside the faithfulness metrics.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ..errors import InputError
from .base import ClassSeed, Metric, Score, register, view_mask
from .sanity import default_explainer, rank_similarity, rerun_map


def other_class(target: int, num_classes: int, seed: int) -> int:
    """The class compared with ``target``: a seeded draw from the others (Quantus' RandomLogit draw)."""
    others = [c for c in range(num_classes) if c != target]
    # RandomState takes 32-bit seeds: a larger one is given as its two 32-bit words (a seed below
    # 2³² draws as Quantus does)
    state = np.random.RandomState(seed if seed < 2 ** 32 else [seed % 2 ** 32, seed >> 32])
    return others[int(state.randint(0, num_classes - 1))]


def ssim_flat(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two maps flattened to 1-D, data range of both together (Quantus' ``ssim``)."""
    from skimage.metrics import structural_similarity

    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    if a.size < 7:  # SSIM's 7-voxel window: a smaller view raised skimage's ValueError
        return math.nan
    data_range = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    if data_range == 0:
        return math.nan
    return float(structural_similarity(a, b, data_range=data_range))


@register
class ClassSensitivity(Metric):
    """Similarity of the map for the explained class and for another (seeded) class; lower is
    better (a class-specific explanation).

    Options:
        similarity: ``"spearman"`` (rank correlation) or ``"ssim"`` (structural similarity).
        seed: which other class is drawn.
    """

    name = "class_sensitivity"
    family = "randomisation"
    bounds = (-1.0, 1.0)  # Spearman's ρ or SSIM
    needs_explainer = True
    _higher_is_better = False

    def __init__(self, *, similarity: Literal["spearman", "ssim"] = "spearman", seed: ClassSeed = 0) -> None:
        self.similarity, self.seed = similarity, seed

    @property
    def reruns_per_clip(self) -> int:
        return 1

    @property
    def ranks(self) -> str | None:
        # Spearman's ρ of a blank map is undefined (not re-run); SSIM compares values
        return "voxels" if self.similarity == "spearman" else None

    def compute(self, model, x, explanation, target, sample, explain_fn=None) -> Score:
        if model.num_classes < 2:
            return Score.undefined("the model has one class")
        if explanation.method == "map" and explain_fn is None:
            raise InputError("class_sensitivity needs explain_fn= when the explanation is a bare map")
        run = explain_fn or default_explainer(explanation, x, target)
        other = other_class(target, model.num_classes, self.seed)
        t, h, w = explanation.spatial.shape
        again = rerun_map(run(model, target=other), (t, h, w), self.name)
        visible = view_mask(model, t, h, w).numpy()
        a, b = explanation.spatial[visible], again[visible]
        value = rank_similarity(a, b) if self.similarity == "spearman" else ssim_flat(a, b)
        details = {"other_class": other}
        if math.isnan(value):
            why = ("SSIM's window is 7 voxels, the model's view has fewer" if self.similarity == "ssim" and a.size < 7
                   else "the explained class's map is constant" if self.similarity == "spearman" else "a map is constant")
            return Score.undefined(why, **details)
        return Score(value, details=details)
