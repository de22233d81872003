"""The base of the class-activation-map family (Grad-CAM, Grad-CAM++, Saliency Tubes).

A CAM method reads one layer of the network — the dotted name or module object given as
``layer=``, else the model's ``cam_layer``, else the last layer whose output keeps a
``(T', H', W')`` grid before the pooling (:meth:`~videoxai.models.base.VideoModel.locate_cam_layer`,
one forward pass with hooks), so any ``vx.wrap``-ped 3D CNN works without naming one. The layer
actually used is recorded by name in the method's options (``Explanation.options["layer"]``) — and weighs its channels: ``map = relu(Σ_c w_c · A_c)`` on the layer's
``(T', H', W')`` grid. Subclasses override only :meth:`CAMMethod.weights` (pytorch-grad-cam's
design); everything else is here:

* **Capture.** :class:`LayerCapture` hooks the layer for one forward pass. For gradient-based
  variants it replaces the layer's output by a fresh leaf tensor with the same values, so the
  backward pass starts at the logits and *stops at that layer* (the rest of the network is never
  differentiated), and with the model's parameters frozen nothing below the layer keeps
  activations for a backward. The hook is removed on exit, also when the forward raises.
* **Layout.** The model's ``cam_reshape`` turns the layer's output (a tensor or a tuple such as a
  transformer block's ``(hidden_states, ...)``) into ``(B, C, T', H', W')``: Hugging Face adapters
  read their :class:`~videoxai.models.base.TokenGrid` (CLS token, tubelets, TimeSformer's
  ``(row, col, frame)`` token order), the torchvision adapters know MViT's tokens and Swin3D's
  channels-last stages. The same function maps the gradient, as in pytorch-grad-cam. A volume
  whose grid is larger than the network's input (a channels-last output read as channels-first)
  is refused, naming the reshape to give.
* **Time.** A feature map usually has fewer frames than the clip. Token grids (``T'`` equal to the
  model's token frames) cover ``tubelet`` frames each (``time_align="repeat"``). A CNN's feature
  frames, rows and columns are placed where the layer's windows are centred on the input and
  interpolated linearly between them (:mod:`videoxai.core.footprint`: found by watching the
  explanation's own first forward pass, no pass of its own): a padded stride-2 stage centres
  cell ``o`` on input index ``2·o``, so the bundled 3D CNN's 8 × 8 grid sits on pixels 0, 8, …,
  56 of its 64. Stretching the grid over the input instead (``align_corners=False``, cell ``o``
  at ``(o + ½)·n/n' − ½``, as an image resize does: pytorch-grad-cam's ``cv2.resize`` of 2D
  maps, and this package before) shifted every map 3.5 pixels down and to the right there — and
  7.5 pixels and 3.5 frames on torchvision's R3D at 112 pixels and 16 frames; on the bundled 3D
  CNN's validation clips Grad-CAM's peak fell on the object in 0.30 of the window frames, 0.61
  placed on the centres (``benchmarks/cam_placement.py``). pytorch-grad-cam's
  ``scipy.ndimage.zoom`` of 3D maps pins the first and last cells to the first and last frames
  and pixels instead (cell ``o`` at ``o·(n − 1)/(n' − 1)``). The stretch is kept where the
  footprint is not known (an operation the tracker does not follow).
  The per-frame scores are the map's mass per input frame after that alignment. Where the layer
  never reads some frames, rows or columns (an unpadded strided layer: kernel 2, stride 2 on 5
  frames never reads frame 4), each feature frame's mass is spread over the frames it reads and
  the map is laid on the rows and columns read, zero on the rest. The maps the method returns
  (``Explanation.raw``) stay on the layer's grid; the footprint goes with them
  (``Attribution.footprint``) to the upsampling.
  Where a transformer's tokens do not tile its input (9 frames in tubelets of 2, a 36-pixel input
  in 8-pixel patches) the token map is laid on the frames and pixels the tokens cover, as the
  attention methods do (:mod:`videoxai.core.token_layout`).
* **Space.** The map covers the model's crop box (``space="crop"``); ``vx.explain`` upsamples it
  with torch on the tensor's device.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.align import align_time
from ..core.footprint import Footprint, FootprintCache, laying, watching
from ..core.token_layout import token_frames_on_input, token_maps_on_input
from ..errors import InputError, UnsupportedModelError
from ..models.base import VideoModel
from ..models.cam_layer import CHANNELS_LAST_HINT, NoCamLayerError, channels_last_refusal, run_eagerly
from ..options import OptionError
from .base import Attribution, Method, Target, _hf_hint, manages_model_lock
from .gradients import check_pixels, frozen_parameters


def _split_output(out: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """A layer's main output tensor, and a function that puts another tensor in its place."""
    if isinstance(out, torch.Tensor):
        return out, lambda t: t
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0], lambda t: type(out)([t, *out[1:]]) if isinstance(out, list) else (t, *out[1:])
    raise UnsupportedModelError(f"CAM layers must output a tensor or a tuple starting with one, "
                                f"got {type(out).__name__}")


