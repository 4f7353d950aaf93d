"""The fairness evaluator's leaderboard figures, drawn from the stored arrays of every job.

Kept apart from ``fairness.py`` (the metrics) because they read only what a job stored
(confusion matrices, cell accuracies, ROC curves on a fixed FPR grid) and never a model: the
two change for different reasons. ``tests/test_fairness_evaluator.py`` draws them from the
arrays of real evaluations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.kit.figures import combinations, stem
from plugins.evaluators.fairness import ratio


def _mean_curve(curves: list[list[float] | None]) -> np.ndarray | None:
    """The mean of the curves that are defined (a class without positives has none)."""
    defined = [np.asarray(c, dtype=float) for c in curves if c is not None]
    return np.mean(defined, axis=0) if defined else None


def _seed_average(arrays: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Row-normalised confusion matrix (counts summed over seeds) and the mean accuracy of each
    (class, group) cell over the seeds where the cell is non-empty (NaN where it never is)."""
    counts = np.sum([np.asarray(a["confusion_matrix"], dtype=float) for a in arrays], axis=0)
    normalised = ratio(counts, counts.sum(axis=1, keepdims=True))
    stacked = np.asarray(
        [[[np.nan if v is None else v for v in r] for r in a["cell_accuracy"]] for a in arrays],
        dtype=float,
    )
    filled = ~np.isnan(stacked)
    cell = ratio(np.where(filled, stacked, 0.0).sum(axis=0), filled.sum(axis=0))
    return normalised, cell


def plot_fairness(results: Any) -> dict[str, Any]:
    """Per (dataset, model), two figures that compare every debiaser at a glance:

    * ``confusion-<dataset>-<model>``: one row per debiaser, the row-normalised confusion matrix
      (counts summed over seeds, i.e. the seed average) beside the mean accuracy of each
      (class, group) cell: on colored-mnist a biased model is bright on the diagonal cells
      (bias-aligned) and dark elsewhere;
    * ``roc-<dataset>-<model>``: one panel per debiaser, the one-vs-rest ROC curve of every class
      (TPR averaged over seeds on the stored FPR grid).

    One figure per (dataset, model) rather than per debiaser keeps a full leaderboard at a few
    dozen files. Debiasers appear in the order of the stored rows (the suite's order).
    """
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    for labels, rows in combinations(results, ("dataset", "model")):
        debiasers = list(dict.fromkeys(rows["debiaser"]))
        per_debiaser = {d: list(rows.loc[rows["debiaser"] == d, "arrays"]) for d in debiasers}
        n = len(debiasers)

        figure, axes = plt.subplots(
            n, 2, figsize=(7.5, 3.2 * n + 0.6), squeeze=False, layout="constrained"
        )
        for r, debiaser in enumerate(debiasers):
            arrays = per_debiaser[debiaser]
            normalised, cell = _seed_average(arrays)
            left, right = axes[r]
            left.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
            right.imshow(np.ma.masked_invalid(cell), cmap="viridis", vmin=0, vmax=1)
            ticks = range(len(normalised))
            for axis in (left, right):
                axis.set_yticks(ticks, [str(t) for t in ticks], fontsize=6)
                axis.set_ylabel(f"{debiaser}\ntrue class", fontsize=8)
            left.set_xticks(ticks, [str(t) for t in ticks], fontsize=6)
            group_values = arrays[0]["group_values"]
            right.set_xticks(range(len(group_values)), [str(v) for v in group_values], fontsize=6)
            if r == 0:
                left.set_title("confusion matrix (row-normalised)", fontsize=8)
                right.set_title("accuracy per (class, group) cell; blank = empty", fontsize=8)
            if r == n - 1:
                left.set_xlabel("predicted class", fontsize=8)
                right.set_xlabel("group (Split.groups)", fontsize=8)
        figure.suptitle(f"Fairness: {' / '.join(labels)} (seed average)", fontsize=10)
        figures[stem("confusion", labels)] = figure

        columns = min(n, 4)
        roc, axes = plt.subplots(
            -(-n // columns),
            columns,
            figsize=(3.4 * columns, 3.2 * -(-n // columns) + 0.6),
            squeeze=False,
            layout="constrained",
        )
        colours = plt.get_cmap("tab10")
        for axis, debiaser in zip(axes.flat, debiasers, strict=False):
            arrays = per_debiaser[debiaser]
            grid = np.asarray(arrays[0]["roc_fpr"])
            for c in range(len(arrays[0]["roc_tpr"])):
                mean = _mean_curve([a["roc_tpr"][c] for a in arrays])
                if mean is not None:
                    axis.step(grid, mean, where="post", color=colours(c % 10), linewidth=1)
            axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
            auroc = [v for a in arrays for v in a["auroc"] if v is not None]
            axis.set_title(f"{debiaser} (mean AUROC {np.mean(auroc):.3f})", fontsize=8)
            axis.tick_params(labelsize=6)
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[n:]:
            axis.set_visible(False)
        roc.supxlabel("false positive rate", fontsize=8)
        roc.supylabel("true positive rate (one line per class)", fontsize=8)
        roc.suptitle(f"One-vs-rest ROC: {' / '.join(labels)} (seed average)", fontsize=10)
        figures[stem("roc", labels)] = roc
    return figures
