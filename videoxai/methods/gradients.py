"""What every input-gradient method shares: one gradient call, and the pixel → map reduction.

Input-gradient methods (saliency, gradient × input, Integrated Gradients, SmoothGrad) attribute
to every pixel of every original frame: the model adapter resizes, crops and normalises *inside*
its forward, so the gradient flows back through that preprocessing onto the clip as the user gave
it (``space="frame"``; pixels outside the model's crop box get exactly zero).

A subclass implements :meth:`InputGradientMethod.attribute_pixels`, which returns the signed
per-pixel attribution ``(B, T, 3, H, W)`` — the tensor Captum returns for the same method, and
what the peer-agreement tests compare. :meth:`InputGradientMethod.attribute` turns it into the
non-negative map ``(B, T, H, W)`` by a documented reduction over the colour channels
(:data:`CHANNEL_REDUCTIONS`) and into per-frame scores (the map's mass per frame).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..models.base import VideoModel
from .base import Attribution, Method, Target

ChannelReduce = Literal["abs", "l2", "max", "positive"]

#: ``(B, T, 3, H, W)`` signed attribution → ``(B, T, H, W)`` non-negative map.
CHANNEL_REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # Σ_c |a_c|: all evidence, either sign (the usual choice for IG and gradient × input)
    "abs": lambda a: a.abs().sum(2),
    # ‖a‖₂ over channels
    "l2": lambda a: a.square().sum(2).sqrt(),
    # max_c |a_c|: Simonyan et al. (2014)'s saliency map
    "max": lambda a: a.abs().amax(2),
    # max(0, Σ_c a_c): only evidence *for* the target (IG/G×I sum over channels keeps completeness)
    "positive": lambda a: a.sum(2).clamp_min(0),
}


def reduce_channels(values: torch.Tensor, how: str) -> torch.Tensor:
    """Reduce a signed ``(B, T, 3, H, W)`` attribution to a non-negative ``(B, T, H, W)`` map."""
    try:
        return CHANNEL_REDUCTIONS[how](values)
    except KeyError:
        raise InputError(f"channel_reduce must be one of {', '.join(CHANNEL_REDUCTIONS)}, got {how!r}") from None


@contextlib.contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` of ``module``'s parameters for the block, then restore it.

    Attribution needs gradients with respect to inputs or activations, never parameters. With
    frozen parameters autograd does not keep the inputs of linear layers that it would only need
    for weight gradients (about a sixth of a video transformer's saved activations) and stops
    building the graph below the first tensor that requires grad (CAM methods start it at the
    hooked layer). The flags are restored on exit, also when the block raises.
    """
    # a lazy layer's parameters have no data until the first forward (and refuse requires_grad_)
    trainable = [p for p in module.parameters()
                 if p.requires_grad and not isinstance(p, nn.parameter.UninitializedParameter)]
    try:
        for p in trainable:
            p.requires_grad_(False)
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def check_pixels(model: VideoModel, inputs: torch.Tensor) -> torch.Tensor:
    """Validate a pixel batch for ``model`` and move it to the model's device (detached), in
    float32 at least: half-precision pixels (a caller's own batch) made Integrated Gradients'
    path and SmoothGrad's noise at 8 bits, 7 to 11 % of the map apart from the same values in float32."""
    model.check_input(inputs)
    x = inputs.detach().to(model.device, torch.promote_types(inputs.dtype, torch.float32))
    if not torch.isfinite(x).all():
        raise InputError("pixels contain NaN or infinite values")
    return x


