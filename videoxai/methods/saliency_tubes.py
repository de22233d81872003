"""Saliency Tubes (Stergiou et al., 2019): class activation mapping for 3D CNNs.

For a network that ends in global average pooling and a linear classifier on the CAM layer, the
target's logit is exactly ``Σ_c w_{k,c} · mean_{t,h,w} A_c + b_k``, so ``Σ_c w_{k,c} · A_c(t, h, w)``
says how much each feature voxel adds to it (Zhou et al.'s CAM, carried to ``(T', H', W')``). It
needs one forward pass and no gradients. As in the reference code the signed map is shifted by its
minimum (then normalised by ``vx.explain``), not clipped at zero.

The classifier is an ``nn.Linear`` of ``model.net`` with one output per class, or a ``1×1×1``
``nn.Conv3d`` with one output channel per class (torchvision's S3D: the same linear map on every
voxel, averaged afterwards, which is the linear map of the average): the last such layer whose map
of the pooled layer gives the logits (a network may have an auxiliary head), or the one named with
``classifier=``. The method checks, on the very forward pass it explains, that the logits
equal that classifier applied to the pooled layer, and otherwise raises
:class:`~videoxai.errors.UnsupportedModelError` (use ``gradcam``, which needs no such structure).
S3D passes where its ``2×7×7`` average pool covers the layer's whole grid (clips of 14 to 16
frames at 224 pixels); on longer clips the pool's windows weigh the first and last feature frames
less than the others, so the logits are not the classifier on the global average. torchvision's
Swin3D normalises its last stage (``norm``, a LayerNorm) before the pooling: it is refused
without a forward pass unless ``layer="norm"`` is given, which the pooling and the head read.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..models.cam_layer import NoCamLayerError, run_eagerly
from ..options import OptionError
from .base import _hf_hint, manages_model_lock, register
from .cam import CAMMethod, LayerOption, LayerState, Placement, weighted_sum


#: network → {its wrapping (:func:`_wrapping`) → why its default CAM layer and head do not fit
#: (None: they do)}, probed once per model: by network, as the working views of a model that
#: ``vx.explain`` makes (one per explanation) share it, and each one ran the probe's forward again
_PROBED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _wrapping(model) -> tuple:
    """What the probe's answer depends on besides the network object: the default layer and its
    reshape, the clip's size and layout, which output is the logits (callables by function: a view
    holds the model's bound method), the number of classes (which layer is the head), and the
    network's modules as they are now (names, types and settings: a head replaced in place, such as
    a non-linear head swapped for an ``nn.Linear``, kept the old network's refusal for good)."""
    def key(v):
        v = getattr(v, "__func__", v)
        try:
            hash(v)
        except TypeError:   # a callable that defines __eq__ without __hash__ (a dataclass)
            return id(v)
        return v
    modules = tuple((name, type(m), m.extra_repr()) for name, m in model.net.named_modules())
    return (key(model.cam_layer), key(getattr(model, "cam_reshape", None)), model.num_frames,
            tuple(model.input_size), model.layout, key(getattr(model, "output", None)), model.dtype,
            model.num_classes, modules)


def is_classifier(module: nn.Module, num_classes: int) -> bool:
    """An ``nn.Linear`` with ``num_classes`` outputs, or a ``1×1×1`` ``nn.Conv3d`` with as many output
    channels (S3D's head): one linear map of the channels, the same on every voxel."""
    if isinstance(module, nn.Linear):
        return module.out_features == num_classes
    return (isinstance(module, nn.Conv3d) and module.out_channels == num_classes and module.groups == 1
            and module.kernel_size == (1, 1, 1) and module.stride == (1, 1, 1)
            and module.padding in ((0, 0, 0), "valid", "same"))


def class_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A classifier's ``(num_classes, C)`` weights and ``(num_classes,)`` bias (see :func:`is_classifier`)."""
    return module.weight.flatten(1), module.bias


