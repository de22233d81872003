"""Robustness: does the map stay put when the clip changes imperceptibly?

The clip ``x`` gets ``n_samples`` seeded noise draws ``δ`` (clamped so pixels stay in [0, 1]); the
method is re-run on each noisy clip ``x'`` with the same target, and the worst case is reported:

* **max_sensitivity** (Yeh et al. 2019, Quantus' ``MaxSensitivity``): uniform noise in
  ``[−radius, radius]`` per value, ``max ‖e(x') − e(x)‖ / ‖e(x)‖`` (Frobenius norms of the maps);
* **local_lipschitz** (Alvarez-Melis & Jaakkola 2018, Quantus' ``LocalLipschitzEstimate``):
  Gaussian noise of standard deviation ``radius``, ``max ‖e(x') − e(x)‖ / ‖x' − x‖``.

Both are **lower is better**, and both are blind to whether the map is right: a map that ignores
the clip (the ``random`` reference of an evaluation is seeded by the clip's name) scores 0. Maps
are compared as the method returns them (``spatial``, in [0, 1]), and the input change ``‖x' − x‖``
measured, over the pixels the model sees (its crop box: the noise elsewhere changes nothing).
Each sample re-runs the method once: the cost is ``n_samples`` explanations. A noisy copy that
the noise leaves unchanged (a radius below the resolution of float32 pixels) is not re-run and
scores nothing; if none changed, the score is undefined (``nan``, saying so), not a perfect 0.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar

import numpy as np
import torch

from ..errors import InputError
from ..options import Opt
from .base import Metric, NoiseSeed, Score, register, view_mask
from .sanity import default_explainer, rerun_map


class _Robustness(Metric):
    """Shared body: re-explain seeded noisy copies of the clip and keep the worst ratio."""

    family = "robustness"
    bounds = (0.0, float("inf"))  # a distance
    needs_explainer = True
    _higher_is_better = False
    ranks = None         # distances between maps' values (max_sensitivity: undefined for an all-zero map)
    noise: ClassVar[str]

    def __init__(self, *, n_samples: Annotated[int, Opt(ge=1, aliases=("samples",))] = 5,
                 radius: Annotated[float, Opt(gt=0, le=1)] = 0.02, seed: NoiseSeed = 0) -> None:
        self.n_samples, self.radius, self.seed = n_samples, radius, seed

    @property
    def reruns_per_clip(self) -> int:
        return self.n_samples

    def perturb(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Noisy copy ``i`` of the clip ``(1, T, 3, H, W)``, in [0, 1]."""
        # modulo 2⁶⁴, the generator's range: a seed near its top would overflow (smaller seeds: unchanged)
        g = torch.Generator().manual_seed((int(self.seed) * 1_000_003 + i) % 2 ** 64)
        if self.noise == "uniform":
            delta = (torch.rand(x.shape, generator=g, dtype=torch.float64) * 2 - 1) * self.radius
        else:
            delta = torch.randn(x.shape, generator=g, dtype=torch.float64) * self.radius
        return (x.double().cpu() + delta).clamp(0, 1).to(x.dtype).to(x.device)

    def ratio(self, e0: np.ndarray, e1: np.ndarray, x0: torch.Tensor, x1: torch.Tensor) -> float:
        """One sample's ratio from the maps' visible voxels ``(N,)`` and the clips' visible pixels
        ``(1, 3, N)`` (clean, noisy)."""
        raise NotImplementedError

    def compute(self, model, x, explanation, target, sample, explain_fn=None) -> Score:
        if explanation.method == "map" and explain_fn is None:
            raise InputError(f"{self.name} needs explain_fn= when the explanation is a bare map")
        run = explain_fn or default_explainer(explanation, x, target)
        t, h, w = explanation.spatial.shape
        seen = view_mask(model, t, h, w, device=x.device)
        visible = seen.cpu().numpy()
        e0 = explanation.spatial[visible].astype(np.float64)
        ratios, unchanged = [], 0
        for i in range(self.n_samples):
            xi = self.perturb(x, i)
            x0, x1 = x.transpose(1, 2)[:, :, seen], xi.transpose(1, 2)[:, :, seen]
            if bool(torch.equal(x0, x1)):
                # noise below the pixels' float32 resolution (radius=1e-9) left the clip as it was:
                # max_sensitivity scored the unperturbed map as perfectly robust (0.0), and
                # local_lipschitz's 0 / 0 was reported as "the map is empty"
                ratios.append(math.nan)
                unchanged += 1
                continue
            ei = rerun_map(run(model, target=target, clip=xi), (t, h, w), self.name)[visible]
            # the input's change over the pixels the model sees, as the map's: noise outside its
            # crop box changes nothing, and counting it made the score depend on the frame's margins
            ratios.append(self.ratio(e0, ei, x0, x1))
        finite = [r for r in ratios if math.isfinite(r)]
        details = {"per_sample": [r if math.isfinite(r) else None for r in ratios]}
        if not finite:
            if unchanged == self.n_samples:
                return Score.undefined(f"noise of radius={self.radius:g} changed no pixel the model sees (pixels "
                                       f"are float32 in [0, 1]): choose a larger radius", **details)
            return Score.undefined("the map is empty", **details)
        return Score(max(finite), details=details)


@register
class MaxSensitivity(_Robustness):
    """Largest relative change of the map, ``‖e(x') − e(x)‖ / ‖e(x)‖``, under uniform noise in
    ``[−radius, radius]`` (lower is better).

    Options:
        n_samples: noisy copies (each re-runs the method).
        radius: the noise's bound, in pixel values (pixels are in [0, 1]; 0.02 ≈ 5 grey levels
            of 255), in (0, 1].
        seed: the noise's seed.
    """

    name = "max_sensitivity"
    noise = "uniform"

    def ratio(self, e0, e1, x0, x1) -> float:
        norm = float(np.linalg.norm(e0))
        return float(np.linalg.norm(e1 - e0)) / norm if norm > 0 else math.nan


@register
class LocalLipschitz(_Robustness):
    """Largest ``‖e(x') − e(x)‖ / ‖x' − x‖`` under Gaussian noise of standard deviation ``radius``,
    both norms over what the model sees (lower is better).

    Options:
        n_samples: noisy copies (each re-runs the method).
        radius: the noise's standard deviation, in pixel values (pixels are in [0, 1]), in (0, 1].
        seed: the noise's seed.
    """

    name = "local_lipschitz"
    noise = "gaussian"

    def ratio(self, e0, e1, x0, x1) -> float:
        dx = float(torch.linalg.vector_norm((x1 - x0).double()))
        return float(np.linalg.norm(e1 - e0)) / dx if dx > 0 else math.nan
