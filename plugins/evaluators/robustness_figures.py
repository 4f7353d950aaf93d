"""The ``robustness`` evaluator's figures: robust accuracy against eps, drawn from stored curves.

One figure per (dataset, model, norm), one line per debiaser (the training procedure): the
point-wise worst case over attacks, mean over seeds with the seeds' range shaded, and PGD
alone dashed in the same colour, so the gap between the strongest single attack and the
ensemble is visible where it exists. ``tests/test_robustness.py`` draws it from the arrays of
real evaluations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.kit.figures import combinations, legend_outside, stem


def _stack(arrays: list[dict[str, Any]], norm: str, key: str) -> np.ndarray | None:
    rows = [a["curves"][norm].get(key) for a in arrays if norm in a.get("curves", {})]
    rows = [r for r in rows if r]
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    return np.asarray(rows, dtype=float)


def plot_robustness(results: Any) -> dict[str, Any]:
    """``robust-<dataset>-<model>-<norm>``: robust accuracy vs eps, per debiaser."""
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    for labels, rows in combinations(results, ("dataset", "model")):
        debiasers = list(dict.fromkeys(rows["debiaser"]))
        for norm in ("linf", "l2"):
            figure, axis = plt.subplots(figsize=(6.4, 3.8))
            drawn = False
            for index, debiaser in enumerate(debiasers):
                arrays = list(rows.loc[rows["debiaser"] == debiaser, "arrays"])
                worst = _stack(arrays, norm, "robust")
                eps = _stack(arrays, norm, "eps")
                if worst is None or eps is None:
                    continue
                colour = f"C{index % 10}"
                axis.plot(eps[0], worst.mean(axis=0), marker="o", color=colour, label=debiaser)
                axis.fill_between(
                    eps[0], worst.min(axis=0), worst.max(axis=0), color=colour, alpha=0.15
                )
                pgd_curve = _stack(arrays, norm, "pgd")
                if pgd_curve is not None:
                    axis.plot(eps[0], pgd_curve.mean(axis=0), ls="--", color=colour, lw=1)
                drawn = True
            if not drawn:
                plt.close(figure)
                continue
            axis.set_xlabel(f"{'L∞' if norm == 'linf' else 'L2'} eps")
            axis.set_ylabel("robust accuracy")
            axis.set_ylim(-0.02, 1.02)
            axis.set_title(
                f"{' / '.join(labels)}: worst case over attacks (solid), PGD (dashed)", fontsize=9
            )
            legend_outside(axis)
            figure.tight_layout()
            figures[stem(f"robust-{norm}", labels)] = figure
    return figures
