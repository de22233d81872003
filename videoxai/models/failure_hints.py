"""Why a wrapped network failed on its input, when the cause is an option of :func:`vx.wrap`
or of the method.

A network given the wrong ``layout``, a clip of another length than it was built for (or
wrapped with another ``num_frames``), frames smaller than it needs or a batch of several clips
when it takes one fails deep inside (a channel or size mismatch) with a message that names no
option. On such a failure the forward probes one sample the other way;
when that runs, the error names the option to give.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the model calls these from its forward
    from .base import VideoModel


def failure_hint(model: VideoModel, x: torch.Tensor, err: Exception) -> str | None:
    """Why a wrapped network failed on ``x`` — its layout, the clip's length, frames too small or a
    batch of several clips — as a message naming the option to give; ``None`` when it is none of
    these, for other models than :func:`vx.wrap`'s, and for out-of-memory errors. Whether one clip
    runs as given, which three of the causes turn on, is probed once."""
    if model.family != "custom" or isinstance(err, torch.OutOfMemoryError):
        return None
    hint = statistics_hint(model, x, err)
    if hint is not None:
        return hint
    first_runs = _runs_alone(model, x[:1])
    return (layout_hint(model, x, err, first_runs) or frames_hint(model, x, err)
            or size_hint(model, x, err, first_runs) or batch_hint(model, x, err, first_runs)
            or length_hint(model, x, err, first_runs))


def layout_hint(model: VideoModel, x: torch.Tensor, err: Exception, first_runs: bool) -> str | None:
    """Why a wrapped network failed, when the cause is its ``layout``; else ``None``.

    A 3D CNN wrapped with ``layout="BTCHW"`` (or a frames-first network with ``"BCTHW"``)
    fails in its first layer with a message about channels that does not say which option
    is wrong. On a failure, one sample is run in the other layout: when that works, the
    layout is the cause and the error names the option. Only for :func:`vx.wrap`'s models
    (the built-in adapters set their layout themselves); out-of-memory errors are not probed.
    """
    if first_runs:
        # one clip runs as laid out: the layout is not the cause (a network that takes one clip
        # at a time, given 3 frames of 3 channels, was told to change its layout)
        return None
    other = "BTCHW" if model.layout == "BCTHW" else "BCTHW"
    # gradients on, as in the failing call: a method's hooks on the network may register
    # tensor hooks, which fail on outputs that need no gradient
    probe = x[:1].detach().transpose(1, 2).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model.select_logits(model.net(probe))
    except Exception:  # the other layout fails too: the layout is not (only) what is wrong
        return None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, model.num_classes):
        return None
    shape = "x".join(map(str, x.shape))
    return (f"{model.name} failed on input laid out as {model.layout} ({shape}): {_one_line(err)}. It runs on "
            f"{other} input: wrap it with vx.wrap(..., layout={other!r})")

def frames_hint(model: VideoModel, x: torch.Tensor, err: Exception) -> str | None:
    """Why a wrapped network failed, when the cause is a clip of another length than
    ``num_frames`` (position embeddings, a reshape to ``num_frames``); else ``None``.

    The network, wrapped without ``fixed_num_frames=True``, is given a clip of ``T ≠
    num_frames`` frames and fails with a size mismatch deep inside. On a failure, one sample
    with ``num_frames`` frames (indices spread over the clip) is run: when that works, the
    length is the cause and the error names the option.
    """
    if model.fixed_num_frames:
        return None
    dim = 2 if model.layout == "BCTHW" else 1
    t = x.shape[dim]
    if t == model.num_frames:
        return None
    idx = torch.linspace(0, t - 1, model.num_frames, device=x.device).round().long()
    if not _runs_alone(model, x[:1].detach().index_select(dim, idx)):  # fails at num_frames too
        return None
    return (f"{model.name} failed on a clip of {t} frames: {_one_line(err)}. It runs on {model.num_frames}: wrap it with "
            f"vx.wrap(..., fixed_num_frames=True) (clips of another length are then refused), or give "
            f"clips of {model.num_frames} frames")


#: clip lengths tried by :func:`length_hint`, those nearest the failing one first
COMMON_LENGTHS = (1, 2, 4, 8, 16, 32, 64)


def length_hint(model: VideoModel, x: torch.Tensor, err: Exception, first_runs: bool) -> str | None:
    """Why a wrapped network failed, when the cause is ``num_frames`` itself: a network built for
    clips of another length (position embeddings or a reshape of that many frames: an MViT of
    4 frames wrapped with ``num_frames=8``), which fails on every clip of the length it was
    wrapped with; else ``None``.

    On a failure of one clip, the clip resampled to the common lengths (nearest first, up to 64)
    is run: the first that runs is named with the option, instead of the network's own message
    ("The size of tensor a (257) must match the size of tensor b (129)").
    """
    if first_runs:
        return None
    dim = 2 if model.layout == "BCTHW" else 1
    t = x.shape[dim]
    for n in sorted((n for n in COMMON_LENGTHS if n != t), key=lambda n: (abs(math.log(n / t)), n)):
        idx = torch.linspace(0, t - 1, n, device=x.device).round().long()
        if _runs_alone(model, x[:1].detach().index_select(dim, idx)):
            fixed = ", fixed_num_frames=True" if model.fixed_num_frames else ""
            return (f"{model.name} failed on a clip of {t} frames: {_one_line(err)}. It runs on clips of {n} frames: "
                    f"wrap it with vx.wrap(..., num_frames={n}{fixed}) (the length it was built for)")
    return None


def statistics_hint(model: VideoModel, x: torch.Tensor, err: Exception) -> str | None:
    """Why a wrapped network failed on one clip, when the cause is a batch-norm layer without
    running statistics (:meth:`~videoxai.models.base.VideoModel.batch_statistics_layers`, run one
    clip at a time) that sees one value per channel (after the pooling: ``BatchNorm1d`` on
    ``(1, C)``); else ``None``. Torch's own message names neither the layer nor the cause."""
    layers = model.batch_statistics_layers()
    if x.shape[0] != 1 or not layers or "more than 1 value per channel" not in str(err):
        return None
    return (f"{model.name} cannot score a clip on its own: its batch-norm layers {', '.join(map(repr, layers[:3]))} "
            "have no running statistics (track_running_stats=False), so they normalise with their batch's, "
            f"and one clip has a single value per channel ({_one_line(err)}); explanations need each clip's "
            "own score: give them running statistics")


