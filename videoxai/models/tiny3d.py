"""A tiny residual 3D CNN family, trainable on a CPU, for CAM methods and tests.

``Tiny3DCNN`` is a 3D ResNet in miniature: a stem, three residual stages ``layer1`` … ``layer3``
of :class:`BasicBlock3d` (3×3×3 convolutions, batch norm), global average pooling and a linear
classifier. Time is never strided by default, so the last stage keeps one feature frame per input
frame and Grad-CAM's temporal map has the clip's own resolution.

A model directory holds ``videoxai.json`` (``{"loader": "tiny3d", "config": …, "labels": …,
"preprocess": …}``) and ``model.safetensors``; :func:`load_tiny3d` (registered as the
``"tiny3d:"`` loader) reads it back as a :class:`~videoxai.models.base.VideoModel`, and the
bundled ``"demo-cnn"`` is one such directory trained on the synthetic benchmark
(``scripts/train_demo.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import UnknownModelError
from . import ASSETS, register_bundled, register_loader
from .base import VideoModel
from .preprocess import Preprocess

FORMAT = "tiny3d"
_POOLS = {"avg": nn.AdaptiveAvgPool3d, "max": nn.AdaptiveMaxPool3d}


@dataclass
class Tiny3DConfig:
    """Hyper-parameters of :class:`Tiny3DCNN`.

    Attributes:
        num_classes: size of the classifier output.
        num_frames: clip length the model was trained on (it accepts any length: pooling is global).
        input_size: side of the square input it was trained on.
        widths: channels of the stem/``layer1``, ``layer2`` and ``layer3``.
        spatial_strides: spatial stride of the stem and of each stage (64 → 32 → 16 → 8 → 8).
        temporal_strides: temporal stride of the stem and of each stage (1: keep every frame).
        pool: global pooling of the last stage, ``"avg"`` (the ResNet default) or ``"max"``
            (a detector: "is the evidence anywhere, at any time"; suits small, brief evidence).
        dropout: dropout before the classifier (training only).
    """

    num_classes: int = 4
    num_frames: int = 8
    input_size: int = 64
    widths: tuple[int, int, int] = (16, 32, 64)
    spatial_strides: tuple[int, int, int, int] = (2, 2, 2, 1)
    temporal_strides: tuple[int, int, int, int] = (1, 1, 1, 1)
    pool: str = "avg"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.spatial_strides = tuple(int(s) for s in self.spatial_strides)
        self.temporal_strides = tuple(int(s) for s in self.temporal_strides)
        if len(self.widths) != 3 or len(self.spatial_strides) != 4 or len(self.temporal_strides) != 4:
            raise ValueError("Tiny3DConfig needs 3 widths and 4 spatial / temporal strides")
        if self.pool not in _POOLS:
            raise ValueError(f"Tiny3DConfig.pool must be one of {sorted(_POOLS)}, got {self.pool!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "Tiny3DConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UnknownModelError(f"unknown Tiny3DConfig keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class BasicBlock3d(nn.Module):
    """Two 3×3×3 conv–BN layers with an identity (or 1×1×1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=False)  # no in-place ops: CAM hooks keep these activations
        self.downsample = None
        if cin != cout or stride != (1, 1, 1):
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T, H, W)`` → ``(B, C_out, T/st, H/s, W/s)``."""
        skip = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + skip)


class Tiny3DCNN(nn.Module):
    """Stem → ``layer1`` → ``layer2`` → ``layer3`` → global pool → ``fc``.

    Input: normalised clips ``(B, 3, T, H, W)``; output: logits ``(B, num_classes)``.
    """

    def __init__(self, config: Tiny3DConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or Tiny3DConfig()
        w1, w2, w3 = config.widths
        st, ss = config.temporal_strides, config.spatial_strides
        self.stem = nn.Sequential(
            nn.Conv3d(3, w1, (3, 5, 5), stride=(st[0], ss[0], ss[0]), padding=(1, 2, 2), bias=False),
            nn.BatchNorm3d(w1), nn.ReLU(inplace=False))
        self.layer1 = BasicBlock3d(w1, w1, (st[1], ss[1], ss[1]))
        self.layer2 = BasicBlock3d(w1, w2, (st[2], ss[2], ss[2]))
        self.layer3 = BasicBlock3d(w2, w3, (st[3], ss[3], ss[3]))
        self.pool = _POOLS[config.pool](1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(w3, config.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for block in (self.layer1, self.layer2, self.layer3):
            nn.init.zeros_(block.bn2.weight)  # each residual branch starts as the identity

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` → ``layer3`` features ``(B, C, T', H', W')``."""
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))

    def save_pretrained(self, directory: str | Path, labels: Sequence[str], preprocess: Preprocess) -> Path:
        """Write ``videoxai.json`` and ``model.safetensors`` to ``directory`` (created if needed)."""
        from safetensors.torch import save_file

        if len(labels) != self.config.num_classes:
            raise ValueError(f"{len(labels)} labels for a model with {self.config.num_classes} classes")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"loader": FORMAT, "config": self.config.to_dict(), "labels": list(labels),
                "preprocess": {"size": list(preprocess.size), "shortest_edge": preprocess.shortest_edge,
                               "mean": list(preprocess.mean), "std": list(preprocess.std),
                               "resize": None if preprocess.resize is None else list(preprocess.resize),
                               "interpolation": preprocess.interpolation, "crop_offset": preprocess.crop_offset,
                               "antialias": preprocess.antialias}}
        (out / "videoxai.json").write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": FORMAT})
        return out