def _triple(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * 3


def _partial_pool(pool: nn.AvgPool3d, grid: tuple[int, ...]) -> bool:
    """Whether ``pool``'s windows on a ``(T', H', W')`` grid average it unevenly: they neither cover
    it whole nor tile it (S3D's 2×7×7 windows, stride 1, on its 8×7×7 grid of 64 frames count the
    first and last feature frames once, the others twice)."""
    kernel, stride, pad = _triple(pool.kernel_size), _triple(pool.stride or pool.kernel_size), _triple(pool.padding)
    return any(k < g and (s != k or g % k or p) for k, s, p, g in zip(kernel, stride, pad, grid))


def _structural_refusal(model, layer: str) -> str | None:
    """Why the head cannot be a linear classifier on the average of ``layer``, where the network's
    structure says so without a forward pass (torchvision's Swin3D: a 14 s probe on a CPU)."""
    try:
        from torchvision.models.video.swin_transformer import SwinTransformer3d
    except ImportError:   # torchvision is optional for wrapped networks
        return None
    net = model.net
    if (isinstance(net, SwinTransformer3d) and not isinstance(net.norm, nn.Identity)
            and layer.split(".")[0] in ("patch_embed", "pos_drop", "features")):
        # forward: patch_embed → pos_drop → features → norm (a LayerNorm over the channels, not
        # linear) → avgpool → head
        return (f"method 'saliency_tubes' needs a linear classifier on the global average of its CAM layer; "
                f"{model.name} (Swin3D) normalises layer {layer!r} with its final LayerNorm 'norm' before the "
                "pooling and the head: pass layer='norm' (the features the head averages), or use gradcam")
    return None


def _head_gap(acts: torch.Tensor, logits: torch.Tensor, dtype: torch.dtype,
              heads: list[nn.Module]) -> tuple[nn.Module | None, float | None]:
    """The first of ``heads`` whose weights, applied to the global average of ``acts``
    ``(B, C, T', H', W')``, give ``logits`` ``(B, num_classes)`` (:func:`_head_agrees`), and
    ``None``; or ``None`` and how far the first head that takes ``C`` features is from them.

    Every classifier is tried, not only the last: a network with an auxiliary head of as many
    classes defined after its main one (deep supervision, a second task) was refused, the aux
    head's weights read against the main head's logits."""
    pooled, gap = acts.float().mean((2, 3, 4)), None
    for head in heads:
        w, b = class_weights(head)
        if w.shape[1] != acts.shape[1]:
            continue
        predicted = nn.functional.linear(pooled, w.float(), None if b is None else b.float())
        if _head_agrees(predicted, logits, dtype):
            return head, None
        if gap is None:
            gap = (predicted - logits).abs().max().item()
    return None, gap


def _head_agrees(predicted: torch.Tensor, logits: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether ``predicted`` (the classifier on the pooled layer, ``(B, C)`` computed in float32)
    equals the network's ``logits`` ``(B, C)`` up to the rounding of a network in ``dtype``: 1e-3
    of the largest logit, or four units in the last place of its precision where that is coarser
    (a bfloat16 network rounds to 2⁻⁸: its GAP-linear head missed 1e-3 and was refused)."""
    rel = max(1e-3, 4 * torch.finfo(dtype).eps)
    scale = float(logits.abs().amax().clamp_min(1.0))
    return torch.allclose(predicted, logits, rtol=rel, atol=rel * scale)


class _NetworkFailed(Exception):
    """The probe's forward pass failed: the network does not run as wrapped."""


def _probe_head(model) -> str | None:
    """Whether the model's logits are a linear head applied to the global average of its default
    CAM layer (the model's ``cam_layer``, else the one Grad-CAM finds), checked on one seeded
    random clip (the hook is removed whatever happens)."""
    try:
        layer, module = model.resolve_cam_layer(None)
    except NoCamLayerError as e:
        return f"method 'saliency_tubes' needs a CAM layer: {e}"
    except InputError as e:   # the search's forward pass failed (or a TorchScript network)
        if isinstance(model.net, torch.jit.ScriptModule):
            return f"method 'saliency_tubes' needs a CAM layer: {e}"
        raise _NetworkFailed from e
    refusal = model.located_layer_refusal() if model.cam_layer is None else None
    if refusal is not None:   # its head "takes 32 features", which a channels-last layer "does not give"
        return f"method 'saliency_tubes' needs a CAM layer: {refusal}"
    heads = [m for m in model.net.modules() if is_classifier(m, model.num_classes)]
    if not heads:
        return (f"method 'saliency_tubes' needs a classifier with {model.num_classes} outputs (an nn.Linear "
                f"or a 1×1×1 nn.Conv3d); {model.name} ({model.family}) has none")
    reason = _structural_refusal(model, layer)
    if reason is not None:
        return reason
    captured, pools = {}, []

    def keep(_module, _inputs, out) -> None:
        # the values as the layer returns them, which the method reads (LayerCapture): an in-place
        # operation after the layer (a ResNet block's `out += identity`, its in-place ReLU) changes
        # the tensor itself, and the probe passed a layer that the method then refused. Returns
        # None: a forward hook's return value replaces the layer's output
        captured.setdefault("a", out.detach().clone() if isinstance(out, torch.Tensor) else out)

    def pooled(name: str):
        def hook(pool, inputs, _out) -> None:
            # an average pool run after the layer: the random clip's features are alike in every
            # frame, so an uneven average (S3D's) passed the numeric check below
            if "a" in captured and inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].ndim == 5:
                pools.append((name, pool, tuple(inputs[0].shape[2:])))
        return hook

    h, w = model.input_size
    x = torch.rand(1, model.num_frames, 3, h, w, generator=torch.Generator().manual_seed(0)).to(model.device)
    # the hook must see this forward only, and a network left in training mode must not move its
    # batch-norm statistics or answer from a dropout draw: the lock and eval mode
    with model.inference():
        handles = [module.register_forward_hook(keep)] + [
            m.register_forward_hook(pooled(n)) for n, m in model.net.named_modules() if isinstance(m, nn.AvgPool3d)]
        try:
            with torch.no_grad(), run_eagerly():   # a compiled graph may run without the hook
                logits = model(x).float()
        except InputError as e:
            raise _NetworkFailed from e
        finally:
            for handle in handles:
                handle.remove()
    if not torch.isfinite(logits).all():
        # the comparison below has no tolerance for them: torch.allclose raised "atol must be
        # greater than or equal to zero, but got nan" from supports()
        return (f"method 'saliency_tubes' checks that {model.name}'s logits are a linear classifier on the "
                f"global average of layer {layer!r}, but on a random clip they are not finite (NaN or infinite)")
    acts = model.cam_reshape(captured["a"]) if getattr(model, "cam_reshape", None) else captured["a"]
    w = class_weights(heads[-1])[0]
    if not isinstance(acts, torch.Tensor) or acts.ndim != 5 or all(
            class_weights(h)[0].shape[1] != acts.shape[1] for h in heads):
        return (f"method 'saliency_tubes': {model.name}'s head takes {w.shape[1]} features, its CAM "
                f"layer {layer!r} does not give that many channels; use gradcam or pass layer=")
    grid = tuple(acts.shape[2:])
    for name, pool, pooled_grid in pools:
        if pooled_grid == grid and _partial_pool(pool, grid):
            return (f"method 'saliency_tubes' needs a linear classifier on the global average of its CAM layer; "
                    f"{model.name} averages the {'×'.join(map(str, grid))} grid of layer {layer!r} in "
                    f"{'×'.join(map(str, _triple(pool.kernel_size)))} windows ({name!r}), which weigh its cells unevenly: "
                    "explain clips whose feature grid one window covers (S3D: 14 to 16 frames), or use gradcam")
    gap = _head_gap(acts, logits, model.dtype, heads[::-1])[1]
    if gap is not None:
        return (f"method 'saliency_tubes' needs a network that ends in global average pooling and a "
                f"linear classifier after its CAM layer; {model.name}'s logits differ from that by up to "
                f"{gap:.3g}. Use gradcam")
    return None


@register
class SaliencyTubes(CAMMethod):
    """Saliency Tubes / 3-D CAM; see the module docstring. ``layer`` and the shapes:
    :class:`~videoxai.methods.cam.CAMMethod`.

    Args:
        classifier: dotted name of the classifier in ``model.net``, an ``nn.Linear`` or a ``1×1×1``
            ``nn.Conv3d`` with one output per class (default: the last such layer that gives the logits).
        placement: where a CNN layer's grid goes on the input: ``"centres"``, each cell on the frame
            and pixel its windows are centred on, or ``"stretch"``, stretched over the input as an
            image is resized (:class:`~videoxai.methods.cam.CAMMethod`).
    """

    name = "saliency_tubes"
    paper = 'Stergiou et al., Saliency Tubes: Visual Explanations for Spatio-Temporal Convolutions, ICIP 2019'
    uses_gradients = False
    applies_to = ("3D CNNs whose logits are a linear classifier on the global average of the CAM "
                  "layer, e.g. torchvision's R3D, R(2+1)D and MC3, and S3D on 14 to 16 frames (checked "
                  "on the model; not the bundled models: use gradcam there)")

    @classmethod
    @manages_model_lock  # _probe_head takes it for its forward pass; its answer is remembered
    def unsupported(cls, model) -> str | None:
        reason = cls._unsupported_kind(model)
        if reason is None:
            answers = _PROBED.setdefault(model.net, {})
            key = _wrapping(model)
            if key not in answers:
                try:
                    answers[key] = _probe_head(model)
                except _NetworkFailed:
                    # the network does not run as wrapped (a wrong layout): it keeps its own error,
                    # raised when the method explains, as the other CAM methods leave it; nothing
                    # is kept for another wrapping of the same network
                    return None
            reason = answers[key]
        return reason

    @classmethod
    def _unsupported_kind(cls, model) -> str | None:
        # the class weights apply to the CAM layer's channels only when global pooling of that
        # layer feeds the linear head: a CNN's, not a transformer's (its head reads a token)
        if model.token_grid is not None:
            return (f"method 'saliency_tubes' explains CNNs whose last feature map feeds a linear head "
                    f"through global pooling; {model.name} ({model.family}) is a transformer")
        if _hf_hint(model):  # given to vx.wrap: the search's advice for an unknown network misled
            from ..models.hf import HF_FAMILIES

            family = HF_FAMILIES[model.net.config.model_type]
            return (f"method 'saliency_tubes' explains CNNs whose last feature map feeds a linear head "
                    f"through global pooling; {model.name} ({model.family}) wraps a Hugging Face "
                    f"{family.family_name or family.model_type} transformer")
        # the kind only: the default layer is checked by _probe_head, a named one by __init__
        return super(CAMMethod, cls).unsupported(model)

    def unsupported_with_options(self, model) -> str | None:
        # with a layer or classifier named, the probe of the default ones says nothing about them:
        # weights() checks the named pair on the very forward pass it explains
        if self._named:
            return self._unsupported_kind(model)
        return self.unsupported(model)

    def __init__(self, model, layer: LayerOption = None, classifier: str | None = None,
                 placement: Placement = "centres") -> None:
        self._named = layer is not None or classifier is not None  # read by unsupported_with_options
        super().__init__(model, layer, placement)
        if classifier is not None:
            try:
                self.classifier = model.submodule(classifier)
            except InputError as e:
                raise OptionError(f"{self._owner()}: option classifier: {e}") from None
            if not is_classifier(self.classifier, model.num_classes):
                raise UnsupportedModelError(
                    f"saliency_tubes: {classifier!r} is a {type(self.classifier).__name__}, not an nn.Linear or a "
                    f"1×1×1 nn.Conv3d with {model.num_classes} outputs")
            names = [classifier]
        else:
            # the last classifier first; weights() reads the one whose map of the layer's average
            # is the logits (a network may have an auxiliary head of as many classes)
            names = [n for n, m in model.net.named_modules() if is_classifier(m, model.num_classes)][::-1]
            if not names:
                raise UnsupportedModelError(f"saliency_tubes: {model.name} has no nn.Linear or 1×1×1 nn.Conv3d "
                                            f"with {model.num_classes} outputs; name it with classifier=")
            self.classifier = model.submodule(names[0])
        self._classifier_names = names

    def weights(self, state: LayerState) -> torch.Tensor:
        acts = state.activations
        heads = [self.model.submodule(n) for n in self._classifier_names]   # the explained model's
        w = class_weights(heads[0])[0]
        if all(class_weights(h)[0].shape[1] != acts.shape[1] for h in heads):
            raise UnsupportedModelError(
                f"saliency_tubes: the classifier takes {w.shape[1]} features but layer {self.layer!r} "
                f"has {acts.shape[1]} channels; use gradcam or pass layer=/classifier=")
        head, gap = _head_gap(acts, state.logits.float(), self.model.dtype, heads)
        if head is None:
            raise UnsupportedModelError(
                f"saliency_tubes needs a network that ends in global average pooling and a linear "
                f"classifier after layer {self.layer!r}; {self.model.name}'s logits differ from that "
                f"by up to {gap:.3g}. Use gradcam")
        return class_weights(head)[0][state.target]      # (B, C)

    def combine(self, state: LayerState, weights: torch.Tensor) -> torch.Tensor:
        cam = weighted_sum(state.activations, weights)
        return cam - cam.flatten(1).amin(1).view(-1, 1, 1, 1)
