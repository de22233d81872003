"""The base of every metric, the registry behind metric names, and the spec grammar.

A metric is a small class: its ``__init__`` takes the metric's keyword options (with defaults,
recorded in :attr:`Metric.options`), and :meth:`Metric.compute` scores one explanation of one clip.
Calling the object (``metric(model, clip, explanation, target=..., sample=...)``) checks and
converts the inputs once, so every metric sees the same things:

* ``x``: the clip as a pixel batch, float ``(1, T, 3, H, W)`` in [0, 1] on the model's device;
* ``explanation``: an :class:`~videoxai.explanation.Explanation` whose ``spatial`` is ``(T, H, W)``
  at the clip's size and ``temporal`` is ``(T,)``;
* ``target``: the class whose probability perturbation metrics follow (default: the explained one;
  the metrics that re-explain take only the explained one);
* ``sample``: ground truth (anything with ``masks`` / ``boxes`` / ``window``), for localisation.

Which way is better is a property of the metric *object* (``higher_is_better``), because for some
metrics it depends on an option (deletion of the least relevant units first is better when the
curve stays *high*). The report ranks methods with it; it is listed for every metric by
``videoxai metrics``.

Specs name a metric with options in one string: ``"deletion"``, ``"deletion(unit=frame)"``,
``"insertion(unit=superpixel, order=lerf, n_steps=64)"`` (the grammar and the option parser are
:mod:`videoxai.options`, shared with methods). :attr:`Metric.spec` gives the canonical form
(options that differ from the defaults, sorted, normalised), which is the key results are stored
under.

A **blank** map (constant over the voxels the model sees — all zeros, or all equal —, values
within :data:`TIE_TOLERANCE` of the largest being equal, as ties are everywhere) ranks nothing.
A metric declares what it reads of the map in :attr:`Metric.ranks`: the metrics that score the
map's *order* of voxels (``"voxels"``: deletion, insertion, faithfulness, monotonicity, pointing
game, IoU, the rank correlations) or of frames (``"frames"``: their frame units, temporal
grounding, ``frame_faithfulness(scores=temporal)``) are undefined on a map that has none to give
(:func:`blank_reason`, checked once in :meth:`Metric.__call__`, before any forward pass); they
scored a seeded random order as if it were the map's. The metrics of the map's *values*
(``None``: energy, sparseness, robustness distances, cost) keep the value their definition gives.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, ClassVar, Literal

import numpy as np
import torch

from ..clip import Clip
from ..core.align import crop_mask
from ..errors import InputError, UnknownNameError
from ..explanation import Explanation
from ..methods.base import SEED_RANGE
from ..models.base import VideoModel
from ..models.forward_cache import forward_batched
from ..options import Configurable, Opt, parse_spec
from ..registry import Registry
from .truth import MissingGroundTruth, ground_truth, sample_field, truth_window

Family = Literal["faithfulness", "localisation", "randomisation", "robustness", "complexity", "cost"]

#: option types shared by many metrics
Unit = Literal["pixel", "patch", "superpixel", "frame"]
Grid = Annotated[int, Opt(ge=1, help="patch lattice (grid × grid per frame) for unit=patch")]
Segments = Annotated[int, Opt(ge=1, help="SLIC supervoxels for unit=superpixel")]
BatchSize = Annotated[int, Opt(ge=1, help="clips per forward pass (memory, not the result)")]
#: a metric's seed has a method's range (:data:`videoxai.methods.base.SEED_RANGE`: what torch and
#: numpy generators take); its help says what it draws (an Opt help outranks the docstring's
#: line, so one help for all would describe most of them wrongly in `videoxai metrics`)
Seed = Annotated[int, dataclasses.replace(SEED_RANGE, help="order among tied values: same seed, same score")]
NoiseSeed = Annotated[int, dataclasses.replace(SEED_RANGE, help="the noise's seed: same seed, same noisy clips")]
ClassSeed = Annotated[int, dataclasses.replace(SEED_RANGE, help="which other class is drawn")]
ReinitSeed = Annotated[int, dataclasses.replace(SEED_RANGE,
                                                help="the first re-initialisation seed (seeds seed, seed + 1, …)")]
Share = Annotated[float, Opt(ge=0, le=1)]


@dataclass
class Score:
    """The result of one metric on one explanation.

    Attributes:
        value: the metric's scalar; ``nan`` when it is undefined for this input (the reason is in
            ``details["undefined"]``).
        curve: the curve behind the value, if any: the target probability after each step of a
            deletion/insertion curve (x = ``linspace(0, 1, len(curve))``, the fraction of units
            switched), or the rank correlation after each randomisation stage.
        details: metric-specific numbers (units, steps, frames scored, …), JSON-friendly.
    """

    value: float
    curve: np.ndarray | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.value = float(self.value)
        if self.curve is not None:
            self.curve = np.asarray(self.curve, dtype=np.float64)

    def __float__(self) -> float:
        return self.value

    @classmethod
    def undefined(cls, reason: str, **details) -> "Score":
        return cls(math.nan, details={"undefined": reason, **details})


class Metric(Configurable):
    """Base class. Subclasses set :attr:`name`, :attr:`family`, ``higher_is_better`` and
    implement :meth:`compute`.

    Options are the keyword-only arguments of the subclass's ``__init__``, declared with types,
    defaults and :class:`~videoxai.options.Opt` ranges (see :mod:`videoxai.options`); they are
    parsed before the subclass's ``__init__`` runs and recorded, with defaults filled in, in
    :attr:`options`; the ones that differ from the defaults make up :attr:`spec`.
    """

    kind = "metric"
    name: ClassVar[str]
    family: ClassVar[Family]
    #: what ``sample`` must provide: "ground_truth" (masks or boxes), "window" (frames)
    requires: ClassVar[tuple[str, ...]] = ()
    #: the metric re-runs the explanation method (cascading randomisation)
    needs_explainer: ClassVar[bool] = False
    _higher_is_better: ClassVar[bool] = True
    #: ``(low, high)``: the values the metric can take (a rate, a correlation); the report cuts
    #: its confidence intervals there, which a Student-t interval over a few clips overshoots
    #: (a pointing game of 0.889 ± 0.48). ``None``: no known bounds
    bounds: ClassVar[tuple[float, float] | None] = None
    #: what the score ranks: ``"voxels"`` (the spatial map's voxels, or units and frame sums made
    #: from them), ``"frames"`` (the explanation's temporal scores), or ``None`` (it reads the
    #: map's values, not an order). A ranking metric is undefined on a blank map, or on equal
    #: frame scores (:func:`blank_reason`); a subclass may make it a property of its options
    ranks: ClassVar[Literal["voxels", "frames"] | None] = None

    options: dict

    def __init__(self) -> None:  # a metric without options
        pass

    # -- which samples ---------------------------------------------------------------------------
    @classmethod
    def unsupported(cls, sample: Any) -> str | None:
        """Why this metric cannot score a clip with ground truth ``sample``; ``None`` if it can.

        Declared by :attr:`requires`: ``"ground_truth"`` needs masks or boxes, ``"window"`` a
        window (or masks / boxes, whose annotated frames stand in for it).
        """
        if not cls.requires:
            return None
        if sample is None:
            return f"metric {cls.name!r} needs ground truth: pass sample= with masks, boxes or a window"
        has = {k: sample_field(sample, k) is not None for k in ("masks", "boxes", "window")}
        if "ground_truth" in cls.requires and not (has["masks"] or has["boxes"]):
            return f"metric {cls.name!r} needs ground truth: the sample has neither masks nor boxes"
        if "window" in cls.requires and not any(has.values()):
            return f"metric {cls.name!r} needs ground truth: the sample has no window, masks or boxes"
        return None

    @classmethod
    def supports(cls, sample: Any) -> bool:
        """Whether this metric can score a clip with ground truth ``sample``."""
        return cls.unsupported(sample) is None

    # -- what a metric says about itself --------------------------------------------------------
    @property
    def reruns_per_clip(self) -> int | None:
        """How many times scoring one clip re-runs the explanation method (0 for the metrics
        that only read the map; ``None`` where it depends on the model). An evaluation's
        ``--methods all`` budgets it for the slow methods
        (:func:`videoxai.evaluation.runner.rerun_clips`)."""
        return 0

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value means a better explanation (used to rank methods)."""
        return self._higher_is_better

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    # -- calling discipline ---------------------------------------------------------------------
    def __call__(self, model: VideoModel, clip: Clip | np.ndarray | torch.Tensor,
                 explanation: Explanation | np.ndarray, target: int | str | None = None, *,
                 sample: Any = None, explain_fn: Callable[..., Explanation] | None = None) -> Score:
        """Score ``explanation`` of ``model`` on ``clip``.

        Args:
            model: the explained :class:`~videoxai.models.base.VideoModel`.
            clip: a :class:`~videoxai.clip.Clip`, or frames as ``vx.explain`` takes them:
                ``(T, H, W, 3)`` or ``(T, 3, H, W)``, uint8 or float in [0, 1], numpy or torch, or a
                ``(1, T, 3, H, W)`` pixel batch.
            explanation: an :class:`~videoxai.explanation.Explanation`, or a ``(T, H, W)``
                non-negative map (its temporal scores are then its per-frame sums over the pixels
                the model sees, as its frame units; give ``target``).
            target: class whose probability is followed, by index or name (default:
                ``explanation.target``); the metrics that re-explain refuse another class than
                ``explanation.target`` (their re-run maps would be of that class).
            sample: ground truth with ``masks (T, H, W)``, ``boxes (T, 4)`` and/or ``window``
                (e.g. an :class:`~videoxai.data.datasets.EvalSample`, or a dict with those keys),
                for localisation metrics.
            explain_fn: re-runs the explanation, for the metrics that do: called as
                ``explain_fn(model)`` (randomisation check), ``explain_fn(model, target=k)``
                (class sensitivity) or ``explain_fn(model, target=k, clip=pixels)`` with a
                ``(1, T, 3, H, W)`` clip (robustness), returning an Explanation or a ``(T, H, W)``
                map on the clip's frames; by default rebuilt from ``explanation.method`` and
                ``explanation.options``.
        """
        if not isinstance(model, VideoModel):
            raise InputError(f"metric {self.name!r} needs a videoxai model (vx.load_model or vx.wrap), "
                             f"got {type(model).__name__}")
        x = as_pixels(clip, model.device)
        # a class name, as vx.explain takes it; a bool or a float is refused, not truncated to a class
        target = None if target is None else model.class_index(target)
        view = crop_mask(model.preprocess, (x.shape[3], x.shape[4])).numpy()
        exp = as_explanation(explanation, target, x.shape[1], model.num_classes, view)
        if tuple(exp.spatial.shape) != (x.shape[1], x.shape[3], x.shape[4]):
            # a map at the model's input size is the commonest case: say how to bring it onto the frames
            hint = ("; it has the model's input size: metrics read maps on the clip's frames (paste it into "
                    "the model's crop box with videoxai.core.align.to_frames, as vx.explain does)"
                    if tuple(exp.spatial.shape[1:]) == tuple(model.preprocess.size) else "")
            raise InputError(f"explanation map {tuple(exp.spatial.shape)} does not match the clip's "
                             f"(T, H, W) = {(x.shape[1], x.shape[3], x.shape[4])}{hint}")
        if target is None and exp.target is None:   # an Explanation made by hand: '<=' between int and None
            raise InputError("the explanation names no class (its target is None): give target=, the class the "
                             "map explains")
        target = exp.target if target is None else target
        if not 0 <= target < model.num_classes:
            raise InputError(f"target {target} out of range for a model with {model.num_classes} classes")
        if self.needs_explainer and target != exp.target:
            # the re-run maps would be of `target`, the map of another class: max_sensitivity scored
            # the distance between two classes' maps as noise sensitivity, and class_sensitivity
            # could draw the map's own class as "the other" and compare the map with itself
            raise InputError(f"metric {self.name!r} re-explains the explanation's class {exp.target} and compares "
                             f"the maps; target={target} names another class: leave target out, or explain "
                             f"class {target}")
        if "ground_truth" in self.requires or "window" in self.requires:
            _check_sample(self, sample, x.shape[1], x.shape[3], x.shape[4])
        if self.ranks is not None and (blank := blank_reason(exp, view, self.ranks)) is not None:
            # a blank map has no order: the curves, top shares and peaks of a seeded random one
            # were scored as the map's (faithfulness 0.87, a chance pointing game and IoU)
            return Score.undefined(blank)
        kwargs = {"explain_fn": explain_fn} if self.needs_explainer else {}
        # dropout off, batch-norm statistics left alone, modes put back, out of torch.inference_mode
        # (VideoModel.inference)
        with model.inference():
            return self.compute(model, x, exp, target, sample, **kwargs)

    def compute(self, model: VideoModel, x: torch.Tensor, explanation: Explanation, target: int,
                sample: Any) -> Score:
        """Score one explanation; inputs already checked (see :meth:`__call__`)."""
        raise NotImplementedError

    # -- helpers for subclasses -----------------------------------------------------------------
    def forward_batched(self, model: VideoModel, n: int, build: Callable[[slice], torch.Tensor],
                        batch_size: int) -> torch.Tensor:
        """Logits ``(n, C)`` of ``n`` clips made ``batch_size`` at a time by ``build(slice)``;
        :class:`InputError` where one of them is NaN or infinite.

        Inside a :func:`videoxai.models.forward_cache.sharing` block for ``model``, clips already run
        (by this or another metric) are not run again."""
        logits = forward_batched(model, n, build, batch_size)
        bad = ~torch.isfinite(logits).all(1)
        if bool(bad.any()):
            # a network that divides by the clip's brightness or spread gives NaN on a flat baseline
            # clip: the curve's AUC (a correlation) was a NaN without a reason, "undefined: no
            # finite value" in the report
            baseline = getattr(self, "options", {}).get("baseline")
            raise InputError(f"metric {self.name!r}: {model.name} gave NaN or infinite outputs on {int(bad.sum())} "
                             f"of the {n} perturbed clips it scores"
                             + (f"; removed units become baseline={baseline}: try another" if baseline else ""))
        return logits


