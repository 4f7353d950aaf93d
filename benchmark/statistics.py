"""Intervals over seeds and ranks that admit ties: what a leaderboard can claim from n seeds.

A leaderboard that ranks rows 1, 2, 3 by their means claims an order that three seeds often
cannot support. Two rules, stated on every published page:

* **Interval**: the 95 % Student-t interval of the mean over seeds,
  ``mean ± t(0.975, n - 1) · std / sqrt(n)`` with ``std`` the sample standard deviation
  (ddof = 1). It treats the seeds as independent draws of the whole training-and-evaluation
  pipeline and says nothing about test-set sampling (an evaluator that resamples its test
  images reports that interval itself, as ``fairness`` does for worst-group accuracy). With
  one seed there is no interval; with three, t(0.975, 2) = 4.30, so the interval is wide on
  purpose: that is what three seeds can say.
* **Rank with ties**: a row's rank is one plus the number of rows that are *clearly better*,
  those whose whole interval lies beyond its own (for higher-is-better, ``low_j > high_i``).
  The best row has rank 1, and so has every row whose interval overlaps the best row's: they
  share its rank and are marked tied. LMSYS's Chatbot Arena ranks its leaderboard the same
  way (rank = 1 + the number of models statistically better); it is not
  a test at level 5 % between every pair (overlapping 95 % intervals can still differ at that
  level), it is the conservative reading a reader can check by eye. Rows without an interval
  (one seed) are compared by their mean as a point interval.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
INTERVAL_METHOD = (
    "95 % Student-t interval over seeds: mean ± t(0.975, n-1) · std / √n (std with ddof=1); "
    "none for n = 1"
)
RANK_METHOD = (
    "rank = 1 + the number of rows whose 95 % interval lies entirely on the better side of "
    "this row's; rows that share a rank are tied (marked =)"
)


def t_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """``(low, high)`` of the 95 % t interval of a mean over ``n`` seeds; NaNs when ``n < 2``
    or the inputs are not finite."""
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def tied_ranks(
    mean: pd.Series, low: pd.Series, high: pd.Series, direction: str
) -> tuple[pd.Series, pd.Series]:
    """Rank (float, NaN where the mean is NaN) and tied flag of each row, by ``RANK_METHOD``.

    A row with no interval counts as the point ``[mean, mean]``. ``direction`` is ``higher``
    or ``lower``; anything else ranks nothing.
    """
    rank = pd.Series(np.nan, index=mean.index, dtype=float)
    tied = pd.Series(False, index=mean.index, dtype=bool)
    if direction not in ("higher", "lower"):
        return rank, tied
    ok = mean.notna()
    if not ok.any():
        return rank, tied
    m = mean[ok].to_numpy(dtype=float)
    lo = np.where(np.isnan(low[ok].to_numpy(dtype=float)), m, low[ok].to_numpy(dtype=float))
    hi = np.where(np.isnan(high[ok].to_numpy(dtype=float)), m, high[ok].to_numpy(dtype=float))
    if direction == "lower":  # lower is better: flip so that "better" means larger
        lo, hi = -hi, -lo
    better = lo[None, :] > hi[:, None]  # better[i, j]: row j clearly beats row i
    ranks = 1.0 + better.sum(axis=1)
    rank[ok] = ranks
    shared = (ranks[:, None] == ranks[None, :]).sum(axis=1) > 1
    tied[ok] = shared
    return rank, tied