#: a CAM layer: dotted module name in ``model.net``, the module itself, or ``None`` (found for you)
LayerOption = str | nn.Module | None
#: where a CNN layer's grid is laid on the input: on the input indices its cells are centred on, or
#: stretched over the input as an image is resized (``align_corners=False``)
Placement = Literal["centres", "stretch"]

#: layers seen running under ``no_grad`` inside a forward that records gradients (a reentrant
#: checkpoint segment): their network is run with pixels that require grad from the first forward
#: pass on (see :meth:`CAMMethod.attribute`)
_NO_GRAD_LAYERS: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()

#: what a CNN layer's grid reads (:mod:`videoxai.core.footprint`), per network:
#: {(layer, clip shape, its wrapping): Footprint, or None where it cannot be known}. By network, as
#: saliency_tubes' probe: vx.explain explains a working view of the model, a copy per call
_FOOTPRINTS: FootprintCache = FootprintCache()

#: where a network's input holds the clip's frames, rows and columns, by layout
_CLIP_AXES = {"BCTHW": {"T": 2, "H": 3, "W": 4}, "BTCHW": {"T": 1, "H": 3, "W": 4}}


class LayerCapture:
    """Capture one module's output during a forward pass.

    With ``graph=True`` the module's output is replaced by ``leaf.clone()`` where ``leaf`` is a new
    tensor that requires grad and holds the same values: ``cap.gradient(score)`` then gives the
    gradient at that layer, and the backward pass goes no deeper. (The clone keeps
    the captured values safe from in-place operations that follow the layer, e.g. ``out += x``.)

    >>> with LayerCapture(model.submodule("layer4"), "layer4", graph=True) as cap:
    ...     logits = model(x)
    >>> cap.output(cap.leaf)        # the layer's output structure, with the captured tensor

    The hook is removed on exit, also when the forward raises.

    A layer inside a ``torch.utils.checkpoint.checkpoint`` segment runs again during the backward
    pass (:meth:`gradient`), with the same values. The non-reentrant variant differentiates the
    first forward's graph, where the leaf already is, so the rerun is left alone; the reentrant
    one (``use_reentrant=True``) runs the segment under ``no_grad`` in the forward
    (:attr:`no_grad_forward`) and differentiates the rerun, so the rerun's output is replaced by
    a second leaf, whose ``.grad`` its nested backward fills.
    """

    def __init__(self, module: nn.Module, name: str, graph: bool) -> None:
        self.module, self.name, self.graph = module, name, graph
        self._handle = None
        self.reset()

    def reset(self) -> None:
        """Forget a capture, for another forward pass."""
        self.leaf: torch.Tensor | None = None
        #: the leaf whose ``.grad`` is the layer's gradient (another one in a reentrant rerun)
        self.grad_leaf: torch.Tensor | None = None
        #: the layer ran with gradients off in a forward that records them (a reentrant checkpoint,
        #: or a ``torch.no_grad()`` block of the network)
        self.no_grad_forward = False
        self._in_backward = False
        self._rebuild: Callable[[torch.Tensor], Any] | None = None

    def __enter__(self) -> "LayerCapture":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, _module: nn.Module, _inputs, out):
        if self._in_backward:  # a checkpoint recomputing the layer (see the class docstring)
            if not self.graph:
                return None
            if self.no_grad_forward and torch.is_grad_enabled():   # the reentrant rerun
                if self.grad_leaf is not self.leaf:
                    raise UnsupportedModelError(f"layer {self.name!r} runs more than once per backward "
                                                "pass; choose a layer that runs once (layer=...)")
                self.grad_leaf = _split_output(out)[0].detach().requires_grad_(True)
                return self._rebuild(self.grad_leaf.clone())
            # the non-reentrant rerun must save the tensors the forward saved: the same output again
            return self._rebuild(self.leaf.clone())
        if self.leaf is not None:
            raise UnsupportedModelError(f"layer {self.name!r} runs more than once per forward pass; "
                                        "choose a layer that runs once (layer=...)")
        tensor, self._rebuild = _split_output(out)
        if not self.graph:
            self.leaf = tensor.detach().clone()
            return None
        self.no_grad_forward = not torch.is_grad_enabled()
        self.leaf = self.grad_leaf = tensor.detach().requires_grad_(True)
        return self._rebuild(self.leaf.clone())

    def gradient(self, score: torch.Tensor) -> torch.Tensor | None:
        """``∂ score / ∂`` the layer's main output after a ``graph=True`` forward, or ``None`` when
        the score does not depend on it. By ``score.backward()``, which checkpointed networks
        accept (:func:`~videoxai.methods.gradients.leaf_gradients`); the model's parameters must be
        frozen (:func:`~videoxai.methods.gradients.frozen_parameters`)."""
        if not score.requires_grad or self.grad_leaf is None:
            return None
        self._in_backward = True
        try:
            score.backward()
        finally:
            self._in_backward = False
        return self.grad_leaf.grad

    def output(self, tensor: torch.Tensor) -> Any:
        """The layer's output structure with ``tensor`` in place of its main tensor."""
        if self._rebuild is None:
            raise UnsupportedModelError(f"layer {self.name!r} did not run during the forward pass")
        return self._rebuild(tensor)


