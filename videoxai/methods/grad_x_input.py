"""Gradient × input (Shrikumar et al., 2016): each pixel's value times the gradient of the target
logit with respect to it.

One forward and one backward pass. The signed attribution equals Captum's ``InputXGradient``;
for a model that is linear in its pixels it is each pixel's exact additive contribution to the
logit. The map sums the absolute contributions over the colour channels by default.

Pixels are in [0, 1], so "input" means the distance from a black clip: a dark object gets little
attribution however much it matters. Integrated Gradients with another ``baseline`` avoids that.
"""

from __future__ import annotations

import torch

from .base import Target, register
from .gradients import ChannelReduce, InputGradientMethod, PixelAttribution


@register
class GradXInput(InputGradientMethod):
    """Gradient × input; see the module docstring. ``channel_reduce`` and the shapes:
    :class:`~videoxai.methods.gradients.InputGradientMethod`."""

    name = "grad_x_input"
    paper = ('Shrikumar et al., Not Just a Black Box: Learning Important Features Through Propagating '
             'Activation Differences, arXiv 1605.01713 (2016)')

    def __init__(self, model, channel_reduce: ChannelReduce = "abs") -> None:
        super().__init__(model, channel_reduce)

    def attribute_pixels(self, inputs: torch.Tensor, target: Target = None) -> PixelAttribution:
        x, grads, target, logits = self.clean_gradient(inputs, target)
        return PixelAttribution(values=x * grads, target=target, logits=logits)
