"""The model adapter: every video classifier behind one pixel-space interface.

A :class:`VideoModel` takes clips in pixel space, float ``(B, T, 3, H, W)`` in [0, 1] at any
frame size, and returns logits ``(B, num_classes)``. Resizing, centre-cropping and mean/std
normalisation happen *inside* its forward (differentiably), so every perturbation a method makes
(blur, fade, masks) and every gradient it takes lives on real pixels of the original frames.

The adapter also carries what methods need to know about the network: its token grid
(:class:`TokenGrid`), its default layer for CAM methods, its attention sites (transformers) and
its class names. Subclasses override :meth:`VideoModel.logits` only.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
import numbers
import re
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Literal, Sequence, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

Layout = Literal["BTCHW", "BCTHW"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: how a model's outputs become class probabilities: ``"softmax"`` (one class per clip),
#: ``"sigmoid"`` (each class on its own: a multi-label classifier, or a binary one with a single
#: output) or ``"none"`` (the network already returns probabilities, its last layer a softmax)
Activation = Literal["softmax", "sigmoid", "none"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)


def class_probabilities(logits: torch.Tensor, activation: Activation = "softmax") -> torch.Tensor:
    """Outputs ``(B, C)`` → class probabilities ``(B, C)``: their softmax, their sigmoid, or
    themselves (``"none"``: already probabilities).

    With the default, a single output is read through its sigmoid (a binary classifier's logit,
    as trained with ``BCEWithLogitsLoss``): a softmax over one class is 1 whatever the clip, so
    every perturbation method and probability metric would read a model that never changes.
    """
    if activation == "none":
        return logits
    if activation == "sigmoid" or logits.shape[-1] == 1:
        return logits.sigmoid()
    return logits.softmax(-1)


def class_log_probabilities(logits: torch.Tensor, target: int,
                            activation: Activation = "softmax") -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p, log(1 − p))`` of class ``target``, each ``(B,)``, computed stably from logits
    ``(B, C)`` (see :func:`class_probabilities`)."""
    if activation == "none":  # probabilities already: clamped, so a 0 or a 1 costs a finite loss
        p = logits[:, target].clamp(1e-12, 1 - 1e-7)
        return p.log(), (-p).log1p()
    if activation == "sigmoid" or logits.shape[-1] == 1:
        return F.logsigmoid(logits[:, target]), F.logsigmoid(-logits[:, target])
    logp = logits.log_softmax(-1)
    return logp[:, target], torch.cat([logp[:, :target], logp[:, target + 1:]], dim=1).logsumexp(-1)


