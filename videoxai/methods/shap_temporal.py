"""Temporal SHAP: Shapley values of contiguous frame segments (the STAA paper's temporal baseline).

The clip's T frames are split into ``n_segments`` contiguous segments, the *players*. The value
of a coalition S of segments is the model's probability of the target (or its logit,
``output="logit"``) on the clip in which every segment *not* in S is replaced by the baseline
(``mean`` frame by default, or ``blur``, ``freeze``, ``black``, ``fade``):

    v(S) = p_target( x_S ⊕ baseline_{N∖S} )

Every v(S) is a real re-inference of the model on the masked clip. (The reference code reuses
probabilities cached per segment and averages marginal contributions with equal, Banzhaf-style
weights; neither is done here.)

* **Exact** (``n_segments ≤ max_exact_players``, 12 by default): all 2ⁿ coalitions are
  evaluated once, in batches of ``batch_size``, and combined with the Shapley weights
  ``|S|! (n − |S| − 1)! / n!``. Efficiency holds to rounding: Σφ = v(N) − v(∅).
* **Sampled** (more players): ``n_samples`` random orderings of the players (``antithetic``:
  each with its reverse), each contributing the marginal gains along its chain of prefixes.
  Every ordering's gains sum to v(N) − v(∅), so efficiency holds *exactly* for the estimate too.
  Coalitions shared by several orderings (the empty and full ones at least) are evaluated once.

Outputs: ``extras["segment_values"]`` (signed φ per segment), ``extras["segments"]`` (their
``[start, end)`` frames), ``extras["frame_values"]`` (each segment's φ spread evenly over its
frames, signed), ``extras["value_full"]`` / ``extras["value_empty"]``. ``temporal`` is the
positive part of the per-frame values; the map is that score constant over each frame (SHAP
over segments says *when*, not *where*).
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from typing import Annotated

from ..options import Opt, OptionError
from .base import BaselineName, BatchSize, Output, Seed, register
from .perturbation import Canvas, ClipResult, PerturbationMethod
from .segments import frame_segments, segment_membership


def shapley_weights(n: int) -> torch.Tensor:
    """``(n,)`` float64: the weight ``s! (n − s − 1)! / n!`` of a coalition of size s ∌ i."""
    return torch.tensor([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
                         for s in range(n)], dtype=torch.float64)


def exact_shapley(values: torch.Tensor, n: int) -> torch.Tensor:
    """Shapley values from the values of all 2ⁿ coalitions.

    Args:
        values: ``(2ⁿ,)``; entry ``c`` is v of the coalition whose members are the set bits of c.

    Returns ``(n,)`` float64.
    """
    codes = torch.arange(2 ** n)
    sizes = torch.stack([(codes >> i) & 1 for i in range(n)]).sum(0)
    w = shapley_weights(n).to(values.device)
    phi = torch.empty(n, dtype=torch.float64, device=values.device)
    for i in range(n):
        without = codes[((codes >> i) & 1) == 0]
        gain = values[without | (1 << i)] - values[without]
        phi[i] = (w[sizes[without]] * gain.double()).sum()
    return phi


def permutation_coalitions(orders: torch.Tensor) -> torch.Tensor:
    """``(P, n)`` player orderings → ``(P, n + 1, n)`` bool prefix coalitions (∅ … N)."""
    p, n = orders.shape
    onehot = torch.zeros(p, n, n, dtype=torch.bool)
    onehot.scatter_(2, orders[..., None], True)                         # step k adds orders[:, k]
    prefixes = onehot.cumsum(1).bool()
    return torch.cat([torch.zeros(p, 1, n, dtype=torch.bool), prefixes], dim=1)


@register
class TemporalSHAP(PerturbationMethod):
    """Shapley values of frame segments; see the module docstring.

    Args:
        n_segments: number of players (contiguous frame segments); ``None`` → ``min(8, T)``
            (the STAA paper's 8 segments). More segments than frames is an error.
        baseline: what replaces an absent segment (a :mod:`~videoxai.core.baselines` name:
            ``"mean"``, ``"blur"``, ``"freeze"``, ``"black"``, ``"fade"``, ``"mean_colour"``; or a
            function ``(B, T, 3, H, W) → same``). ``"mean"`` by
            default: on 12 validation clips of the synthetic benchmark with the bundled 3D CNN
            the top frame fell in the evidence window for 0.92 of them (blur 0.83, freeze
            0.75, black 0.58).
        output: the value read off the model, ``"probability"`` (of the target: the model's softmax, or sigmoid) or
            ``"logit"``.
        max_exact_players: up to this many players every coalition is evaluated (2ⁿ passes).
        n_samples: beyond it, the number of sampled player orderings (each costs n − 1 passes
            at most).
        antithetic: pair each sampled ordering with its reverse (lower variance).
        batch_size: perturbed clips per forward pass.
        seed: seeds the sampled orderings.
    """

    name = "shap_temporal"
    paper = ('Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017 '
             "(Shapley values of frame segments, the STAA paper's temporal baseline)")
    space = "frame"

    def __init__(self, model, n_segments: Annotated[int | None, Opt(ge=1)] = None,
                 baseline: BaselineName = "mean", output: Output = "probability",
                 max_exact_players: Annotated[int, Opt(ge=1, le=20)] = 12,
                 n_samples: Annotated[int, Opt(ge=1)] = 100, antithetic: bool = True,
                 batch_size: BatchSize = 8, seed: Seed = 0) -> None:
        super().__init__(model)
        self._setup(batch_size=batch_size, output=output, seed=seed, baseline=baseline)
        self.n_segments = None if n_segments is None else int(n_segments)
        self.max_exact_players = int(max_exact_players)
        self.n_samples = int(n_samples)
        self.antithetic = bool(antithetic)

    def forward_passes(self, num_frames: int) -> int:
        n = self.n_segments if self.n_segments is not None else min(8, num_frames)
        if n <= self.max_exact_players:
            return 2 ** n + 1
        orders = 2 * math.ceil(self.n_samples / 2) if self.antithetic else self.n_samples
        return orders * (n + 1) + 1  # at most: coalitions shared by orderings are scored once

    def explain_clip(self, canvas: Canvas, target: int, generator: torch.Generator) -> ClipResult:
        t = canvas.num_frames
        n = self.n_segments if self.n_segments is not None else min(8, t)
        try:
            bounds = frame_segments(t, n)
        except InputError as e:
            raise OptionError(f"{self._owner()}: option n_segments: {e}") from None
        member = segment_membership(bounds, t).to(canvas.pixels.device, torch.float32)  # (n, T)
        fill = self.baseline(canvas)

        if n <= self.max_exact_players:
            codes = torch.arange(2 ** n)
            coalitions = torch.stack([(codes >> i) & 1 for i in range(n)], dim=1).bool()  # (2ⁿ, n)
            values = self._values(canvas, fill, member, coalitions, target)
            phi = exact_shapley(values, n)
            v_full, v_empty = values[-1], values[0]
        else:
            orders = self._orders(n, generator)                                      # (P, n)
            chains = permutation_coalitions(orders)                                  # (P, n+1, n)
            unique, inverse = torch.unique(chains.reshape(-1, n), dim=0, return_inverse=True)
            values = self._values(canvas, fill, member, unique, target)[inverse.to(fill.device)]
            values = values.reshape(len(orders), n + 1)
            gains = values[:, 1:] - values[:, :-1]                                   # (P, n)
            # each permutation's gains put in segment order (one place each: scatter_, not
            # scatter_add_, whose float sums run in a different order on every CUDA run), then
            # averaged over the permutations
            by_segment = torch.zeros_like(gains).scatter_(1, orders.to(values.device), gains)   # (P, n)
            phi = by_segment.mean(0)
            v_full, v_empty = values[0, -1], values[0, 0]

        lengths = (bounds[:, 1] - bounds[:, 0]).to(phi.device, torch.float64)
        frame_values = (phi / lengths) @ member.double()                              # (T,)
        temporal = frame_values.clamp_min(0).float()
        return ClipResult(maps=temporal[:, None, None], temporal=temporal,
                          extras={"segment_values": phi.float(), "segments": bounds,
                                  "frame_values": frame_values.float(),
                                  "value_full": v_full.float(), "value_empty": v_empty.float()},
                          resolved={"n_segments": n})

    def blank_map_reason(self, extras: dict) -> str | None:
        if len(extras.get("segments", [[0, 0]])[0]) == 1:
            # not the model's doing: one player holds every frame, so every frame gets its share
            return "one segment (n_segments=1) holds every frame, so every frame gets the same value"
        return None

    def _orders(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.antithetic:
            half = math.ceil(self.n_samples / 2)
            first = torch.stack([torch.randperm(n, generator=generator) for _ in range(half)])
            return torch.cat([first, first.flip(1)])
        return torch.stack([torch.randperm(n, generator=generator) for _ in range(self.n_samples)])

    def _values(self, canvas: Canvas, fill: torch.Tensor, member: torch.Tensor,
                coalitions: torch.Tensor, target: int) -> torch.Tensor:
        """v of each coalition ``(m, n)`` bool → ``(m,)`` float64."""
        keep = coalitions.to(member.device, torch.float32) @ member                   # (m, T)

        def make(sl: slice) -> torch.Tensor:
            return canvas.compose(keep[sl, :, None, None], fill)

        return self.scores(make, len(coalitions), target, f"{len(coalitions)} coalitions")
