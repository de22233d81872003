"""Saliency Tubes (Stergiou et al., 2019): class activation mapping for 3D CNNs.

For a network that ends in global average pooling and a linear classifier on the CAM layer, the
target's logit is exactly ``Σ_c w_{k,c} · mean_{t,h,w} A_c + b_k``, so ``Σ_c w_{k,c} · A_c(t, h, w)``
says how much each feature voxel adds to it (Zhou et al.'s CAM, carried to ``(T', H', W')``). It
needs one forward pass and no gradients. As in the reference code the signed map is shifted by its
minimum (then normalised by ``vx.explain``), not clipped at zero.

The classifier is found as the last ``nn.Linear`` of ``model.net`` with one output per class, or
named with ``classifier=``. The method checks, on the very forward pass it explains, that the
logits equal that classifier applied to the pooled layer, and otherwise raises
:class:`~videoxai.errors.UnsupportedModelError` (use ``gradcam``, which needs no such structure).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..options import OptionError
from .base import register
from .cam import CAMMethod, LayerOption, LayerState, weighted_sum


#: model → why its default CAM layer and head do not fit (None: they do), probed once per model
_PROBED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _probe_head(model) -> str | None:
    """Whether the model's logits are a linear head applied to the global average of its default
    CAM layer (the model's ``cam_layer``, else the one Grad-CAM finds), checked on one seeded
    random clip (the hook is removed whatever happens)."""
    try:
        layer, module = model.resolve_cam_layer(None)
    except InputError as e:
        return f"method 'saliency_tubes' needs a CAM layer: {e}"
    heads = [m for m in model.net.modules() if isinstance(m, nn.Linear) and m.out_features == model.num_classes]
    if not heads:
        return (f"method 'saliency_tubes' needs an nn.Linear head with {model.num_classes} outputs; "
                f"{model.name} ({model.family}) has none")
    head, captured = heads[-1], {}

    def keep(_module, _inputs, out) -> None:
        # the values as the layer returns them, which the method reads (LayerCapture): an in-place
        # operation after the layer (a ResNet block's `out += identity`, its in-place ReLU) changes
        # the tensor itself, and the probe passed a layer that the method then refused. Returns
        # None: a forward hook's return value replaces the layer's output
        captured.setdefault("a", out.detach().clone() if isinstance(out, torch.Tensor) else out)

    h, w = model.input_size
    x = torch.rand(1, model.num_frames, 3, h, w, generator=torch.Generator().manual_seed(0)).to(model.device)
    with model.exclusive():  # the hook must see this forward only
        handle = module.register_forward_hook(keep)
        try:
            with torch.no_grad():
                logits = model(x).float()
        finally:
            handle.remove()
    acts = model.cam_reshape(captured["a"]) if getattr(model, "cam_reshape", None) else captured["a"]
    if not isinstance(acts, torch.Tensor) or acts.ndim != 5 or acts.shape[1] != head.in_features:
        return (f"method 'saliency_tubes': {model.name}'s head takes {head.in_features} features, its CAM "
                f"layer {layer!r} does not give that many channels; use gradcam or pass layer=")
    predicted = nn.functional.linear(acts.float().mean((2, 3, 4)), head.weight.float(),
                                     None if head.bias is None else head.bias.float())
    scale = logits.abs().amax().clamp_min(1.0)
    if not torch.allclose(predicted, logits, rtol=1e-3, atol=1e-3 * float(scale)):
        return (f"method 'saliency_tubes' needs a network that ends in global average pooling and a "
                f"linear classifier after its CAM layer; {model.name}'s logits differ from that by up to "
                f"{(predicted - logits).abs().max().item():.3g}. Use gradcam")
    return None


@register
class SaliencyTubes(CAMMethod):
    """Saliency Tubes / 3-D CAM; see the module docstring. ``layer`` and the shapes:
    :class:`~videoxai.methods.cam.CAMMethod`.

    Args:
        classifier: dotted name of the final ``nn.Linear`` in ``model.net``, one output per class
            (default: the last such layer).
    """

    name = "saliency_tubes"
    paper = 'Stergiou et al., Saliency Tubes: Visual Explanations for Spatio-Temporal Convolutions, ICIP 2019'
    uses_gradients = False
    applies_to = ("3D CNNs whose logits are a linear classifier on the global average of the CAM "
                  "layer, e.g. torchvision's R3D, R(2+1)D and MC3 (checked on the model; not the "
                  "bundled models: use gradcam there)")

    @classmethod
    def unsupported(cls, model) -> str | None:
        reason = cls._unsupported_kind(model)
        if reason is None:
            if model not in _PROBED:
                _PROBED[model] = _probe_head(model)
            reason = _PROBED[model]
        return reason

    @classmethod
    def _unsupported_kind(cls, model) -> str | None:
        # the class weights apply to the CAM layer's channels only when global pooling of that
        # layer feeds the linear head: a CNN's, not a transformer's (its head reads a token)
        if model.token_grid is not None:
            return (f"method 'saliency_tubes' explains CNNs whose last feature map feeds a linear head "
                    f"through global pooling; {model.name} ({model.family}) is a transformer")
        # the kind only: the default layer is checked by _probe_head, a named one by __init__
        return super(CAMMethod, cls).unsupported(model)

    def unsupported_with_options(self, model) -> str | None:
        # with a layer or classifier named, the probe of the default ones says nothing about them:
        # weights() checks the named pair on the very forward pass it explains
        if self._named:
            return self._unsupported_kind(model)
        return self.unsupported(model)

    def __init__(self, model, layer: LayerOption = None, classifier: str | None = None) -> None:
        self._named = layer is not None or classifier is not None  # read by unsupported_with_options
        super().__init__(model, layer)
        if classifier is not None:
            try:
                self.classifier = model.submodule(classifier)
            except InputError as e:
                raise OptionError(f"{self._owner()}: option classifier: {e}") from None
            if not isinstance(self.classifier, nn.Linear):
                raise UnsupportedModelError(f"saliency_tubes: {classifier!r} is a "
                                            f"{type(self.classifier).__name__}, not nn.Linear")
        else:
            heads = [m for m in model.net.modules()
                     if isinstance(m, nn.Linear) and m.out_features == model.num_classes]
            if not heads:
                raise UnsupportedModelError(f"saliency_tubes: {model.name} has no nn.Linear with "
                                            f"{model.num_classes} outputs; name it with classifier=")
            self.classifier = heads[-1]
        self._classifier_name = next(n for n, m in model.net.named_modules() if m is self.classifier)

    def weights(self, state: LayerState) -> torch.Tensor:
        acts = state.activations
        classifier = self.on_model(self.classifier, self._classifier_name)   # the explained model's head
        w, b = classifier.weight, classifier.bias
        if w.shape[1] != acts.shape[1]:
            raise UnsupportedModelError(
                f"saliency_tubes: the classifier takes {w.shape[1]} features but layer {self.layer!r} "
                f"has {acts.shape[1]} channels; use gradcam or pass layer=/classifier=")
        pooled = acts.float().mean((2, 3, 4))
        predicted = nn.functional.linear(pooled, w.float(), None if b is None else b.float())
        scale = state.logits.abs().amax().clamp_min(1.0)
        if not torch.allclose(predicted, state.logits.float(), rtol=1e-3, atol=1e-3 * float(scale)):
            gap = (predicted - state.logits.float()).abs().max().item()
            raise UnsupportedModelError(
                f"saliency_tubes needs a network that ends in global average pooling and a linear "
                f"classifier after layer {self.layer!r}; {self.model.name}'s logits differ from that "
                f"by up to {gap:.3g}. Use gradcam")
        return w[state.target]                           # (B, C)

    def combine(self, state: LayerState, weights: torch.Tensor) -> torch.Tensor:
        cam = weighted_sum(state.activations, weights)
        return cam - cam.flatten(1).amin(1).view(-1, 1, 1, 1)