def batch_hint(model: VideoModel, x: torch.Tensor, err: Exception, first_runs: bool) -> str | None:
    """Why a wrapped network failed, when the cause is a batch of several clips (a network that
    takes one clip at a time: a reshape to batch 1, an ``assert x.shape[0] == 1``); else ``None``.

    Perturbation methods and metrics send ``batch_size`` clips per forward pass, and such a
    network failed with its own message, which names no option. On a failure, its first and last
    clips are run one by one: when both work, the batch is the cause and the error names the option.
    """
    if x.shape[0] < 2 or not first_runs or not _runs_alone(model, x[-1:]):  # one clip fails too
        return None
    return (f"{model.name} failed on a batch of {x.shape[0]} clips: {_one_line(err)}. It runs on one clip at a time: "
            "give the method or metric batch_size=1 (integrated_gradients: internal_batch_size=1)")


#: the frame size most video networks are built and trained for (Kinetics' 224 × 224)
COMMON_SIZE = 224


def size_hint(model: VideoModel, x: torch.Tensor, err: Exception, first_runs: bool) -> str | None:
    """Why a wrapped network failed, when the cause is frames smaller than it needs (kernels or
    poolings larger than its late feature maps, position embeddings of a larger grid); else ``None``.

    ``vx.wrap(..., input_size=64)`` on a network built for 224 × 224 failed with the network's
    own message ("input image … smaller than kernel size"), which names no option. On a failure
    with frames smaller than 224 × 224, one sample resized to that size is run: when that works,
    the size is the cause and the error names the option.
    """
    h, w = x.shape[-2:]
    if min(h, w) >= COMMON_SIZE or first_runs:   # one clip runs: not the size
        return None
    one = x[:1].detach()
    frames = one.flatten(0, -4) if one.dim() > 4 else one           # (…, C, H, W) for the resize
    bigger = torch.nn.functional.interpolate(frames.float(), size=(COMMON_SIZE, COMMON_SIZE), mode="bilinear",
                                             align_corners=False).to(one.dtype)
    if not _runs_alone(model, bigger.reshape(*one.shape[:-2], COMMON_SIZE, COMMON_SIZE)):
        return None
    return (f"{model.name} failed on {h}x{w} frames: {_one_line(err)}. It runs on {COMMON_SIZE}x{COMMON_SIZE}: "
            f"wrap it with vx.wrap(..., input_size={COMMON_SIZE}) (or the size it was trained at)")


def _runs_alone(model: VideoModel, probe: torch.Tensor) -> bool:
    """Whether the network gives one row of class scores for ``probe``, one clip (with gradients
    on, as the method that failed ran it); any error is a no."""
    probe = probe.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model.select_logits(model.net(probe))
    except Exception:
        return False
    return isinstance(out, torch.Tensor) and tuple(out.shape) == (1, model.num_classes)


def _one_line(err: Exception) -> str:
    """The network's own message on one line (TorchScript's and autograd's span several, and
    the hint after it was lost below them), or its type for a bare ``assert``."""
    return " ".join(str(err).split()) or type(err).__name__