# -- inputs ----------------------------------------------------------------------------------------
def as_pixels(clip, device: torch.device) -> torch.Tensor:
    """A clip as float ``(1, T, 3, H, W)`` in [0, 1] on ``device``."""
    if isinstance(clip, Clip):
        return clip.to_tensor(device)
    if isinstance(clip, np.ndarray):
        return Clip.from_array(clip).to_tensor(device)
    if isinstance(clip, torch.Tensor):
        x = clip.detach()
        if x.ndim == 4:
            x = x.unsqueeze(0)
        if x.ndim != 5 or x.shape[0] != 1 or x.shape[2] != 3 or not x.is_floating_point():
            # (T, H, W, 3) frames, uint8 pixels, or no clip at all: read as vx.explain reads them
            # (they were refused here after vx.explain had explained them), with its messages
            return Clip.from_array(clip).to_tensor(device)
        if not torch.isfinite(x).all():
            raise InputError("the clip contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            # as Clip.from_array refuses them (with its tolerance for rounding, and its clamp):
            # 0–255 floats were scored as a clip of saturated pixels
            raise InputError(f"a clip tensor must lie in [0, 1], got values in [{lo:g}, {hi:g}]; divide 0–255 "
                             f"pixels by 255")
        return x.float().clamp(0, 1).to(device)
    raise InputError(f"expected a Clip, (T, H, W, 3) frames or a pixel tensor, got {type(clip).__name__}")


def as_explanation(exp, target: int | None, num_frames: int, num_classes: int,
                   view: np.ndarray | None = None) -> Explanation:
    """An :class:`Explanation`, or a bare ``(T, H, W)`` map wrapped as one (``target`` required).

    A bare map's temporal scores are its frames' shares of the mass inside ``view`` (bool
    ``(H, W)``, the pixels the model sees; the whole frame without one): the frame units that
    frame-unit metrics switch are those pixels, and mass the model never sees ranked frames."""
    if isinstance(exp, Explanation):
        spatial = exp.spatial
    else:
        if target is None:
            raise InputError("give target= when the explanation is a bare map")
        raw = exp.detach().cpu() if isinstance(exp, torch.Tensor) else exp
        kind = np.asarray(raw).dtype if raw is not None else None
        if kind is not None and kind.kind == "O":   # numbers held as Python objects (a list of arrays)
            try:
                raw, kind = np.asarray(raw, dtype=np.float32), np.dtype(np.float32)
            except (TypeError, ValueError):
                pass
        if kind is None or kind.kind not in "biuf":
            # None was "must be (T, H, W), got shape (1,)"; complex values lost their imaginary part
            # with only numpy's ComplexWarning; text was numpy's ValueError traceback
            what = type(exp).__name__ if kind is None else f"values of dtype {kind}"
            raise InputError(f"an explanation must be an Explanation or a (T, H, W) map of real numbers, got {what}")
        # contiguous: a flipped view (np.flip, [..., ::-1]) has negative strides, which torch.from_numpy
        # refused deep inside the unit and localisation metrics (a ValueError traceback)
        spatial = np.ascontiguousarray(raw, dtype=np.float32)
    if spatial.ndim != 3:
        raise InputError(f"an explanation map must be (T, H, W), got shape {spatial.shape}")
    if not np.isfinite(spatial).all():
        raise InputError("the explanation map contains NaN or infinite values")
    if (spatial < 0).any():
        raise InputError("the explanation map has negative values (a signed attribution?); metrics rank "
                         "non-negative relevance: pass its absolute value or its positive part")
    if spatial.shape[0] != num_frames:
        raise InputError(f"explanation has {spatial.shape[0]} frames, the clip {num_frames}")
    if isinstance(exp, Explanation):
        if np.shape(exp.temporal) != (num_frames,):
            # one score per frame: frame units were a RuntimeError traceback ("shape mismatch"), and
            # temporal_grounding ranked the frames it had
            raise InputError(f"explanation.temporal must be one score per frame, shape ({num_frames},), got "
                             f"shape {np.shape(exp.temporal)}")
        if not np.isfinite(exp.temporal).all() or (exp.temporal < 0).any():
            raise InputError("explanation.temporal must be finite and non-negative")
        if not (exp.spatial.flags.c_contiguous and exp.temporal.flags.c_contiguous):   # as a bare map's
            exp = dataclasses.replace(exp, spatial=np.ascontiguousarray(exp.spatial),
                                      temporal=np.ascontiguousarray(exp.temporal))
        return exp
    inside = spatial * view if view is not None and view.shape == spatial.shape[1:] else spatial
    mass = inside.reshape(num_frames, -1).sum(1, dtype=np.float64)
    temporal = mass / mass.sum() if mass.sum() > 0 else np.full(num_frames, 1.0 / num_frames)
    return Explanation(spatial=spatial, temporal=temporal, target=int(target), label=str(target),
                       score=math.nan, probs=np.full(num_classes, math.nan), method="map")


def _check_sample(metric: Metric, sample, t: int, h: int, w: int) -> None:
    reason = metric.unsupported(sample)
    if reason is not None:
        raise MissingGroundTruth(reason)
    if "ground_truth" in metric.requires:
        ground_truth(sample, (t, h, w))
    if "window" in metric.requires:
        truth_window(sample, t)


def view_mask(model: VideoModel, t: int, h: int, w: int, device=None) -> torch.Tensor:
    """Boolean ``(T, H, W)``: the pixels the model sees (its crop box in every frame)."""
    return crop_mask(model.preprocess, (h, w), device=device).expand(t, h, w)


#: scores that agree to this fraction of the largest |score| are ties (float rounding, not evidence)
TIE_TOLERANCE = 1e-6


#: the reason a ranking metric gives for a blank map
BLANK = "the map is blank: it ranks nothing"


def is_blank(values: np.ndarray) -> bool:
    """Whether ``values`` are all equal, to :data:`TIE_TOLERANCE` of the largest ``|value|`` (the
    tolerance within which :func:`descending_order` takes values as ties); all zeros are."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return a.size == 0 or float(np.ptp(a)) <= TIE_TOLERANCE * float(np.abs(a).max())


def blank_reason(explanation: Explanation, view: np.ndarray | None, ranks: str) -> str | None:
    """Why a metric that ranks ``"voxels"`` or ``"frames"`` (:attr:`Metric.ranks`) has nothing to
    rank in ``explanation``, or ``None``. Voxels: its map is blank over ``view`` (bool ``(H, W)``,
    the pixels the model sees; the whole frame without one). Frames: its temporal scores are all
    equal (:data:`BLANK` when its map is blank as well). One frame (or voxel) has one order: it is
    ranked."""
    spatial = explanation.spatial
    seen = spatial[:, view] if view is not None and view.shape == spatial.shape[1:] else spatial
    if ranks == "frames":
        if len(explanation.temporal) < 2 or not is_blank(explanation.temporal):
            return None
        return BLANK if is_blank(seen) else "the frames' scores are all equal: they rank no frame"
    return BLANK if seen.size > 1 and is_blank(seen) else None


def descending_order(scores: torch.Tensor, seed: int) -> torch.Tensor:
    """Indices that sort ``scores`` (1-D) from largest to smallest, ties in a seeded random order.

    Ties are common (zeros outside the evidence, plateaus after thresholding); breaking them in
    raster order would favour the top-left of every frame, so they are shuffled, reproducibly.
    Values are compared on a grid of ``TIE_TOLERANCE × max |score|``, so that rounding noise on
    a plateau (~1e-7 of its value) does not make one of its pixels the "peak".
    """
    n = scores.numel()
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g).to(scores.device)
    flat = scores.reshape(-1).double()
    scale = float(flat.abs().max()) * TIE_TOLERANCE if n else 0.0
    shuffled = (torch.round(flat / scale) if scale > 0 else flat)[perm]
    # a stable sort of the shuffled values keeps the random order among equal values
    return perm[torch.sort(shuffled, descending=True, stable=True).indices]


# -- registry --------------------------------------------------------------------------------------
METRICS: Registry[type[Metric]] = Registry("metric", UnknownNameError, package="videoxai.metrics")
#: class decorator: make a metric available by ``cls.name``
register = METRICS.register


def available() -> list[str]:
    """Names of the registered metrics."""
    return METRICS.names()


def get(name: str) -> type[Metric]:
    """The metric class registered under ``name``."""
    return METRICS.get(name)


def build(spec: str | Metric, **options) -> Metric:
    """A metric from a spec string (``"deletion(unit=frame)"``) or a name plus options."""
    if isinstance(spec, Metric):
        if options:
            raise InputError("pass options when constructing the metric")
        return spec
    name, opts = parse_spec(spec)
    # as vx.explain refuses it: the keyword silently replaced the spec's value
    both = sorted(set(opts) & set(options))
    if both:
        raise InputError(f"metric {name!r}: option {both[0]} given both in the spec and as an argument")
    return get(name)(**{**opts, **options})


def evaluate(metric: str | Metric, model: VideoModel, clip, explanation, target: int | str | None = None, *,
             sample: Any = None, **options) -> Score:
    """Function form: ``evaluate("deletion", model, clip, exp, unit="frame")``."""
    return build(metric, **options)(model, clip, explanation, target, sample=sample)
