"""The reliability α of a metric (research/perturbation.md §4), computed by hand on small tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videoxai.errors import InputError
from videoxai.metrics import reliability_alpha

# 3 videos × (random, a, b), higher is better
TABLE = [[0.1, 0.5, 0.9],     # ranks (0, 1, 2): random judged worst → w = 1
         [0.2, 0.8, 0.6],     # ranks (0, 2, 1) → w = 1
         [0.4, 0.3, 0.5]]     # ranks (1, 0, 2) → w = (2 − 1)/2 = 0.5


def test_alpha_by_hand():
    # ρ12 = 1 − 6·2/24 = 0.5, ρ13 = 0.5, ρ23 = 1 − 6·6/24 = −0.5
    # α = [1·1·1.5 + 1·0.5·1.5 + 1·0.5·0.5] / (1 + 0.5 + 0.5) − 1 = 2.5/2 − 1 = 0.25
    assert reliability_alpha(TABLE) == pytest.approx(0.25)


def test_lower_is_better_reverses_the_ranks():
    # negating the scores and the direction is the same judgement
    assert reliability_alpha(-np.array(TABLE), higher_is_better=False) == pytest.approx(0.25)
    # the same scores read as lower-is-better: random is judged best on videos 1 and 2 (w = 0),
    # and every pair includes one of them, so no pair has weight and α is undefined
    assert math.isnan(reliability_alpha(TABLE, higher_is_better=False))


def test_without_random_alpha_is_the_mean_pairwise_rank_correlation():
    assert reliability_alpha(TABLE, random=None) == pytest.approx((0.5 + 0.5 - 0.5) / 3)


def test_full_agreement_and_dropped_rows():
    agree = [[0.1, 0.2, 0.3], [0.0, 0.5, 0.6], [0.2, 0.3, 0.9], [np.nan, 1.0, 2.0]]
    assert reliability_alpha(agree) == pytest.approx(1.0)
    assert math.isnan(reliability_alpha([[0.1, 0.2, 0.3]]))            # one video: no pair


def test_bad_tables():
    with pytest.raises(InputError, match="at least 2 methods"):
        reliability_alpha([[1.0], [2.0]])
    with pytest.raises(InputError, match="not a column"):
        reliability_alpha(TABLE, random=3)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("higher_is_better, random", [(True, 0), (False, 2), (True, None)])
def test_alpha_equals_the_pairwise_definition_on_tables_with_ties(seed, higher_is_better, random):
    # the definition's sum over pairs, with scipy's Spearman ρ (average ranks for ties): the metric
    # computes it without a loop over the pairs (a 2 000-clip report has 2 million pairs a metric)
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    d = rng.integers(0, 4, (40, 5)).astype(float)               # few levels: many ties
    d[3] = 1.0                                                  # a video ranking nothing
    d[7, 1] = np.nan                                            # a video without every value
    kept = d[np.isfinite(d).all(1)]
    good = kept if higher_is_better else -kept
    # the random map's rank among the video's methods, 0 = judged worst, ties averaged
    judged = [np.sum(g < g[random]) + (np.sum(g == g[random]) - 1) / 2 for g in good] if random is not None else None
    w = np.ones(len(kept)) if random is None else (4 - np.array(judged)) / 4
    num = den = 0.0
    for i in range(len(kept)):
        for j in range(i + 1, len(kept)):
            if np.ptp(kept[i]) == 0 or np.ptp(kept[j]) == 0:
                continue
            num += w[i] * w[j] * (spearmanr(kept[i], kept[j])[0] + 1)
            den += w[i] * w[j]
    assert reliability_alpha(d, higher_is_better, random) == pytest.approx(num / den - 1, abs=1e-12)
