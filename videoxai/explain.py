"""`vx.explain`: the one front door to every attribution method."""

from __future__ import annotations

import copy
import os
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Iterator, Literal

import numpy as np
import torch

from .clip import Clip
from .core.align import align_time, to_frames
from .core.refine import Refine
from .cost import CostMeter
from .errors import InputError
from .explanation import Explanation, _plain
from .methods import get as get_method
from .methods.base import Attribution, Method
from .models.base import VideoModel
from .options import declared_options, format_spec, parse_options, parse_spec


WorkingSize = Literal["model", "full"]
WORKING_SIZES = ("model", "full")


def _explain_options(refine: bool | dict | None = None, working_size: WorkingSize = "model") -> None:
    """explain()'s own options, recorded in ``Explanation.options`` beside the method's.

    Args:
        refine: refinement settings (``false``, ``true`` for the defaults, or a JSON object).
        working_size: the frames the method works on (``model`` or ``full``).
    """


#: explain()'s own options, declared like a method's so that the one parser reads them from specs
EXPLAIN_OPTIONS = declared_options(_explain_options)


def _refine_record(settings: Refine) -> dict | bool:
    """How ``Explanation.options["refine"]`` records refinement settings."""
    return settings.to_dict() if not settings.is_off else False


def explanation_spec(method: str, options: dict) -> str:
    """The canonical spec of how an explanation was made, from its method name and its recorded
    ``Explanation.options``: the method's non-default options plus explain()'s own ones that differ
    from their defaults (``refine`` unless it is the method's default refinement, ``working_size``
    unless ``model``). :func:`parse_explanation_spec` gives the recorded options back."""
    cls = get_method(method)
    own = {k: v for k, v in options.items() if k not in EXPLAIN_OPTIONS}
    spec_options = cls.canonical_options(own)
    refine = _refine_record(Refine.parse(options.get("refine")))
    if refine != _refine_record(Refine.parse(cls.default_refine)):
        spec_options["refine"] = refine
    if options.get("working_size", "model") != "model":
        spec_options["working_size"] = options["working_size"]
    return format_spec(cls.name, spec_options)


def parse_explanation_spec(spec: str) -> tuple[str, dict]:
    """``"rise(n_samples=500, refine=false)"`` → ``("rise", options)`` with ``options`` exactly as
    ``Explanation.options`` records them (every method option, ``refine`` as settings or ``False``,
    ``working_size``)."""
    name, options, own, _ = _split_spec(spec)
    refine = get_method(name).default_refine if own["refine"] is None else own["refine"]
    options["refine"] = _refine_record(Refine.parse(refine))
    options["working_size"] = own["working_size"]
    return name, _recorded(options)


def _recorded(options: dict) -> dict:
    """``options`` as ``Explanation.options`` records them: tuples (an occlusion window, RISE's
    cells, as their declarations parse them) as lists, the form :meth:`Explanation.save` writes,
    so that an explanation's options equal those of its saved copy; other values as they are (a
    baseline function stays a function)."""
    def listed(v):
        return [listed(x) for x in v] if isinstance(v, (tuple, list)) else v
    return {k: listed(v) for k, v in options.items()}


def _split_spec(spec: str) -> tuple[str, dict, dict, set[str]]:
    """``"rise(n_samples=500, refine=false)"`` → ``("rise", {"n_samples": 500, …}, own, {"refine"})``:
    the method's options and explain()'s own ones (defaults filled in), typed by their
    declarations, and which of explain()'s the spec gives."""
    name, text = parse_spec(spec)
    cls = get_method(name)
    given = {k for k in text if k in EXPLAIN_OPTIONS}
    own = parse_options(EXPLAIN_OPTIONS, {k: text[k] for k in given}, f"method {name!r}")
    return name, cls.parse_options({k: v for k, v in text.items() if k not in given}), own, given


def _spec_or_none(method: str, options: dict) -> str | None:
    """The explanation's spec, or ``None`` for a method class that is not registered by name or
    for an option that text cannot hold (a baseline given as a function or a tensor: its repr in
    a spec would neither parse back nor make the same map)."""
    if not all(_is_spec_value(v) for v in options.values()):
        return None
    try:
        return explanation_spec(method, options)
    except InputError:
        return None


