"""Intervals over seeds and ranks with ties (benchmark.statistics), against scipy and by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.statistics import t_interval, tied_ranks


@pytest.mark.parametrize("values", [[0.7, 0.8, 0.75], [1.0, 3.0], [0.1, 0.2, 0.3, 0.9, 0.5]])
def test_t_interval_is_scipys(values):
    x = np.asarray(values)
    low, high = t_interval(x.mean(), x.std(ddof=1), len(x))
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (low, high) == pytest.approx(ref)


def test_no_interval_from_one_seed_or_non_finite_inputs():
    assert all(math.isnan(v) for v in t_interval(0.5, math.nan, 1))
    assert all(math.isnan(v) for v in t_interval(math.nan, 0.1, 3))


def frame(rows):
    df = pd.DataFrame(rows, columns=["mean", "low", "high"], index=list("abcde")[: len(rows)])
    return df["mean"], df["low"], df["high"]


def test_rows_overlapping_the_best_share_its_rank_and_clear_gaps_count():
    # a [0.8, 0.9] best; b [0.75, 0.85] overlaps a; c [0.6, 0.7] is beaten by a and b;
    # d [0.65, 0.78] overlaps b and c but not a; e has no value
    mean, low, high = frame(
        [(0.85, 0.8, 0.9), (0.8, 0.75, 0.85), (0.65, 0.6, 0.7), (0.7, 0.65, 0.78), (np.nan,) * 3]
    )
    rank, tied = tied_ranks(mean, low, high, "higher")
    assert rank.to_dict() == pytest.approx(
        {"a": 1, "b": 1, "c": 3, "d": 2, "e": np.nan}, nan_ok=True
    )
    assert tied.to_dict() == {"a": True, "b": True, "c": False, "d": False, "e": False}
    # lower is better: the same intervals read the other way round
    rank, _ = tied_ranks(mean, low, high, "lower")
    assert rank["c"] == 1 and rank["d"] == 1 and rank["a"] == 3


def test_rows_without_interval_are_points_and_neither_ranks_nothing():
    mean, low, high = frame([(0.9, np.nan, np.nan), (0.9, np.nan, np.nan), (0.5, np.nan, np.nan)])
    rank, tied = tied_ranks(mean, low, high, "higher")
    assert rank.tolist() == [1, 1, 3] and tied.tolist() == [True, True, False]
    rank, tied = tied_ranks(mean, low, high, "neither")
    assert rank.isna().all() and not tied.any()
