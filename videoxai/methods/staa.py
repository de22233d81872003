"""STAA — spatio-temporal attention attribution (Wang & Liu, arXiv 2411.00630).

One forward pass of a video transformer gives both maps from its own attention:

* **Divided space-time attention** (TimeSformer). For frame t, the spatial attention's CLS row
  over the patches (mean over heads) is the map ``M[t, p] = S[t, p]`` (the reference's map).
  ``temporal_weighting=True`` multiplies it by the temporal attention of patch position p,
  averaged over heads and query frames, ``τ[p, t]`` (how much frame t is attended there; Hugging
  Face never returns it: it is read by hooks). That product was our default until measured: on
  200 held-out clips of the synthetic benchmark with the demo TimeSformer, the top frame lay in
  the evidence window for 0.925 of them with S alone against 0.875 with S · τ, and the spatial
  peak on the object for 0.587 against 0.567 of the window frames: on this model τ adds noise to
  both where and when, so it is off by default.
* **Joint attention with a CLS token** (ViViT): the CLS row over all tokens on the
  ``(T/tubelet, rows, cols)`` grid.
* **Joint attention without CLS** (VideoMAE, mean pooling): the attention each token receives,
  averaged over queries.
* **A factorised encoder** (VideoPrism: spatial layers on each frame alone, then temporal layers
  on each patch position alone, no CLS, an attention-pooling head over every token): the
  attention each patch of frame t receives in the spatial layers, ``S[t, p]``, times ``T`` × the
  attention frame t receives at patch p in the temporal layers, ``τ[p, t]`` — the spatial layers
  see one frame at a time, so only the temporal ones can say when. ``"auto"`` reads the last
  half of each (at least one of each).

Only the asked-for layers' queries and keys are kept (:class:`~videoxai.models.attention.AttentionTap`);
the model keeps its fast attention kernels. ``layers=k`` averages the maps of the last k layers
(the reference used the last layer only). The default ``"auto"`` averages the last half of the
layers where a layer's map is cheap — CLS rows and divided space-time attention cost O(N) per
layer — and takes the last layer where it is not: the attention *received* by every token
(VideoMAE) costs a second N × N attention product per layer, and on VideoMAE-base six such
layers would add 14 % to the prediction time instead of about 2 %.
``gradient_weighted=True`` weights each attention entry by its positive gradient for the target
(one backward pass). Unlike the reference code we use the CLS row of *each* frame (not rows of
frame 0's patches) and no random thresholds.

**Temporal score.** An attention row sums to one in every frame, so the per-frame *mass* of the
map hardly varies: a frame showing nothing still spreads its unit of attention over the
background. What changes when a frame holds evidence is how *concentrated* the attention is, so
the temporal score of a frame is the mean of its top ``peak_share`` of map values (5 % of the
patches by default; ``peak_share=1`` gives the mass). On 200 held-out clips of the synthetic
benchmark with the bundled demo TimeSformer, the top frame fell in the evidence window for 0.88
of them with these defaults and the former S · τ map (0.925 with S alone, see above), against 0.29 for the last layer's mass (the reference's choice) and
0.70 for the last half's mass; chance is 0.38 (``python scripts/staa_choices.py``).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch

from ..models.attention import AttentionRecord, AttentionTap
from ..options import Opt, OptionError
from .attention import AttentionMethod, LayerCount
from .base import Attribution, Target, register
from .gradients import check_pixels, frozen_parameters, quantized_refusal


@register
class STAA(AttentionMethod):
    """Spatio-temporal attention attribution; see the module docstring.

    Shapes: :class:`~videoxai.methods.attention.AttentionMethod`'s; ``temporal`` is the peak
    scores (see the module docstring).

    Args:
        layers: ``"auto"`` (the last half of the layers, or only the last layer where a layer's
            map costs a second attention product: VideoMAE; the last half of the spatial and of
            the temporal layers of a factorised encoder: VideoPrism), ``"half"`` (the last half
            of the layers, at least one), ``"all"``, ``k`` (the last k layers) or a list of layer
            indices; their maps are averaged (a factorised encoder's spatial layers' map is weighed
            by its temporal layers' attention instead).
        gradient_weighted: weight each attention entry by its positive gradient for the target
            (one backward pass through the chosen layers' eager attention).
        peak_share: the share of each frame's highest map values whose mean is the frame's
            temporal score, in (0, 1].
        temporal_weighting: for divided space-time attention, multiply each frame's spatial
            row by the temporal attention that frame receives at each patch (off by default: on
            the bundled demo model it moved both the top frame and the spatial peak off the
            evidence more often). Refused on joint attention, which has no temporal attention. A
            factorised encoder's temporal layers always weigh its map.
    """

    name = "staa"
    paper = ('Wang & Liu, STAA: Spatio-Temporal Attention Attribution for Real-Time Interpreting '
             'Transformer-based Video Models, arXiv 2411.00630 (2024)')

    def __init__(self, model, layers: LayerCount | list[int] | Literal["auto", "half", "all"] = "auto",
                 gradient_weighted: bool = False, peak_share: Annotated[float, Opt(gt=0, le=1)] = 0.05,
                 temporal_weighting: bool = False) -> None:
        self.gradient_weighted = gradient_weighted   # read by unsupported_with_options
        super().__init__(model)
        n = model.attention.num_layers
        received = "joint" in model.attention.kinds() and model.token_grid.readout == "mean"
        named = {"half": max(1, n // 2), "auto": 1 if received else max(1, n // 2)}
        if model.attention.factorised:  # the last half of the spatial layers and of the temporal ones
            named["auto"] = [i for kind in ("spatial", "temporal") for i in _last_half(model.attention.layers, kind)]
        self.layers = self.attention_layers(named.get(layers, layers) if isinstance(layers, str) else layers)
        self.peak_share = peak_share
        if temporal_weighting and "temporal" not in model.attention.kinds():
            # joint attention has no temporal attention to weigh by: the option was ignored silently
            raise OptionError(f"method 'staa': option temporal_weighting applies to divided space-time "
                              f"attention (TimeSformer); {model.name} ({model.family}) attends jointly "
                              "over space and time")
        self.temporal_weighting = temporal_weighting

    def unsupported_with_options(self, model) -> str | None:
        # weighed by their gradient, the attentions need one through the whole network
        reason = super().unsupported_with_options(model)
        return reason or (quantized_refusal(f"{self.name}(gradient_weighted=true)", model)
                          if self.gradient_weighted else None)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        # without gradients, each layer's rows are computed in the hook and its q/k dropped at once
        reduce = None if self.gradient_weighted else self._summary
        with AttentionTap(self.model.attention, self.layers, grad=self.gradient_weighted, reduce=reduce) as tap:
            if self.gradient_weighted:
                # the gradient of the attention only: with frozen parameters nothing lands in the
                # model's .grad (a backward through it left a gradient on every parameter, as
                # large as the model, there after every call); the pixels start the graph instead
                x = check_pixels(self.model, inputs)
                with frozen_parameters(self.model), torch.enable_grad():
                    logits = self.model(x.requires_grad_(True))
                    target = self.resolve_target(target, logits)
                    score = logits.gather(1, target[:, None]).sum()
                    if score.requires_grad:
                        score.backward()   # the taps retain probs.grad
                    self.check_attention_gradients([r.probs.grad for r in tap.records.values()])
            else:
                logits = self.clean_logits(inputs)
                target = self.resolve_target(target, logits)
            b = inputs.shape[0]
            with torch.no_grad():
                maps = (self._factorised_map(tap, b) if self.model.attention.factorised else
                        torch.stack([self._layer_map(tap, layer, b) for layer in self.layers]).mean(0))
        t = inputs.shape[1]
        return Attribution(maps=self.on_input(maps, t), space="crop", target=target, logits=logits.detach(),
                           temporal=self.peak_scores(maps, t), time_align="repeat")

    def peak_scores(self, maps: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(B, T', h, w)`` token maps → ``(B, T)``: the mean of each map frame's top
        ``peak_share`` values, repeated over the input frames that the map frame (a tubelet)
        covers (:meth:`~AttentionMethod.frames_of_tokens`)."""
        flat = maps.flatten(2)
        k = max(1, math.ceil(self.peak_share * flat.shape[-1]))
        return self.frames_of_tokens(flat.topk(k, dim=-1).values.mean(-1), num_frames)

    # -- per attention layout --------------------------------------------------------------------
    def _summary(self, kind: str, rec: AttentionRecord) -> torch.Tensor:
        """What the map needs of one attention call, ``(B', N)``: the row of the token the
        classifier reads (spatial attention; joint attention read from its first token) or the
        attention each token receives (temporal attention; joint attention, mean-pooled)."""
        grid = self.model.token_grid
        # a spatial attention without a CLS token (VideoPrism's) is read as a mean-pooled joint one
        if kind == "temporal" or grid.readout == "mean" and (kind == "joint" or not grid.prefix_tokens):
            return self._received(rec)
        return self._rows(rec, 0)

    def _layer_map(self, tap: AttentionTap, layer: int, batch: int) -> torch.Tensor:
        grid = self.model.token_grid

        def summary(kind: str) -> torch.Tensor:
            rec = tap.records[(layer, kind)]
            return rec.summary if rec.summary is not None else self._summary(kind, rec)

        if (layer, "spatial") in tap.records:
            spatial = summary("spatial")[..., grid.prefix_tokens:]                     # (B·T, P)
            spatial = spatial.reshape(batch, grid.frames, grid.rows * grid.cols)
            if not self.temporal_weighting:
                return spatial.reshape(batch, grid.frames, grid.rows, grid.cols)
            temporal = summary("temporal")                                             # (B·P, T)
            temporal = temporal.reshape(batch, grid.rows * grid.cols, grid.frames).transpose(1, 2)
            return (spatial * temporal).reshape(batch, grid.frames, grid.rows, grid.cols)
        scores = summary("joint")
        if grid.prefix_tokens:
            scores = scores[:, grid.prefix_tokens:]                                     # (B, P)
        return grid.scores_to_volume(scores)

    def _factorised_map(self, tap: AttentionTap, batch: int) -> torch.Tensor:
        """A factorised encoder's map ``(B, T', rows, cols)``: the chosen spatial layers' mean
        ``S`` times ``T`` × the chosen temporal layers' mean ``τ`` (either alone where the other
        kind is not read)."""
        grid = self.model.token_grid
        by_kind: dict[str, list[torch.Tensor]] = {"spatial": [], "temporal": []}
        for (layer, kind), rec in tap.records.items():
            by_kind[kind].append(rec.summary if rec.summary is not None else self._summary(kind, rec))
        shape = (batch, grid.frames, grid.rows, grid.cols)
        maps = None
        if by_kind["spatial"]:   # (B·T, P) each: the attention each patch of a frame receives
            maps = torch.stack(by_kind["spatial"]).mean(0).reshape(shape)
        if by_kind["temporal"]:  # (B·P, T) each: the attention each frame receives at a patch
            tau = torch.stack(by_kind["temporal"]).mean(0).reshape(batch, grid.rows * grid.cols, grid.frames)
            weight = grid.frames * tau.transpose(1, 2).reshape(shape)   # mean 1 at each patch
            maps = weight if maps is None else maps * weight
        return maps

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


def _last_half(layers: list[dict], kind: str) -> list[int]:
    """The indices of the last half (at least one) of the layers that run attention of ``kind``."""
    of_kind = [i for i, layer in enumerate(layers) if kind in layer]
    return of_kind[len(of_kind) - max(1, len(of_kind) // 2):]
