"""The slow-only 3D ResNet that an ST-ABN is built on: its sizes (:data:`BACKBONES`) and blocks.

A ResNet with 3D convolutions whose later blocks also span neighbouring frames, and in which no
layer downsamples time: every input frame keeps its own feature map up to the last layer (the
attention branch reads one map per frame). :class:`~.network.STABN` assembles these layers into the feature extractor, the attention
branch's copy of ``layer4`` and the perception branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn


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
        pool: default global pooling of the heads (see :mod:`.network`).
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
    # for small evidence at small inputs (docs/experiments/stabn.md, "Held-out task"): ResNet's 7×7/2 stem and
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


__all__ = ["BACKBONES", "BackboneSpec", "BasicBlock", "Bottleneck"]
