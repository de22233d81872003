"""Visualisation: overlay videos, temporal-importance curves and self-contained HTML reports."""

from .curve import temporal_curve
from .overlay import colormap_lut, overlay_frames, render, render_frames
from .report import write_report

__all__ = ["overlay_frames", "render", "render_frames", "colormap_lut", "temporal_curve", "write_report"]
