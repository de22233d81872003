"""Grad-CAM++ (Chattopadhay et al., 2018) with its 3-D weights.

With the paper's exponential trick, the weight of channel c is
``w_c = Σ_{t,h,w} α_c(t,h,w) · relu(g_c(t,h,w))`` with
``α = g² / (2 g² + Σ_{t',h',w'} A_c · g³)``, where ``g`` is the gradient of the target logit and the
sum in the denominator runs over the whole ``(T', H', W')`` grid. Dividing by ``g²`` gives
``α = 1 / (2 + g · Σ A_c)``, which we evaluate instead: it is the same number where ``g ≠ 0`` (α is
0 elsewhere) and does not underflow in float32 for the tiny gradients of deep layers.

Peers: the pytorch-grad-cam snapshot in our survey (1.5.5) summed over axes (2, 3) only and failed
on 5-D activations; 1.5.7 sums over every axis ≥ 2. It also adds ``eps = 1e-6`` to the denominator,
which outweighs ``2 g²`` once gradients fall below ~1e-3 — typical of a 3D CNN's last block (a
random r2plus1d_18: max |g| ≈ 1e-3, maps 7 % off) — and then turns the weights into
``≈ Σ relu(g)³ / eps``. Our tests compare against a hand-written reference of the formula, and
against pytorch-grad-cam 1.5.7 on a model scaled so that its ``eps`` is negligible.
"""

from __future__ import annotations

import torch

from .base import register
from .cam import CAMMethod, LayerOption, LayerState, Placement


@register
class GradCAMPlusPlus(CAMMethod):
    """Grad-CAM++; see the module docstring. ``layer`` and the shapes: :class:`~videoxai.methods.cam.CAMMethod`.

    Args:
        placement: where a CNN layer's grid goes on the input: ``"centres"``, each cell on the frame
            and pixel its windows are centred on, or ``"stretch"``, stretched over the input as an
            image is resized (:class:`~videoxai.methods.cam.CAMMethod`).
    """

    name = "gradcam_pp"
    paper = ('Chattopadhay et al., Grad-CAM++: Generalized Gradient-based Visual Explanations for '
             'Deep Convolutional Networks, WACV 2018')

    def __init__(self, model, layer: LayerOption = None, placement: Placement = "centres") -> None:
        super().__init__(model, layer, placement)

    def weights(self, state: LayerState) -> torch.Tensor:
        a, g = state.activations, state.gradients
        denom = 2 + g * a.sum((2, 3, 4), keepdim=True)
        alpha = torch.where((g != 0) & (denom != 0), 1 / torch.where(denom != 0, denom, 1), 0)
        return (alpha * g.clamp_min(0)).sum((2, 3, 4))   # (B, C)
