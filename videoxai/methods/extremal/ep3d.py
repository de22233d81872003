"""3D-EP: extremal perturbation with one area constraint over the clip."""

from __future__ import annotations

from ..base import register
from .base import PAPER, ExtremalPerturbation


@register
class EP3D(ExtremalPerturbation):
    """3D-EP: one mask per frame, a single area constraint over the whole T×h×w volume."""

    name = "ep3d"
    paper = PAPER
    per_frame_area = False
