"""Registers the ST-ABN loader (``stabn:<directory>``) and the bundled tiny ST-ABN (``demo-stabn``)."""

from __future__ import annotations

import torch

from . import ASSETS, register_bundled, register_loader


@register_loader("stabn")
def _stabn(rest: str, device: torch.device, **options):
    """ST-ABN model directory (model.safetensors + videoxai.json), e.g. from `videoxai stabn train`."""
    from ..stabn.loader import load_stabn  # the package imports models.base: import it lazily

    return load_stabn(rest, device=device, **options)


register_bundled("demo-stabn", f"stabn:{ASSETS / 'demo_stabn'}",
                 "tiny ST-ABN trained on the synthetic benchmark (bundled)")
