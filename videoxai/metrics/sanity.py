"""Sanity check: cascading model-parameter randomisation (Adebayo et al. 2018).

An explanation that does not change when the model's weights are destroyed does not explain the
model. On a **deep copy** of the model (the user's model is never touched), the modules that own
parameters are re-initialised from the output end towards the input (in the order a forward pass
on the clip uses their parameters), in ``stages`` cumulative stages; after each stage the explanation is
recomputed (same method, options and target) and compared with the original by Spearman's rank
correlation over the voxels the model sees.

The curve is the correlation after each stage (averaged over ``seeds`` independent
randomisations); the score is the mean over stages and seeds, with each seed's value and their
spread in the details. **Lower is better** (the map depends on the weights); a
model-independent map (an edge detector, a fixed random map) scores 1. A re-run map that comes out
blank (constant: e.g. extremal perturbation's evidence test finding no signal in a randomised
model) keeps none of the original's ranking and counts as ρ = 0 (``details["blank_reruns"]``
counts them); a constant original has no ranking to compare, and the score is undefined.

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
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import InputError
from ..explanation import Explanation
from ..models.base import VideoModel
from ..options import Opt
from .base import BLANK, Metric, ReinitSeed, Score, is_blank, register, view_mask


class _FirstReads(TorchDispatchMode):
    """Records, for each module, the index of the first operation (below autograd: TorchScript's
    and fused kernels' included) that reads one of the module's own parameters."""

    def __init__(self, owners: dict[int, list[int]]) -> None:
        super().__init__()
        self.owners = owners                               # id(parameter) -> ids of the modules owning it
        self.first: dict[int, int] = {}                    # id(module) -> index of its first operation
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for a in _leaves((args, kwargs)):
            for owner in self.owners.get(id(a), ()):
                self.first.setdefault(owner, self.ops)
        self.ops += 1
        return func(*args, **kwargs)


def _leaves(tree) -> list:
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in _leaves(item)]
    if isinstance(tree, dict):
        return [leaf for item in tree.values() for leaf in _leaves(item)]
    return [tree]


def parameter_modules(net: nn.Module, run: Callable[[], object] | None = None) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, from the output end to the input end.

    With ``run`` (one forward pass of ``net``), in the order the pass first reads each module's own
    parameters, reversed (modules first read by the same operation, a fused kernel's: registration
    order, reversed); the modules whose parameters it never reads (they change nothing) come last.
    A module's own parameters are placed where they are used, not where the module's call ends: a
    root module's class token and position table (timm style) are at the input end though its call
    ends last, and ``nn.MultiheadAttention`` uses its ``out_proj`` without calling it. Without
    ``run``, registration order reversed: the forward order across a network's layers, but not
    always within one (a Hugging Face TimeSformer layer registers its spatial attention and MLP
    before the temporal attention it runs first).
    """
    mods = [(n, m) for n, m in net.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if run is None:
        return mods[::-1]
    owners: dict[int, list[int]] = {}
    for _, m in mods:
        for p in m.parameters(recurse=False):
            owners.setdefault(id(p), []).append(id(m))
    reads = _FirstReads(owners)
    # with autograd on, as a gradient method runs it: PyTorch's fused transformer-layer kernel
    # (taken without gradients) reads a whole layer's parameters in one operation
    with torch.enable_grad(), reads:
        run()
    if not reads.first:
        return mods[::-1]
    order = {id(m): i for i, (_, m) in enumerate(mods)}
    reached = sorted((m for m in mods if id(m[1]) in reads.first), key=lambda m: (reads.first[id(m[1])], order[id(m[1])]))
    return reached[::-1] + [m for m in mods[::-1] if id(m[1]) not in reads.first]


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-draw ``module``'s own parameters (not its children's), reproducibly, leaving every global
    generator as it was."""
    # only the generators the draw uses, each restored after: torch.manual_seed also re-seeds every
    # CUDA device (or queues that for when CUDA starts), which fork_rng(devices=[]) left re-seeded
    cuda = sorted({p.device.index if p.device.index is not None else torch.cuda.current_device()
                   for p in module.parameters(recurse=False) if p.is_cuda})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)
        for d in cuda:
            torch.cuda.default_generators[d].manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        for p in module.parameters(recurse=False):
            std = float(p.float().std()) if p.numel() > 1 else 0.02
            p.normal_(0.0, std if std > 0 else 0.02)


def cascade(model: VideoModel, stages: int | None, seed: int, clip: torch.Tensor | None = None):
    """Yield ``(stage, names, randomised_copy)``: one deep copy, randomised further at each stage.

    With ``clip`` (pixels ``(1, T, 3, H, W)``), the modules are ordered by where a forward pass on
    it uses their parameters (:func:`parameter_modules`); without, by registration."""
    # copied outside autograd: a TorchScript module's deep copy clones its parameters as graph
    # nodes (not leaves), which a gradient method re-run on the copy cannot freeze (RuntimeError
    # 'you can only change requires_grad flags of leaf variables'); each flag is then put back
    try:
        with torch.no_grad():
            work = copy.deepcopy(model)
    except (TypeError, copy.Error) as err:      # a lock, an open file, a connection held by the network
        raise InputError(f"randomisation re-draws the weights of a copy of {model.name}, which cannot be copied "
                         f"(copy.deepcopy: {err}); give that attribute a __deepcopy__ or keep it out of the "
                         "network") from err
    flags = {n: p.requires_grad for n, p in model.net.named_parameters()}
    for n, p in work.net.named_parameters():
        p.requires_grad_(flags.get(n, p.requires_grad))
    mods = parameter_modules(work.net, None if clip is None else (lambda: work(clip)))
    if not mods:
        raise InputError(f"{model.name} has no parameters to randomise")
    n = len(mods) if stages is None else min(int(stages), len(mods))
    groups = np.array_split(np.arange(len(mods)), n)
    for s, idx in enumerate(groups):
        for i in idx:
            # modulo 2⁶⁴, torch's seed range: a seed near its top would overflow (smaller seeds: unchanged)
            reinitialise(mods[i][1], (seed * 100003 + int(i)) % 2 ** 64)
        yield s, [mods[i][0] for i in idx], work


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of two equally shaped arrays (average ranks for ties); ``nan`` if one is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a.reshape(-1)), rankdata(b.reshape(-1))
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def rank_similarity(original: np.ndarray, again: np.ndarray) -> float:
    """Spearman's ρ of a map and its re-run; **0 when the re-run map is blank** (constant, to
    :data:`~videoxai.metrics.base.TIE_TOLERANCE`: :func:`~videoxai.metrics.base.is_blank`) and
    the original is not, ``nan`` when the original itself is blank.

    A blank re-run keeps none of the original's ranking: that is the answer the check looks for
    (the map changed with the model or the class), not a failure to measure. Left undefined (the
    plain correlation's 0/0), it was dropped from the mean, which was then taken over the stages
    whose maps survived only: a method whose maps went blank on 11 of 12 randomised models scored
    the one that did not (ρ 0.86) as if it were all of them.
    """
    if is_blank(original):
        return math.nan
    if is_blank(again):
        return 0.0
    return spearman(original, again)


def default_explainer(explanation: Explanation, clip: torch.Tensor, target: int) -> Callable[..., Explanation]:
    """Re-run the method that made ``explanation`` (its name and options): ``run(model)`` on
    another model, ``run(model, target=k)`` for another class, ``run(model, clip=pixels)`` on
    another ``(1, T, 3, H, W)`` clip (the metrics that re-explain call it these ways)."""
    from ..explain import explain

    options = dict(explanation.options)
    refine = options.pop("refine", None)

    def run(model: VideoModel, target: int = target, clip: torch.Tensor = clip) -> Explanation:
        return explain(model, as_clip(clip), explanation.method, target=target, refine=refine, **options)
    return run


def rerun_map(result: Explanation | np.ndarray | torch.Tensor, shape: tuple[int, int, int], who: str) -> np.ndarray:
    """The ``(T, H, W)`` map of a re-run explanation (an :class:`Explanation`, or a bare map from a
    user's ``explain_fn``), checked against the clip's ``shape``: a map at the model's size, or
    one with NaN, failed as an index error deep in the metric or scored as "undefined"."""
    spatial = result.spatial if isinstance(result, Explanation) else result
    if isinstance(spatial, torch.Tensor):
        spatial = spatial.detach().cpu()
    spatial = np.asarray(spatial, dtype=np.float64)
    if spatial.shape != tuple(shape):
        raise InputError(f"{who}: explain_fn returned a map of shape {spatial.shape}, the clip's (T, H, W) is "
                         f"{tuple(shape)} (maps live on the clip's original frames)")
    if not np.isfinite(spatial).all():
        raise InputError(f"{who}: explain_fn returned a map with NaN or infinite values")
    if (spatial < 0).any():
        # as the explanation's own map is refused (metrics.base.as_explanation): a signed re-run
        # (raw gradients) was compared with the non-negative original, and the distance or rank
        # correlation measured the sign convention, not the method
        raise InputError(f"{who}: explain_fn returned a map with negative values (a signed attribution?); the "
                         "explanation's map is non-negative: return its absolute value or its positive part, as "
                         "for the original")
    return spatial


def as_clip(pixels: torch.Tensor):
    """A ``(1, T, 3, H, W)`` pixel batch in [0, 1] as a :class:`~videoxai.clip.Clip`."""
    from ..clip import Clip

    return Clip.from_array(pixels[0].permute(0, 2, 3, 1).cpu())


@register
class ModelRandomisation(Metric):
    """Cascading model-parameter randomisation: mean Spearman ρ between the original map and the
    maps of progressively randomised copies of the model (lower is better), over ``seeds``
    independent randomisations.

    The curve is ρ after each stage, averaged over the seeds (Quantus' MPRT reports these
    per-layer values); ``details`` has each seed's per-stage values (``per_seed_stage``), each
    seed's mean (``per_seed``) and their standard deviation (``seed_std``): one draw of the
    random weights can move the mean by ±0.25 on a clip.

    Options:
        stages: number of cumulative stages (the parameter-owning modules, top-down, split into
            this many groups); ``None`` randomises one module per stage (the full cascade).
        seeds: number of independent randomisations (seeds ``seed, seed + 1, …``); the method is
            re-run ``stages × seeds`` times.
        seed: the first re-initialisation seed.
    """

    name = "randomisation"
    family = "randomisation"
    bounds = (-1.0, 1.0)  # Spearman's ρ
    needs_explainer = True
    _higher_is_better = False
    ranks = "voxels"     # Spearman's ρ: a blank original has no ranking (undefined, nothing re-run)

    def __init__(self, *, stages: Annotated[int | None, Opt(ge=1)] = 4, seeds: Annotated[int, Opt(ge=1)] = 3,
                 seed: ReinitSeed = 0) -> None:
        self.stages, self.seeds, self.seed = stages, seeds, seed

    @property
    def reruns_per_clip(self) -> int | None:
        # stages=None randomises one parameter-owning module per stage: the count is the model's
        return None if self.stages is None else self.stages * self.seeds

    def compute(self, model, x, explanation, target, sample, explain_fn=None) -> Score:
        if explanation.method == "map" and explain_fn is None:
            raise InputError("randomisation needs explain_fn= when the explanation is a bare map")
        run = explain_fn or default_explainer(explanation, x, target)
        t, h, w = explanation.spatial.shape
        visible = view_mask(model, t, h, w).numpy()
        original = explanation.spatial[visible]
        if is_blank(original):   # as Metric.__call__ finds it (ranks="voxels"), for a direct compute()
            return Score.undefined(BLANK)
        rhos, names, blank = [], [], 0
        for k in range(self.seeds):
            per_stage = []
            for _, group, randomised in cascade(model, self.stages, self.seed + k, x):
                again = rerun_map(run(randomised), explanation.spatial.shape, self.name)
                per_stage.append(rank_similarity(original, again[visible]))
                blank += is_blank(again[visible])
                if k == 0:
                    names.append(group[0])
            rhos.append(per_stage)
        rho = np.array(rhos, dtype=np.float64)                          # (seeds, stages)
        per_seed = rho.mean(1)
        details = {"stages": rho.shape[1], "seeds": self.seeds, "first_module_per_stage": names,
                   "per_seed_stage": rho.tolist(), "per_seed": per_seed.tolist(),
                   "seed_std": float(np.std(per_seed, ddof=1)) if per_seed.size > 1 else 0.0,
                   "blank_reruns": blank}
        return Score(float(rho.mean()), curve=rho.mean(0), details=details)

