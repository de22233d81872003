"""An ST-ABN as a videoxai model: :class:`STABNVideoModel` (pixels in, the perception branch's
logits out, both attentions alongside) and :func:`build`, which makes a fresh one.

The network itself is :mod:`.network`, its layers and sizes :mod:`.backbone`, its configuration
:mod:`.config`; their public names are importable from here too
(``from videoxai.stabn.model import STABNConfig, build``).
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..models.base import VideoModel
from ..models.preprocess import Preprocess
from .backbone import BACKBONES, BackboneSpec
from .config import STABNConfig
from .network import STABN, STABNOutput


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
