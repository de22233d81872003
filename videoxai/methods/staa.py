"""STAA — spatio-temporal attention attribution (Wang & Liu, arXiv 2411.00630).

One forward pass of a video transformer gives both maps from its own attention:

* **Divided space-time attention** (TimeSformer). For frame t, the spatial attention's CLS row
  over the patches (mean over heads) is the spatial weight ``S[t, p]`` of patch p; the temporal
  attention of patch position p, averaged over heads and query frames, says how much frame t is
  attended there, ``τ[p, t]``. The map is ``M[t, p] = S[t, p] · τ[p, t]``; its per-frame mass is
  the temporal score. Hugging Face never returns the temporal attention: it is read by hooks.
* **Joint attention with a CLS token** (ViViT): the CLS row over all tokens on the
  ``(T/tubelet, rows, cols)`` grid.
* **Joint attention without CLS** (VideoMAE, mean pooling): the attention each token receives,
  averaged over queries.

Only the asked-for layers' queries and keys are kept (:class:`~videoxai.models.attention.AttentionTap`);
the model keeps its fast attention kernels. ``layers=k`` averages the maps of the last k layers
(default 1, the last layer, as in the reference). ``gradient_weighted=True`` weights each attention
entry by its positive gradient for the target (one backward pass). Unlike the reference code we
use the CLS row of *each* frame (not rows of frame 0's patches) and no random thresholds.
"""

from __future__ import annotations

import torch

from ..models.attention import AttentionRecord, AttentionTap
from .base import Attribution, Method, Target, register


@register
class STAA(Method):
    name = "staa"
    requires = ("attention", "token_grid")

    def __init__(self, model, layers: int | list[int] = 1, gradient_weighted: bool = False) -> None:
        super().__init__(model)
        self.layers = model.attention.resolve_layers(layers)
        self.gradient_weighted = bool(gradient_weighted)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        with AttentionTap(self.model.attention, self.layers, grad=self.gradient_weighted) as tap:
            if self.gradient_weighted:
                logits = self.model(inputs)
                target = self.resolve_target(target, logits)
                logits.gather(1, target[:, None]).sum().backward()
            else:
                logits = self.clean_logits(inputs)
                target = self.resolve_target(target, logits)
            b = inputs.shape[0]
            with torch.no_grad():
                maps = torch.stack([self._layer_map(tap, layer, b) for layer in self.layers]).mean(0)
        return Attribution(maps=maps, space="crop", target=target, logits=logits.detach(),
                           time_align="repeat")

    # -- per attention layout --------------------------------------------------------------------
    def _layer_map(self, tap: AttentionTap, layer: int, batch: int) -> torch.Tensor:
        grid = self.model.token_grid
        if (layer, "spatial") in tap.records:
            spatial = self._rows(tap.records[(layer, "spatial")], 0)[..., 1:]       # (B·T, P)
            spatial = spatial.reshape(batch, grid.frames, grid.rows * grid.cols)
            temporal = self._received(tap.records[(layer, "temporal")])           # (B·P, T)
            temporal = temporal.reshape(batch, grid.rows * grid.cols, grid.frames).transpose(1, 2)
            return (spatial * temporal).reshape(batch, grid.frames, grid.rows, grid.cols)
        rec = tap.records[(layer, "joint")]
        if grid.prefix_tokens:
            scores = self._rows(rec, 0)[:, grid.prefix_tokens:]                      # (B, P)
        else:
            scores = self._received(rec)
        return grid.scores_to_volume(scores)

    def _rows(self, rec: AttentionRecord, index: int) -> torch.Tensor:
        """Head-averaged attention row of query ``index``: ``(B', N)``."""
        if self.gradient_weighted:
            a = rec.probs[:, :, index] * rec.probs.grad[:, :, index].clamp_min(0)
        else:
            a = rec.rows(index)[:, :, 0]
        return a.mean(1)

    def _received(self, rec: AttentionRecord) -> torch.Tensor:
        """Head-averaged attention each key receives, mean over queries: ``(B', N)``."""
        if self.gradient_weighted:
            return (rec.probs * rec.probs.grad.clamp_min(0)).mean(2).mean(1)
        return rec.received().mean(1)
