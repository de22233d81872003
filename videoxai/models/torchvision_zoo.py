"""torchvision's Kinetics-400 video classifiers: ``vx.load_model("torchvision:<name>")``.

One table, :data:`MODELS`, says for each architecture which torchvision builder and weights enum
it uses, how many frames it was trained on, its default CAM layer and how that layer's output
becomes a ``(B, C, T', H', W')`` volume. The loader builds the network *without* downloading
anything and then finds its weights:

* ``weights="path/to/file"`` — a ``.safetensors`` file or a torch state dict (read with
  ``weights_only=True``; a checkpoint of torchvision's reference training script, which nests the
  state dict under ``"model"``, works too). A fine-tuned head is fine: the number of classes is
  read from the file.
* ``weights="default"`` (the default) — torchvision's own download cache,
  ``torch.hub.get_dir()/checkpoints/<file name of the weights' url>``, the file that
  ``torchvision.models.video.r3d_18(weights="DEFAULT")`` writes. If it is not there the model is
  built with **random weights** and a warning is logged: loading never reaches the network.
* ``weights="download"`` — fetch the default weights into that cache (the only networked option).
* ``weights=None`` — random weights on purpose (tests, timing).

Preprocessing is read from the weights enum's ``transforms()`` (resize size, crop size, mean,
std) and mapped to :class:`~videoxai.models.preprocess.Preprocess` with torchvision's geometry to
the pixel: a resize to ``[s]`` scales the shorter side to ``s`` (``shortest_edge``), a resize to
``[h, w]`` (the ResNets' ``(128, 171)``, S3D's ``(256, 256)``) stretches every frame to that shape
whatever its aspect ratio (``resize``), then the centre crop, its offset rounded as torchvision's
``center_crop`` does, and no antialiasing when shrinking, as the preset hard-codes (its weights'
accuracies were measured so; a 720p frame shrunk to 128 × 171 then reaches the network through
about one pixel in 6², and gradient maps at full resolution show that). The model input equals the
preset's to 1e-5 (``tests/test_preprocess_fidelity.py``).

Labels are the Kinetics-400 categories stored in the weights enum (available offline).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import InputError, UnknownModelError
from . import _class_names, register_loader
from .base import VideoModel
from .preprocess import Preprocess
from .token_grid import TokenGrid

log = logging.getLogger(__name__)

PREFIX = "torchvision"
WeightsOption = str | os.PathLike | None


# -- turning a CAM layer's output into (B, C, T', H', W') ----------------------------------------
def channels_last_to_volume(out: torch.Tensor) -> torch.Tensor:
    """Swin3D stage output ``(B, T', H', W', C)`` → ``(B, C, T', H', W')``."""
    return out.permute(0, 4, 1, 2, 3)


@dataclass(frozen=True)
class ClsTokensToVolume:
    """MViT tokens ``[CLS] + T'·H'·W'`` (``t, h, w`` order) → ``(B, C, T', H', W')``, CLS dropped.

    Takes either a block's output, the tuple ``(tokens, (T', H', W'))``, or a plain token tensor
    ``(B, 1 + N, C)`` such as a block's ``norm1`` output. A plain tensor's grid is :attr:`grid`
    with its rows and columns rescaled to ``N`` (MViT pools space, never time), so any block works.
    """

    grid: TokenGrid

    def __call__(self, out: torch.Tensor | tuple[torch.Tensor, Sequence[int]]) -> torch.Tensor:
        if isinstance(out, (tuple, list)):
            tokens, (t, h, w) = out[0], out[1]
            grid = replace(self.grid, frames=int(t), rows=int(h), cols=int(w))
        else:
            tokens = out
            grid = self.grid_for(tokens.shape[1] - self.grid.prefix_tokens)
        return grid.to_volume(tokens)

    def grid_for(self, num_patches: int) -> TokenGrid:
        """The grid with :attr:`grid`'s frames and aspect ratio that holds ``num_patches`` tokens."""
        g = self.grid
        scale = math.sqrt(num_patches / g.num_patches)
        rows, cols = round(g.rows * scale), round(g.cols * scale)
        if g.frames * rows * cols != num_patches:
            raise InputError(f"{num_patches} MViT tokens do not form a {g.frames}×h×w grid with the "
                             f"aspect ratio of {g.rows}×{g.cols}")
        return replace(g, rows=rows, cols=cols,
                       patch=(g.patch[0] * g.rows // rows, g.patch[1] * g.cols // cols))


# MViT v1-B and v2-S both embed a 16×224×224 clip with a (2, 4, 4)-strided convolution and halve
# the spatial grid three times (blocks 1, 3, 14): 8×7×7 tokens after the CLS token at the end.
# The embedding (kernel (3, 7, 7), padding (1, 3, 3)) centres token (t, o) on frame 2·t and pixel
# 4·o, and each halving (a kernel-3 pooling of padding 1, on the query and on the skip path) on
# pixel 2·o of the grid before: the last grid's tokens sit on frames 0, 2, … and pixels 0, 32, …
# (test_mvit_token_centres_compose_its_embedding_and_poolings)
MVIT_GRID = TokenGrid(frames=8, rows=7, cols=7, tubelet=2, patch=(32, 32), prefix_tokens=1, order="thw",
                      centred=(0.0, 0.0, 0.0))


# -- the registry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TorchvisionSpec:
    """How to build and adapt one torchvision video architecture.

    Attributes:
        builder: function name in ``torchvision.models.video``.
        weights: name of its weights enum there (``DEFAULT`` is used).
        family: short family name recorded on the model.
        num_frames: clip length it was trained on.
        cam_layer: dotted name of the default Grad-CAM layer.
        head: state-dict key of the classifier weight; its first dimension is the class count.
        fixed_num_frames: the network accepts only ``num_frames`` frames.
        cam_reshape: ``cam_layer`` output → ``(B, C, T', H', W')``; ``None`` if it already is.
        token_grid: the token grid, for transformers with a flat token sequence.
    """

    builder: str
    weights: str
    family: str
    num_frames: int
    cam_layer: str
    head: str
    fixed_num_frames: bool = False
    cam_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None
    token_grid: TokenGrid | None = None

    def weights_enum(self):
        """The ``DEFAULT`` member of this architecture's torchvision weights enum."""
        from torchvision.models import video
        return getattr(video, self.weights).DEFAULT

    def build(self, num_classes: int) -> nn.Module:
        """A randomly initialised network (never downloads)."""
        from torchvision.models import video
        return getattr(video, self.builder)(weights=None, num_classes=num_classes)


_RESNET = dict(num_frames=16, cam_layer="layer4", head="fc.weight")  # (B, 512, T', H/16, W/16)
# Last stage, before the final LayerNorm: channels-last (B, T/2, H/32, W/32, C).
_SWIN = dict(cam_layer="features.6", head="head.weight", cam_reshape=channels_last_to_volume)
# The last block's *output* is a dead end for patch tokens: only its CLS token reaches the head,
# so Grad-CAM there has zero gradients. Its norm1 (the input of its attention, where the CLS
# query reads every patch) is the standard ViT choice and carries the class gradient.
_MVIT = dict(num_frames=16, cam_layer="blocks.15.norm1", head="head.1.weight", fixed_num_frames=True,
             cam_reshape=ClsTokensToVolume(MVIT_GRID), token_grid=MVIT_GRID)

MODELS: dict[str, TorchvisionSpec] = {
    # clip lengths from each enum's meta["_docs"] and torchvision's video recipe
    "r3d_18": TorchvisionSpec("r3d_18", "R3D_18_Weights", "r3d", **_RESNET),
    "mc3_18": TorchvisionSpec("mc3_18", "MC3_18_Weights", "mc3", **_RESNET),
    "r2plus1d_18": TorchvisionSpec("r2plus1d_18", "R2Plus1D_18_Weights", "r2plus1d", **_RESNET),
    # trained on 64-frame clips (evaluated on 128); its (2, 7, 7) average pool needs >= 14 frames
    "s3d": TorchvisionSpec("s3d", "S3D_Weights", "s3d", num_frames=64, cam_layer="features.15",
                           head="classifier.1.weight"),
    # position embeddings / a fixed token grid: exactly 16 frames of 224×224
    "mvit_v1_b": TorchvisionSpec("mvit_v1_b", "MViT_V1_B_Weights", "mvit", **_MVIT),
    "mvit_v2_s": TorchvisionSpec("mvit_v2_s", "MViT_V2_S_Weights", "mvit", **_MVIT),
    # Video Swin was trained and evaluated on 32-frame clips; windows pad, so any length works
    "swin3d_t": TorchvisionSpec("swin3d_t", "Swin3D_T_Weights", "swin3d", num_frames=32, **_SWIN),
    "swin3d_s": TorchvisionSpec("swin3d_s", "Swin3D_S_Weights", "swin3d", num_frames=32, **_SWIN),
    "swin3d_b": TorchvisionSpec("swin3d_b", "Swin3D_B_Weights", "swin3d", num_frames=32, **_SWIN),
}


class TorchvisionVideoModel(VideoModel):
    """A torchvision video classifier (input ``(B, 3, T, H, W)``).

    Attributes:
        min_frames: shortest clip its temporal pooling accepts (S3D: 14).
        weights_source: where the weights came from: ``"file:<path>"``, ``"cache:<path>"``,
            ``"download:<url>"`` or ``"random"``.
    """

    def __init__(self, net: nn.Module, *, min_frames: int, weights_source: str, **kwargs) -> None:
        super().__init__(net, **kwargs)
        self.min_frames = int(min_frames)
        self.weights_source = weights_source

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        # Too short a clip fails deep inside a pooling layer with "output size is too small".
        if x.shape[2] < self.min_frames:
            raise InputError(f"{self.name} needs clips of at least {self.min_frames} frames, got "
                             f"{x.shape[2]}")
        return self.net(x)


def preprocess_from_weights(weights) -> Preprocess:
    """:class:`Preprocess` from a torchvision weights enum member's ``transforms()``.

    ``resize_size`` ``[s]`` is a shorter-side resize (``shortest_edge``), ``[h, w]`` a fixed resize
    that does not keep the aspect ratio (``resize``), as ``torchvision.transforms.functional.resize``
    reads them.
    """
    t = weights.transforms()
    crop, resize = [int(v) for v in t.crop_size], [int(v) for v in t.resize_size]
    crop_hw = (crop[0], crop[-1])
    mode = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest",
            "nearest-exact": "nearest-exact"}.get(str(t.interpolation.value), "bilinear")
    return Preprocess(size=crop_hw, shortest_edge=resize[0] if len(resize) == 1 else None,
                      resize=(resize[0], resize[1]) if len(resize) == 2 else None,
                      mean=tuple(float(m) for m in t.mean), std=tuple(float(s) for s in t.std),
                      # the preset's resize hard-codes antialias=False (its weights were measured so)
                      interpolation=mode, crop_offset="round", antialias=False)


def cache_path(weights) -> Path:
    """Where ``torch.hub`` keeps (or would keep) a weights enum member's file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a torch state dict (``weights_only=True``) onto the CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a weights file, or a pickle holding more than tensors
        raise InputError(f"cannot read {str(path)!r} as a state dict (safetensors, or torch.load with "
                         f"weights_only=True): {e}") from e
    if isinstance(state, dict) and not _is_state_dict(state):
        # checkpoints of torchvision's reference training script: {"model": state_dict, ...}
        state = next((state[k] for k in ("model", "state_dict") if isinstance(state.get(k), dict)), state)
    if not _is_state_dict(state):
        raise InputError(f"{str(path)!r} holds no state dict of tensors")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _find_weights(spec: TorchvisionSpec, name: str, weights: WeightsOption) -> tuple[dict | None, str]:
    """The state dict asked for by ``weights`` (``None`` for random init) and where it came from."""
    if weights is None:
        return None, "random"
    if isinstance(weights, str) and weights in ("default", "download"):
        member = spec.weights_enum()
        cached = cache_path(member)
        if weights == "download":
            try:
                state = torch.hub.load_state_dict_from_url(member.url, map_location="cpu",
                                                           progress=True, weights_only=True)
            except Exception as e:  # no network, proxy, disk full...
                raise UnknownModelError(f"cannot download the weights of torchvision:{name} from "
                                        f"{member.url}: {e}; fetch the file elsewhere and pass "
                                        f"weights='path/to/{cached.name}'") from e
            return state, f"download:{member.url}"
        if cached.is_file():
            return read_state_dict(cached), f"cache:{cached}"
        log.warning("torchvision:%s: no weights in torchvision's cache (%s), so the model has RANDOM "
                    "weights and its predictions and explanations mean nothing. Pass "
                    "weights='download' to fetch them (%s) or weights='path/to/file' (on the "
                    "command line: --model torchvision:%s,weights=download).",
                    name, cached, member.url, name)
        return None, "random"
    path = Path(weights).expanduser()
    return read_state_dict(path), f"file:{path}"


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], name: str, source: str) -> None:
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise InputError(f"weights {source} do not fit torchvision:{name}: {e}") from e
    problems = [f"{what} keys {_few(keys)}"
                for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise InputError(f"weights {source} do not fit torchvision:{name}: {'; '.join(problems)}")


def _few(keys: Sequence[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _read_model_dir(path: Path) -> tuple[str, dict]:
    """A videoxai model directory for this loader: the architecture name and default options.

    ``videoxai.json``: ``{"loader": "torchvision", "model": "r2plus1d_18", "weights":
    "model.safetensors", "labels": [...], "num_frames": 16}`` (all but ``model`` optional; a
    relative ``weights`` path is relative to the directory).
    """
    meta_file = path / "videoxai.json"
    if not meta_file.is_file():
        raise UnknownModelError(f"{path} is a directory without videoxai.json")
    meta = json.loads(meta_file.read_text())
    if meta.get("loader", PREFIX) != PREFIX or "model" not in meta:
        raise UnknownModelError(f"{meta_file} does not describe a torchvision model "
                                "(needs \"loader\": \"torchvision\" and \"model\": <name>)")
    options = {k: meta[k] for k in ("labels", "num_frames") if k in meta}
    if meta.get("weights") is not None:
        options["weights"] = path / meta["weights"]
    return str(meta["model"]), options


@register_loader(PREFIX)
def load_torchvision(rest: str, device: str | torch.device = "cpu", *,
                     weights: WeightsOption = "default", labels: Sequence[str] | None = None,
                     num_frames: int | None = None, name: str | None = None) -> TorchvisionVideoModel:
    """torchvision Kinetics video models: r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v1_b/v2_s, swin3d_t/s/b.

    Args:
        rest: an architecture name (a key of :data:`MODELS`) or a directory with ``videoxai.json``.
        device: where to put the model.
        weights: ``"default"``, ``"download"``, a file path or ``None`` (see the module docstring).
        labels: class names; default: the Kinetics-400 categories for a 400-class head.
        num_frames: clip length, for the families that accept any (default: the training length).
        name: recorded as the model's name (default ``"torchvision:<arch>"``, or the directory).
    """
    if rest not in MODELS and Path(rest).is_dir():  # its videoxai.json gives the option defaults
        name = name or rest
        rest, defaults = _read_model_dir(Path(rest))
        if isinstance(weights, str) and weights == "default":
            weights = defaults.get("weights", weights)
        labels = labels if labels is not None else defaults.get("labels")
        num_frames = num_frames if num_frames is not None else defaults.get("num_frames")

    spec = MODELS.get(rest)
    if spec is None:
        raise UnknownModelError(f"unknown torchvision video model {rest!r}; known: {', '.join(MODELS)}")
    if labels is not None:  # a list, or an id2label dict (videoxai.json), as vx.wrap takes them
        labels = _class_names(labels, f"torchvision:{rest}")
    member = spec.weights_enum()
    min_frames = int(member.meta.get("min_temporal_size", 1))
    if num_frames is None:
        num_frames = spec.num_frames
    elif spec.fixed_num_frames and num_frames != spec.num_frames:
        raise InputError(f"torchvision:{rest} takes exactly {spec.num_frames} frames, not {num_frames}")
    elif num_frames < min_frames:
        raise InputError(f"torchvision:{rest} needs at least {min_frames} frames, not {num_frames}")

    state, source = _find_weights(spec, rest, weights)
    if state is not None and spec.head in state:
        num_classes = int(state[spec.head].shape[0])
    else:
        num_classes = len(labels) if labels is not None else len(member.meta["categories"])
    if labels is None and num_classes == len(member.meta["categories"]):
        labels = list(member.meta["categories"])
    if labels is not None and len(labels) != num_classes:
        raise InputError(f"{len(labels)} labels for torchvision:{rest} with {num_classes} classes")

    net = spec.build(num_classes)
    if state is not None:
        _load_state(net, state, rest, source)
    model = TorchvisionVideoModel(
        net.eval(), min_frames=min_frames, weights_source=source, num_frames=num_frames,
        preprocess=preprocess_from_weights(member), labels=labels, num_classes=num_classes,
        layout="BCTHW", fixed_num_frames=spec.fixed_num_frames, token_grid=spec.token_grid,
        cam_layer=spec.cam_layer, cam_reshape=spec.cam_reshape, family=spec.family,
        name=name or f"{PREFIX}:{rest}")
    return model.to(device).eval()


__all__ = ["MODELS", "TorchvisionSpec", "TorchvisionVideoModel", "ClsTokensToVolume", "MVIT_GRID",
           "channels_last_to_volume", "preprocess_from_weights", "cache_path", "read_state_dict",
           "load_torchvision"]
