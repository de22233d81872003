"""2D-EP: extremal perturbation with the area constrained in every frame."""

from __future__ import annotations

from ..base import register
from .base import PAPER, ExtremalPerturbation


@register
class EP2D(ExtremalPerturbation):
    """2D-EP: one mask per frame, the area constraint applied to each frame separately."""

    name = "ep2d"
    paper = PAPER
    per_frame_area = True