def _is_spec_value(value) -> bool:
    """Whether ``value`` is plain data a spec can write and read back (JSON's types)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_spec_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_spec_value(v) for k, v in value.items())
    return False


def explain(model: VideoModel, clip: Clip | np.ndarray | torch.Tensor | str | os.PathLike,
            method: str | Method | type[Method] = "staa", target: int | str | None = None, *,
            refine: bool | dict | Refine | None = None, working_size: WorkingSize = "model",
            **options) -> Explanation:
    """Explain ``model``'s prediction on ``clip`` with ``method``.

    Args:
        model: a :class:`~videoxai.models.base.VideoModel` (``vx.load_model`` / ``vx.wrap``). It
            runs at its own precision: a caller's ``torch.autocast`` region does not reach it.
        clip: a :class:`~videoxai.clip.Clip`; ``(T, H, W, 3)`` or ``(T, 3, H, W)`` frames or a
            ``(1, T, 3, H, W)`` pixel batch (numpy or torch, see :meth:`Clip.from_array`); or a
            video file's path, read with ``vx.read_video(path, num_frames=model.num_frames)``.
        method: a registered name (``vx.methods.available()``), a spec with options
            (``"rise(n_samples=500)"``, as :func:`explanation_spec` writes it and
            ``evaluate --methods`` reads it; it may set ``refine`` and ``working_size`` too), a
            method class (``vx.methods.get("rise")``, built with ``options``), or a
            constructed method (one built for another network is built again on ``model`` from
            the options it was given: a layer it names is looked up there, one it left to the
            model is chosen there, :meth:`~videoxai.methods.base.Method.given_options`).
        target: class to explain, by index (an integer; a bool or a float is an error) or by
            name (``"blue square"``: exact, then case-insensitive); ``None`` explains the
            predicted class.
        refine: post-processing of the map (threshold, focusing, smoothing); ``None`` uses the
            method's documented default, ``False`` turns it off, ``True`` forces the default
            settings, a dict or :class:`~videoxai.core.refine.Refine` sets them.
        working_size: the frames the method perturbs and differentiates. ``"model"`` (default):
            the model's crop box resampled to its input size, exactly the pixels the network
            sees (:meth:`~videoxai.models.preprocess.Preprocess.resize_box`); the map is pasted back
            through the crop box onto the original frames. On a 720p clip and a 112-pixel model
            this makes gradient and perturbation methods many times cheaper, and the model's
            predictions are unchanged (the same input reaches the network). ``"full"``: work on
            the original frames, for gradients at full resolution (every original pixel gets its
            own value; pixels outside the crop box get zero). Frames whose crop box is no larger
            than the model input are used as they are either way.
        **options: the method's options (see its class); an option may come from the spec or
            from here, not from both.

    Returns:
        An :class:`~videoxai.explanation.Explanation` whose ``spatial`` is ``(T, H, W)`` at the
        clip's original size and ``temporal`` is ``(T,)`` summing to 1. ``meta["working_frame"]``
        is the ``(h, w)`` the method worked at; ``meta["spec"]`` is the canonical spec that
        makes the same explanation again (:func:`explanation_spec`); ``meta["resolved_options"]``
        is what the method chose from the clip or the model for options left to it (``None`` or
        ``"auto"`` in ``options``: an occlusion window, LIME's superpixels, an extremal preset's
        iterations, the layers an attention method read),
        ``{option: value}``, which given explicitly make the same map; ``meta["activation"]`` (``"sigmoid"``
        or ``"none"``) says how the score was made when it is not a softmax
        (:attr:`VideoModel.activation`); ``meta["weights"]`` says where the model's weights
        came from when the loader knows (``"random"`` with a ``meta["warnings"]`` line when they
        are untrained); ``meta["warnings"]`` also has a line when the map is constant (it ranks
        nothing, :func:`constant_map_warning`) or the same on every frame (its frame scores are
        all equal, :func:`timeless_map_warning`).
    """
    if not isinstance(model, VideoModel):
        raise InputError(f"vx.explain needs a model from vx.load_model or vx.wrap, got {type(model).__name__}")
    if isinstance(method, str) and "(" in method:
        text = parse_spec(method)[1]  # the options the spec gives (the parsed ones hold defaults too)
        method, spec_options, own, given = _split_spec(method)
        cls = get_method(method)
        # an option given under an alias (IG's Captum name ``method``) is the same option
        in_spec, options = set(cls.canonical_names(text)), cls.canonical_names(options)
        spec_own = {k: own[k] for k in given}
        both = sorted((in_spec - given) & set(options))
        if both:
            raise InputError(f"method {method!r}: option {both[0]} given both in the spec and as an argument")
        options = {**spec_options, **options}
        if "refine" in spec_own:
            if refine is not None:
                raise InputError(f"method {method!r}: refine given both in the spec and as an argument")
            refine = spec_own["refine"]
        if "working_size" in spec_own:
            if working_size != "model":
                raise InputError(f"method {method!r}: working_size given both in the spec and as an argument")
            working_size = spec_own["working_size"]
    if working_size not in WORKING_SIZES:
        raise InputError(f"working_size must be 'model' or 'full', got {working_size!r}")
    if isinstance(clip, (str, bytes, os.PathLike)):  # a video file: the clip the CLI would explain
        from .data.video import read_video
        clip = read_video(clip, num_frames=model.num_frames)
    elif not isinstance(clip, Clip):
        clip = Clip.from_array(clip)
    if target is not None:  # checked here: torch would overflow on 10**20 and truncate 1.5 to 1
        target = model.class_index(target)
    # the model's lock for the whole explanation (re-entrant; every attribute call takes it too):
    # construction may probe the network with hooks, and the cost counts this thread's passes
    # only; the network in eval mode, its modes put back after, and out of torch.inference_mode,
    # under which no gradient method can run (VideoModel.inference)
    with model.inference(), _own_precision(model):
        return _explain(model, clip, method, target, refine, working_size, options)


@contextmanager
def _own_precision(model: VideoModel) -> Iterator[None]:
    """The network at its own precision (its weights' dtype), out of a ``torch.autocast`` region
    of the caller's: in one (a mixed-precision evaluation loop), every pass ran in bfloat16 or
    float16 and the same clip and seed gave another map that nothing in the explanation recorded
    (21 % of the maximum apart for saliency on demo-cnn, 18 % for Integrated Gradients). A network
    meant to run at lower precision is converted (``vx.wrap(net.half())``)."""
    with ExitStack() as stack:
        for kind in dict.fromkeys(("cpu", model.device.type)):
            if torch.is_autocast_enabled(kind):
                stack.enter_context(torch.autocast(kind, enabled=False))
        yield


def _explain(model: VideoModel, clip: Clip, method: str | Method | type[Method], target: int | None, refine,
             working_size: WorkingSize, options: dict) -> Explanation:
    worker, x = working_view(model, clip, working_size)
    if isinstance(method, Method) and options:
        raise InputError("pass options when constructing the method, not to explain()")
    # the meter opens before the method is built: construction may run the network (the search
    # for a CAM layer, saliency_tubes' check of the head), and those passes are this call's cost
    with CostMeter(model) as meter:
        if isinstance(method, Method) and getattr(method.model, "net", None) is not worker.net:
            # built for another network: what it resolved there (an attention method's layer
            # indices, which ran past a shallower model's, a CAM layer, saliency_tubes' head)
            # belongs to that network, so it is built again on this one from the options its
            # caller gave (a layer it chose there is chosen again here)
            m = type(method)(worker, **method.given_options())
        elif isinstance(method, Method):
            # a constructed method runs on the working view too, as a copy: the caller's is not
            # changed, and threads that share it with different models cannot swap its model
            # under each other (it was set on the method and restored after, so a concurrent call
            # on another model ran part of this one on that model)
            m = copy.copy(method)
            m.model = worker
        elif isinstance(method, type) and issubclass(method, Method):
            # a method's class (vx.methods.get("rise"), or a plug-in's not registered by name) is
            # built as its name would be; it was looked up as a name, "unknown method <class …>"
            m = method(worker, **options)
        else:
            m = get_method(method)(worker, **options)
        settings = Refine.parse(m.default_refine if refine is None else refine)
        attr = m.attribute(x, target=target)
        _check_attribution(attr, m.name, x.shape[0])
        logits = attr.logits if attr.logits is not None else m.clean_logits(x)
        if worker is not model:  # the working frame *is* the crop box of the original frames
            attr = replace(attr, space="crop")
        spatial, temporal, raw = finish_maps(attr, model, clip.num_frames, (clip.height, clip.width), settings)

    probs = model.probabilities(logits[0:1].detach().float())[0].cpu().numpy()
    tgt = int(attr.target[0])
    options_used = _recorded(m.options)
    options_used["refine"] = _refine_record(settings)
    options_used["working_size"] = working_size
    meta = {"model": model.name, "source": clip.source, "fps": clip.fps, "spec": _spec_or_none(m.name, options_used),
            "crop_box": _crop_box(model, clip), "working_frame": [int(x.shape[-2]), int(x.shape[-1])]}
    meta.update(weights_meta(model))
    if model.activation != "softmax" or model.num_classes == 1:  # the score is not a softmax share
        meta["activation"] = "sigmoid" if model.activation == "softmax" else model.activation
    extras = dict(attr.extras or {})
    # what the method chose from the clip for the options left to it (an occlusion window, an
    # extremal preset's iterations): ``options`` keeps the spec as given (replayable on clips of
    # another size), this says what was run; plain JSON, so it reads the same after save/load
    resolved = {**m.chosen_options(), **((extras.pop("resolved_options", None) or [{}])[0] or {})}
    if resolved:
        meta["resolved_options"] = _plain(resolved)
    meta.update({k: _to_numpy(v) for k, v in extras.items()})
    flat = (constant_map_warning(m.name, raw[0], temporal[0], m.blank_map_reason(extras))
            or timeless_map_warning(m.name, raw[0], temporal[0]))
    if flat is not None:
        meta["warnings"] = [*meta.get("warnings", []), flat]
    return Explanation(spatial=spatial[0], temporal=temporal[0], target=tgt, label=model.labels[tgt],
                       score=float(probs[tgt]), probs=probs, method=m.name, options=options_used,
                       cost=meter.cost, raw=raw[0], frame_indices=clip.indices.copy(), meta=meta)


def _crop_box(model: VideoModel, clip: Clip) -> list[int]:
    """``[top, left, height, width]`` of the region of the frames the model sees (its crop), in
    the clip's pixels: the maps are zero outside it, and overlays outline it."""
    return [int(v) for v in model.preprocess.crop_box(clip.height, clip.width).as_ints(clip.height, clip.width)]


def working_view(model: VideoModel, clip: Clip, working_size: WorkingSize = "model"
                 ) -> tuple[VideoModel, torch.Tensor]:
    """The model a method runs on and the pixels ``(1, T, 3, h, w)`` it explains.

    With ``"model"`` and a crop box larger than the model input, the pixels are the model's view
    of the frames (:meth:`~videoxai.models.preprocess.Preprocess.view`: the crop box resampled
    to the input size) and the model is :meth:`~VideoModel.at_model_size` (so the network gets
    the very same input); otherwise the clip's own frames and the model itself. Frames are
    converted to float and resampled one at a time, so a 4K clip never exists as a float tensor
    (~100 MB of float a frame; a 64-frame window would be 6 GB).
    """
    h, w = model.input_size
    top, left, bh, bw = _crop_box(model, clip)
    if working_size == "full" or (bh <= h and bw <= w):
        return model, clip.to_tensor(model.device)
    view = [model.preprocess.view(Clip(clip.frames[i:i + 1]).to_tensor(model.device)) for i in range(clip.num_frames)]
    return model.at_model_size(), torch.cat(view, dim=1)


def weights_meta(model: VideoModel) -> dict:
    """``{"weights": source}`` when the loader knows it, plus a warning line for random weights."""
    source = getattr(model, "weights_source", None)
    if source is None:
        return {}
    out = {"weights": source}
    if source == "random":
        out["warnings"] = [f"{model.name} has RANDOM weights (none were found, or none were asked for): "
                           "its predictions and explanations mean nothing"]
    return out


def constant_map_warning(method: str, raw: np.ndarray, temporal: np.ndarray, why: str | None = None) -> str | None:
    """The ``meta["warnings"]`` line for a map that ranks nothing, or ``None``.

    A map equal everywhere (often 0: occlusion or temporal SHAP on a model whose output the
    perturbations do not move) with equal per-frame scores says nothing about where or when the
    evidence is, yet it renders and scores like any other; checked here, once for every method,
    on the method's own map before refinement (relative tolerance 1e-6). ``why``: the method's
    own reason (:meth:`~videoxai.methods.base.Method.blank_map_reason`), in place of the guess
    that the model's output does not change.
    """
    def flat(a: np.ndarray) -> bool:
        hi, lo = float(a.max()), float(a.min())
        return hi - lo <= 1e-6 * abs(hi)

    if not (flat(raw) and flat(temporal)):
        return None
    if why is None and raw.size == 1:
        # a CAM read after global pooling (layer='pool'): one value, whatever the model does
        why = ("the method's own map is a single cell, 1 x 1 x 1, which cannot rank one pixel or frame above "
               "another: for a CAM method, choose a layer before the global pooling")
    why = why or "the model's output may not change under what the method varies"
    return (f"the {method} map is constant ({float(raw.max()):.3g} everywhere, every frame 1/{temporal.size}): "
            f"it ranks no pixel or frame above another ({why})")


def timeless_map_warning(method: str, raw: np.ndarray, temporal: np.ndarray) -> str | None:
    """The ``meta["warnings"]`` line for a map ``raw (T', h, w)`` that is the same on every frame
    and whose per-frame scores ``temporal (T,)`` are therefore all equal, or ``None``.

    It says where, not when, though the model's output may well depend on time: a CNN's feature
    map can keep one frame of the clip (r3d_18 and r2plus1d_18 stride time by 8: an 8-frame clip
    leaves one frame at ``layer4``), and an occlusion window as long as the clip hides every frame
    at once. Uniform frame scores would otherwise read as "every frame matters equally".
    """
    flat = float(temporal.max() - temporal.min()) <= 1e-6 * float(temporal.max())
    if temporal.size < 2 or not flat or not np.allclose(raw, raw[:1], rtol=1e-6, atol=0):
        return None
    why = (f"it has one frame for the clip's {temporal.size}" if raw.shape[0] == 1 else
           "what the method varies covers every frame at once")
    return (f"the {method} map is the same on every frame ({why}): its frame scores are all equal, so it says "
            "nothing about when (give the model a longer clip, explain a layer with more frames, or vary "
            "fewer frames at a time)")


def finish_maps(attr: Attribution, model: VideoModel, num_frames: int, frame_size: tuple[int, int],
                settings: Refine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine, align with the original frames and normalise a batch of maps.

    Returns ``spatial (B, T, H, W)`` in [0, 1], ``temporal (B, T)`` summing to 1, and the raw
    ``(B, T', h, w)`` maps, as numpy float32.
    """
    raw = attr.maps.detach().float().clamp_min(0)
    if attr.temporal is not None:
        temporal = attr.temporal.detach().float().clamp_min(0)
    else:
        # per-frame evidence mass of the *raw* map, spread over the input frames it covers
        mass = raw.flatten(2).sum(-1)[..., None, None]
        temporal = align_time(mass, num_frames, attr.time_align)[..., 0, 0]
    temporal = _normalise_sum(temporal)
    refined = settings(raw)
    if attr.footprint is not None:
        # a CNN layer's grid laid on the frames and pixels its cells are centred on (zero on what
        # it never reads) rather than stretched over the clip; the raw maps stay the grid
        refined = attr.footprint.maps_on_input(refined)
    spatial = to_frames(refined, space=attr.space, preprocess=model.preprocess, frame_size=frame_size,
                        num_frames=num_frames, time_align=attr.time_align)
    if spatial.untyped_storage().data_ptr() in (raw.untyped_storage().data_ptr(),
                                                refined.untyped_storage().data_ptr()):
        spatial = spatial.clone()  # normalised in place below; the raw maps are returned as they are
    spatial = _minmax_nonzero_(spatial)
    return (spatial.cpu().numpy().astype(np.float32, copy=False), temporal.cpu().numpy().astype(np.float32, copy=False),
            raw.cpu().numpy().astype(np.float32, copy=False))


def _normalise_sum(t: torch.Tensor) -> torch.Tensor:
    s = t.sum(-1, keepdim=True)
    uniform = torch.full_like(t, 1.0 / t.shape[-1])
    return torch.where(s > 0, t / s.clamp_min(1e-30), uniform)


def _minmax_nonzero_(x: torch.Tensor) -> torch.Tensor:
    """Scale each clip of ``(B, T, H, W)`` to [0, 1] in place, using the range of the region with
    evidence (zeros stay zero); returns ``x``.

    Maps are non-negative; raw attention has a floor (softmax is never 0), which a plain
    max-normalisation would keep as a grey haze over the whole crop, so the clip's minimum over
    its non-zero pixels is subtracted first. In place and a frame at a time because at the
    original resolution a map is large (33 MB a frame at 4K).
    """
    big = torch.finfo(x.dtype).max
    zero = x.new_zeros(())
    for clip in x:
        lo = torch.stack([torch.where(f > 0, f, big).amin() for f in clip]).amin()
        hi = clip.amax()
        if lo == big:  # no evidence anywhere: all zero already (maps are non-negative)
            continue
        if hi - lo > 1e-12:
            span = (hi - lo).clamp_min(1e-12)
            for f in clip:
                torch.where(f > 0, (f - lo) / span, zero, out=f)
                f.clamp_(0, 1)
        else:  # a flat map: its evidence region at 1
            for f in clip:
                torch.gt(f, 0, out=f)
        clip.div_(clip.amax().clamp_min(1e-12))
    return x


def _check_attribution(attr: Attribution, name: str, batch: int) -> None:
    if attr.maps.ndim != 4 or attr.maps.shape[0] != batch:
        raise RuntimeError(f"method {name} returned maps of shape {tuple(attr.maps.shape)}, "
                           f"expected ({batch}, T', h, w)")
    if not torch.isfinite(attr.maps).all():
        # the clip was checked before: the cause is an option or the model, not the input
        raise InputError(f"method {name} produced non-finite values: an option far out of scale "
                         "(such as p_keep=1e-300) or a model whose outputs are not finite")


def _to_numpy(v):
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return v
