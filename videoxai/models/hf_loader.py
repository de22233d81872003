"""Registers the Hugging Face loader (`hf:`) and the bundled demo TimeSformer (`demo`)."""

from __future__ import annotations

import torch

from . import ASSETS, register_bundled, register_loader
from .hf import load_hf


@register_loader("hf")
def _hf(rest: str, device: torch.device, **options):
    """Hugging Face TimeSformer / VideoMAE / ViViT / V-JEPA 2 / VideoPrism: hub id or save_pretrained directory."""
    return load_hf(rest, device=device, **options)


register_bundled("demo", f"hf:{ASSETS / 'demo_timesformer'}",
                 "tiny TimeSformer trained on the synthetic benchmark (bundled)")
