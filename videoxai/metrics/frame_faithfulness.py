"""Li et al.'s per-frame faithfulness: do the frames the map calls
important matter to the model?

Each frame ``t`` is removed on its own (replaced by the baseline, the rest of the clip intact) and
the drop of the target probability ``d_t = p(x) − p(x with frame t removed)`` is measured; the
score is Pearson's correlation between the frames' attributions ``a_t`` and the drops ``d_t``:

    frame_faithfulness = corr(a, d)  over the T frames

**Higher is better** (+1: the attribution is an affine function of each frame's effect). A frame's
attribution is the sum of the map over the frame, as the reference code takes it, within the
model's crop box (``scores="map"``; mass where the model never looks is no attribution), or the
explanation's own temporal scores (``scores="temporal"``, what frame-unit deletion ranks by; they
differ for methods with their own temporal estimate, like STAA). Unlike the STAA paper's keep-70 %
faithfulness, where a random map scores 0.96–0.98, a random map scores about 0 here. ``nan`` when
the attribution or the drops are the same for every frame (the correlation is undefined): a clip
whose frames each change nothing, or a still clip through a model that treats every frame alike.
Values that agree to ``1e-6`` of the largest (probability, or attribution) are the same: the
float32 rounding of the model's outputs is no evidence to correlate with.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from ..core import baselines
from ..methods.base import check_baseline
from .base import TIE_TOLERANCE, BatchSize, Metric, Score, register, view_mask


@register
class FrameFaithfulness(Metric):
    """Pearson correlation of each frame's attribution with the probability drop when that frame
    alone is removed (higher is better).

    Options:
        scores: ``"map"`` (each frame's sum of the map inside the model's view, as the
            reference) or ``"temporal"`` (the explanation's temporal scores).
        baseline: what the removed frame becomes (``"fade"``: grey, the reference's "faded"
            frame; any name of :mod:`videoxai.core.baselines`).
        batch_size: clips per forward pass.
    """

    name = "frame_faithfulness"
    family = "faithfulness"
    bounds = (-1.0, 1.0)  # Pearson's r

    def __init__(self, *, scores: Literal["map", "temporal"] = "map", baseline: str = "fade",
                 batch_size: BatchSize = 16) -> None:
        check_baseline(self._owner(), baseline)
        self.scores, self.baseline, self.batch_size = scores, baselines.get(baseline), batch_size

    @property
    def ranks(self) -> str:
        # a blank map (or equal temporal scores) gives every frame the same attribution: r undefined
        return "frames" if self.scores == "temporal" else "voxels"

    def drops(self, model, x: torch.Tensor, target: int) -> np.ndarray:
        """``(T,)``: the target probability's drop when each frame alone is replaced by the baseline."""
        probs = self.probabilities(model, x, target)
        return probs[0] - probs[1:]

    def probabilities(self, model, x: torch.Tensor, target: int) -> np.ndarray:
        """``(T + 1,)``: the target probability on the clip, then with each frame alone replaced."""
        clip, t = x[0], x.shape[1]
        base = self.baseline(x)[0]
        eye = torch.eye(t, dtype=torch.bool, device=x.device)                     # row k removes frame k

        def build(s: slice) -> torch.Tensor:
            rows = torch.cat([torch.zeros(1, t, dtype=torch.bool, device=x.device), eye])[s]
            return torch.where(rows[:, :, None, None, None], base, clip)

        return model.probabilities(self.forward_batched(model, t + 1, build, self.batch_size).double())[:, target] \
            .cpu().numpy()

    def compute(self, model, x, explanation, target, sample) -> Score:
        t, h, w = explanation.spatial.shape
        if t < 2:
            return Score.undefined("one frame: a correlation over frames needs at least two")
        if self.scores == "temporal":
            attribution = explanation.temporal.astype(np.float64)
        else:
            visible = view_mask(model, t, h, w).numpy()
            attribution = (explanation.spatial.astype(np.float64) * visible).reshape(t, -1).sum(1)
        probs = self.probabilities(model, x, target)
        drops = probs[0] - probs[1:]
        details = {"drops": drops.tolist(), "attribution": attribution.tolist()}
        # equal to rounding: a still clip through a model that treats every frame alike dropped by
        # the same amount for every frame but for ~1e-9 of float32 rounding, and r of that noise
        # with the map was a number anywhere in [-1, 1] (0.28, -0.67, 0.11 for three random maps)
        if (np.ptp(attribution) <= TIE_TOLERANCE * np.abs(attribution).max()
                or np.ptp(drops) <= TIE_TOLERANCE * np.abs(probs).max()):
            return Score(math.nan, details={**details, "undefined": "the attribution or the drop is the same "
                                                                     "for every frame"})
        return Score(float(np.corrcoef(attribution, drops)[0, 1]), details=details)