@dataclass
class LayerState:
    """What a CAM variant's :meth:`~CAMMethod.weights` sees.

    Attributes:
        activations: ``(B, C, T', H', W')`` the layer's output.
        gradients: ``(B, C, T', H', W')`` gradient of the target logits there (``None`` for
            gradient-free variants).
        target: ``(B,)`` explained classes; logits: ``(B, num_classes)``.
    """

    activations: torch.Tensor
    gradients: torch.Tensor | None
    target: torch.Tensor
    logits: torch.Tensor


class CAMMethod(Method):
    """Base of the CAM family; subclasses implement :meth:`weights` (see the module docstring).

    :meth:`attribute` returns ``maps (B, T', H', W')`` on the layer's grid (``space="crop"``:
    it covers the model's crop box), the per-frame scores ``temporal (B, T)`` and ``time_align``
    ``"repeat"`` for a transformer's token frames, ``"linear"`` for a CNN's feature frames; for a
    CNN layer whose grid stretching over the input would misplace (frames, rows or columns left
    unread, cells centred elsewhere), ``footprint``: what each cell reads and where it is centred
    (:mod:`videoxai.core.footprint`), on which ``vx.explain`` lays the maps.

    Args:
        layer: dotted module name in ``model.net`` or the module itself (default: the model's
            ``cam_layer``, else the last layer with a (T', H', W') grid; see :mod:`~videoxai.methods.cam`).
        placement: where a CNN layer's grid goes on the input: ``"centres"`` (default), each cell
            on the input frame and pixel its windows are centred on, interpolated linearly
            between them; ``"stretch"``, the grid stretched over the input as an image is resized
            (``align_corners=False``: off by half a stride minus half a pixel per padded strided
            stage, 3.5 pixels on the bundled 3D CNN; the placement of earlier versions). Layers
            the stretch centres right (stride 1, patches) and transformer tokens are placed the
            same either way (MViT's tokens always on their centres:
            :attr:`~videoxai.models.token_grid.TokenGrid.centred`).
    """

    #: whether the variant needs the gradient at the layer (one backward pass from the logits)
    uses_gradients = True
    # what :meth:`unsupported` checks beyond ``requires``: "any model" was listed for networks it refuses
    applies_to = ("3D CNNs and video transformers: networks with a layer on a (T', H', W') grid "
                  "(not MLPs, per-frame 2D CNNs or TorchScript)")

    @classmethod
    @manages_model_lock  # the layer search takes the lock for its one forward pass, and is remembered
    def unsupported(cls, model: VideoModel) -> str | None:
        # with the default layer, a network with no (T', H', W') grid to read (an MLP over the
        # flattened clip, a per-frame 2D CNN, a TorchScript module) was said to be supported
        # (``videoxai methods --model``, the evaluation runner's skip) and then refused inside
        # vx.explain with an InputError. Only the search's own refusal counts (NoCamLayerError,
        # remembered by the model: no forward pass on the next call), and a network that fails to
        # run (a wrong layout) keeps its own error, raised when the method is built
        reason = super().unsupported(model)
        if reason is not None or not isinstance(model, VideoModel) or model.cam_layer is not None:
            return reason
        try:
            model.resolve_cam_layer(None)
            # a channels-last layer found (a wrapped Swin3D's final LayerNorm): supports() said yes
            # and the method refused it when it ran
            return model.located_layer_refusal()
        except NoCamLayerError as e:
            # a Hugging Face transformer given to vx.wrap: the search's advice for an unknown network
            # (a per-frame reshape, read from its spatial attention's (B·T, heads, N, N) dropout on
            # TimeSformer) mapped the attention matrix as if it were an image; its adapter knows its tokens
            hint = _hf_hint(model, "its token grid and CAM layer")
            if hint:
                return f"method {cls.name!r} reads a layer with a (T', H', W') grid, which {model.name} does not lay out{hint}"
            return f"method {cls.name!r} reads a layer with a (T', H', W') grid: {e}"
        except InputError as e:
            if isinstance(model.net, torch.jit.ScriptModule):
                return f"method {cls.name!r} reads a layer with a (T', H', W') grid: {e}"
        return None

    def unsupported_with_options(self, model: VideoModel) -> str | None:
        # a named layer is checked by __init__ (an OptionError naming it), whatever the search finds
        if getattr(self, "_layer_given", False):
            return super(CAMMethod, type(self)).unsupported(model)
        return self.unsupported(model)

    def __init__(self, model: VideoModel, layer: LayerOption, placement: Placement = "centres") -> None:
        self._layer_given = layer is not None  # read by unsupported_with_options, called by super().__init__
        super().__init__(model)
        self.placement = placement
        self._found = layer is None and model.cam_layer is None   # located by a search, not named
        try:
            self.layer, self.module = model.resolve_cam_layer(layer)
        except InputError as e:
            if layer is None:  # found, not given: no option to blame
                raise
            raise OptionError(f"{self._owner()}: option layer: {e}") from None

    @property
    def options(self) -> dict:
        """The options as used: ``layer`` is the name of the layer read, never ``None`` or a module."""
        return {**self._options, "layer": self.layer}

    @options.setter
    def options(self, value: dict) -> None:
        self._options = dict(value)

    def given_options(self) -> dict:
        # a layer the model chose (its cam_layer, or the search) is that network's: another one
        # has no layer of that name, or one that is not its own default (demo-cnn's 'layer3' on
        # demo-stabn, whose default is 'layer4')
        return {**self.options, "layer": self.layer if self._layer_given else None}

    # -- what variants override ------------------------------------------------------------------
    def weights(self, state: LayerState) -> torch.Tensor:
        """Channel weights, ``(B, C)`` or anything that broadcasts against ``(B, C, T', H', W')``."""
        raise NotImplementedError

    def combine(self, state: LayerState, weights: torch.Tensor) -> torch.Tensor:
        """``(B, T', H', W')`` non-negative map from the weighted channels (default: ReLU of the sum)."""
        return F.relu(weighted_sum(state.activations, weights))

    # -- shared machinery ------------------------------------------------------------------------
    def volume(self, out: Any) -> torch.Tensor:
        """The layer's output (or a gradient of the same structure) as ``(B, C, T', H', W')``."""
        try:
            vol = self.model.cam_reshape(out) if self.model.cam_reshape is not None else out
        except (InputError, ValueError, RuntimeError) as e:
            # a layer whose output is not the token sequence (the classifier, a patch projection, the
            # attention of one frame): the reshape's own error does not say which layer was chosen
            raise UnsupportedModelError(
                f"layer {self.layer!r} of {self.model.name} gives {_shape_of(out)}, which the model's "
                f"cam_reshape cannot lay out as (B, C, T', H', W') ({e}); choose another layer") from e
        if not isinstance(vol, torch.Tensor) or vol.ndim != 5:
            shape = tuple(vol.shape) if isinstance(vol, torch.Tensor) else type(vol).__name__
            raise UnsupportedModelError(
                f"layer {self.layer!r} of {self.model.name} gives {shape}, but CAM needs (B, C, T', H', W'); "
                "give the model a cam_reshape (vx.wrap(..., cam_reshape=fn)) or choose another layer")
        return vol

    def check_grid(self, vol: torch.Tensor, frames: int, clips: int | None = None,
                   module: nn.Module | None = None) -> None:
        """Refuse a ``(B, C, T', H', W')`` volume whose grid does not fit in the network's input
        ``frames × h × w``, or that ``module`` (the layer) made with a ``LayerNorm`` or ``Linear``
        over its last axis: the layer is not laid out channels-first; and one whose first axis is
        not the batch of ``clips`` clips (MViT's pooled queries, keys and values are
        ``(B·heads, C, T', H', W')``: read as one map per clip they made 8 maps for 1 clip, and
        a RuntimeError that named no layer).

        A channels-last output ``(B, T', H', W', C)`` (Swin3D's stages and final norm) is 5-D too,
        and read as channels-first it gives a "map" over ``(H', W', C)`` that is upsampled as if it
        were an image: no error, a meaningless explanation. Its last axis (the channels, 96–1024)
        or its first (frames read as channels, rows read as frames) is then larger than the input.
        """
        if clips is not None and vol.shape[0] != clips:
            raise UnsupportedModelError(
                f"layer {self.layer!r} of {self.model.name} gives {tuple(vol.shape)} as (B, C, T', H', W') for "
                f"{clips} clip{'s' * (clips != 1)}: its first axis is not the batch (attention heads or frames folded "
                "into it), so it holds no map per clip; choose another layer (layer=...)")
        grid, limit = tuple(vol.shape[2:]), (frames, *self.model.input_size)
        hint = (CHANNELS_LAST_HINT if self.model.cam_reshape is None
                else "check the model's cam_reshape, or choose another layer (layer=...)")
        if all(g <= n for g, n in zip(grid, limit)):
            # a channels-last layer whose channels fit in the input (a small Swin3D: 32 channels
            # on 32-pixel frames) passed the size check, and its (H', W', C) "map" was upsampled
            refusal = (channels_last_refusal(self.model.name, self.layer, module, vol)
                       if self.model.cam_reshape is None else None)
            if refusal is not None:
                raise UnsupportedModelError(refusal)
            return
        raise UnsupportedModelError(
            f"layer {self.layer!r} of {self.model.name} gives {tuple(vol.shape)} as (B, C, T', H', W'): "
            f"a {'×'.join(map(str, grid))} grid, larger than the {'×'.join(map(str, limit))} input, so "
            f"it is not laid out channels-first; {hint}")

    def time_align(self, frames: int) -> str:
        """``"repeat"`` for a transformer's token frames (tubelets), ``"linear"`` for feature maps."""
        grid = self.model.token_grid
        return "repeat" if grid is not None and frames == grid.frames else "linear"

    def on_model(self, module: nn.Module, name: str) -> nn.Module:
        """``module`` (named ``name``) if it belongs to :attr:`model`, else :attr:`model`'s module of
        that name: a method whose :attr:`model` was set to another network after it was built
        (``vx.explain`` builds such a method again; a caller may not) hooked the first network's
        layer, which never ran ("did not run")."""
        if any(m is module for m in self.model.net.modules()):
            return module
        return self.model.submodule(name)

    def footprint_key(self, x: torch.Tensor) -> tuple | None:
        """The key of the layer's footprint on clips shaped as ``x`` ``(B, T, 3, H, W)`` in
        :data:`_FOOTPRINTS`; ``None`` where it is not looked for: a transformer's token grid (laid
        on its input by :mod:`~videoxai.core.token_layout`), a layer read through a ``cam_reshape``
        (a per-frame CNN folds its frames into the batch, which the footprint does not follow)."""
        model = self.model
        if model.token_grid is not None or model.cam_reshape is not None or model.layout not in _CLIP_AXES:
            return None
        from .saliency_tubes import _wrapping   # (that module builds on this one)

        # (the batch too: frames folded into it are followed for one clip, not for several)
        return self.layer, tuple(x.shape), _wrapping(model)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        x = check_pixels(self.model, inputs)
        if x.shape[0] > 1 and self.model.batch_statistics_layers():
            # the network runs one clip at a time (VideoModel.batch_statistics_layers): its layer
            # runs once per clip in a forward of several, which the capture refuses
            return self._clip_by_clip(x, target)
        module = self.on_model(self.module, self.layer)
        # a reentrant checkpoint segment runs under no_grad, and is recomputed in the backward pass
        # only when one of its tensor inputs requires grad: with the parameters frozen, only when
        # the pixels do. That is known once the layer has run (here, on the model's first CAM
        # explanation, which then runs the forward again); pixels that require grad in every forward
        # would keep the activations below the layer of every other network for a backward pass
        x.requires_grad_(self.uses_gradients and module in _NO_GRAD_LAYERS)
        # what the layer reads is found on the first explanation's own forward pass (no pass of its
        # own: the pass counts of the first explanation and the later ones are the same), once per
        # network, layer, clip shape and wrapping
        key = self.footprint_key(x)
        # a torch.compile'd network runs eagerly here, as the layer search and saliency_tubes' probe
        # do: its compiled graph ran without the capture's hook (a compiled ViViT: "layer
        # 'vivit.layers.1.layernorm_before' did not run during the forward pass")
        with frozen_parameters(self.model), LayerCapture(module, self.layer, self.uses_gradients) as cap, \
                torch.set_grad_enabled(self.uses_gradients), run_eagerly():
            with watching(_FOOTPRINTS, self.model.net, module, _CLIP_AXES.get(self.model.layout, {}), key):
                logits = self.model(x)   # (an error of the network's own passes through, and nothing is kept)
            if self.uses_gradients and cap.no_grad_forward and not x.requires_grad:
                # (a network's own no_grad block is still refused below)
                _NO_GRAD_LAYERS.add(module)
                cap.reset()
                logits = self.model(x.requires_grad_(True))
            target = self.resolve_target(target, logits)
            if cap.leaf is None:
                raise UnsupportedModelError(f"layer {self.layer!r} did not run during the forward pass")
            grads = None
            if self.uses_gradients:
                g = cap.gradient(logits.gather(1, target[:, None]).sum())
                if g is None:
                    # the layer's output does not reach the logits (an auxiliary branch, a feature map
                    # returned beside them, a network run under no_grad): autograd's own error named no layer
                    found = " (found as the last layer with a (T', H', W') grid)" if self._found else ""
                    raise UnsupportedModelError(
                        f"the logits of {self.model.name} do not depend on layer {self.layer!r}{found} in "
                        "autograd's graph; choose a layer on the path to the logits (layer=...), outside "
                        "any torch.no_grad() or torch.inference_mode() of the network")
                grads = self.volume(cap.output(g))
            acts = self.volume(cap.output(cap.leaf.detach()))
        self.check_grid(acts, x.shape[1], x.shape[0], module)
        with torch.no_grad():
            # in float32 whatever the network's precision: a half-precision layer's sum over its
            # (T', H', W') grid (Grad-CAM++'s denominator) overflows float16 and blanked the map
            state = LayerState(acts.float(), None if grads is None else grads.float(), target, logits.detach())
            maps = self.combine(state, self.weights(state))
            align = self.time_align(maps.shape[1])
            grid = self.model.token_grid
            seen = _partial(_FOOTPRINTS.get(self.model.net, {}).get(key), maps.shape[1:], self.placement)
            if align == "repeat" and maps.shape[2:] == (grid.rows, grid.cols):
                temporal = token_frames_on_input(maps.flatten(2).sum(-1), grid, x.shape[1])
                maps = token_maps_on_input(maps, grid, self.model.preprocess.size, x.shape[1])
            elif seen is not None:
                # each feature frame's mass laid on the frames it is centred on, or spread over the
                # frames it reads, none on the others
                temporal = seen.frames_on_input(maps.flatten(2).sum(-1))
            else:
                temporal = align_time(maps.flatten(2).sum(-1)[..., None, None], x.shape[1], align)[..., 0, 0]
        # the maps stay on the layer's grid (Explanation.raw); the footprint lays them on the input
        # when they are upsampled (vx.explain's finish_maps)
        return Attribution(maps=maps, space="crop", target=target, logits=logits.detach(),
                           temporal=temporal, time_align=align, footprint=seen)

    def _clip_by_clip(self, x: torch.Tensor, target: Target) -> Attribution:
        """:meth:`attribute` of each clip of ``x`` ``(B, T, 3, H, W)`` on its own, joined."""
        b = x.shape[0]
        t = None if target is None else torch.as_tensor(target).reshape(-1)
        if t is not None and t.numel() not in (1, b):
            raise InputError(f"got {t.numel()} targets for a batch of {b} clips")
        parts = [self.attribute(x[i:i + 1], None if t is None else t[i % t.numel()]) for i in range(b)]
        return Attribution(maps=torch.cat([p.maps for p in parts]), space="crop",
                           target=torch.cat([p.target for p in parts]),
                           logits=torch.cat([p.logits for p in parts]),
                           temporal=torch.cat([p.temporal for p in parts]), time_align=parts[0].time_align,
                           footprint=parts[0].footprint)


