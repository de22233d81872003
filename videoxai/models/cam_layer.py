"""The layer a CAM method reads: found in the network, or named by the user, and laid out.

Grad-CAM and its kin need a layer whose output still has a ``(T', H', W')`` grid. This is
:class:`~videoxai.models.base.VideoModel`'s part that resolves the layer a user names (a dotted
name or a module), searches one when none is named (:meth:`CamLayerMixin.locate_cam_layer`),
says what to give instead where the search cannot succeed (a per-frame 2D CNN, a transformer's
patch embedding), and lays a per-frame CNN's grids out as clips (``cam_reshape="per_frame"``).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..errors import InputError


def run_eagerly() -> contextlib.AbstractContextManager:
    """A ``torch.compile``'d network run eagerly for the block (torch ≥ 2.6; else as it is), for a
    probe that hooks its modules.

    The search hooks every module, and the compiler traces each hook it meets: it recompiled the
    network once per hook, past its limit (a page of warnings, and seconds), for a pass that only
    reads shapes. And a graph compiled before a hook was added runs without it (the compiler does
    not guard on the hooks of submodules): saliency_tubes' probe of the head, after passes that had
    compiled the network for batches of any size, failed with ``KeyError: 'a'``.
    """
    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if stance is not None else contextlib.nullcontext()


def _is_tokens(value) -> bool:
    """Whether ``value`` is a token sequence ``(B, N, C)`` of floats."""
    return isinstance(value, torch.Tensor) and value.ndim == 3 and value.is_floating_point()


#: what :func:`channels_last_refusal` advises a model without a ``cam_reshape``
CHANNELS_LAST_HINT = ("a channels-last (B, T', H', W', C) layer (Swin3D) needs vx.wrap(..., cam_reshape=lambda t: "
                      "t.permute(0, 4, 1, 2, 3)), or choose another layer")


def channels_last_refusal(model_name: str, layer: str, module: nn.Module | None, out,
                          hint: str = CHANNELS_LAST_HINT) -> str | None:
    """Why layer ``layer`` (``module``, which gave ``out``) is laid out channels-last: a
    ``LayerNorm`` or ``Linear`` over the last axis of a 5-D output, as a Swin3D's stages and final
    norm ``(B, T', H', W', C)`` are; ``None`` for any other layer."""
    features = last_axis_features(module)
    if features is None or not isinstance(out, torch.Tensor) or out.ndim != 5 or out.shape[-1] != features:
        return None
    return (f"layer {layer!r} of {model_name} is a {type(module).__name__} over the last axis of its output "
            f"{tuple(out.shape)}, so that axis holds its {features} features: it is laid out channels-last, "
            f"not (B, C, T', H', W'); {hint}")


def last_axis_features(module: nn.Module | None) -> int | None:
    """The features of a layer that acts on the last axis of its output (an ``nn.LayerNorm`` over
    one axis, an ``nn.Linear``): that axis holds the channels. ``None`` for other layers."""
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return int(module.normalized_shape[0])
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    return None


class NoCamLayerError(InputError):
    """The layer search's refusal: the network has no layer with a ``(T', H', W')`` grid that it
    can read (or only a patch embedding, or per-frame grids). Its message says what to give instead."""


class CamLayerMixin:
    """The CAM-layer methods of :class:`~videoxai.models.base.VideoModel`.

    A mixin, so that ``model.locate_cam_layer()`` and a subclass's override of any of these keep
    working. It holds no state of its own: it reads what the model sets up (``net``,
    ``cam_layer``, ``cam_reshape``, the search's ``_located_cam_layer``, ``_clips_in_forward``)
    and runs the model's own forward (``inference()``, ``_net_logits``, counted in ``passes``).
    """

    def resolve_cam_layer(self, layer: str | nn.Module | None) -> tuple[str, nn.Module]:
        """``(dotted name, module)`` of the layer a CAM method reads.

        ``layer`` is a dotted name in :attr:`net`, one of its module objects (as pytorch-grad-cam
        and Captum take it), or ``None``: the model's :attr:`cam_layer`, else the layer found by
        :meth:`locate_cam_layer`.
        """
        if isinstance(self.net, torch.jit.ScriptModule):
            # hooks do not run inside TorchScript: the search would find no layer, a capture nothing
            raise InputError(f"{self.name} is a TorchScript module (torch.jit.script / trace): CAM methods cannot "
                             "read its layers; wrap the Python module it was made from, or use a gradient or "
                             "perturbation method")
        if layer is None:
            layer = self.cam_layer if self.cam_layer is not None else self.locate_cam_layer()
        if isinstance(layer, nn.Module):
            name = next((n for n, m in self.net.named_modules() if m is layer), None)
            if name is None:
                raise InputError(f"layer {type(layer).__name__} is not a module of {self.name}")
            layer = name
        if not isinstance(layer, str):
            raise InputError(f"layer must be a dotted module name or a module, got {type(layer).__name__}")
        module = self.submodule(layer)
        if isinstance(module, torch.jit.ScriptModule):
            raise InputError(f"layer {layer!r} of {self.name} is a TorchScript module: its output cannot be read "
                             "(forward hooks do not run on it); give a layer that is a Python module")
        return layer, module

    def locate_cam_layer(self) -> str:
        """The last module whose output still has a ``(T', H', W')`` grid, before the pooling.

        torch-cam's candidate-layer search carried to video: one forward pass of a blank clip with
        a hook on every module records output shapes in the order modules finish (the pass counts
        in :attr:`passes`, as every forward does); going back from the end, the first output that
        :attr:`cam_reshape` (or nothing) makes a ``(B, C, T', H', W')`` volume with more than one
        cell in its grid wins; a grid with rows or columns wins over a later one of frames only (a
        head that pools space and keeps time: S3D's windowed average pool, its 1×1×1 classifier on
        64 frames; Grad-CAM there maps nothing but when). A container finishes after its last
        child, so a conv block is preferred to its last ReLU. Volumes made inside a token block (a
        module taking and giving ``(B, N, C)``: MViT's pooled queries, keys and values) and volumes
        with more maps than clips are no map of the clip and are set aside. The pass runs in eval mode (:meth:`inference`); the hooks are
        removed afterwards, also when the forward raises; the search runs once per model, and so does
        its refusal (:class:`NoCamLayerError`): ``supports()`` of every CAM method asks for the layer,
        and a network without one ran the search's forward pass again on every call.
        """
        if "layer" in self._located_cam_layer:
            return self._located_cam_layer["layer"]
        if "refused" in self._located_cam_layer:
            raise NoCamLayerError(self._located_cam_layer["refused"])
        # (name, its grid grade (_is_grid), the output itself, its version): the output is held until the search
        # ends, so that no two outputs can share storage and `is` tells a block's output from its
        # last child's; the version tells them apart when the block changed that child's output in
        # place (torchvision's ResNet blocks add the shortcut to conv2's output and apply their
        # ReLU in place: the same tensor object, but conv2 saw it before the residual)
        found: list[tuple[str, int, object, int]] = []
        # modules that take and give a token sequence (B, N, C): a transformer block or its attention
        token_blocks: set[str] = set()

        def record(name: str):
            def hook(_module, inputs, out) -> None:
                main = out[0] if isinstance(out, (tuple, list)) and out else out
                # an inference tensor (a forward under torch.inference_mode()) has no version: reading
                # it raised, and `supports()` of every CAM method with it
                version = main._version if isinstance(main, torch.Tensor) and not main.is_inference() else 0
                found.append((name, self._is_grid(out), main, version))
                if inputs and _is_tokens(inputs[0]) and _is_tokens(main):
                    token_blocks.add(name)
            return hook

        modules = dict(self.net.named_modules())
        # the hooks must see this forward only (see exclusive()), and a network in training mode
        # probed as it is would move its batch-norm statistics: the lock and eval mode
        with self.inference():
            # TorchScript submodules refuse hooks (and run none inside them): they are not searched
            scripted = [n for n, m in modules.items() if isinstance(m, torch.jit.ScriptModule)]
            handles = [m.register_forward_hook(record(n)) for n, m in modules.items() if n
                       and not any(n == s or n.startswith(s + ".") for s in scripted)]
            try:
                blank = torch.zeros(1, self.num_frames, 3, *self.input_size, device=self.device)
                x = self.preprocess(blank)
                with torch.no_grad(), run_eagerly():
                    self._net_logits((x.transpose(1, 2) if self.layout == "BCTHW" else x).to(self.dtype))
                # a pass the network ran: an explanation's cost (and a work budget) counts it
                self.passes.forward += 1
            finally:
                for h in handles:
                    h.remove()
        # a volume made inside a token block is a step of its attention, not the network's map: MViT
        # pools its queries, keys and values as (B·heads, C, T', H', W') volumes, which the search
        # returned (a batch of 8 maps for one clip where a stage has 8 heads, a key pooling where it
        # has 1), or with cam_reshape="per_frame" a (B·T, heads, N, N) attention matrix of TimeSformer's
        # spatial attention (laid out as frames). With a cam_reshape of tokens, the token blocks' own
        # outputs are the grids: they stay
        if self.cam_reshape is None or getattr(self.cam_reshape, "__func__", None) is CamLayerMixin.unfold_frames:
            found = [(n, 0 if any(n.startswith(b + ".") for b in token_blocks) else g, k, v) for n, g, k, v in found]
        try:
            name = self._choose_cam_layer(found, modules)
        except NoCamLayerError as e:
            # remembered, as a found layer is: a network that fails to *run* (above) is not
            self._located_cam_layer["refused"] = str(e)
            raise
        self._located_cam_layer["layer"] = name
        return name

    def located_layer_refusal(self) -> str | None:
        """Why the layer :meth:`locate_cam_layer` found cannot be read as ``(B, C, T', H', W')``
        (it is laid out channels-last: a wrapped Swin3D's final LayerNorm); ``None`` if it can.
        Before, ``supports()`` of every CAM method said yes and the method refused it when run."""
        self.locate_cam_layer()
        return self._located_cam_layer.get("channels_last")

    def _choose_cam_layer(self, found: list, modules: dict[str, nn.Module]) -> str:
        """The layer :meth:`locate_cam_layer` returns, from the outputs its forward pass recorded
        (``found``, in the order the modules finished), or :class:`NoCamLayerError`."""
        runs: dict[str, int] = {}
        for name, *_ in found:
            runs[name] = runs.get(name, 0) + 1
        # a grid with space if there is one (see _is_grid's grades)
        wanted = max((g for n, g, *_ in found if runs[n] == 1), default=0) or 1
        for i in reversed(range(len(found))):
            name, is_grid, key, version = found[i]
            if is_grid >= wanted and runs[name] == 1:
                # a block, its container and its last ReLU output the same tensor: name the block
                same = [n for n, g, k, v in found if k is key and v == version and g and runs[n] == 1]
                blocks = [n for n in same if any(True for _ in modules[n].children())] or same
                name = max(blocks, key=lambda n: n.count("."))
                if self.cam_reshape is None:
                    self._refuse_a_patch_embedding(name, found, i)
                    # kept beside the layer, not raised: the layer is the search's answer, and
                    # CAM methods refuse it (CAMMethod.unsupported) before they are built
                    refusal = channels_last_refusal(self.name, found[i][0], modules[found[i][0]], key)
                    if refusal is not None:
                        self._located_cam_layer["channels_last"] = refusal
                return name
        if self.cam_reshape is None:
            self._refuse_per_frame_grids(found)
        # grids there are, but from layers the forward runs more than once (a block applied to two
        # views, features computed twice): "no layer outputs a grid" was not true
        repeated = list(dict.fromkeys(n for n, g, *_ in reversed(found) if g and runs[n] > 1))
        if repeated:
            raise NoCamLayerError(
                f"the layers of {self.name} with a (T', H', W') grid ({', '.join(map(repr, repeated[:3]))}"
                f"{', …' if len(repeated) > 3 else ''}) run more than once per forward pass, so no one output is the "
                "map; pass layer=<a layer that runs once>, or give each use of the layer a module of its own")
        raise NoCamLayerError(f"no layer of {self.name} outputs a (B, C, T', H', W') grid; pass layer=<name> "
                         "(and vx.wrap(..., cam_reshape=fn) for token or channels-last outputs)")

    def _refuse_per_frame_grids(self, found: list) -> None:
        """Name the recipe for a per-frame 2D CNN (TSN, TSM, a CNN + LSTM): its grids are
        ``(B·T, C, h, w)``, the frames of the blank clip folded into the batch, which the search
        cannot lay out without knowing how the network folded them; the usual fold (frames inside
        each clip, ``x.flatten(0, 1)`` on ``(B, T, C, H, W)``) is undone by the ``cam_reshape`` named."""
        folded = [n for n, _, out, _ in found if isinstance(out, torch.Tensor) and out.ndim == 4
                  and out.is_floating_point() and out.shape[0] == self.num_frames and math.prod(out.shape[2:]) > 1]
        if folded:
            raise NoCamLayerError(
                f"the last grids of {self.name} are per frame, (B·T, C, h, w) (e.g. {folded[-1]!r}); wrap it with "
                "vx.wrap(..., cam_reshape='per_frame') to lay them out as (B, C, T, h, w), or pass "
                "layer=<name> with a cam_reshape of your own")

    def unfold_frames(self, out) -> torch.Tensor:
        """A per-frame 2D CNN's grid ``(B·T, C, h, w)`` (or a tuple starting with one) → ``(B, C, T, h, w)``.

        ``cam_reshape="per_frame"``. ``B`` is the number of clips in the forward pass that gave
        ``out`` (frames folded inside each clip, as ``x.flatten(0, 1)`` on ``(B, T, C, H, W)``
        does), so clips of any length and batches of clips are laid out alike.
        """
        a = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(a, torch.Tensor) or a.ndim != 4:
            raise InputError(f"a per-frame grid is (B·T, C, h, w), got {getattr(a, 'shape', type(a).__name__)}")
        return a.unflatten(0, (self._clips_in_forward["clips"], -1)).transpose(1, 2)

    def _refuse_a_patch_embedding(self, name: str, found: list, i: int) -> None:
        """Refuse the one grid of a transformer: its patch embedding (``found[i]``).

        A wrapped video transformer (a user's ViT, torchvision's MViT without its adapter) has one
        5-D output, the patch embedding's, and every block after it carries those cells as a token
        sequence ``(B, N, C)`` that the search cannot lay out. Grad-CAM there maps the pixels'
        first projection, not the evidence the classifier weighs, so the search says what to give
        instead. A CNN with a token head (its last block is not its first grid) is not refused:
        its last block is the usual choice.
        """
        grid = found[i][2]
        if next(k for _, g, k, _ in found if g) is not grid:
            return
        cells = math.prod(grid.shape[2:])
        tokens = [n for n, _, out, _ in found[i + 1:] if isinstance(out, torch.Tensor) and out.ndim == 3
                  and cells <= out.shape[1] <= cells + 8]   # the cells, and a few prefix tokens (CLS)
        if tokens:
            raise NoCamLayerError(
                f"the only layer of {self.name} with a (T', H', W') grid is {name!r}, the patch embedding of "
                f"a transformer: later layers ({', '.join(tokens[:3])}{', …' if len(tokens) > 3 else ''}) carry "
                f"its {cells} cells as a token sequence (B, N, C); pass layer=<a late block> and "
                "vx.wrap(..., cam_reshape=fn) laying its tokens out as (B, C, T', H', W')")

    def _is_grid(self, out) -> int:
        """0: ``out`` is no ``(B, C, T', H', W')`` grid with more than one cell; 1: a grid of frames
        only (``H' = W' = 1``); 2: a grid with rows or columns."""
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            tensor = out[0]
        elif isinstance(out, torch.Tensor):
            tensor = out
        else:
            return 0
        if self.cam_reshape is not None:
            try:
                tensor = self.cam_reshape(out)
            except Exception:  # not a layer this reshape understands
                return 0
        if not (isinstance(tensor, torch.Tensor) and tensor.ndim == 5 and tensor.is_floating_point()):
            return 0
        if tensor.shape[0] != self._clips_in_forward["clips"]:
            # one volume per clip, or it is no map of the clip (heads or frames folded into the batch)
            return 0
        if math.prod(tensor.shape[3:]) > 1:
            return 2
        # a per-frame network's time axis is its fold of the frames, there at every layer: its
        # spatially pooled features (B·T, C, 1, 1) are after the pooling, not a grid
        # (by function: a working view of this model, a copy, holds the original's bound method)
        per_frame = getattr(self.cam_reshape, "__func__", None) is CamLayerMixin.unfold_frames
        return 1 if tensor.shape[2] > 1 and not per_frame else 0
