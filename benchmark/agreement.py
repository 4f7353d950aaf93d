"""Agreement statistics: how far repeated measurements of the same things agree.

Pure functions of arrays (raters x units, cases x items, paired vectors) that know nothing of
jobs, stores or leaderboards, so that each can be held on its own to a published worked
example; ``benchmark.reliability`` feeds them the rankings of explainers it builds from stored
results, one row per metric.

Definitions (``L`` explainers; a *ranking* is the order of the explainers by the metric within
one (dataset, model, debiaser, seed) cell, rank 1 the best, ties averaged):

* **Krippendorff's alpha** (:func:`krippendorff_alpha`; Krippendorff, "Computing Krippendorff's
  Alpha-Reliability", 2011): with the coincidence matrix
  ``o_ck = sum_u (number of c-k pairs of values in unit u) / (m_u - 1)`` over units with
  ``m_u >= 2`` values, ``n_c = sum_k o_ck``, ``n = sum_c n_c``,
  ``alpha = 1 - (n - 1) * sum_ck o_ck d2_ck / sum_ck n_c n_k d2_ck``, with the squared
  difference ``d2`` of the level: nominal ``[c != k]``, ordinal
  ``(sum_{g=c..k} n_g - (n_c + n_k) / 2)^2``, interval ``(c - k)^2``, ratio
  ``((c - k) / (c + k))^2``. Missing values are NaN. 1 is perfect agreement, 0 agreement at
  chance; undefined (NaN) when every pairable value is the same.
* **Inter-rater reliability** (Tomsett et al., eq. 1): ordinal alpha of the rankings, the
  *units* being the explainers of a cell and the *raters* the repeats that should not matter:
  seeds (``alpha_seeds``), ROAR / KAR retraining seeds from the stored ``auc_per_seed``
  (``alpha_retrain_seeds``), models, debiasers, datasets, and, where per-image scores are
  given, test images (``alpha_images``: Tomsett et al.'s own choice of rater). Cells are
  pooled: a unit is one explainer in one cell of the other factors (across seeds: one
  explainer for one (dataset, model, debiaser)), so one alpha covers the whole suite.
* **Inter-method reliability** (Tomsett et al., sec. 3.2): the mean Spearman correlation over
  explainers between two metrics that claim to measure the same property (``PROPERTIES``),
  both oriented so that "better" is larger, per cell, averaged over cells and partners.
* **Internal consistency** (Tomsett et al., sec. 3.3, here with test images as the items of
  the test): Cronbach's alpha ``k / (k - 1) * (1 - sum_i var(s_i) / var(sum_i s_i))`` over the
  ``k`` images of a cell, the explainers being the cases (variances ddof=1), averaged over
  cells. It is high when images agree on which explainer scores higher; like any Cronbach's
  alpha it grows with ``k`` (Spearman-Brown), so compare metrics at the same image count.

Why by hand: the ``krippendorff`` package (PyPI, 0.9.0) is GPL-3.0-or-later, which this MIT
project cannot take as a dependency; the formula above is 30 lines. ``tests/test_reliability.py``
holds it to Krippendorff's (2011) worked example (nominal 0.743, ordinal 0.815, interval 0.849,
ratio 0.797, four coders, twelve units, missing values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from scipy import stats

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval", "ratio")


def _squared_differences(domain: np.ndarray, n_v: np.ndarray, level: str) -> np.ndarray:
    c, k = domain[:, None], domain[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        total = c + k
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total == 0, 0.0, ((c - k) / total) ** 2)
    if level == "ordinal":
        cum = np.cumsum(n_v)
        i = np.arange(len(domain))
        lo, hi = np.minimum(i[:, None], i[None, :]), np.maximum(i[:, None], i[None, :])
        between = cum[hi] - cum[lo] + n_v[lo]  # sum_{g = lo..hi} n_g
        return (between - (n_v[:, None] + n_v[None, :]) / 2) ** 2
    raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")


def krippendorff_alpha(data: Any, level: Level = "interval") -> float:
    """Krippendorff's alpha of ``data`` (raters x units, NaN where a rater gave no value).

    ``level`` is the level of measurement (nominal, ordinal, interval, ratio). NaN when it is
    undefined: fewer than two pairable values, or all pairable values the same.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    values = np.asarray(data, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"data must be raters x units (2-D), got shape {values.shape}")
    present = ~np.isnan(values)
    domain = np.unique(values[present])
    if domain.size < 2:
        return math.nan
    onehot = (values[:, :, None] == domain[None, None, :]) & present[:, :, None]
    counts = onehot.sum(axis=0).astype(float)  # units x values
    m = counts.sum(axis=1)
    counts, m = counts[m >= 2], m[m >= 2]
    if not len(m):
        return math.nan
    weighted = counts / (m - 1)[:, None]
    coincidence = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    n_v = coincidence.sum(axis=1)
    n = n_v.sum()
    d2 = _squared_differences(domain, n_v, level)
    expected = float((np.outer(n_v, n_v) * d2).sum())
    if expected == 0:
        return math.nan
    return float(1.0 - (n - 1) * float((coincidence * d2).sum()) / expected)


