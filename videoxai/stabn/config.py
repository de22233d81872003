"""An ST-ABN's configuration, :class:`STABNConfig`: everything that rebuilds the network, as a
model's ``videoxai.json`` stores it.

Each field is checked when the config is made (one clear error naming the field, before a layer is
built), and the defaults that depend on the backbone are resolved then, so that a saved config keeps
meaning what it meant when a default changes. ``NORMS`` are the attention squashings that
``temporal_norm`` and ``spatial_norm`` name.
"""

from __future__ import annotations

import numbers

from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch

from ..errors import InputError
from ..models.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .backbone import BACKBONES


# -- attention squashing --------------------------------------------------------------------------
def _max_normalised_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``(…, n)`` → softmax over the last axis divided by its maximum: ``exp(l − max l)`` in (0, 1].

    The weighted poolings that use the attention divide by its sum, so this is exactly a softmax
    there; scaled to a top value of 1 it stays comparable with a sigmoid attention (the residual
    weighting ``1 + M``, edits of 1.0 / 0.5 / 0.0, the MSE of ``L_temp``).
    """
    return torch.exp(logits - logits.amax(-1, keepdim=True))


#: ``temporal_norm`` / ``spatial_norm`` choices: logits ``(…, n)`` → attention over the last axis
NORMS = {"sigmoid": torch.sigmoid, "softmax": _max_normalised_softmax}


# -- configuration --------------------------------------------------------------------------------
@dataclass
class STABNConfig:
    """Everything needed to rebuild an ST-ABN (stored in ``videoxai.json``).

    Attributes:
        num_classes: K, the classes of both heads.
        num_frames: T, frames per clip; the attention branch is built for exactly this many.
        input_size: ``(h, w)`` of the network input.
        backbone: a name of :data:`BACKBONES`.
        dropout: before both linear heads (``None``: the backbone's default; 0.5 in the paper).
        shortest_edge: frames are scaled so that their shorter side is this long and centre-cropped
            to ``input_size``; ``None`` resizes whole frames to ``input_size``.
        mean, std: input normalisation of pixels in [0, 1].
        labels: class names (``None`` gives ``class_<i>``).
        pool: global pooling of both heads, ``"avg"`` or ``"max"`` (``None``: the backbone's
            default, see :class:`BackboneSpec`).
        temporal_attention: ``"residual"`` (``F ⊙ (1 + M_t)``) or ``"gate"`` (``F ⊙ M_t``, the
            reference).
        temporal_norm: how ``M_t`` is squashed: ``"sigmoid"`` (the reference: an independent
            weight per frame) or ``"softmax"`` (a softmax over the ``T`` frames divided by its
            maximum, ``exp(l_t − max_t l)``: still in (0, 1], the top frame exactly 1, and frames
            compete — no two can both stay saturated at 1).
        spatial_norm: the same choice for ``M_s``, normalised over each frame's ``h × w`` cells.
        attention_readout: how the attention branch turns its per-cell class scores
            ``conv₁ₓ₁ₓ₁(A) (B, K, T, h, w)`` into ``z_att``: ``"fc"`` (the reference: each frame's
            spatial pooling, then a linear layer over the ``K·T`` values) or ``"attention"``
            (their average weighted by ``M_t · M_s``, as multiple-instance attention pooling:
            the branch's own loss then moves attention onto the cells and frames whose scores
            say the label — the evidence — instead of reaching the maps only through the
            perception branch).
        branch_temporal_kernel: temporal kernel of the attention branch's convolutions (its copy
            of ``layer4`` and the ``3×3×3`` one of the temporal path). 3 is the reference; with 1
            each frame's attention reads only that frame's ``layer3`` features, so evidence seen
            in frame ``t`` is not smeared onto ``t ± 1``, ``t ± 2`` before the attention is read.
        branch_spatial_kernel: the same for the spatial kernels (3 is the reference); with 1 a
            cell's class-wise maps, and so ``M_s`` there, read only that cell's features: the
            ``3×3`` convolutions let a cell report evidence lying up to two cells away, so the
            map's peak need not be on the object.
        branch_input: the features the attention branch reads: ``"layer3"`` (the reference) or
            ``"layer2"``, the last purely spatial layer of the slow-only backbone — with
            ``branch_temporal_kernel=1`` a frame's attention then depends on that frame alone
            (only the ``T × T`` layers of the temporal path mix frames). Needs a backbone whose
            ``layer3`` keeps ``layer2``'s grid (``tiny``, ``tiny-fine``, ``small``); the attention
            mechanism still weights the ``layer3`` features.
        padding: how every convolution pads its input: ``"zeros"`` (the reference, ResNet's) or
            ``"replicate"`` (the edge values repeated). Zero padding makes the border cells'
            features differ from the inside ones, so a border cell can learn a constant class
            vote: on a held-out task the ``mil`` branch of one seed attended a corner cell that
            saw only the lower-left 30 px and favoured "triangle", for every triangle clip
            (docs/experiments/stabn.md, "Held-out task"). Replicate padding leaves no cell a position of its
            own; it is ``mil``'s choice there, but on the synthetic benchmark (textured
            background, distractors) it halved ``mil``'s spatial peak on the object (0.59 → 0.32),
            so which localises better depends on the data.
        attention_branch: ``False`` builds the plain backbone (the baseline; no attention).
    """

    num_classes: int
    num_frames: int = 8
    input_size: tuple[int, int] = (64, 64)
    backbone: str = "tiny"
    dropout: float | None = None
    shortest_edge: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    labels: list[str] | None = None
    pool: Literal["avg", "max", "attention"] | None = None
    temporal_attention: Literal["residual", "gate"] = "residual"
    attention_branch: bool = True
    temporal_norm: Literal["sigmoid", "softmax"] = "sigmoid"
    spatial_norm: Literal["sigmoid", "softmax"] = "sigmoid"
    attention_readout: Literal["fc", "attention"] = "fc"
    branch_temporal_kernel: int = 3
    branch_spatial_kernel: int = 3
    branch_input: Literal["layer3", "layer2"] = "layer3"
    padding: Literal["zeros", "replicate"] = "zeros"

    def __post_init__(self) -> None:
        if isinstance(self.input_size, int):
            self.input_size = (self.input_size, self.input_size)
        self.input_size = tuple(int(s) for s in self.input_size)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.backbone not in BACKBONES:
            raise InputError(f"unknown ST-ABN backbone {self.backbone!r}; "
                             f"sizes: {', '.join(BACKBONES)}")
        for name in ("num_classes", "num_frames"):  # a hand-edited "3" failed deep in the network's build
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), numbers.Integral):
                raise InputError(f"{name} must be a whole number, got {getattr(self, name)!r}")
            setattr(self, name, int(getattr(self, name)))  # (a NumPy integer is saved as JSON too)
        if int(self.num_classes) < 2:
            raise InputError(f"num_classes must be ≥ 2, got {self.num_classes}")
        if int(self.num_frames) < 1:
            raise InputError(f"num_frames must be ≥ 1, got {self.num_frames}")
        if len(self.input_size) != 2:
            raise InputError(f"input_size must be h or (h, w), got {self.input_size}")
        stride = BACKBONES[self.backbone].stride
        if min(self.input_size) < stride:
            raise InputError(f"input_size {self.input_size} is too small for backbone "
                             f"{self.backbone!r}: need ≥ {stride} pixels a side")
        if self.labels is not None:
            self.labels = [str(s) for s in self.labels]
            if len(self.labels) != self.num_classes:
                raise InputError(f"{len(self.labels)} labels for {self.num_classes} classes")
        if self.dropout is None:
            self.dropout = BACKBONES[self.backbone].dropout
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pool not in (None, "avg", "max", "attention"):
            raise InputError(f"pool must be 'avg', 'max' or 'attention', got {self.pool!r}")
        if self.temporal_attention not in ("residual", "gate"):
            raise InputError(f"temporal_attention must be 'residual' or 'gate', got {self.temporal_attention!r}")
        for name in ("temporal_norm", "spatial_norm"):
            if getattr(self, name) not in NORMS:
                raise InputError(f"{name} must be one of {', '.join(map(repr, NORMS))}, got {getattr(self, name)!r}")
        for name in ("branch_temporal_kernel", "branch_spatial_kernel"):
            if getattr(self, name) not in (1, 3):
                raise InputError(f"{name} must be 1 or 3, got {getattr(self, name)!r}")
        if self.branch_input not in ("layer3", "layer2"):
            raise InputError(f"branch_input must be 'layer3' or 'layer2', got {self.branch_input!r}")
        if self.branch_input == "layer2" and BACKBONES[self.backbone].strides[2] != 1:
            raise InputError(f"branch_input='layer2' needs layer3 at layer2's resolution; backbone "
                             f"{self.backbone!r} downsamples in layer3")
        if self.padding not in ("zeros", "replicate"):
            raise InputError(f"padding must be 'zeros' or 'replicate', got {self.padding!r}")
        if self.attention_readout not in ("fc", "attention"):
            raise InputError(f"attention_readout must be 'fc' or 'attention', got {self.attention_readout!r}")
        self.attention_branch = bool(self.attention_branch)
        if self.pool is None:  # resolved now, so a saved config keeps it if a default changes
            self.pool = BACKBONES[self.backbone].pool
        if self.pool == "attention" and not self.attention_branch:
            self.pool = "max"  # no attention to pool with: the plain backbone's best pooling

    @property
    def attention_size(self) -> tuple[int, int]:
        """``(h, w)`` of the per-frame spatial attention map (the ``layer3`` grid)."""
        s = BACKBONES[self.backbone].stride
        return tuple(-(-d // s) for d in self.input_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"], d["mean"], d["std"] = list(self.input_size), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "STABNConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown ST-ABN config keys: {', '.join(sorted(unknown))}")
        if "temporal_attention" not in d:  # saved before these options existed: the reference's
            d = {**d, "temporal_attention": "gate", "pool": d.get("pool") or "avg",
                 "dropout": d.get("dropout", 0.5)}
        return cls(**d)


__all__ = ["NORMS", "STABNConfig"]