def leaf_gradients(score: torch.Tensor, leaves: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
    """``∂ score / ∂ leaf`` for each leaf tensor of ``leaves`` (``None`` where the score does not
    depend on it), by ``score.backward()`` rather than ``torch.autograd.grad``.

    A network that checkpoints part of its forward with ``torch.utils.checkpoint.checkpoint(...,
    use_reentrant=True)`` (long-video models, custom blocks that call it unconditionally) refuses
    ``torch.autograd.grad`` and ``backward(inputs=...)``: its segments are differentiated by a
    nested backward that only fills the ``.grad`` of leaf tensors. With the model's parameters
    frozen (:func:`frozen_parameters`) the leaves asked for are the ones whose ``.grad`` is filled;
    whatever ``.grad`` they had before is put back.
    """
    if any(not t.is_leaf for t in leaves):
        raise ValueError("leaf_gradients differentiates with respect to leaf tensors only")
    if not score.requires_grad:
        return [None] * len(leaves)
    before = [t.grad for t in leaves]
    try:
        for t in leaves:
            t.grad = None
        score.backward()
        return [t.grad for t in leaves]
    finally:
        for t, g in zip(leaves, before):
            t.grad = g


#: where torch's quantized layers live (``torch.ao.nn.quantized.dynamic.Linear``, …)
QUANTIZED_MODULES = ("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def quantized_layers(net: nn.Module) -> list[str]:
    """Names of ``net``'s quantized layers (``torch.ao.quantization``: ``quantize_dynamic``,
    ``convert``), which autograd does not differentiate: no gradient reaches the layers below them."""
    names: list[str] = []
    for name, m in net.named_modules():
        inside = any(name.startswith(f"{n}.") for n in names)   # (a layer's packed weights)
        if not inside and type(m).__module__.startswith(QUANTIZED_MODULES):
            names.append(name)
    return names


def quantized_refusal(method: str, model: VideoModel) -> str | None:
    """Why ``method``, which needs the target's gradient, cannot explain ``model``: its network
    has quantized layers (:func:`quantized_layers`); ``None`` when it has none. The gradient
    through them is dropped, so a network with a float path beside them (a skip connection, a
    second head) gave the gradient of that path alone, and one without was told that it runs
    under ``no_grad`` or detaches a tensor."""
    names = quantized_layers(model.net)
    if not names:
        return None
    kinds = [type(model.net.get_submodule(n)) for n in names[:3]]
    shown = ", ".join(f"{n!r} ({k.__module__.split('.modules')[0]}.{k.__name__})" for n, k in zip(names, kinds))
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return (f"method {method!r} needs the gradient of {model.name}'s logits, which its quantized layers {shown}{more} "
            "do not pass; explain the float network it was quantized from, or use a perturbation method "
            "(rise, occlusion, lime), which needs no gradient")


def pixel_gradient(model: VideoModel, score: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``∂ score / ∂ x`` for leaf pixels ``x``, or :class:`UnsupportedModelError` when the score
    does not depend on the pixels in autograd's graph (autograd's own error, "element 0 of tensors
    does not require grad", says neither which model nor why)."""
    (grads,) = leaf_gradients(score, [x])
    if grads is None:
        raise UnsupportedModelError(
            f"the logits of {model.name} do not depend on the pixels in autograd's graph: the network "
            "runs (part of) its forward under torch.no_grad() or torch.inference_mode(), detaches a "
            "tensor, or computes its output without its input (a constant); gradient methods need it "
            "differentiable (perturbation methods such as occlusion do not)")
    return grads


def target_gradients(model: VideoModel, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of each clip's target logit with respect to its pixels.

    Args:
        model: the adapter (its parameters should be frozen by the caller, see
            :func:`frozen_parameters`).
        x: pixels ``(N, T, 3, H, W)``.
        target: ``(N,)`` class per clip.

    Returns:
        ``(grads (N, T, 3, H, W), logits (N, C))``; clips do not interact, so the gradient of the
        summed target logits is each clip's own gradient.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        score = logits.gather(1, target[:, None].to(logits.device)).sum()
        grads = pixel_gradient(model, score, x)
    return grads, logits.detach()


@dataclass
class PixelAttribution:
    """A signed attribution on the clip's pixels.

    Attributes:
        values: ``(B, T, 3, H, W)``, same shape as the input (Captum's convention).
        target: ``(B,)`` the explained classes.
        logits: ``(B, C)`` clean-clip logits if they were computed.
        extras: method-specific results (e.g. IG's convergence delta).
    """

    values: torch.Tensor
    target: torch.Tensor
    logits: torch.Tensor | None = None
    extras: dict | None = None


class InputGradientMethod(Method):
    """Base of the methods that attribute to input pixels through gradients.

    Subclasses set :attr:`name`, take a ``channel_reduce`` option (their default in the signature)
    and implement :meth:`attribute_pixels` (signed ``(B, T, 3, H, W)``, the shape of the pixels);
    :meth:`attribute` returns ``maps (B, T, H, W)`` on the pixels given (``space="frame"``) and
    ``temporal (B, T)``, each frame's mass.

    Args:
        channel_reduce: how the map reduces the signed attribution's colour channels
            (:data:`CHANNEL_REDUCTIONS`): ``"abs"`` Σ_c |a_c|, ``"l2"`` ‖a‖₂, ``"max"`` max_c |a_c|
            (Simonyan et al.'s saliency) or ``"positive"`` max(0, Σ_c a_c) (evidence for the target only).
    """

    channel_reduce: str
    uses_gradients = True

    def __init__(self, model: VideoModel, channel_reduce: ChannelReduce) -> None:
        super().__init__(model)
        self.channel_reduce = channel_reduce

    def attribute_pixels(self, inputs: torch.Tensor, target: Target = None) -> PixelAttribution:
        """The signed ``(B, T, 3, H, W)`` attribution that the map is derived from."""
        raise NotImplementedError

    def target_and_logits(self, x: torch.Tensor, target: Target,
                          need_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The resolved ``(B,)`` target and the clean logits, running the clean forward pass only
        when the target is ``None`` (top class) or ``need_logits``. Multi-pass methods with a given
        target then do exactly the peer's work; ``vx.explain`` runs the pass for the probabilities."""
        if target is None or need_logits:
            logits = self.clean_logits(x)
            return self.resolve_target(target, logits), logits
        return self.resolve_target(target, x.new_empty(x.shape[0], self.model.num_classes)), None

    def clean_gradient(self, inputs: torch.Tensor, target: Target) -> tuple[torch.Tensor, ...]:
        """One forward and one backward pass on the clips themselves.

        Returns ``(pixels, grads, target, logits)``: the validated pixels ``(B, T, 3, H, W)`` on
        the model's device, the gradient of each clip's target logit with respect to them, the
        resolved ``(B,)`` target (``None`` → the top class of these very logits) and the logits.
        """
        x = check_pixels(self.model, inputs)
        with frozen_parameters(self.model), torch.enable_grad():
            x.requires_grad_(True)
            logits = self.model(x)
            target = self.resolve_target(target, logits)
            grads = pixel_gradient(self.model, logits.gather(1, target[:, None]).sum(), x)
        return x.detach(), grads, target, logits.detach()

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        pix = self.attribute_pixels(inputs, target)
        maps = reduce_channels(pix.values, self.channel_reduce)
        return Attribution(maps=maps, space="frame", target=pix.target, logits=pix.logits,
                           temporal=maps.flatten(2).sum(-1), time_align="repeat", extras=pix.extras)
