"""Registers the ST-ABN loader (``stabn:<directory>``), the bundled tiny ST-ABN (``demo-stabn``) and
its plain backbone (``demo-stabn-backbone``: the same network without the attention branch, trained
by the same recipe on the same clips — the baseline it is compared with)."""

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
register_bundled("demo-stabn-backbone", f"stabn:{ASSETS / 'demo_stabn_backbone'}",
                 "demo-stabn's plain backbone, no attention branch (bundled baseline)")