@dataclass(frozen=True)
class CropBox:
    """The region of an original frame that the model sees, in original pixel coordinates."""

    top: float
    left: float
    height: float
    width: float

    def as_ints(self, frame_h: int, frame_w: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` rounded and clipped to the frame."""
        top, left = int(round(self.top)), int(round(self.left))
        h, w = int(round(self.height)), int(round(self.width))
        top, left = max(0, top), max(0, left)
        return top, left, max(1, min(h, frame_h - top)), max(1, min(w, frame_w - left))


@dataclass(frozen=True)
class Preprocess:
    """Resize / centre-crop / normalise, as a model's preprocessor config describes it.

    Args:
        size: ``(h, w)`` of the model input.
        shortest_edge: if set, the frame is scaled so that its shorter side has this length and
            then centre-cropped to ``size`` (Hugging Face / torchvision video convention). If
            ``None`` the whole frame is resized to ``size`` (aspect ratio not kept).
        mean, std: per-channel normalisation applied after resizing.
    """

    size: tuple[int, int]
    shortest_edge: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def crop_box(self, frame_h: int, frame_w: int) -> CropBox:
        """Where the model's input window lies in an ``frame_h × frame_w`` frame."""
        if self.shortest_edge is None:
            return CropBox(0.0, 0.0, float(frame_h), float(frame_w))
        scale = self.shortest_edge / min(frame_h, frame_w)
        ch, cw = min(self.size[0] / scale, frame_h), min(self.size[1] / scale, frame_w)
        return CropBox((frame_h - ch) / 2, (frame_w - cw) / 2, ch, cw)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` in [0, 1] → normalised ``(B, T, 3, h, w)``.

        The crop is taken first in original coordinates and then resized, which equals
        resize-then-crop and keeps :meth:`crop_box` exact.
        """
        b, t, c, h, w = pixels.shape
        top, left, ch, cw = self.crop_box(h, w).as_ints(h, w)
        x = self.resize_box(pixels[..., top:top + ch, left:left + cw])
        mean = x.new_tensor(self.mean).view(1, 1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 1, 3, 1, 1)
        return (x - mean) / std

    def resize_box(self, box: torch.Tensor) -> torch.Tensor:
        """The crop box's pixels ``(B, T, 3, bh, bw)`` → the model's view ``(B, T, 3, h, w)``, in [0, 1].

        Exactly the resampling :meth:`__call__` does (antialiased when shrinking), without the
        normalisation: on its output, :meth:`at_model_size`'s preprocessing gives the same model
        input as this one gives on the original frames.
        """
        b, t, c, ch, cw = box.shape
        if (ch, cw) == tuple(self.size):
            return box
        x = F.interpolate(box.reshape(b * t, c, ch, cw), size=self.size, mode="bilinear",
                          align_corners=False, antialias=ch > self.size[0] or cw > self.size[1])
        return x.view(b, t, c, *self.size)

    def at_model_size(self) -> "Preprocess":
        """The preprocessing for frames that already are the model's view (:meth:`resize_box`):
        no crop, no resize, the same normalisation."""
        return replace(self, shortest_edge=None)


@dataclass(frozen=True)
class TokenGrid:
    """How a transformer's token sequence maps onto the (time, row, col) volume of its input.

    Attributes:
        frames, rows, cols: grid size ``T' × H' × W'``.
        tubelet: input frames per token frame (2 for VideoMAE/ViViT, 1 for TimeSformer).
        patch: ``(ph, pw)`` input pixels per token.
        prefix_tokens: leading non-patch tokens (1 for a CLS token, 0 for mean pooling).
        order: the order of the patch tokens, e.g. ``"thw"`` (VideoMAE, ViViT) or ``"hwt"``
            (TimeSformer stores each patch position's frames next to each other).
        readout: which tokens the classifier reads: ``"first"`` the first token (a CLS token, or
            VideoMAE's first *patch* token with ``use_mean_pooling=False``), ``"mean"`` the mean
            of all tokens (VideoMAE's default). Attention methods follow that token's row, or
            the attention every token receives.
    """

    frames: int
    rows: int
    cols: int
    tubelet: int = 1
    patch: tuple[int, int] = (16, 16)
    prefix_tokens: int = 0
    order: str = "thw"
    readout: Literal["first", "mean"] = "first"

    @property
    def num_patches(self) -> int:
        return self.frames * self.rows * self.cols

    def to_volume(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` tokens (prefix tokens included) → ``(B, D, T', H', W')``."""
        if tokens.ndim != 3:
            raise InputError(f"expected tokens (B, N, D), got shape {tuple(tokens.shape)}")
        b, n, d = tokens.shape
        if n != self.prefix_tokens + self.num_patches:
            raise InputError(f"expected {self.prefix_tokens + self.num_patches} tokens for grid "
                             f"{self.frames}x{self.rows}x{self.cols}, got {n}")
        sizes = {"t": self.frames, "h": self.rows, "w": self.cols}
        x = tokens[:, self.prefix_tokens:].reshape(b, *(sizes[a] for a in self.order), d)
        perm = [0, 4] + [1 + self.order.index(a) for a in "thw"]
        return x.permute(*perm).contiguous()

    def scores_to_volume(self, scores: torch.Tensor) -> torch.Tensor:
        """``(B, N_patches)`` per-patch scores (no prefix) → ``(B, T', H', W')``."""
        b = scores.shape[0]
        sizes = {"t": self.frames, "h": self.rows, "w": self.cols}
        x = scores.reshape(b, *(sizes[a] for a in self.order))
        return x.permute(0, *[1 + self.order.index(a) for a in "thw"]).contiguous()


@dataclass
class PassCounter:
    """Clips that went forward / backward through a model (read by :class:`videoxai.cost.CostMeter`)."""

    forward: int = 0
    backward: int = 0


class VideoModel(nn.Module):
    """Pixel-space adapter around a video classifier.

    Args:
        net: the wrapped network.
        num_frames: frames per clip the network expects.
        preprocess: resize / crop / normalisation applied inside :meth:`forward`.
        labels: class names (``None`` gives ``"class_<i>"``).
        layout: how the network wants its input, ``"BTCHW"`` (Hugging Face) or ``"BCTHW"``
            (torchvision and most 3D CNNs).
        fixed_num_frames: the network only accepts exactly ``num_frames`` (position embeddings).
        token_grid: for transformers, how tokens map to the input volume.
        cam_layer: dotted module name (relative to ``net``) of the default Grad-CAM layer.
        cam_reshape: turns that layer's output into ``(B, C, T', H', W')``; ``None`` if it already is;
            ``"per_frame"`` for a per-frame 2D CNN's ``(B·T, C, h, w)`` (:meth:`unfold_frames`).
        family: short family name (``"timesformer"``, ``"r3d"``, ``"custom"``, …).
        name: the spec it was loaded from, for reports.
        output: where the logits are in what ``net`` returns, when that is not a tensor: an index
            (``0``), a key (``"logits"``) or a function of the output (see :meth:`select_logits`).
        activation: how the outputs become class probabilities (:func:`class_probabilities`):
            ``"softmax"`` (default; a single output is read through its sigmoid), ``"sigmoid"``
            for a multi-label classifier, ``"none"`` when the network returns probabilities.
    """

    def __init__(self, net: nn.Module, *, num_frames: int, preprocess: Preprocess,
                 labels: Sequence[str] | None = None, num_classes: int | None = None,
                 layout: Layout = "BCTHW", fixed_num_frames: bool = True,
                 token_grid: TokenGrid | None = None, cam_layer: str | None = None,
                 cam_reshape: Callable[[torch.Tensor], torch.Tensor] | Literal["per_frame"] | None = None,
                 family: str = "custom", name: str | None = None,
                 output: int | str | Callable[[object], torch.Tensor] | None = None,
                 activation: Activation = "softmax") -> None:
        super().__init__()
        if layout not in ("BTCHW", "BCTHW"):
            raise InputError(f"layout must be 'BTCHW' or 'BCTHW', got {layout!r}")
        if activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 1:
            raise InputError(f"num_frames must be an integer ≥ 1, got {num_frames!r}")
        self.net = net
        self.num_frames = int(num_frames)
        self.preprocess = preprocess
        self.layout = layout
        self.fixed_num_frames = fixed_num_frames
        self.token_grid = token_grid
        self.cam_layer = cam_layer
        if isinstance(cam_reshape, str) and cam_reshape != "per_frame":
            raise InputError(f"cam_reshape must be a function or 'per_frame', got {cam_reshape!r}")
        self.cam_reshape = self.unfold_frames if cam_reshape == "per_frame" else cam_reshape
        # clips in the network's current forward (unfold_frames reads it): a dict, shared with the
        # working views of this model (at_model_size), whose forwards run the same network
        self._clips_in_forward: dict[str, int] = {"clips": 1}
        self.family = family
        self.name = name or family
        self.output = output
        if labels is None:
            if num_classes is None:
                raise InputError("give labels or num_classes")
            labels = [f"class_{i}" for i in range(num_classes)]
        self.labels = list(labels)
        if not self.labels:
            raise InputError(f"a classifier needs at least one class, got labels={self.labels} "
                             f"(num_classes={num_classes})")
        self.passes = PassCounter()
        self._exclusive = threading.RLock()  # see exclusive()
        #: where the weights came from ("file:…", "cache:…", …); "random" when the network was
        #: built without trained weights (its predictions and explanations mean nothing)
        self.weights_source: str | None = None
        # {"layer": name} once locate_cam_layer has searched: a dict, so that the working views of
        # this model (at_model_size, a shallow copy per explanation) share the one search
        self._located_cam_layer: dict[str, str] = {}
        self.attention = None  # set by transformer adapters: videoxai.models.attention.AttentionSites
        self.eval()  # explanations need inference behaviour (dropout off, batch-norm statistics)

    # -- what subclasses override ------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on preprocessed input laid out as :attr:`layout`; return logits."""
        return self.select_logits(self.net(x))

    def select_logits(self, out) -> torch.Tensor:
        """The logits ``(B, C)`` in what the network returned.

        With :attr:`output` set, that part (index, key or attribute, or function). Otherwise a tensor is the
        logits; an object with ``.logits`` (Hugging Face) or a dict with ``"logits"`` gives those;
        a tuple, list or dict gives its one tensor shaped ``(B, num_classes)`` — two such, or
        none, is an error asking for ``output=``, never a guess.
        """
        if self.output is not None:
            if callable(self.output):
                return self.output(out)
            try:
                return out[self.output]
            except (KeyError, IndexError, TypeError):
                # an output object with attributes, not keys (a dataclass: ``out.scores``)
                if isinstance(self.output, str) and isinstance(getattr(out, self.output, None), torch.Tensor):
                    return getattr(out, self.output)
                raise InputError(f"{self.name}: output={self.output!r} selects nothing in the network's "
                                 f"{type(out).__name__} output") from None
        if isinstance(out, torch.Tensor):
            return out
        if hasattr(out, "logits"):
            return out.logits
        if isinstance(out, dict) and "logits" in out:
            return out["logits"]
        parts = (list(out.items()) if isinstance(out, dict) else
                 list(enumerate(out)) if isinstance(out, (tuple, list)) else [])
        shaped = [(k, v) for k, v in parts
                  if isinstance(v, torch.Tensor) and v.ndim == 2 and v.shape[1] == self.num_classes]
        if len(shaped) == 1:
            return shaped[0][1]
        found = (f"{len(shaped)} parts shaped (B, {self.num_classes}): "
                 f"{', '.join(repr(k) for k, _ in shaped)}" if shaped else
                 f"no part shaped (B, {self.num_classes})")
        raise InputError(f"{self.name} returned a {type(out).__name__} with {found}; say where its logits "
                         "are: vx.wrap(..., output=0) (an index), output='logits' (a key) or "
                         "output=lambda out: ...")

    # -- the pixel-space forward -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.preprocess.size)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype of the network's parameters (float32 when it has none)."""
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)

    def check_input(self, pixels: torch.Tensor) -> None:
        """Raise :class:`InputError` naming what is wrong with a pixel batch."""
        if not isinstance(pixels, torch.Tensor):
            raise InputError(f"expected a tensor (B, T, 3, H, W), got {type(pixels).__name__}")
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise InputError(f"expected pixels of shape (B, T, 3, H, W), got {tuple(pixels.shape)}")
        if self.fixed_num_frames and pixels.shape[1] != self.num_frames:
            raise InputError(f"{self.name} takes clips of exactly {self.num_frames} frames, got "
                             f"{pixels.shape[1]}; sample with vx.read_video(path, "
                             f"num_frames={self.num_frames}) or vx.sliding_windows")
        if not pixels.is_floating_point():
            raise InputError(f"pixels must be float in [0, 1], got dtype {pixels.dtype}")

    def exclusive(self) -> threading.RLock:
        """The model's re-entrant lock, as a context manager: ``with model.exclusive(): …``.

        Explanations hold it for their whole length (every method's ``attribute``), and every
        forward pass holds it, so threads that share a model take turns: one explanation's
        layer hooks and attention taps never see another thread's forward pass, and frozen
        parameters are never unfrozen under another's backward. (The model's own work is
        compute-bound and already uses every core; turns cost nothing there.)
        """
        return self._exclusive

    def train(self, mode: bool = True) -> "VideoModel":
        """``nn.Module.train`` (and so ``eval``), taking the model's lock (:meth:`exclusive`).

        An explanation running in another thread puts every module's mode back when it ends
        (:meth:`inference`): a ``model.train()`` from a training loop in the meantime was undone
        when it finished, and the epoch ran in eval mode (batch norm frozen, no dropout) without
        a word. The call now waits for the explanation, as a forward pass does.
        """
        with self.__dict__.get("_exclusive") or contextlib.nullcontext():  # (set in __init__)
            return super().train(mode)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """The model's lock (:meth:`exclusive`) with every module in eval mode and outside
        ``torch.inference_mode``, for one explanation or one metric: ``with model.inference(): …``.

        The adapter is put in eval mode when it is built, but the network is the user's, and a
        user who fine-tunes it (``model.train()``, or ``model.net.train()``) may explain it
        before switching back: in training mode dropout would make every map random and every
        forward pass would move batch-norm running statistics, i.e. explaining would change the
        model. Each module's own flag is put back afterwards, also when the body raises (a
        network with frozen batch-norm layers in a training model keeps exactly its mix).

        ``torch.inference_mode()`` (a serving loop's usual guard) is left for the block: inside it
        ``torch.enable_grad()`` is not enough, so every gradient method failed with autograd's
        "element 0 of tensors does not require grad", and the randomisation check's re-initialised
        copies were inference tensors the re-run method could not differentiate.
        """
        with self._exclusive, torch.inference_mode(False):
            modes = [(m, m.training) for m in self.modules()]
            if not any(training for _, training in modes):  # the usual case: nothing to switch
                yield
                return
            self.eval()
            try:
                yield
            finally:
                for m, training in modes:
                    m.training = training

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_exclusive", None)  # a lock is not copied (copy.deepcopy, pickle): each copy has its own
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._exclusive = threading.RLock()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` float in [0, 1] → logits ``(B, num_classes)``."""
        with self._exclusive:
            return self._forward(pixels)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.check_input(pixels)
        x = self.preprocess(pixels.to(self.device))
        if self.layout == "BCTHW":
            x = x.transpose(1, 2)
        # a network in half or double precision gets its own dtype (its layers refuse float32), and
        # every method receives float32 logits whatever the network's precision
        out = self._net_logits(x.to(self.dtype))
        self._check_logits(out, pixels.shape[0])
        out = out.float()
        self.passes.forward += pixels.shape[0]
        if out.requires_grad:
            n = pixels.shape[0]
            out.register_hook(lambda g: self._count_backward(n))
        return out

    def _net_logits(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`logits`, with a failure caused by a wrong ``layout`` named as such."""
        self._clips_in_forward["clips"] = x.shape[0]
        try:
            return self.logits(x)
        except (RuntimeError, ValueError) as err:
            hint = self._layout_hint(x, err) or self._frames_hint(x, err)
            if hint is None:
                raise
            raise InputError(hint) from err

    def _layout_hint(self, x: torch.Tensor, err: Exception) -> str | None:
        """Why a wrapped network failed, when the cause is its ``layout``; else ``None``.

        A 3D CNN wrapped with ``layout="BTCHW"`` (or a frames-first network with ``"BCTHW"``)
        fails in its first layer with a message about channels that does not say which option
        is wrong. On a failure, one sample is run in the other layout: when that works, the
        layout is the cause and the error names the option. Only for :func:`vx.wrap`'s models
        (the built-in adapters set their layout themselves); out-of-memory errors are not probed.
        """
        if self.family != "custom" or isinstance(err, torch.OutOfMemoryError):
            return None
        other = "BTCHW" if self.layout == "BCTHW" else "BCTHW"
        # gradients on, as in the failing call: a method's hooks on the network may register
        # tensor hooks, which fail on outputs that need no gradient
        probe = x[:1].detach().transpose(1, 2).requires_grad_(True)
        try:
            with torch.enable_grad():
                out = self.select_logits(self.net(probe))
        except Exception:  # the other layout fails too: the layout is not (only) what is wrong
            return None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, self.num_classes):
            return None
        shape = "x".join(map(str, x.shape))
        return (f"{self.name} failed on input laid out as {self.layout} ({shape}): {err}. It runs on "
                f"{other} input: wrap it with vx.wrap(..., layout={other!r})")

    def _frames_hint(self, x: torch.Tensor, err: Exception) -> str | None:
        """Why a wrapped network failed, when the cause is a clip of another length than
        ``num_frames`` (position embeddings, a reshape to ``num_frames``); else ``None``.

        The network, wrapped without ``fixed_num_frames=True``, is given a clip of ``T ≠
        num_frames`` frames and fails with a size mismatch deep inside. On a failure, one sample
        with ``num_frames`` frames (indices spread over the clip) is run: when that works, the
        length is the cause and the error names the option.
        """
        if self.family != "custom" or self.fixed_num_frames or isinstance(err, torch.OutOfMemoryError):
            return None
        dim = 2 if self.layout == "BCTHW" else 1
        t = x.shape[dim]
        if t == self.num_frames:
            return None
        idx = torch.linspace(0, t - 1, self.num_frames, device=x.device).round().long()
        probe = x[:1].detach().index_select(dim, idx).requires_grad_(True)
        try:
            with torch.enable_grad():
                out = self.select_logits(self.net(probe))
        except Exception:  # fails at num_frames too: the length is not what is wrong
            return None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, self.num_classes):
            return None
        return (f"{self.name} failed on a clip of {t} frames: {err}. It runs on {self.num_frames}: wrap it with "
                f"vx.wrap(..., fixed_num_frames=True) (clips of another length are then refused), or give "
                f"clips of {self.num_frames} frames")

    def _check_logits(self, out, batch: int) -> None:
        """Raise :class:`InputError` unless ``out`` is ``(batch, num_classes)``.

        Checked on every forward (a shape comparison): labels that do not match the network's
        output width would otherwise surface far away, as an IndexError when a class index is
        turned into its name, or as a silent explanation of the wrong class.
        """
        expected = f"(B, classes) = ({batch}, {self.num_classes})"
        if not isinstance(out, torch.Tensor):
            raise InputError(f"{self.name} returned a {type(out).__name__}, not logits {expected}; say where "
                             "they are with vx.wrap(..., output=...)")
        if out.ndim == 2 and out.shape[0] == batch and out.shape[1] != self.num_classes:
            raise InputError(f"{self.name} outputs {out.shape[1]} class scores but has {self.num_classes} labels; "
                             f"give labels= or num_classes= for its {out.shape[1]} outputs")
        if tuple(out.shape) != (batch, self.num_classes):
            raise InputError(f"{self.name} returned logits of shape {tuple(out.shape)}, expected {expected}; "
                             "reshape them in the module or select them with vx.wrap(..., output=fn)")

    def _count_backward(self, n: int) -> None:
        self.passes.backward += n

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, num_classes)`` without gradients (:meth:`probabilities`)."""
        return self.probabilities(self(pixels).float())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """This model's logits ``(B, C)`` → class probabilities ``(B, C)`` (its :attr:`activation`).

        Outputs that already are probabilities (every row in [0, 1], summing to 1: a network that
        ends in a softmax) read through the default softmax are squashed towards ``1 / C``; that is
        warned about (once), naming ``activation="none"``.
        """
        if self.activation == "softmax" and logits.shape[-1] > 1 and logits.numel():
            x = logits.detach()
            if bool(((x >= 0) & (x <= 1)).all()) and bool(((x.sum(-1) - 1).abs() < 1e-4).all()):
                warnings.warn(f"{self.name}: its outputs are probabilities (each row in [0, 1], summing to 1), "
                              "read through a second softmax; wrap it with activation='none'",
                              UserWarning, stacklevel=2)
        return class_probabilities(logits, self.activation)

    def submodule(self, name: str) -> nn.Module:
        """A module of the wrapped network by dotted name (``"layer4"``, ``"encoder.layer.11"``)."""
        names = [n for n, _ in self.net.named_modules() if n]
        if not isinstance(name, str) or not name.strip():
            # get_submodule("") is the whole network, whose output is the logits: no layer to read
            raise InputError(f"{self.name}: layer {name!r} names no layer; give one of its modules, e.g. "
                             f"{', '.join(map(repr, names[-5:]))}")
        try:
            return self.net.get_submodule(name)
        except AttributeError:
            close = difflib.get_close_matches(name, names, n=5, cutoff=0.5) or names[-5:]
            raise InputError(f"{self.name} has no layer {name!r}; did you mean "
                             f"{', '.join(map(repr, close))}?") from None

    # -- class names -----------------------------------------------------------------------------
    def class_index(self, target: int | str) -> int:
        """The index of a class given by index or by name (exact, then case-insensitive).

        An index is any integer (Python, numpy, or a one-element integer tensor); a bool or a
        float is refused rather than truncated. Raises :class:`InputError` naming the closest
        class names when ``target`` names none.
        """
        if isinstance(target, str):
            if target in self.labels:
                return self.labels.index(target)
            folded = [i for i, label in enumerate(self.labels) if label.casefold() == target.casefold()]
            if len(folded) == 1:
                return folded[0]
            if folded:
                raise InputError(f"class {target!r} is ambiguous for {self.name}: "
                                 f"{', '.join(repr(self.labels[i]) for i in folded)}")
            close = difflib.get_close_matches(target.casefold(), [lb.casefold() for lb in self.labels],
                                              n=5, cutoff=0.5)
            folded_to_label = {lb.casefold(): lb for lb in self.labels}
            hint = (f"close matches: {', '.join(repr(folded_to_label[c]) for c in close)}" if close
                    else f"its {self.num_classes} classes start with "
                         f"{', '.join(map(repr, self.labels[:5]))}")
            raise InputError(f"{self.name} has no class {target!r}; {hint}")
        if isinstance(target, torch.Tensor) and target.numel() == 1 and not target.is_floating_point() \
                and target.dtype != torch.bool:
            target = int(target)
        # bool is an int to Python, and 1.5 would be truncated to class 1 further down: neither
        # is a class the user meant
        if isinstance(target, (bool, np.bool_)) or not isinstance(target, numbers.Integral):
            raise InputError(f"target must be a class index (an integer) or a class name, got {target!r} "
                             f"({type(target).__name__})")
        if not 0 <= target < self.num_classes:
            raise InputError(f"target {target} out of range for a model with {self.num_classes} classes")
        return int(target)

    def class_from_text(self, text: str) -> int:
        """The index of a class given as text (a command line, a query string): the class called
        ``text`` if there is one (a class may be named ``"3"``), else the index it spells
        (``"3"``), else a name resolved as :meth:`class_index` does (case-insensitive, close
        matches in the error)."""
        if text in self.labels:
            return self.labels.index(text)
        if re.fullmatch(r"\s*[+-]?\d+\s*", text):
            return self.class_index(int(text))
        return self.class_index(text)

    # -- the CAM layer ---------------------------------------------------------------------------
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
        cell in its grid wins. A container finishes after its last child, so a conv block is
        preferred to its last ReLU. The pass runs in eval mode (:meth:`inference`); the hooks are
        removed afterwards, also when the forward raises; the search runs once per model.
        """
        if "layer" in self._located_cam_layer:
            return self._located_cam_layer["layer"]
        # (name, is a grid, the output itself, its version): the output is held until the search
        # ends, so that no two outputs can share storage and `is` tells a block's output from its
        # last child's; the version tells them apart when the block changed that child's output in
        # place (torchvision's ResNet blocks add the shortcut to conv2's output and apply their
        # ReLU in place: the same tensor object, but conv2 saw it before the residual)
        found: list[tuple[str, bool, object, int]] = []

        def record(name: str):
            def hook(_module, _inputs, out) -> None:
                main = out[0] if isinstance(out, (tuple, list)) and out else out
                found.append((name, self._is_grid(out), main, getattr(main, "_version", 0)))
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
                with torch.no_grad():
                    self._net_logits((x.transpose(1, 2) if self.layout == "BCTHW" else x).to(self.dtype))
                # a pass the network ran: an explanation's cost (and a work budget) counts it
                self.passes.forward += 1
            finally:
                for h in handles:
                    h.remove()
        runs: dict[str, int] = {}
        for name, *_ in found:
            runs[name] = runs.get(name, 0) + 1
        for i in reversed(range(len(found))):
            name, is_grid, key, version = found[i]
            if is_grid and runs[name] == 1:
                # a block, its container and its last ReLU output the same tensor: name the block
                same = [n for n, g, k, v in found if k is key and v == version and g and runs[n] == 1]
                blocks = [n for n in same if any(True for _ in modules[n].children())] or same
                name = max(blocks, key=lambda n: n.count("."))
                if self.cam_reshape is None:
                    self._refuse_a_patch_embedding(name, found, i)
                self._located_cam_layer["layer"] = name
                return name
        if self.cam_reshape is None:
            self._refuse_per_frame_grids(found)
        raise InputError(f"no layer of {self.name} outputs a (B, C, T', H', W') grid; pass layer=<name> "
                         "(and vx.wrap(..., cam_reshape=fn) for token or channels-last outputs)")

    def _refuse_per_frame_grids(self, found: list) -> None:
        """Name the recipe for a per-frame 2D CNN (TSN, TSM, a CNN + LSTM): its grids are
        ``(B·T, C, h, w)``, the frames of the blank clip folded into the batch, which the search
        cannot lay out without knowing how the network folded them; the usual fold (frames inside
        each clip, ``x.flatten(0, 1)`` on ``(B, T, C, H, W)``) is undone by the ``cam_reshape`` named."""
        folded = [n for n, _, out, _ in found if isinstance(out, torch.Tensor) and out.ndim == 4
                  and out.is_floating_point() and out.shape[0] == self.num_frames and math.prod(out.shape[2:]) > 1]
        if folded:
            raise InputError(
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
            raise InputError(
                f"the only layer of {self.name} with a (T', H', W') grid is {name!r}, the patch embedding of "
                f"a transformer: later layers ({', '.join(tokens[:3])}{', …' if len(tokens) > 3 else ''}) carry "
                f"its {cells} cells as a token sequence (B, N, C); pass layer=<a late block> and "
                "vx.wrap(..., cam_reshape=fn) laying its tokens out as (B, C, T', H', W')")

    def _is_grid(self, out) -> bool:
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            tensor = out[0]
        elif isinstance(out, torch.Tensor):
            tensor = out
        else:
            return False
        if self.cam_reshape is not None:
            try:
                tensor = self.cam_reshape(out)
            except Exception:  # not a layer this reshape understands
                return False
        # a per-frame network's time axis is its fold of the frames, there at every layer: its
        # spatially pooled features (B·T, C, 1, 1) are after the pooling, not a grid
        # (by function: a working view of this model, a copy, holds the original's bound method)
        per_frame = getattr(self.cam_reshape, "__func__", None) is VideoModel.unfold_frames
        return (isinstance(tensor, torch.Tensor) and tensor.ndim == 5 and tensor.is_floating_point()
                and math.prod(tensor.shape[3:] if per_frame else tensor.shape[2:]) > 1)

    # -- working size ------------------------------------------------------------------------------
    def at_model_size(self) -> "VideoModel":
        """A view of this model for clips that already are its view (``preprocess.resize_box``).

        The same network, counters, labels and attention sites; only the preprocessing differs
        (:meth:`Preprocess.at_model_size`), so nothing of this model is changed.
        """
        view = copy.copy(self)
        view.preprocess = self.preprocess.at_model_size()
        view._exclusive = self._exclusive  # the same network: the same turns (a copy gets its own lock)
        return view

    def extra_repr(self) -> str:
        return (f"family={self.family}, num_frames={self.num_frames}, input_size={self.input_size}, "
                f"classes={self.num_classes}, layout={self.layout}")
