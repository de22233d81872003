"""Sanity check: cascading model-parameter randomisation (Adebayo et al. 2018).

An explanation that does not change when the model's weights are destroyed does not explain the
model. On a **deep copy** of the model (the user's model is never touched), the modules that own
parameters are re-initialised from the output end towards the input, in ``stages`` cumulative
stages; after each stage the explanation is recomputed (same method, options and target) and
compared with the original by Spearman's rank correlation over the voxels the model sees.

The curve is the correlation after each stage; the score is its mean. **Lower is better** (the
map depends on the weights); a model-independent map (an edge detector, a fixed random map)
scores 1.

Re-initialisation uses each module's own ``reset_parameters`` (the framework's initialiser) and,
for modules without one (e.g. a transformer's embeddings that own their position tables), a
normal draw with the parameter's own standard deviation; seeded.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..explanation import Explanation
from ..models.base import VideoModel
from ..options import Opt
from .base import Metric, Score, Seed, register, view_mask


def parameter_modules(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, from the output end to the input end.

    Registration order is the forward order for the networks videoxai wraps (embeddings first,
    classifier last), so its reverse is the top-down order of the cascade.
    """
    mods = [(n, m) for n, m in net.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return mods[::-1]


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-draw ``module``'s own parameters (not its children's), reproducibly."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        for p in module.parameters(recurse=False):
            std = float(p.float().std()) if p.numel() > 1 else 0.02
            p.normal_(0.0, std if std > 0 else 0.02)


def cascade(model: VideoModel, stages: int | None, seed: int):
    """Yield ``(stage, names, randomised_copy)``: one deep copy, randomised further at each stage."""
    work = copy.deepcopy(model)
    mods = parameter_modules(work.net)
    if not mods:
        raise InputError(f"{model.name} has no parameters to randomise")
    n = len(mods) if stages is None else min(int(stages), len(mods))
    groups = np.array_split(np.arange(len(mods)), n)
    for s, idx in enumerate(groups):
        for i in idx:
            reinitialise(mods[i][1], seed * 100003 + int(i))
        yield s, [mods[i][0] for i in idx], work


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of two equally shaped arrays (average ranks for ties); ``nan`` if one is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a.reshape(-1)), rankdata(b.reshape(-1))
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def default_explainer(explanation: Explanation, clip: torch.Tensor, target: int) -> Callable[[VideoModel], Explanation]:
    """Re-run the method that made ``explanation`` (its name and options) on another model."""
    from ..clip import Clip
    from ..explain import explain

    options = dict(explanation.options)
    refine = options.pop("refine", None)
    frames = Clip.from_array(clip[0].permute(0, 2, 3, 1).cpu())

    def run(model: VideoModel) -> Explanation:
        return explain(model, frames, explanation.method, target=target,
                       refine=refine, **options)
    return run


@register
class ModelRandomisation(Metric):
    """Cascading model-parameter randomisation: mean Spearman ρ between the original map and the
    maps of progressively randomised copies of the model (lower is better).

    Options:
        stages: number of cumulative stages (the parameter-owning modules, top-down, split into
            this many groups); ``None`` randomises one module per stage (the full cascade).
        seed: the re-initialisation's seed.
    """

    name = "randomisation"
    family = "randomisation"
    needs_explainer = True
    _higher_is_better = False

    def __init__(self, *, stages: Annotated[int | None, Opt(ge=1)] = 4, seed: Seed = 0) -> None:
        self.stages, self.seed = stages, seed

    def compute(self, model, x, explanation, target, sample, explain_fn=None) -> Score:
        if explanation.method == "map" and explain_fn is None:
            raise InputError("randomisation needs explain_fn= when the explanation is a bare map")
        run = explain_fn or default_explainer(explanation, x, target)
        t, h, w = explanation.spatial.shape
        visible = view_mask(model, t, h, w).numpy()
        original = explanation.spatial[visible]
        rhos, names = [], []
        for _, group, randomised in cascade(model, self.stages, self.seed):
            again = run(randomised)
            rhos.append(spearman(original, again.spatial[visible]))
            names.append(group[0])
        finite = [r for r in rhos if not math.isnan(r)]
        details = {"stages": len(rhos), "first_module_per_stage": names}
        if not finite:
            return Score(math.nan, curve=np.array(rhos),
                         details={**details, "undefined": "a map is constant at every stage"})
        return Score(float(np.mean(finite)), curve=np.array(rhos), details=details)
