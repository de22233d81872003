"""`vx.explain`: the one front door to every attribution method."""

from __future__ import annotations

import numpy as np
import torch

from .clip import Clip
from .cost import CostMeter
from .errors import InputError
from .explanation import Explanation
from .methods import get as get_method
from .methods.align import align_time, to_frames
from .methods.base import Attribution, Method
from .methods.refine import Refine, normalise_max
from .models.base import VideoModel


def explain(model: VideoModel, clip: Clip | np.ndarray, method: str | Method = "staa",
            target: int | None = None, *, refine: bool | dict | Refine | None = None,
            **options) -> Explanation:
    """Explain ``model``'s prediction on ``clip`` with ``method``.

    Args:
        model: a :class:`~videoxai.models.base.VideoModel` (``vx.load_model`` / ``vx.wrap``).
        clip: a :class:`~videoxai.clip.Clip` (or ``(T, H, W, 3)`` frames).
        method: a registered name (``vx.methods.available()``) or a constructed method.
        target: class to explain; ``None`` explains the predicted class.
        refine: post-processing of the map (threshold, focusing, smoothing); ``None`` uses the
            method's documented default, ``False`` turns it off, ``True`` forces the default
            settings, a dict or :class:`~videoxai.methods.refine.Refine` sets them.
        **options: the method's options (see its class).

    Returns:
        An :class:`~videoxai.explanation.Explanation` whose ``spatial`` is ``(T, H, W)`` at the
        clip's original size and ``temporal`` is ``(T,)`` summing to 1.
    """
    if not isinstance(model, VideoModel):
        raise InputError(f"vx.explain needs a model from vx.load_model or vx.wrap, got {type(model).__name__}")
    if not isinstance(clip, Clip):
        clip = Clip.from_array(clip)
    if isinstance(method, Method):
        if options:
            raise InputError("pass options when constructing the method, not to explain()")
        m = method
    else:
        m = get_method(method)(model, **options)
    settings = Refine.parse(getattr(m, "default_refine", False) if refine is None else refine)
    x = clip.to_tensor(model.device)

    with CostMeter(model) as meter:
        attr = m.attribute(x, target=target)
        _check_attribution(attr, m.name, x.shape[0])
        logits = attr.logits if attr.logits is not None else m.clean_logits(x)
        spatial, temporal, raw = finish_maps(attr, model, clip.num_frames, (clip.height, clip.width),
                                             settings)

    probs = logits[0].detach().float().softmax(-1).cpu().numpy()
    tgt = int(attr.target[0])
    options_used = dict(m.options)
    options_used["refine"] = settings.to_dict() if not settings.is_off else False
    meta = {k: _to_numpy(v) for k, v in (attr.extras or {}).items()}
    return Explanation(spatial=spatial[0], temporal=temporal[0], target=tgt, label=model.labels[tgt],
                       score=float(probs[tgt]), probs=probs, method=m.name, options=options_used,
                       cost=meter.cost, raw=raw[0], frame_indices=clip.indices.copy(),
                       meta={"model": model.name, "source": clip.source, "fps": clip.fps,
                             "crop_box": _crop_box(model, clip), **meta})


def _crop_box(model: VideoModel, clip: Clip) -> list[int]:
    """``[top, left, height, width]`` of the region of the frames the model sees (its crop), in
    the clip's pixels: the maps are zero outside it, and overlays outline it."""
    return [int(v) for v in model.preprocess.crop_box(clip.height, clip.width).as_ints(clip.height, clip.width)]


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
    spatial = to_frames(refined, space=attr.space, preprocess=model.preprocess, frame_size=frame_size,
                        num_frames=num_frames, time_align=attr.time_align)
    spatial = _minmax_nonzero(spatial)
    return (spatial.cpu().numpy().astype(np.float32), temporal.cpu().numpy().astype(np.float32),
            raw.cpu().numpy().astype(np.float32))


def _normalise_sum(t: torch.Tensor) -> torch.Tensor:
    s = t.sum(-1, keepdim=True)
    uniform = torch.full_like(t, 1.0 / t.shape[-1])
    return torch.where(s > 0, t / s.clamp_min(1e-30), uniform)


def _minmax_nonzero(x: torch.Tensor) -> torch.Tensor:
    """Scale each clip to [0, 1] using the range of the region with evidence (zeros stay zero).

    Maps are non-negative; raw attention has a floor (softmax is never 0), which a plain
    max-normalisation would keep as a grey haze over the whole crop, so the clip's minimum over
    its non-zero pixels is subtracted first.
    """
    flat = x.flatten(1)
    nz = flat > 0
    big = torch.finfo(x.dtype).max
    lo = torch.where(nz, flat, torch.full_like(flat, big)).amin(1)
    lo = torch.where(nz.any(1), lo, torch.zeros_like(lo))
    hi = flat.amax(1)
    span = (hi - lo).clamp_min(1e-12)
    y = torch.where(nz, (flat - lo[:, None]) / span[:, None], torch.zeros_like(flat))
    y = torch.where((hi - lo)[:, None] > 1e-12, y, nz.to(y.dtype))
    return normalise_max(y.clamp(0, 1)).view_as(x)


def _check_attribution(attr: Attribution, name: str, batch: int) -> None:
    if attr.maps.ndim != 4 or attr.maps.shape[0] != batch:
        raise RuntimeError(f"method {name} returned maps of shape {tuple(attr.maps.shape)}, "
                           f"expected ({batch}, T', h, w)")
    if not torch.isfinite(attr.maps).all():
        raise InputError(f"method {name} produced non-finite values (is the input finite?)")


def _to_numpy(v):
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return v
