"""How reliable is a metric? The random-sanity-weighted agreement α.

Take one metric's scores ``D`` (``n`` videos × ``M`` methods), one of the methods a random map.
Each video is a "rater" that ranks the methods:

1. Rank the methods within each video so that rank 0 is judged worst (ascending scores for a
   higher-is-better metric, descending otherwise); ties get their average rank.
2. Weight each video by how low it ranks the random map:
   ``w_i = (M − 1 − rank_i(random)) / (M − 1)`` (1 when random is judged worst, 0 when best).
3. ``ρ_ij``: Spearman correlation between the rankings of videos ``i`` and ``j``.
4. ``α = Σ_{i<j} w_i w_j (ρ_ij + 1) / Σ_{i<j} w_i w_j − 1``, in [−1, 1].

A reliable metric ranks the methods the same way on every video (α near 1) on the videos where
it passes the sanity test of putting random last. Without a random method every weight is 1 and
α is the mean pairwise rank correlation. Pairs whose ``ρ`` is undefined (a video on which every
method scores the same) are left out; ``nan`` when no pair is left or every weight is 0.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def reliability_alpha(scores, higher_is_better: bool = True, random: int | None = 0) -> float:
    """α of a metric from its ``(n_videos, n_methods)`` score table (see the module docs).

    Args:
        scores: the table; rows with a NaN are dropped.
        higher_is_better: the metric's direction.
        random: column of the random-map method, or ``None`` (all weights 1).
    """
    from scipy.stats import rankdata

    d = np.asarray(scores, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 2:
        raise InputError(f"scores must be a (videos, methods) table with at least 2 methods, got shape {d.shape}")
    if random is not None and not 0 <= random < d.shape[1]:
        raise InputError(f"random={random} is not a column of a table with {d.shape[1]} methods")
    d = d[np.isfinite(d).all(1)]
    n, m = d.shape
    if n < 2:
        return math.nan
    ranks = rankdata(d if higher_is_better else -d, axis=1) - 1          # 0 = judged worst
    weights = np.ones(n) if random is None else (m - 1 - ranks[:, random]) / (m - 1)
    # a video on which every method scores the same ranks nothing: its pairs are left out
    ranked = np.ptp(ranks, axis=1) > 0
    ranks, weights = ranks[ranked], weights[ranked]
    # ρ_ij = z_i · z_j with z a video's ranks centred and scaled to unit length, so the weighted
    # sums over the pairs i < j are those over all (i, j), less the diagonal, halved:
    # Σ w_i w_j ρ_ij = (‖Σ w_i z_i‖² − Σ w_i²) / 2 and Σ w_i w_j = ((Σ w_i)² − Σ w_i²) / 2. A loop
    # over the pairs took minutes for the report of a 2 000-clip evaluation (2 million pairs a metric)
    z = ranks - ranks.mean(1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    square = float((weights ** 2).sum())
    den = (float(weights.sum()) ** 2 - square) / 2
    if den <= 0 or not ranked.any():
        return math.nan
    rho = (float(np.square(weights @ z).sum()) - square) / 2
    return float(min(1.0, max(-1.0, rho / den)))      # α = Σ w w (ρ + 1) / Σ w w − 1, to rounding
