"""Grad-CAM (Selvaraju et al., 2017) on a 3D feature map or on transformer tokens.

``map = relu(Σ_c w_c · A_c)`` with ``w_c`` the mean gradient of the target logit over the layer's
``(T', H', W')`` grid. With ``per_frame_weights=True`` the mean is taken per temporal slice,
``w_{c,t'}`` over ``(H', W')`` only, as PySlowFast and mmaction2 do: a channel may count in the
frames where the action happens and not elsewhere. One forward pass and a backward pass that stops
at the layer. See :mod:`videoxai.methods.cam` for the layer, the token reshapes and time alignment.
"""

from __future__ import annotations

import torch

from .base import register
from .cam import CAMMethod, LayerOption, LayerState, Placement


@register
class GradCAM(CAMMethod):
    """Grad-CAM; see the module docstring. ``layer`` and the shapes: :class:`~videoxai.methods.cam.CAMMethod`.

    Args:
        per_frame_weights: one weight per channel and feature frame instead of per channel.
        placement: where a CNN layer's grid goes on the input: ``"centres"``, each cell on the frame
            and pixel its windows are centred on, or ``"stretch"``, stretched over the input as an
            image is resized (:class:`~videoxai.methods.cam.CAMMethod`).
    """

    name = "gradcam"
    paper = ('Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based '
             'Localization, ICCV 2017')

    def __init__(self, model, layer: LayerOption = None, per_frame_weights: bool = False,
                 placement: Placement = "centres") -> None:
        super().__init__(model, layer, placement)
        self.per_frame_weights = per_frame_weights

    def weights(self, state: LayerState) -> torch.Tensor:
        g = state.gradients
        if self.per_frame_weights:
            return g.mean((3, 4), keepdim=True)          # (B, C, T', 1, 1)
        return g.mean((2, 3, 4))                         # (B, C)
