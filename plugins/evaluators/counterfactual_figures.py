"""The ``counterfactual`` evaluator's figure: the seed report's grid, drawn from stored arrays.

One figure per (dataset, model, debiaser, explainer): a row per input (one test image per
class), its first column the input, then one column per target class showing the
counterfactual, grey where none was found or the model does not accept it (the seed report's
convention). Drawn from the first stored seed that kept a grid (``grid_seeds``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.kit.figures import combinations, stem

GREY = 0.6


def _picture(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` uint8 -> what ``imshow`` takes, and the colour map for one channel."""
    image = pixels.astype(float) / 255.0
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.transpose(image, (1, 2, 0)), None


def figures(results: Any) -> dict[str, Any]:
    """``cf-grid-<dataset>-<model>-<debiaser>-<explainer>``: inputs x target classes."""
    import matplotlib.pyplot as plt

    drawn: dict[str, Any] = {}
    columns = ("dataset", "model", "debiaser", "explainer")
    for labels, rows in combinations(results, columns):
        arrays = [a for a in rows.sort_values("seed")["arrays"] if "grid_images" in a]
        if not arrays:
            continue
        grid = arrays[0]
        inputs = np.asarray(grid["grid_inputs"], dtype=np.uint8)
        images = np.asarray(grid["grid_images"], dtype=np.uint8)
        valid = np.asarray(grid["grid_valid"], dtype=bool)
        n, classes = valid.shape
        figure, axes = plt.subplots(
            n, classes + 1, figsize=(0.8 * (classes + 1), 0.8 * n), squeeze=False
        )
        for i in range(n):
            picture, cmap = _picture(inputs[i])
            axes[i, 0].imshow(picture, cmap=cmap, vmin=0, vmax=1)
            for c in range(classes):
                axis = axes[i, c + 1]
                if valid[i, c]:
                    picture, cmap = _picture(images[i, c])
                    axis.imshow(picture, cmap=cmap, vmin=0, vmax=1)
                else:
                    axis.set_facecolor((GREY, GREY, GREY))
                if i == 0:
                    axis.set_title(str(c), fontsize=7)
        for axis in axes.flat:
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0, 0].set_title("input", fontsize=7)
        figure.suptitle(" / ".join(map(str, labels)) + " (grey: none found)", fontsize=8)
        drawn[stem("cf-grid", labels)] = figure
    return drawn
