"""ST-ABN: a spatio-temporal attention branch network on a slow-only 3D ResNet.

The network (after the authors' code [V1]) is

* a **feature extractor**: a slow-only 3D ResNet up to ``layer3`` — stem ``1×7×7``, ``layer1`` and
  ``layer2`` purely spatial, the first convolution of every block of ``layer3`` / ``layer4``
  temporal (``3×1×1`` in bottlenecks, ``3×3×3`` in basic blocks); time is never downsampled, so
  every input frame keeps its own feature map, its own spatial attention map and its own temporal
  attention weight;
* an **attention branch** on the ``layer3`` features ``F``: a copy of ``layer4`` with spatial
  stride 1, then class-wise maps ``A (B, K, T, h, w)`` from which come the attention logits
  ``z_att``, the **spatial attention** ``M_s = σ(BN(conv₁ₓ₁ₓ₁(A))) (B, T, h, w)`` and the
  **temporal attention** ``M_t (B, T)`` (a ``3×3×3`` conv to one channel, a ``1×1`` conv across
  frames treated as channels, global pooling and two ``T×T`` fully connected layers, sigmoid);
* the **attention mechanism** ``G = ReLU(BN(conv₁ₓ₁ₓ₁([F ⊙ (1 + M_s), F ⊙ (1 + M_t)])))`` — both
  weightings residual, as ABN's ``(1 + M)`` (``temporal_attention="gate"`` gives the reference's
  non-residual ``F ⊙ M_t``); both attentions are sigmoids, so each frame gets an independent weight
  in [0, 1] and nothing normalises across frames (``temporal_norm`` / ``spatial_norm="softmax"``
  make frames, and cells, compete);
* a **perception branch**: ``layer4(G)``, global pooling, dropout and a linear head, ``z_per``.

``attention_branch=False`` builds the **plain backbone** (same layers and widths, ``layer3`` →
``layer4`` → pooling → head, no branch, no mechanism): the baseline an ST-ABN is compared with.

**Defaults that differ from the reference, and why** (measured on the synthetic benchmark, README
"ST-ABN"):

* the temporal weighting is residual, ``(1 + M_t)`` — with the gate, a frame whose ``M_t`` is
  near 0 loses half of its features, so while ``M_t`` is still arbitrary the gate removes
  evidence frames as often as it keeps them; ``temporal_attention="gate"`` restores it;
* the small backbones (``tiny``, ``small``) pool the perception branch **by the attention**
  (``pool="attention"``: ``layer4``'s output averaged with weights ``M_t · M_s``): their
  evidence (a few cells of a few frames) is diluted ~100× by an average over the ``T × h × w``
  grid (the reference's pooling; the old bundled model reached 0.75), while a maximum
  classifies well but gives the attention no reason to find anything (accuracy 1.00, top
  temporal frame in the window 0.53, spatial peak on the object 0.13). Pooling where the
  attention looks makes finding the evidence the attention's job. The branch's own poolings
  (class-wise maps per frame, the temporal path) and a plain backbone take the maximum;
  ``pool="avg"`` is the reference;
* no dropout before the heads of the small backbones (0.5 in the reference);
* the attention maps start from the class-wise maps (:meth:`STABN._init_attention`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.base import VideoModel
from ..models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess


# -- backbone sizes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackboneSpec:
    """One size of the slow-only 3D ResNet.

    Attributes:
        block: ``"basic"`` (two ``3×3`` convs) or ``"bottleneck"`` (``1×1``, ``3×3``, ``1×1``, ×4).
        blocks: blocks in ``layer1`` … ``layer4``.
        widths: base channels of ``layer1`` … ``layer4`` (bottlenecks output 4× as many).
        stem_width: channels of the stem convolution.
        stem_kernel, stem_stride: its spatial kernel and stride (ResNet's ``1×7×7`` at stride 2).
        stem_pool: a ``1×3×3`` stride-2 max-pool after the stem (as in ResNet).
        strides: spatial strides of ``layer1`` … ``layer4`` (the attention branch's copy of
            ``layer4`` always has stride 1). Small backbones for small inputs keep ``layer3`` at
            the resolution of ``layer2`` so that the attention maps stay usable (8×8 at 64 px).
        temporal_kernels: temporal size of the first convolution of each block in ``layer1`` …
            ``layer4``: ``(1, 1, 3, 3)`` is the slow-only ResNet of the paper (time only from
            ``layer3`` on), ``(3, 3, 3, 3)`` a fully 3D one.
        pool: default global pooling of the heads (see the module docstring).
        dropout: default dropout before the heads (0.5 in the paper; none for the small
            backbones, whose 32–128 pooled features are too few to drop half of).
    """

    block: Literal["basic", "bottleneck"]
    blocks: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    stem_width: int
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True
    strides: tuple[int, int, int, int] = (1, 2, 2, 2)
    temporal_kernels: tuple[int, int, int, int] = (1, 1, 3, 3)
    pool: Literal["avg", "max", "attention"] = "avg"
    dropout: float = 0.5
    help: str = ""

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def stride(self) -> int:
        """Spatial stride from the input to ``layer3`` (where the attention maps live)."""
        return self.stem_stride * (2 if self.stem_pool else 1) * self.strides[0] * self.strides[1] * self.strides[2]


BACKBONES: dict[str, BackboneSpec] = {
    "tiny": BackboneSpec("basic", (1, 1, 1, 1), (8, 16, 24, 32), 8, strides=(1, 2, 1, 2), pool="attention", dropout=0.0,
                         help="0.09 M parameters; trains on 2 CPU cores in minutes (64×64, 8 frames)"),
    "tiny-fine": BackboneSpec("basic", (1, 1, 1, 1), (8, 16, 24, 32), 8, strides=(1, 1, 1, 2), pool="attention",
                              dropout=0.0, help="tiny with layer2 at stride 1: attention maps at 1/4 of the input "
                                                "(16×16 at 64 px, 4-pixel cells) for ~2.4× the compute"),
    # for small evidence at small inputs (README "ST-ABN", held-out task): ResNet's 7×7/2 stem and
    # its pool leave a 9-px shape ~2 px wide before any block sees it; a 3×3 stem at full
    # resolution took the plain backbone on a held-out task from 0.49 to 0.99 (16×16 maps as tiny-fine)
    "tiny-hires": BackboneSpec("basic", (1, 1, 1, 1), (16, 32, 32, 64), 16, stem_kernel=3, stem_stride=1,
                               stem_pool=False, strides=(2, 2, 1, 2), pool="attention", dropout=0.0,
                               help="a 3×3 stem at full resolution (no pool) for small shapes: 16×16 maps "
                                    "at 64 px, ~4× tiny-fine's compute"),
    "tiny-hires-3d": BackboneSpec("basic", (1, 1, 1, 1), (16, 32, 32, 64), 16, stem_kernel=3, stem_stride=1,
                                  stem_pool=False, strides=(2, 2, 1, 2), temporal_kernels=(3, 3, 3, 3),
                                  pool="attention", dropout=0.0,
                                  help="tiny-hires with 3×3×3 kernels in every layer: evidence that is a "
                                       "change between frames"),
    "small": BackboneSpec("basic", (1, 1, 1, 1), (16, 32, 64, 128), 16, strides=(1, 2, 1, 2), pool="attention",
                          dropout=0.0, help="0.9 M parameters; small inputs (64–112 px)"),
    "r18": BackboneSpec("basic", (2, 2, 2, 2), (64, 128, 256, 512), 64,
                        help="slow-only 3D ResNet-18"),
    "r34": BackboneSpec("basic", (3, 4, 6, 3), (64, 128, 256, 512), 64,
                        help="slow-only 3D ResNet-34"),
    "r50": BackboneSpec("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64,
                        help="slow-only 3D ResNet-50, the paper's backbone"),
}


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
            (README "ST-ABN", held-out task). Replicate padding leaves no cell a position of its
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


# -- output ---------------------------------------------------------------------------------------
class STABNOutput(NamedTuple):
    """What one forward pass of :class:`STABN` returns.

    A plain backbone (``attention_branch=False``) gives ``None`` for everything but ``logits``.

    Attributes:
        logits: ``(B, K)`` perception-branch logits (the model's prediction).
        att_logits: ``(B, K)`` attention-branch logits.
        spatial: ``(B, T, h, w)`` spatial attention ``M_s`` in (0, 1), one map per frame.
        temporal: ``(B, T)`` temporal attention ``M_t`` in (0, 1), one weight per frame (the
            one used by the attention mechanism: the override, if one was given).
        temporal_logits: ``(B, T)`` the logits ``M_t`` is squashed from (``None`` with an
            override, or without a branch); what a softmax attention's ``L_temp`` is computed on
            (:func:`~.losses.temporal_loss`).
    """

    logits: torch.Tensor
    att_logits: torch.Tensor | None
    spatial: torch.Tensor | None
    temporal: torch.Tensor | None
    temporal_logits: torch.Tensor | None = None


# -- building blocks ------------------------------------------------------------------------------
def _conv(cin: int, cout: int, k: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, k, stride=stride, padding=tuple(x // 2 for x in k), bias=False)


class BasicBlock(nn.Module):
    expansion: ClassVar[int] = 1

    def __init__(self, cin: int, width: int, stride: int, kt: int, ks: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv(cin, width, (kt, ks, ks), (1, stride, stride))
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = _conv(width, width, (1, ks, ks))
        self.bn2 = nn.BatchNorm3d(width)
        self.downsample = _shortcut(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion: ClassVar[int] = 4

    def __init__(self, cin: int, width: int, stride: int, kt: int, ks: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv(cin, width, (kt, 1, 1))
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = _conv(width, width, (1, ks, ks), (1, stride, stride))
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = _conv(width, width * 4, (1, 1, 1))
        self.bn3 = nn.BatchNorm3d(width * 4)
        self.downsample = _shortcut(cin, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, (1, 1, 1), (1, stride, stride)), nn.BatchNorm3d(cout))


def _layer(spec: BackboneSpec, cin: int, i: int, stride: int, kt: int | None = None, ks: int = 3) -> nn.Sequential:
    """``layer{i+1}``: temporal kernels ``kt``, by default the spec's (slow-only: 3 only in layer3 and layer4,
    ``inflate=(0,0,1,1)``); spatial kernels ``ks``."""
    block = Bottleneck if spec.block == "bottleneck" else BasicBlock
    kt = kt if kt is not None else spec.temporal_kernels[i]
    width = spec.widths[i]
    mods = []
    for j in range(spec.blocks[i]):
        mods.append(block(cin, width, stride if j == 0 else 1, kt, ks))
        cin = width * block.expansion
    return nn.Sequential(*mods)


# -- the network ----------------------------------------------------------------------------------
class STABN(nn.Module):
    """The ST-ABN network on normalised input ``(B, 3, T, h, w)``; see the module docstring.

    Use :class:`STABNVideoModel` (or :func:`build`) for the pixel-space adapter.
    """

    def __init__(self, config: STABNConfig) -> None:
        super().__init__()
        self.config = config
        spec = BACKBONES[config.backbone]
        k, t, e = config.num_classes, config.num_frames, spec.expansion
        c3, c4 = spec.widths[2] * e, spec.widths[3] * e

        # feature extractor
        self.stem = nn.Sequential(_conv(3, spec.stem_width, (1, spec.stem_kernel, spec.stem_kernel),
                                        (1, spec.stem_stride, spec.stem_stride)),
                                  nn.BatchNorm3d(spec.stem_width), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if spec.stem_pool else nn.Identity()
        self.layer1 = _layer(spec, spec.stem_width, 0, spec.strides[0])
        self.layer2 = _layer(spec, spec.widths[0] * e, 1, spec.strides[1])
        self.layer3 = _layer(spec, spec.widths[1] * e, 2, spec.strides[2])

        if config.attention_branch:
            # attention branch: a layer4 with spatial stride 1, then K class-wise maps
            kt = config.branch_temporal_kernel
            c_in = c3 if config.branch_input == "layer3" else spec.widths[1] * e
            ks = config.branch_spatial_kernel
            self.att_layer4 = _layer(spec, c_in, 3, 1, kt, ks)
            self.att_bn = nn.BatchNorm3d(c4)
            self.att_conv = _conv(c4, k, (1, 1, 1))
            self.att_bn2 = nn.BatchNorm3d(k)
            self.att_out = _conv(k, k, (1, 1, 1))
            if config.attention_readout == "fc":
                self.att_fc = nn.Linear(k * t, k)
            self.spatial_conv = _conv(k, 1, (1, 1, 1))
            self.spatial_bn = nn.BatchNorm3d(1)
            self.temporal_conv = _conv(k, 1, (kt, ks, ks))
            self.temporal_bn = nn.BatchNorm3d(1)
            self.temporal_mix = nn.Conv2d(t, t, 1)        # frames as channels
            self.temporal_fc1 = nn.Linear(t, t)
            self.temporal_fc2 = nn.Linear(t, t)

            # attention mechanism
            self.fusion = nn.Sequential(_conv(2 * c3, c3, (1, 1, 1)), nn.BatchNorm3d(c3), nn.ReLU(inplace=True))

        # perception branch
        self.layer4 = _layer(spec, c3, 3, spec.strides[3])
        self.fc = nn.Linear(c4, k)
        self.dropout = nn.Dropout(config.dropout)
        if config.padding != "zeros":
            # one switch for every padded convolution (backbone, branch, heads' paths): a Conv3d
            # pads by its padding_mode at each call, so setting it after construction is exact
            for m in self.modules():
                if isinstance(m, nn.Conv3d) and any(p > 0 for p in m.padding):
                    m.padding_mode = config.padding
        self._init_weights()

    #: module groups, for freezing schedules (see videoxai.stabn.knowledge)
    GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {
        "feature_extractor": ("stem", "pool", "layer1", "layer2", "layer3"),
        "attention_branch": ("att_layer4", "att_bn", "att_conv", "att_bn2", "att_out", "att_fc",
                             "spatial_conv", "spatial_bn", "temporal_conv", "temporal_bn",
                             "temporal_mix", "temporal_fc1", "temporal_fc2"),
        "perception_branch": ("fusion", "layer4", "fc"),
    }

    def _init_weights(self) -> None:
        if self.fc.weight.is_meta:  # built on the meta device (shapes, sizes): nothing to draw
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.attention_branch:
            self._init_attention()
        # the two class heads as in [V1]: N(0, 0.01), zero bias
        for head in (self.fc, getattr(self, "att_fc", None)):
            if head is None:
                continue
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.zeros_(head.bias)

    @torch.no_grad()
    def _init_attention(self) -> None:
        """Both attentions start as the attention branch's class evidence (see the module docstring).

        The maps' only training signal is the perception loss, which (through max pooling and a
        residual weighting) barely reaches them: from random weights they stay arbitrary (a
        fixed bump over the middle frames, peaks off the object). So the two convolutions that
        read the ``K`` class-wise maps start as their mean (the centre tap of the ``3×3×3``
        one), and the frame-mixing ``T×T`` layers as the identity: at first a pixel's spatial
        weight is the class evidence there, and a frame's temporal weight that frame's strongest
        evidence — what ABN's attention map is by construction. Training then adapts them.
        """
        k = self.config.num_classes
        self.spatial_conv.weight.fill_(1.0 / k)
        self.temporal_conv.weight.zero_()
        kt, kh, kw = self.temporal_conv.weight.shape[2:]
        self.temporal_conv.weight[:, :, kt // 2, kh // 2, kw // 2] = 1.0 / k
        for layer in (self.temporal_mix, self.temporal_fc1, self.temporal_fc2):
            layer.weight.copy_(torch.eye(layer.weight.shape[0]).view_as(layer.weight))
            layer.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` → ``layer3`` features ``F (B, C3, T, h, w)``."""
        return self._features(x)[1]

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, T, H, W)`` → (what the attention branch reads, ``F``)."""
        f2 = self.layer2(self.layer1(self.pool(self.stem(x))))
        f3 = self.layer3(f2)
        return (f2 if self.config.branch_input == "layer2" else f3), f3

    def attention(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``F`` → ``(z_att (B, K), M_s (B, T, h, w), M_t (B, T), M_t's logits (B, T))``."""
        a = F.relu(self.att_bn2(self.att_conv(self.att_bn(self.att_layer4(feats)))))  # (B, K, T, h, w)
        scores = self.att_out(a)                                                     # (B, K, T, h, w)
        s = self.spatial_bn(self.spatial_conv(a))[:, 0]                              # (B, T, h, w)
        m_s = NORMS[self.config.spatial_norm](s.flatten(2)).view_as(s)
        u = F.relu(self.temporal_bn(self.temporal_conv(a)))[:, 0]                    # (B, T, h, w)
        u = self._pool(F.relu(self.temporal_mix(u)), (2, 3))                         # (B, T)
        t_logits = self.temporal_fc2(F.relu(self.temporal_fc1(u)))                         # (B, T)
        m_t = NORMS[self.config.temporal_norm](t_logits)
        if self.config.attention_readout == "attention":
            w = (m_t[:, :, None, None] * m_s)[:, None]                               # (B, 1, T, h, w)
            z_att = (scores * w).sum((2, 3, 4)) / w.sum((2, 3, 4)).clamp_min(1e-6)
        else:
            z_att = self.att_fc(self.dropout(self._pool(scores, (3, 4)).flatten(1)))  # from (B, K·T)
        return z_att, m_s, m_t, t_logits

    def forward(self, x: torch.Tensor, temporal_override: torch.Tensor | None = None) -> STABNOutput:
        """``(B, 3, T, H, W)`` normalised → :class:`STABNOutput`.

        ``temporal_override`` ``(B, T)`` or ``(T,)`` replaces ``M_t`` in the attention mechanism
        (the editor's preview of a human edit); the attention logits are unaffected.
        """
        b, _, t = x.shape[:3]
        if t != self.config.num_frames:
            raise InputError(f"this ST-ABN was built for {self.config.num_frames} frames, got {t}")
        branch_feats, feats = self._features(x)
        if not self.config.attention_branch:  # the plain backbone
            if temporal_override is not None:
                raise InputError("this model has no attention branch: nothing to override")
            z = self.fc(self.dropout(self._pool(self.layer4(feats), (2, 3, 4))))
            return STABNOutput(z, None, None, None)
        z_att, m_s, m_t, t_logits = self.attention(branch_feats)
        if temporal_override is not None:
            m_t, t_logits = _as_override(temporal_override, b, t, feats), None
        g_s = feats * (1.0 + m_s[:, None])
        residual = 1.0 if self.config.temporal_attention == "residual" else 0.0
        g_t = feats * (residual + m_t[:, None, :, None, None])
        g = self.fusion(torch.cat([g_s, g_t], 1))
        y = self.layer4(g)
        if self.config.pool == "attention":
            # the perception branch pools where and when the attention looks: weights M_t · M_s,
            # brought to layer4's grid, normalised over (T, h, w)
            w = F.adaptive_avg_pool3d((m_t[:, :, None, None] * m_s)[:, None], y.shape[2:])
            pooled = (y * w).sum((2, 3, 4)) / w.sum((2, 3, 4)).clamp_min(1e-6)
        else:
            pooled = self._pool(y, (2, 3, 4))
        return STABNOutput(self.fc(self.dropout(pooled)), z_att, m_s, m_t, t_logits)

    def _pool(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        # "attention" pooling needs the attention: the branch's own poolings and a plain
        # backbone take the maximum
        return x.mean(dims) if self.config.pool == "avg" else x.amax(dims)


def _as_override(m: torch.Tensor, b: int, t: int, like: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(m, dtype=like.dtype, device=like.device)
    if m.ndim == 1:
        m = m.expand(b, -1)
    if m.shape != (b, t):
        raise InputError(f"temporal attention override must be ({b}, {t}) or ({t},), got {tuple(m.shape)}")
    if not torch.isfinite(m).all() or (m < 0).any() or (m > 1).any():
        raise InputError("temporal attention override must lie in [0, 1]")
    return m


# -- the pixel-space adapter ----------------------------------------------------------------------
class STABNVideoModel(VideoModel):
    """An ST-ABN behind the :class:`~videoxai.models.base.VideoModel` interface.

    Its logits (``model(pixels)``) are the **perception branch's**, the model's prediction as in
    the paper. :meth:`outputs` gives everything at once (both branches' logits and both
    attentions); after any forward, :attr:`last_output` holds that forward's outputs (detached),
    so the ``stabn`` explanation method costs no extra pass. Layout ``BCTHW``. A loaded model's
    :attr:`metadata` is its ``videoxai.json`` (training data, command, metrics).
    """

    def __init__(self, net: STABN, name: str | None = None) -> None:
        cfg = net.config
        pre = Preprocess(size=cfg.input_size, shortest_edge=cfg.shortest_edge, mean=cfg.mean, std=cfg.std)
        super().__init__(net, num_frames=cfg.num_frames, preprocess=pre, labels=cfg.labels,
                         num_classes=cfg.num_classes, layout="BCTHW", fixed_num_frames=True,
                         cam_layer="layer4", family="stabn",
                         name=name or (f"stabn-{cfg.backbone}" if cfg.attention_branch else f"backbone-{cfg.backbone}"))
        self.last_output: STABNOutput | None = None
        self.metadata: dict = {}
        self._override: torch.Tensor | None = None
        self._capture: list[STABNOutput] | None = None

    @property
    def config(self) -> STABNConfig:
        return self.net.config

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x, temporal_override=self._override)
        self.last_output = STABNOutput(*(None if o is None else o.detach() for o in out))
        if self._capture is not None:
            self._capture.append(out)
        return out.logits

    def outputs(self, pixels: torch.Tensor, temporal_override: torch.Tensor | None = None) -> STABNOutput:
        """``(B, T, 3, H, W)`` pixels in [0, 1] → :class:`STABNOutput` (with gradients).

        ``temporal_override`` ``(B, T)`` or ``(T,)`` in [0, 1] replaces the temporal attention in
        the attention mechanism, to see how an edit changes the prediction.
        """
        with self.exclusive():  # the override and the capture are this call's alone
            self._override, self._capture = temporal_override, []
            try:
                self(pixels)
                return self._capture[0]
            finally:
                self._override, self._capture = None, None


def build(config: STABNConfig | None = None, *, name: str | None = None, **kwargs) -> STABNVideoModel:
    """A freshly initialised ST-ABN adapter: ``build(num_classes=5, num_frames=8, backbone="tiny")``."""
    if config is None:
        config = STABNConfig(**kwargs)
    elif kwargs:
        raise InputError("give a config or keyword arguments, not both")
    return STABNVideoModel(STABN(config), name=name)


__all__ = ["BACKBONES", "BackboneSpec", "STABNConfig", "STABN", "STABNOutput", "STABNVideoModel", "build"]