def load_tiny3d_net(directory: str | Path) -> tuple[Tiny3DCNN, dict]:
    """Read a :class:`Tiny3DCNN` (eval mode) and its ``videoxai.json`` from ``directory``."""
    from safetensors.torch import load_file

    path = Path(directory)
    meta_file, weights = path / "videoxai.json", path / "model.safetensors"
    for f in (meta_file, weights):
        if not f.is_file():
            raise UnknownModelError(f"{path} is not a tiny3d model directory: {f.name} is missing")
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as e:  # the user's file: one line naming it, not a JSONDecodeError
        raise UnknownModelError(f"{meta_file} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise UnknownModelError(f"{meta_file} is not a JSON object")
    if meta.get("loader") != FORMAT:
        raise UnknownModelError(f"{meta_file} is for loader {meta.get('loader')!r}, not {FORMAT!r}")
    net = Tiny3DCNN(Tiny3DConfig.from_dict(meta.get("config", {})))
    from safetensors import SafetensorError

    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as e:  # truncated or not a safetensors file
        raise UnknownModelError(f"cannot read {weights}: {e}") from e
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UnknownModelError(f"{weights} does not match its config: {e}") from e
    return net.eval(), meta


@register_loader(FORMAT)
def load_tiny3d(rest: str, device: torch.device | str = "cpu", name: str | None = None) -> VideoModel:
    """Tiny residual 3D CNN (videoxai format): a directory with videoxai.json + model.safetensors."""
    net, meta = load_tiny3d_net(rest)
    pp = meta.get("preprocess", {})
    cfg = net.config
    size = tuple(pp.get("size", (cfg.input_size, cfg.input_size)))
    preprocess = Preprocess(size=(int(size[0]), int(size[1])), shortest_edge=pp.get("shortest_edge"),
                            mean=tuple(pp.get("mean", (0.5, 0.5, 0.5))),
                            std=tuple(pp.get("std", (0.25, 0.25, 0.25))),
                            resize=tuple(pp["resize"]) if pp.get("resize") else None,
                            interpolation=pp.get("interpolation", "bilinear"),
                            # a directory saved before these keys existed: the geometry it had
                            crop_offset=pp.get("crop_offset", "centre"), antialias=bool(pp.get("antialias", True)))
    model = VideoModel(net, num_frames=cfg.num_frames, preprocess=preprocess, labels=meta.get("labels"),
                       num_classes=cfg.num_classes, layout="BCTHW", fixed_num_frames=False,
                       cam_layer="layer3", family=FORMAT, name=name or rest)
    return model.to(device).eval()


register_bundled("demo-cnn", f"{FORMAT}:{ASSETS / 'demo_cnn3d'}",
                 "tiny residual 3D CNN trained on the synthetic benchmark (bundled)")

__all__ = ["Tiny3DConfig", "Tiny3DCNN", "BasicBlock3d", "load_tiny3d", "load_tiny3d_net"]
