"""The ``explanation-disagreement`` figures, drawn from stored arrays only.

* ``agreement-models-<dataset>``: per model set (rows) and explainer (columns), the model x
  model matrix of feature agreement at 10 % of the pixels: where a set splits into camps, the
  matrix shows blocks; uniform off-diagonal colour means every pair disagrees alike.
* ``agreement-explainers-<dataset>``: per model set, explainer x explainer feature agreement
  at 10 % on the set's best model, from the top pixels each job stored for it (the same model
  for every explainer of a set: its validation accuracy chose it), with the chance level k/d
  in the title, so disagreement between models can be read against disagreement between
  explainers on one model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.kit.figures import stem


def _heatmap(axis: Any, matrix: np.ndarray, title: str, ticks: list[str] | None = None) -> Any:
    image = axis.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    axis.set_title(title, fontsize=7)
    if ticks is None:
        axis.set_xticks([])
        axis.set_yticks([])
    else:
        axis.set_xticks(range(len(ticks)), ticks, rotation=60, fontsize=6, ha="right")
        axis.set_yticks(range(len(ticks)), ticks, fontsize=6)
    return image


def _off_diagonal_mean(matrix: np.ndarray) -> float:
    m = len(matrix)
    return float((matrix.sum() - np.trace(matrix)) / max(1, m * (m - 1)))


def explainer_agreement(top: dict[str, list[list[int]]]) -> np.ndarray:
    """Mean over images of |top_a ∩ top_b| / k between every two explainers' stored top
    pixels (``explainer -> images x k`` indices of the same model and images)."""
    names = list(top)
    sets = {n: [set(row) for row in top[n]] for n in names}
    out = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            rows = min(len(sets[a]), len(sets[b]))
            k = max(1, len(top[a][0]))
            shared = [len(sets[a][r] & sets[b][r]) / k for r in range(rows)]
            out[i, j] = out[j, i] = float(np.mean(shared)) if shared else np.nan
    return out


def figures(results: Any) -> dict[str, Any]:
    """Both figures per dataset (see the module docstring)."""
    import matplotlib.pyplot as plt

    out: dict[str, Any] = {}
    for dataset, rows in results.groupby("dataset", sort=False):
        sets = list(dict.fromkeys(zip(rows["model"], rows["debiaser"], strict=True)))
        explainers = list(dict.fromkeys(rows["explainer"]))
        figure, axes = plt.subplots(
            len(sets),
            len(explainers),
            figsize=(1.7 * len(explainers) + 0.8, 1.7 * len(sets) + 0.6),
            squeeze=False,
        )
        image = None
        for r, (model, debiaser) in enumerate(sets):
            for c, explainer in enumerate(explainers):
                axis = axes[r][c]
                match = rows[
                    (rows["model"] == model)
                    & (rows["debiaser"] == debiaser)
                    & (rows["explainer"] == explainer)
                ]
                if match.empty or "feature_agreement_k10_matrix" not in match["arrays"].iloc[0]:
                    axis.axis("off")
                    continue
                matrix = np.asarray(match["arrays"].iloc[0]["feature_agreement_k10_matrix"])
                title = f"{explainer}\n{model} / {debiaser}\nmean {_off_diagonal_mean(matrix):.2f}"
                image = _heatmap(axis, matrix, title)
        if image is not None:
            figure.colorbar(image, ax=axes, shrink=0.6, label="feature agreement, top 10 %")
            out[stem("agreement-models", [str(dataset)])] = figure
        else:
            plt.close(figure)
        figure, axes = plt.subplots(
            1, len(sets), figsize=(3.2 * len(sets) + 0.8, 3.4), squeeze=False
        )
        image = None
        for c, (model, debiaser) in enumerate(sets):
            chosen = rows[(rows["model"] == model) & (rows["debiaser"] == debiaser)]
            top = {
                e: a["best_top_pixels"]
                for e, a in zip(chosen["explainer"], chosen["arrays"], strict=True)
                if a.get("best_top_pixels")
            }
            best = {a.get("best_model") for a in chosen["arrays"]}
            if len(top) < 2 or len(best) != 1:
                axes[0][c].axis("off")
                continue
            matrix = explainer_agreement(top)
            title = f"{next(iter(best))}\n(mean {_off_diagonal_mean(matrix):.2f})"
            image = _heatmap(axes[0][c], matrix, title, list(top))
        if image is not None:
            figure.colorbar(image, ax=axes, shrink=0.7, label="feature agreement, top 10 %")
            out[stem("agreement-explainers", [str(dataset)])] = figure
        else:
            plt.close(figure)
    return out
