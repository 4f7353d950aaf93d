"""Per-image similarity of two attribution maps, as used by the sanity checks.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, sec. 3: Spearman rank
correlation with and without absolute values, the structural similarity index (SSIM) and the
Pearson correlation of histograms of oriented gradients (HOG); we take Spearman of the HOG
features, as the issue and the thesis (``seeds/003``) describe. Every function maps two
``(N, C, H, W)`` tensors to ``N`` numbers, one per image, so an image's score never depends
on the rest of the batch.

Ranks come from ``scipy.stats.rankdata`` (average ranks for ties: ReLU'd maps are mostly
zeros, and a tie-blind argsort rank would invent an order among them); SSIM and HOG come
from scikit-image, the implementations Adebayo et al. used. Maps are reduced over channels
by summation and, for SSIM and HOG, absolute values are min-max scaled to [0, 1] per image
(Adebayo et al.'s visualisation normalisation) so that SSIM's data range is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from scipy import stats
from skimage.feature import hog
from skimage.metrics import structural_similarity

Measure = Literal["spearman_abs", "spearman", "ssim", "hog_spearman"]
MEASURES: tuple[Measure, ...] = ("spearman_abs", "spearman", "ssim", "hog_spearman")


def check_measures(measures: Sequence[str], verdict_measure: str) -> None:
    """Raise ``ValueError`` unless every measure is known and the verdict's is among them: the
    sanity checks judge by one of the measures they compute."""
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or verdict_measure not in measures:
        raise ValueError(
            f"measures must come from {', '.join(MEASURES)} and include verdict_measure "
            f"{verdict_measure!r}; got {list(measures)}"
        )


def _maps(a: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, H, W)`` float64 numpy, channels summed."""
    return a.detach().double().sum(1).cpu().numpy()


def _unit(maps: np.ndarray) -> np.ndarray:
    """Absolute values min-max scaled to [0, 1] per image (a constant map becomes zeros)."""
    flat = np.abs(maps).reshape(len(maps), -1)
    low = flat.min(1, keepdims=True)
    span = flat.max(1, keepdims=True) - low
    scaled = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0)
    return scaled.reshape(maps.shape)


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (2-D arrays).

    A constant row has no ranking; its correlation is defined here as 1 with an identical row
    and 0 otherwise, so a degenerate map neither passes nor crashes a check silently.
    """
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    rho = np.divide((ra * rb).sum(1), denominator, out=np.zeros(len(a)), where=denominator > 0)
    identical = np.all(a == b, axis=1)
    return np.where(identical, 1.0, rho)


def spearman_abs(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Rank correlation of absolute attributions: does the same region matter?"""
    ma, mb = _maps(a), _maps(b)
    return rowwise_spearman(np.abs(ma).reshape(len(ma), -1), np.abs(mb).reshape(len(mb), -1))


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Rank correlation of signed attributions: same region and same sign?"""
    ma, mb = _maps(a), _maps(b)
    return rowwise_spearman(ma.reshape(len(ma), -1), mb.reshape(len(mb), -1))


def ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """SSIM of the [0, 1]-scaled absolute maps (scikit-image, Gaussian window, sigma 1.5)."""
    ua, ub = _unit(_maps(a)), _unit(_maps(b))
    side = min(ua.shape[1:])
    window = min(7, side if side % 2 else side - 1)
    return np.array(
        [
            structural_similarity(x, y, data_range=1.0, win_size=window)
            for x, y in zip(ua, ub, strict=True)
        ]
    )


def hog_features(maps: np.ndarray) -> np.ndarray:
    """HOG descriptors of [0, 1] maps; cells of 4x4 pixels suit 28x28 MNIST-sized maps."""
    cell = max(2, min(maps.shape[1:]) // 7)
    return np.stack(
        [hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2)) for m in maps]
    )


def hog_spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman correlation of the HOG features of the two scaled absolute maps."""
    return rowwise_spearman(hog_features(_unit(_maps(a))), hog_features(_unit(_maps(b))))


def similarity(measure: str, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Dispatch by name; raises ``ValueError`` listing the known measures."""
    functions = {
        "spearman_abs": spearman_abs,
        "spearman": spearman,
        "ssim": ssim,
        "hog_spearman": hog_spearman,
    }
    if measure not in functions:
        raise ValueError(f"unknown similarity {measure!r}; choose from {', '.join(MEASURES)}")
    return functions[measure](a, b)