def _partial(seen: Footprint | None, grid: tuple[int, ...], placement: Placement) -> Footprint | None:
    """``seen`` where it is the footprint of a ``(T', H', W')`` grid that stretching over the input
    would misplace: a grid that leaves some frames, rows or columns unread, or (``placement=
    "centres"``) whose cells are centred elsewhere than the stretch puts them (a padded strided
    network: the bundled 3D CNN, torchvision's video ResNets); else ``None``: the stretched maps
    and scores, bit for bit."""
    if seen is not None and placement == "stretch":
        seen = dataclasses.replace(seen, frame_centres=None, row_centres=None, col_centres=None)
    return laying(seen, grid)


def _shape_of(out: Any) -> str:
    """A layer's output for an error message: its shape, or the first tensor's in a tuple."""
    first = out[0] if isinstance(out, (tuple, list)) and out else out
    return str(tuple(first.shape)) if isinstance(first, torch.Tensor) else type(out).__name__


def weighted_sum(acts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_c w_c · A_c`` → ``(B, T', H', W')``; ``weights`` is ``(B, C)`` or broadcastable to ``acts``."""
    weights = weights.to(acts.dtype)   # a half-precision classifier's weights (Saliency Tubes)
    if weights.ndim == 2:
        return torch.einsum("bcthw,bc->bthw", acts, weights)
    return (acts * weights).sum(1)
