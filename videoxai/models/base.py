"""The model adapter: every video classifier behind one pixel-space interface.

A :class:`VideoModel` takes clips in pixel space, float ``(B, T, 3, H, W)`` in [0, 1] at any
frame size, and returns logits ``(B, num_classes)``. Resizing, centre-cropping and mean/std
normalisation happen *inside* its forward (differentiably), so every perturbation a method makes
(blur, fade, masks) and every gradient it takes lives on real pixels of the original frames.

The adapter also carries what methods need to know about the network: its token grid
(:class:`~videoxai.models.token_grid.TokenGrid`), its default layer for CAM methods
(:mod:`videoxai.models.cam_layer`), its attention sites (transformers) and its class names.
Subclasses override :meth:`VideoModel.logits` only. The preprocessing geometry is in
:mod:`videoxai.models.preprocess`.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import numbers
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.seeding import cuda_indices, seeded_draws
from ..errors import InputError
from .cam_layer import CamLayerMixin
from .failure_hints import failure_hint
from .preprocess import Preprocess
from .token_grid import TokenGrid

Layout = Literal["BTCHW", "BCTHW"]


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


def _scripted_norm(m: nn.Module) -> bool:
    """A TorchScript module (``torch.jit.script`` / ``trace``) made from a batch-norm layer."""
    return isinstance(m, torch.jit.ScriptModule) and getattr(m, "original_name", "").startswith(
        ("BatchNorm", "SyncBatchNorm"))


@dataclass
class PassCounter:
    """Clips that went forward / backward through a model (read by :class:`videoxai.cost.CostMeter`)."""

    forward: int = 0
    backward: int = 0


class VideoModel(CamLayerMixin, nn.Module):
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
        none, is an error asking for ``output=``, never a guess. A binary classifier's one logit
        per clip, ``(B,)`` (squeezed for ``BCEWithLogitsLoss``), is its column ``(B, 1)``: every
        method failed on it, told to reshape it.
        """
        logits = self._selected(out)
        if isinstance(logits, torch.Tensor) and logits.ndim == 1 and self.num_classes == 1:
            return logits[:, None]
        return logits

    def _selected(self, out) -> torch.Tensor:
        """:meth:`select_logits` before a binary classifier's ``(B,)`` logit is made a column."""
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

        Torch's generators are seeded for the block (:meth:`seeded_draws`, seed 0 where no block
        of this thread seeded them already; a method seeds them again with its ``seed``): a network
        that draws random numbers in eval mode (Monte-Carlo dropout) gave another map and another
        score at every call, and consumed the caller's random stream, which is put back after.

        ``torch.inference_mode()`` (a serving loop's usual guard) is left for the block: inside it
        ``torch.enable_grad()`` is not enough, so every gradient method failed with autograd's
        "element 0 of tensors does not require grad", and the randomisation check's re-initialised
        copies were inference tensors the re-run method could not differentiate.
        """
        with self._exclusive, torch.inference_mode(False), self.seeded_draws(0, outermost_only=True):
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

    def seeded_draws(self, seed: int, *, outermost_only: bool = False) -> contextlib.AbstractContextManager:
        """The generators this network draws from (torch's CPU one, its CUDA device's) seeded with
        ``seed`` for a block, restored after (:func:`videoxai.core.seeding.seeded_draws`)."""
        return seeded_draws(seed, cuda_indices(self.device), outermost_only=outermost_only)

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
        # resized and normalised in float32 at least: half-precision pixels (a caller's own batch)
        # failed in the antialiased resize ("not implemented for 'BFloat16'") or were normalised
        # at 8 bits, so a float32 network scored them otherwise than the same values in float32
        x = self.preprocess(pixels.to(self.device, torch.promote_types(pixels.dtype, torch.float32)))
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

    def batch_statistics_layers(self) -> list[str]:
        """The network's batch-norm layers that normalise with the statistics of their batch in
        eval mode too (built with ``track_running_stats=False``: no running statistics), by name.

        Such a network scores each clip by the other clips it is run with: the perturbed clips of
        RISE, LIME or occlusion, SmoothGrad's noisy copies and Integrated Gradients' path were
        normalised together, and the map changed with ``batch_size`` (correlation −0.07 between
        ``batch_size=1`` and 16 for RISE). :meth:`forward` runs it one clip at a time.
        """
        return [name for name, m in self.net.named_modules()
                if (isinstance(m, nn.modules.batchnorm._BatchNorm) or _scripted_norm(m))
                and getattr(m, "running_mean", None) is None and getattr(m, "running_var", None) is None]

    def _net_logits(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`logits`, with a failure caused by a wrong ``layout``, a clip's length, frames too
        small or a batch of several clips named as such (:mod:`~videoxai.models.failure_hints`);
        each clip on its own for a network that normalises with its batch's statistics
        (:meth:`batch_statistics_layers`): its score for a clip is the one it gives that clip alone."""
        if x.shape[0] > 1 and self.batch_statistics_layers():
            return torch.cat([self._net_logits(x[i:i + 1]) for i in range(x.shape[0])])
        self._clips_in_forward["clips"] = x.shape[0]
        try:
            return self.logits(x)
        except (RuntimeError, ValueError, AssertionError) as err:  # (a network's own `assert` on shapes)
            hint = failure_hint(self, x, err)
            if hint is None:
                raise
            raise InputError(hint) from err

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
        if not out.is_floating_point():
            # rounded scores or class indices: gradient methods were told the network detaches its
            # input, and perturbation methods drew blank maps from scores that cannot move
            raise InputError(f"{self.name} returned {str(out.dtype).removeprefix('torch.')} outputs, not float "
                             "logits: explanations need its scores before any rounding or argmax; return them "
                             "(or select them with vx.wrap(..., output=...))")
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

        An index is any integer (Python, numpy, or a one-element integer tensor or array); a bool
        or a float is refused rather than truncated. Raises :class:`InputError` naming the closest
        class names when ``target`` names none.
        """
        if isinstance(target, str):
            exact = [i for i, label in enumerate(self.labels) if label == target]
            if len(exact) > 1:
                # a Hugging Face config may name two outputs alike (vx.wrap and torchvision refuse
                # such labels): the name was read as the first of them, without a word
                raise InputError(f"class {target!r} names classes {', '.join(map(str, exact))} of {self.name}; "
                                 "give the class index")
            if exact:
                return exact[0]
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
        if isinstance(target, np.ndarray) and target.size == 1 and target.dtype.kind in "iu":
            target = int(target.reshape(()))  # np.array(1), an argmax kept as an array
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
            return self.class_index(text)   # (a name two classes share is refused there)
        if re.fullmatch(r"\s*[+-]?\d+\s*", text):
            digits = text.strip().lstrip("+-")
            if len(digits) > 18:
                # int() refuses more than 4300 digits with its own ValueError; no index is that long
                raise InputError(f"target {text.strip()[:12]}... ({len(digits)} digits) is not a class index or "
                                 f"name of {self.name}: an index is 0 to {self.num_classes - 1}")
            return self.class_index(int(text))
        return self.class_index(text)

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
