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

The layers and sizes are :mod:`.backbone`'s, the configuration :class:`~.config.STABNConfig`; the
model that takes pixels (preprocessing, class names, the explanation methods' interface) is
:class:`~.model.STABNVideoModel`.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .backbone import BACKBONES, _conv, _layer
from .config import NORMS, STABNConfig


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


__all__ = ["STABN", "STABNOutput"]
