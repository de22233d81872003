"""``stabn`` — the explanation an ST-ABN gives of itself.

An ST-ABN (:mod:`videoxai.stabn`) computes, in the same forward pass that classifies, a spatial
attention map per frame ``M_s (B, T, h, w)`` on its ``layer3`` grid and a temporal attention
weight per frame ``M_t (B, T)``, and weights its features with them before the perception branch.
This method returns those: ``maps`` are ``M_s`` (``space="crop"``: the grid covers the model's
input window), ``temporal`` is ``M_t``. One forward pass, no gradients.

The attention is the model's, not the target's: it is the same whichever class is asked about
(``target`` only selects the class whose score is reported). ``weight_by_temporal=True``
multiplies each frame's map by its ``M_t`` so that one map shows both where and when.

The grid goes on the frame as a CNN's does for the CAM methods (:mod:`videoxai.methods.cam`):
each cell on the pixel its windows are centred on, found by watching the first explanation's
forward pass up to the attention branch (:mod:`videoxai.core.footprint`). The bundled
``demo-stabn``'s 16 × 16 grid sits on pixels 0, 4, …, 60 of its 64; stretched over the frame it
sat 1.5 pixels down and to the right.
"""

from __future__ import annotations

import torch

from ..core.footprint import FootprintCache, laying, watching
from .base import Attribution, Method, Target, manages_model_lock, register

#: where an ST-ABN's attention grid lies on its input, per network and input shape
_FOOTPRINTS: FootprintCache = FootprintCache()


@register
class STABNAttention(Method):
    """An ST-ABN's own spatial and temporal attention; see the module docstring.

    Returns ``maps (B, T, h, w)`` on the model's ``layer3`` grid (``space="crop"``),
    ``temporal (B, T)`` and ``extras["attention_logits"]``.

    Args:
        weight_by_temporal: multiply each frame's spatial map by its temporal weight.
    """

    name = "stabn"
    paper = ('Mitsuhara et al., ST-ABN: Visual Explanation Taking into Account Spatio-temporal '
             'Information for Video Recognition, arXiv 2110.15574 (2021); Fukui et al., Attention '
             'Branch Network, CVPR 2019')
    applies_to = "ST-ABN models only (videoxai stabn train, or 'demo-stabn')"

    @classmethod
    @manages_model_lock  # it reads the model's class and config only
    def unsupported(cls, model) -> str | None:
        from ..stabn.model import STABNVideoModel

        if not isinstance(model, STABNVideoModel):
            return (f"method 'stabn' explains ST-ABN models with their own attention; {model.name} "
                    f"({model.family}) is not one (train one with `videoxai stabn train`, or load "
                    "'demo-stabn')")
        if not model.config.attention_branch:
            return (f"method 'stabn' needs an attention branch; {model.name} is the plain backbone "
                    "(explain it with gradcam)")
        return super().unsupported(model)

    def __init__(self, model, weight_by_temporal: bool = False) -> None:
        super().__init__(model)
        self.weight_by_temporal = bool(weight_by_temporal)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        net = self.model.net
        key = tuple(inputs.shape[1:])
        # the attention maps are on the branch's first layer's grid (its later convolutions are 1×1)
        with torch.no_grad(), watching(_FOOTPRINTS, net, net.att_layer4, {"T": 2, "H": 3, "W": 4}, key):
            out = self.model.outputs(inputs)
        target = self.resolve_target(target, out.logits)
        maps = out.spatial
        if self.weight_by_temporal:
            maps = maps * out.temporal[:, :, None, None]
        seen = laying(_FOOTPRINTS[net][key], maps.shape[1:])
        return Attribution(maps=maps.float(), space="crop", target=target, logits=out.logits,
                           temporal=out.temporal.float(), time_align="repeat",
                           extras={"attention_logits": out.att_logits}, footprint=seen)
