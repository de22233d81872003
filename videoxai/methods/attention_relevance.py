"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model
Explainability"), for joint and divided space-time attention.

For every attention operation, ``Ā = mean_heads(relu(∇A ⊙ A))`` weighs the attention probabilities
by the gradient of the target logit with respect to them; relevance starts as the identity and is
propagated through the network in forward order, ``R ← R + Ā · R``. The map is the row of the
pooled output (the CLS token's, or the mean of all rows for models without one, e.g. VideoMAE)
of ``R − I``: the identity is what no attention moved, the same for every clip and class. On a
CLS model it lies on the CLS token, which the map drops; on a model that reads a patch token or
the mean of the patches it was painted onto the patches, 1 on the read patch (a VideoMAE
reading its first token: every map peaked there, every clip's first frames took all the
temporal mass) or 1/N on every one (frame scores pulled toward uniform), beside the weighted
attention's values ~10⁻⁴, whose scale is the gradient's.
For divided attention the temporal and the spatial operation of each layer are applied in turn,
with the factored operators of :mod:`videoxai.methods.rollout` (the CLS token takes no part in
the temporal one), and only that one row is propagated: ``r ← r + r Ā`` from the last operation
to the first, so no ``N × N`` matrix is formed.

One forward and one backward pass. The attention probabilities must be in the autograd graph, so
:class:`~videoxai.models.attention.AttentionTap` (``grad=True``) recomputes every layer's
attention eagerly for this pass; the pixels are made to require grad (the parameters stay
frozen) so that the graph reaches the first layer.
"""

from __future__ import annotations

import torch

from ..models.attention import AttentionTap
from .attention import AttentionMethod, Layers
from .base import Attribution, Target, register
from .gradients import check_pixels, frozen_parameters
from .rollout import layer_mixings, start_vector, token_attribution


@register
class AttentionRelevance(AttentionMethod):
    """Chefer et al.'s gradient-weighted attention relevance; see the module docstring.
    ``layers`` and the shapes: :class:`~videoxai.methods.attention.AttentionMethod`."""

    name = "attention_relevance"
    paper = ('Chefer, Gur & Wolf, Generic Attention-model Explainability for Interpreting Bi-Modal '
             'and Encoder-Decoder Transformers, ICCV 2021')
    uses_gradients = True

    def __init__(self, model, layers: Layers = None) -> None:
        super().__init__(model)
        self.layers = self.attention_layers(layers)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        x = check_pixels(self.model, inputs)
        grid, b = self.model.token_grid, x.shape[0]
        with frozen_parameters(self.model), torch.enable_grad(), \
                AttentionTap(self.model.attention, self.layers, grad=True) as tap:
            logits = self.model(x.requires_grad_(True))
            target = self.resolve_target(target, logits)
            records = list(tap.records.values())
            score = logits.gather(1, target[:, None]).sum()
            probs = [r.probs for r in records]
            grads = (torch.autograd.grad(score, probs, allow_unused=True)
                     if score.requires_grad and all(p.requires_grad for p in probs) else [None] * len(probs))
            self.check_attention_gradients(grads)
        weighted = {id(rec): (rec.probs.detach() * g).clamp_min(0).mean(1).float()
                    for rec, g in zip(records, grads)}
        with torch.no_grad():
            start = start_vector(grid, b, x.device)
            r = start
            for layer in reversed(self.layers):
                for op in reversed(layer_mixings(tap, layer, grid, b, lambda rec: weighted[id(rec)])):
                    r = r + op.rmatvec(r)
            r = r - start  # the readout row of R − I (see the module docstring)
        return token_attribution(self, r, x.shape[1], target, logits.detach())
