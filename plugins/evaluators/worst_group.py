"""The 95 % bootstrap interval of worst-group accuracy (``plugins.evaluators.fairness``).

Resampling test rows, or whole digits where rows are coloured copies of one digit, and taking
the minimum cell accuracy of each resample: one matrix product per batch of replicates, no loop
over images. A percentile interval; it does not correct the minimum's downward bias, and a cell
every resample gets wrong keeps the interval at 0. Tested in ``tests/test_fairness_evaluator.py``.
"""

from __future__ import annotations

import numpy as np


def bootstrap_worst_group(
    y: np.ndarray,
    correct: np.ndarray,
    group: np.ndarray,
    cells: np.ndarray,
    g: int,
    replicates: int,
    seed: int,
    units: np.ndarray | None = None,
) -> tuple[float, float]:
    """95 % percentile interval of ``min`` accuracy over the ``cells`` (``(K, G)`` bool), from
    ``replicates`` bootstrap resamples of the test rows, or of whole ``units`` (rows sharing a
    unit, copies of one digit, are drawn together). One matrix product per batch of replicates
    (resample counts per unit x per-unit hits and sizes per cell), no loop over images."""
    unit = np.arange(len(y)) if units is None else np.unique(units, return_inverse=True)[1]
    n_units = int(unit.max()) + 1
    cell_index = y * g + group
    chosen = np.flatnonzero(cells.ravel())
    column = np.full(cells.size, -1)
    column[chosen] = np.arange(len(chosen))
    keep = column[cell_index] >= 0
    size = np.zeros((n_units, len(chosen)))
    hits = np.zeros((n_units, len(chosen)))
    np.add.at(size, (unit[keep], column[cell_index[keep]]), 1.0)
    np.add.at(hits, (unit[keep], column[cell_index[keep]]), correct[keep].astype(float))
    rng = np.random.default_rng([seed, 0xB007])
    minima = []
    for start in range(0, replicates, 256):
        b = min(256, replicates - start)
        draws = rng.integers(0, n_units, size=(b, n_units))
        offsets = (draws + n_units * np.arange(b)[:, None]).ravel()
        weight = np.bincount(offsets, minlength=b * n_units).reshape(b, n_units).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = (weight @ hits) / (weight @ size)
        minima.append(np.nanmin(accuracy, axis=1))
    low, high = np.percentile(np.concatenate(minima), [2.5, 97.5])
    return float(low), float(high)
