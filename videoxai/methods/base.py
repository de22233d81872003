"""The base of every attribution method, and the registry behind ``vx.explain(method=...)``.

A method is a small class: its ``__init__`` takes the model and the method's keyword options
(with defaults), and :meth:`Method.attribute` maps a pixel batch and a target to an
:class:`Attribution` at the method's own resolution. Everything common (targets, option records,
progress, batching, alignment with the original frames, refinement, normalisation, cost) lives
here or in :func:`videoxai.explain`, so a method file says only what is special about it.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Annotated, Callable, ClassVar, Iterable, Iterator, Literal, Sequence, Union

import numpy as np
import torch

from ..core import baselines
from ..core.batching import batched
from ..core.footprint import Footprint
from ..errors import InputError, UnknownMethodError, UnknownNameError, UnsupportedModelError
from ..models.base import VideoModel
from ..options import Configurable, Opt, OptionError
from ..registry import Registry

Target = int | str | Sequence[int | str] | torch.Tensor | None

#: option types shared by many methods
BatchSize = Annotated[int, Opt(ge=1, help="perturbed clips per forward pass (memory; the map only in its last bits)")]
#: a seed is refused outside [0, 2⁶⁴ − 1], the range that both torch.Generator.manual_seed and
#: numpy's generators take (torch overflows above it, numpy refuses negative seeds), rather than
#: reduced: two seeds never silently give the same draws
SEED_RANGE = Opt(ge=0, le=2 ** 64 - 1, help="seeds the random draws: same seed, same map")
Seed = Annotated[int, SEED_RANGE]
Output = Literal["probability", "logit"]
#: a :mod:`~videoxai.core.baselines` name, checked by :func:`check_baseline`, or (from Python,
#: as Captum takes a baseline) a function ``(B, T, 3, H, W) → same`` of the clip's pixels
BaselineName = Union[str, Callable[[torch.Tensor], torch.Tensor]]


def check_baseline(owner: str, value, extra: Sequence[str] = ()) -> None:
    """Raise :class:`~videoxai.options.OptionError` naming ``owner`` (``"method 'rise'"``,
    ``"metric 'deletion'"``) and the valid names unless ``value`` is a registered
    :mod:`~videoxai.core.baselines` name, one of ``extra`` or not a name at all (a callable or a
    tensor, for the plug-ins that take one). Checked at construction, not mid-explanation."""
    if not isinstance(value, str) or value in extra:
        return
    try:
        baselines.get(value)
    except UnknownNameError:
        names = ", ".join([*baselines.available(), *extra])
        raise OptionError(f"{owner}: unknown baseline {value!r}; option baseline must be one of {names}") from None


@dataclass
class Attribution:
    """What a method returns for a batch of B clips of T frames.

    Attributes:
        maps: non-negative relevance ``(B, T', h, w)``. ``T'`` may be smaller than T (tokens,
            feature maps); ``space`` says which pixels the ``h × w`` grid covers.
        space: ``"crop"`` — the grid covers the model's crop box (token grids, CAM feature maps,
            masks made at model resolution); ``"frame"`` — it covers the whole original frame
            (gradients and perturbations in pixel space).
        target: ``(B,)`` the explained class of each clip.
        logits: ``(B, C)`` clean-clip logits if the method computed them anyway (saves a pass).
        temporal: ``(B, T)`` the method's own per-frame importance, if it has one; otherwise the
            per-frame mass of ``maps`` is used.
        time_align: how the ``T'`` map frames spread over the T input frames: ``"repeat"``
            (each covers ``T/T'`` frames, e.g. tubelets) or ``"linear"`` (feature-map centres).
        extras: method-specific arrays kept in ``Explanation.meta`` (e.g. segment Shapley values).
        footprint: where ``maps`` is a CNN layer's grid that stretching over the input would
            misplace (input frames, rows or columns left unread by an unpadded strided layer;
            cells centred elsewhere than the stretch puts them, by a padded strided one), what each
            cell reads and where it is centred: the upsampling lays the maps there, zero on what
            is never read (:mod:`~videoxai.core.footprint`); ``maps`` stays the grid.
    """

    maps: torch.Tensor
    space: Literal["crop", "frame"]
    target: torch.Tensor
    logits: torch.Tensor | None = None
    temporal: torch.Tensor | None = None
    time_align: Literal["repeat", "linear"] = "repeat"
    extras: dict | None = None
    footprint: Footprint | None = None


def _holding_model_lock(fn: Callable) -> Callable:
    """``fn(self, …)`` run while holding ``self.model``'s lock, the network in eval mode,
    outside ``torch.inference_mode`` and torch's generators seeded with the method's ``seed``
    (see :meth:`Method.__init_subclass__` and :meth:`VideoModel.inference`). Input tensors made under inference mode (which autograd
    refuses to record) are copied into ordinary ones.
    """

    @functools.wraps(fn)
    def holding(self, *args, **kwargs):
        # the forward passes seeded with the method's seed (0 for a method without one): a
        # network drawing random numbers in eval mode (Monte-Carlo dropout) gave another map at
        # every call; the caller's generators are put back after (VideoModel.seeded_draws)
        seed = getattr(self, "options", {}).get("seed", 0)
        with self.model.inference(), self.model.seeded_draws(seed):
            args = tuple(_ordinary(a) for a in args)
            kwargs = {k: _ordinary(v) for k, v in kwargs.items()}
            return fn(self, *args, **kwargs)

    holding.holds_model_lock = True
    return holding


def _probing_in_eval_mode(fn: Callable) -> Callable:
    """An ``unsupported(cls, model)`` run holding the model's lock with the network in eval mode
    (:meth:`VideoModel.inference`): a method that answers by running the network (saliency_tubes
    checks its head on a clip) would otherwise, on a model left in training mode, move its
    batch-norm statistics and answer from a dropout draw. ``supports`` is asked outside any
    explanation (``videoxai methods --model``, the server's ``/api/info``, the evaluation runner)."""

    @functools.wraps(fn)
    def probing(cls, model, *args, **kwargs):
        if not isinstance(model, VideoModel):
            return fn(cls, model, *args, **kwargs)
        with model.inference():
            return fn(cls, model, *args, **kwargs)

    probing.holds_model_lock = True
    return probing


def manages_model_lock(fn: Callable) -> Callable:
    """Marks an override of ``unsupported`` that takes the model's lock itself, only around the
    network it runs (a search or a probe whose answer the model remembers): left to
    :func:`_probing_in_eval_mode`, every ``supports()`` waited for the explanation running on the
    model — the server's ``/api/info`` and the building of a Grad-CAM or ST-ABN job waited for
    the job before them."""
    fn.holds_model_lock = True
    return fn


def _hf_hint(model: VideoModel, reads: str = "its attention") -> str:
    """For a Hugging Face video transformer given to ``vx.wrap`` (a network fine-tuned in the
    session, never saved), which adapter reads ``reads``; else ``""``."""
    from ..models.hf import HF_FAMILIES  # (transformers itself is imported by the adapters' loads only)

    model_type = getattr(getattr(model.net, "config", None), "model_type", None)
    if model.family != "custom" or model_type not in HF_FAMILIES:
        return ""
    family = HF_FAMILIES[model_type].family_name or model_type   # VideoPrism's model_type is longer
    return (f": it wraps a Hugging Face {family} model, which "
            f"videoxai.models.hf.from_hf_module(net) adapts with {reads}")


def _ordinary(value):
    """``value``, or an ordinary copy of it when it is a tensor made under ``torch.inference_mode``."""
    return value.clone() if isinstance(value, torch.Tensor) and value.is_inference() else value


class Method(Configurable):
    """Base class. Subclasses set :attr:`name` and implement :meth:`attribute`.

    Options are the keyword arguments of the subclass's ``__init__``, declared with types,
    defaults and :class:`~videoxai.options.Opt` ranges (see :mod:`videoxai.options`); they are
    parsed before the subclass's ``__init__`` runs and recorded, with defaults filled in, in
    :attr:`options` (and so in ``Explanation.options``); :attr:`spec` is the canonical spec.
    """

    kind = "method"
    arguments = ("model",)
    name: ClassVar[str]
    #: the paper the method comes from (authors, title, venue), for ``videoxai methods NAME``
    paper: ClassVar[str] = ""
    #: what the model must provide, checked at construction: "attention", "cam_layer", "token_grid"
    requires: ClassVar[tuple[str, ...]] = ()
    #: whether the method follows the gradient of the target's logit: :meth:`unsupported` then
    #: refuses a network with quantized layers, which do not pass it
    uses_gradients: ClassVar[bool] = False
    #: the models it explains, in words, for a method whose :meth:`unsupported` checks more than
    #: :attr:`requires` says (``videoxai methods`` shows this instead); "" when ``requires`` says it
    applies_to: ClassVar[str] = ""
    #: clips an evaluation's ``--methods all`` runs this method on (the first N; ``None``: every
    #: clip): set by methods whose explanation of one clip takes tens of seconds
    evaluation_clips: ClassVar[int | None] = None
    #: the refinement ``vx.explain(refine=None)`` applies (``False``: none, ``True``: the default
    #: :class:`~videoxai.core.refine.Refine`, or a dict of its settings)
    default_refine: ClassVar[bool | dict] = False

    options: dict

    def __init__(self, model: VideoModel) -> None:
        if not isinstance(model, VideoModel):
            raise InputError(f"{self.name} needs a videoxai model (vx.load_model or vx.wrap), "
                             f"got {type(model).__name__}")
        reason = self.unsupported_with_options(model)
        if reason is not None:
            raise UnsupportedModelError(reason)
        self.model = model

    # -- which models -----------------------------------------------------------------------------
    @classmethod
    def unsupported(cls, model: VideoModel) -> str | None:
        """Why this method (with its default options) cannot explain ``model``; ``None`` if it can.

        The one declaration read by ``vx.explain`` (through the constructor, which raises
        :class:`~videoxai.errors.UnsupportedModelError` with this text), the evaluation runner,
        ``videoxai methods --model``, the server's ``/api/info`` and the viewer. The base checks
        :attr:`requires`; a method with other needs overrides this and calls ``super()``.
        """
        for need in cls.requires:
            if getattr(model, need, None) is None:
                if need == "attention":  # MViT and Swin3D do attend, but not in a form read here
                    return (f"method {cls.name!r} reads the attention of Hugging Face TimeSformer, "
                            f"VideoMAE, ViViT, V-JEPA 2 and VideoPrism models; {model.name} ({model.family}) exposes none it "
                            f"can read{_hf_hint(model)} (gradient and perturbation methods work on any model)")
                return (f"method {cls.name!r} needs a model with {need.replace('_', ' ')}; "
                        f"{model.name} ({model.family}) has none")
        if cls.uses_gradients and isinstance(model, VideoModel):
            # here, not in each family's override: an override is run holding the model's lock
            # (it may run the network), and a server building a saliency job waited for the job
            # running before it to finish
            from .gradients import quantized_refusal

            return quantized_refusal(cls.name, model)
        return None

    def unsupported_with_options(self, model: VideoModel) -> str | None:
        """Why this method, with the options it is being constructed with, cannot explain
        ``model`` (checked by the constructor). The default is :meth:`unsupported`, the answer
        for the default options; a method whose options change that answer (``saliency_tubes``
        with ``layer=``) overrides it, reading the options it set before calling ``super()``."""
        return self.unsupported(model)

    @classmethod
    def supports(cls, model: VideoModel) -> bool:
        """Whether this method (with its default options) can explain ``model``."""
        return cls.unsupported(model) is None

    def __init_subclass__(cls, **kwargs) -> None:
        # One explanation at a time per model: methods hook layers, tap attention and freeze
        # parameters for the length of a call, and every forward through the model meanwhile
        # (another thread's explanation or metric) would feed those hooks or find the flags
        # changed. So each subclass's attribute / attribute_pixels runs holding the model's
        # lock (VideoModel.exclusive, re-entrant: a method may call another's), with the
        # network in eval mode (VideoModel.inference). A method file still says only what is
        # special about it.
        super().__init_subclass__(**kwargs)
        for name in ("attribute", "attribute_pixels"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "holds_model_lock", False):
                setattr(cls, name, _holding_model_lock(fn))
        # likewise the answer to "can it explain this model?", which may run the network
        fn = cls.__dict__.get("unsupported")
        if isinstance(fn, classmethod) and not getattr(fn.__func__, "holds_model_lock", False):
            cls.unsupported = classmethod(_probing_in_eval_mode(fn.__func__))

    # -- the one method to implement ------------------------------------------------------------
    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        """Explain ``inputs`` (float ``(B, T, 3, H, W)`` in [0, 1]) for ``target``.

        ``target``: an int or a class name (same class for every clip), a sequence / ``(B,)``
        tensor, or ``None`` for each clip's top-1 class (see :meth:`resolve_target`).
        """
        raise NotImplementedError

    def forward_passes(self, num_frames: int) -> int | None:
        """About how many clips this method sends through the model to explain one clip of
        ``num_frames`` frames, with its options, or ``None`` when that is not known in advance.

        The service rejects requests over its work limit with it before accepting them.
        Methods whose cost grows with an option override it; they raise :class:`InputError`
        when the options cannot fit such a clip (so the error comes before the work).
        """
        return None

    def given_options(self) -> dict:
        """The options to build this method again on another network (:func:`videoxai.explain`
        given a method built for another model): :attr:`options`, but for those that record what
        was chosen for this model where the caller left the choice to it (a CAM layer found on
        it), which go back to ``None`` so that the other network makes its own choice."""
        return dict(self.options)

    def chosen_options(self) -> dict:
        """What this method chose, when it was built for its model, for options left to it (the
        layers an attention method reads for ``layers="auto"``), ``{option: value}``: given
        explicitly they make the same map; :func:`videoxai.explain` records them in
        ``meta["resolved_options"]`` with those chosen per clip (``ClipResult.resolved``)."""
        return {}

    def blank_map_reason(self, extras: dict) -> str | None:
        """Why the map just made is constant, when the method itself decided so (``extras``: one
        clip's :attr:`Attribution.extras`, batch of one), for ``meta["warnings"]``; ``None``:
        the generic line of :func:`videoxai.explain.constant_map_warning`."""
        return None

    # -- helpers for subclasses -----------------------------------------------------------------
    def resolve_target(self, target: Target, logits: torch.Tensor) -> torch.Tensor:
        """``(B,)`` long tensor of target classes; ``None`` → argmax of ``logits``.

        A class is an integer index or, as :func:`videoxai.explain` takes it, a class name (one
        for every clip, or one per clip in a list). A bool or a float is refused, not truncated:
        1.7 was read as class 1 and ``True`` as class 1, and a name failed in torch ("new():
        invalid data type 'str'")."""
        b, c = logits.shape
        if target is None:
            return logits.detach().argmax(-1)
        if isinstance(target, str) or (isinstance(target, (list, tuple))
                                       and any(isinstance(v, str) for v in target)):
            names = [target] if isinstance(target, str) else list(target)
            target = [self.model.class_index(v) for v in names]
        elif not isinstance(target, torch.Tensor) and np.ndim(target) == 0:
            target = self.model.class_index(target)   # (a bool or a float is refused there)
        t = torch.as_tensor(target, device=logits.device)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise InputError(f"target must be class indices (integers) or class names, got {t.dtype} values "
                             f"{t.reshape(-1)[:4].tolist()}")
        t = t.long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(b)
        if t.numel() != b:
            raise InputError(f"got {t.numel()} targets for a batch of {b} clips")
        if (t < 0).any() or (t >= c).any():
            raise InputError(f"target {t.tolist()} out of range for a model with {c} classes")
        return t.clone()

    def clean_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """One forward pass without gradients."""
        with torch.no_grad():
            return self.model(inputs)

    def progress(self, items: Iterable, total: int, description: str) -> Iterator:
        """Iterate with a progress bar when the work is long (see :mod:`videoxai.progress`)."""
        from ..progress import track
        return track(items, total=total, description=f"{self.name}: {description}")

    def batches(self, n: int, size: int, description: str) -> Iterator[slice]:
        """``[0, n)`` in slices of ``size`` behind a progress bar: the chunked loop of every
        method whose cost is an option (:func:`~videoxai.core.batching.batched`, with a
        cancellation checkpoint between chunks)."""
        return self.progress(batched(n, size), math.ceil(n / size), description)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "options", {}).items())
        return f"{type(self).__name__}({opts})"


# -- registry ----------------------------------------------------------------------------------
#: ``vx.explain``'s own keyword arguments besides the model: an option of the same name would
#: never reach the method (explain takes it first, silently), so such a method is refused when
#: it registers (a test keeps this set equal to explain's signature)
EXPLAIN_ARGUMENTS = frozenset({"clip", "method", "target", "refine", "working_size"})


def _check_option_names(name: str, cls: type[Method]) -> None:
    clash = sorted(EXPLAIN_ARGUMENTS & set(inspect.signature(cls.__init__).parameters))
    if clash:
        raise ValueError(f"method {name!r}: option {', '.join(map(repr, clash))} is also an argument of vx.explain, "
                         "which would take it before the method sees it; give the option another name")


METHODS: Registry[type[Method]] = Registry("method", UnknownMethodError, package="videoxai.methods",
                                           check=_check_option_names)
#: class decorator: make a method available to ``vx.explain`` under ``cls.name``
register = METHODS.register


def get(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    return METHODS.get(name)


def available() -> list[str]:
    """Names of the registered methods."""
    return METHODS.names()


MethodFactory = Callable[..., Method]
