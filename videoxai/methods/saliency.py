"""Saliency: the gradient of the target logit with respect to the input pixels
(Simonyan, Vedaldi & Zisserman, 2014).

One forward and one backward pass. :meth:`Saliency.attribute_pixels` returns the signed gradient
``(B, T, 3, H, W)`` (Captum's ``Saliency(abs=False)``); the map takes, by default, the largest
absolute gradient over the colour channels, as in the paper.
"""

from __future__ import annotations

import torch

from .base import Target, register
from .gradients import ChannelReduce, InputGradientMethod, PixelAttribution


@register
class Saliency(InputGradientMethod):
    """Vanilla gradient; see the module docstring. ``channel_reduce`` and the shapes:
    :class:`~videoxai.methods.gradients.InputGradientMethod`."""

    name = "saliency"
    paper = ('Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks: Visualising Image '
             'Classification Models and Saliency Maps, ICLR workshop 2014')

    def __init__(self, model, channel_reduce: ChannelReduce = "max") -> None:
        super().__init__(model, channel_reduce)

    def attribute_pixels(self, inputs: torch.Tensor, target: Target = None) -> PixelAttribution:
        _, grads, target, logits = self.clean_gradient(inputs, target)
        return PixelAttribution(values=grads, target=target, logits=logits)
