"""The ``multimodal`` evaluator's figures, drawn from stored arrays only.

* ``heads-<dataset>``: per (model, training procedure), the mean over seeds (with
  the spread of the seeds as error bars) of each head's accuracy, and beside it each
  modality's utilisation and the image's share of the integrated-gradients mass, against the
  untrained-network control.
* ``gradcam-<dataset>-<model>-<debiaser>``: the first stored seed's Grad-CAM maps
  of the image branch, each image's caption held fixed and printed above it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.kit.figures import combinations, legend_outside, stem

ACCURACIES = (
    ("fusion_accuracy", "fusion"),
    ("image_head_accuracy", "image head"),
    ("text_head_accuracy", "text head"),
    ("ensemble_accuracy", "ensemble"),
)
SHARES = (
    ("image_utilisation", "image utilisation"),
    ("text_utilisation", "text utilisation"),
    ("image_attribution_share", "image IG share"),
    ("untrained_image_attribution_share", "image IG share, untrained"),
)


def _bars(axis: Any, rows: list[tuple[str, list[dict]]], metrics: tuple, title: str) -> None:
    width = 0.8 / len(metrics)
    for j, (metric, label) in enumerate(metrics):
        means, spreads = [], []
        for _, summaries in rows:
            values = [s[metric] for s in summaries if s.get(metric) is not None]
            means.append(np.mean(values) if values else np.nan)
            spreads.append(np.std(values) if len(values) > 1 else 0.0)
        positions = np.arange(len(rows)) + (j - (len(metrics) - 1) / 2) * width
        axis.bar(positions, means, width, yerr=spreads, label=label, capsize=2)
    axis.set_xticks(np.arange(len(rows)))
    axis.set_xticklabels([name for name, _ in rows], rotation=30, ha="right", fontsize=7)
    axis.set_title(title, fontsize=9)
    axis.axhline(0, color="black", linewidth=0.5)
    legend_outside(axis)


def heads_figure(dataset: str, frame: Any) -> Any:
    import matplotlib.pyplot as plt

    rows = []
    for (model, debiaser), group in combinations(frame, ("model", "debiaser")):
        summaries = [a["summary"] for a in group["arrays"] if "summary" in a]
        if summaries:
            rows.append((f"{model} / {debiaser}", summaries))
    figure, (left, right) = plt.subplots(2, 1, figsize=(max(6, 1.2 * len(rows) + 3), 7))
    _bars(left, rows, ACCURACIES, f"{dataset}: test accuracy per head (mean over seeds)")
    left.set_ylim(0, 1)
    _bars(right, rows, SHARES, "utilisation (shuffle ablation) and image share of IG mass")
    figure.tight_layout()
    return figure


def gradcam_figure(arrays: dict) -> Any:
    import matplotlib.pyplot as plt

    images = np.asarray(arrays["cam_images"], dtype=float)
    maps = np.asarray(arrays["cam_maps"], dtype=float)
    n = len(maps)
    figure, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for i in range(n):
        picture = images[i][0] if images[i].shape[0] == 1 else images[i].transpose(1, 2, 0)
        axes[0, i].imshow(picture, cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(arrays["cam_captions"][i] or "(no caption)", fontsize=5, wrap=True)
        axes[1, i].imshow(picture, cmap="gray", vmin=0, vmax=1)
        top = maps[i].max()
        axes[1, i].imshow(maps[i] / top if top > 0 else maps[i], cmap="jet", alpha=0.5, vmin=0)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("Grad-CAM of the image branch, caption held fixed", fontsize=8)
    figure.tight_layout()
    return figure


def figures(results: Any) -> dict[str, Any]:
    """Head accuracies and utilisation per dataset; Grad-CAM per trained combination."""
    drawn: dict[str, Any] = {}
    for (dataset,), frame in combinations(results, ("dataset",)):
        drawn[stem("heads", [dataset])] = heads_figure(dataset, frame)
    for labels, rows in combinations(results, ("dataset", "model", "debiaser")):
        stored = [a for a in rows.sort_values("seed")["arrays"] if a.get("cam_maps")]
        if stored:
            drawn[stem("gradcam", labels)] = gradcam_figure(stored[0])
    return drawn