def ranks(values: Any, direction: str = "higher") -> np.ndarray:
    """Rank 1 = best along the last axis (``direction`` higher or lower is better), ties
    averaged, NaN kept NaN."""
    values = np.asarray(values, dtype=float)
    oriented = -values if direction == "higher" else values
    return stats.rankdata(oriented, axis=-1, nan_policy="omit")


def inter_rater_reliability(
    scores: Any, direction: str = "higher", level: Level = "ordinal"
) -> float:
    """Tomsett et al.'s inter-rater reliability: Krippendorff's alpha of each rater's ranking
    of the units. ``scores`` is raters x units (NaN: not scored by that rater)."""
    return krippendorff_alpha(ranks(scores, direction), level)


def oriented(values: np.ndarray, direction: str) -> np.ndarray:
    """``values`` with "better" larger (negated where lower is better), so that correlations
    and rankings of metrics with opposite directions compare."""
    return -values if direction == "lower" else values


def spearman(a: Any, b: Any) -> float:
    """Spearman's rho over the pairs where both are finite; NaN below three pairs or when one
    side is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return math.nan
    return float(stats.spearmanr(a[keep], b[keep]).statistic)


def inter_method_reliability(
    scores: Mapping[str, Any], directions: Mapping[str, str] | None = None
) -> float:
    """Tomsett et al.'s inter-method reliability: the mean Spearman correlation over all pairs
    of metrics (each a vector over the same units, oriented by ``directions`` so that "better"
    is larger). NaN with fewer than two metrics or no defined pair."""
    directions = directions or {}
    names = list(scores)
    rhos = [
        spearman(
            oriented(np.asarray(scores[a], dtype=float), directions.get(a, "higher")),
            oriented(np.asarray(scores[b], dtype=float), directions.get(b, "higher")),
        )
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    rhos = [r for r in rhos if math.isfinite(r)]
    return float(np.mean(rhos)) if rhos else math.nan


def cronbach_alpha(scores: Any) -> float:
    """Cronbach's alpha of ``scores`` (cases x items): ``k / (k - 1) * (1 - sum of item
    variances / variance of the case totals)``, variances ddof=1. Items with a NaN are dropped;
    NaN below two cases or two items, or when the totals do not vary."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be cases x items (2-D), got shape {scores.shape}")
    scores = scores[:, np.isfinite(scores).all(axis=0)]
    cases, k = scores.shape
    if cases < 2 or k < 2:
        return math.nan
    total = scores.sum(axis=1).var(ddof=1)
    if total == 0:
        return math.nan
    return float(k / (k - 1) * (1 - scores.var(axis=0, ddof=1).sum() / total))


def internal_consistency(per_image: Any, direction: str = "higher") -> float:
    """Internal consistency of a metric over test images: Cronbach's alpha with explainers as
    cases and images as items (``per_image`` is explainers x images). ``direction`` does not
    change the value (flipping every item flips every total); it is accepted for symmetry."""
    del direction
    return cronbach_alpha(per_image)


def rank_kept(unperturbed: Any, perturbed: Any) -> float:
    """MetaQuantus's IEC_NR condition: the share of (explainer, column) entries whose rank
    among the explainers (rows, ``argsort`` order as MetaQuantus) is the same in both
    matrices (explainers x images, or explainers x 1 for means)."""
    a = np.asarray(unperturbed, dtype=float)
    b = np.asarray(perturbed, dtype=float)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.shape != b.shape or a.shape[0] < 2:
        return math.nan
    return float(
        (np.argsort(a, axis=0, kind="stable") == np.argsort(b, axis=0, kind="stable")).mean()
    )
