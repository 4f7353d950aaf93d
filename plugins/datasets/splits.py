"""Fixed, stratified splits shared by the built-in datasets.

A split is part of a dataset's identity, not of a job's randomness: every seed, model and
debiaser sees the same test images, so differences in a leaderboard come from the methods.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import PositiveInt

from benchmark.specs import Dataset, Split

SPLIT_SEED = 0
"""The one random state behind every built-in split (and every ``*_limit`` subset)."""
Limit = PositiveInt | None
"""A ``train_limit`` / ``test_limit``: how many images of the split to keep (all when ``None``)."""


def stratified_split(
    x: np.ndarray, y: np.ndarray, test_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train / test arrays with class proportions preserved, identical on every call."""
    from sklearn.model_selection import train_test_split  # lazy: keeps `bench` start-up fast

    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=SPLIT_SEED)


def subset_indices(y: np.ndarray, limit: int | None, name: str) -> np.ndarray:
    """Row indices of the stratified subset of ``limit`` samples (all rows when ``None``).

    The same rows on every call, and the same rows ``to_split`` keeps, so datasets that carry
    extra per-sample arrays can cut them alike.
    """
    if limit is None:
        return np.arange(len(y))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"{name}: limit must be a positive integer, got {limit!r}")
    n_classes = len(np.unique(y))
    if limit < n_classes:
        raise ValueError(f"{name}: limit {limit} is below the number of classes {n_classes}")
    if limit > len(y):
        raise ValueError(f"{name}: limit {limit} exceeds the {len(y)} images of the split")
    if limit == len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    kept, _ = train_test_split(
        np.arange(len(y)), train_size=limit, stratify=y, random_state=SPLIT_SEED
    )
    return kept


def to_split(x: np.ndarray, y: np.ndarray, limit: int | None, name: str) -> Split:
    """Tensors for one split, optionally cut to a stratified subset of ``limit`` samples."""
    keep = subset_indices(y, limit, name)
    if len(keep) < len(y):
        x, y = x[keep], y[keep]
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Split(x=images, y=torch.from_numpy(np.asarray(y, dtype=np.int64)))


def fixed_split_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    test_size: int,
    train_limit: int | None,
    test_limit: int | None,
) -> Dataset:
    """A dataset with the fixed stratified split; limits take subsets, never a reshuffle."""
    x_train, x_test, y_train, y_test = stratified_split(x, y, test_size)
    classes = int(y.max()) + 1
    return Dataset(
        train=to_split(x_train, y_train, train_limit, f"{name} train_limit"),
        test=to_split(x_test, y_test, test_limit, f"{name} test_limit"),
        num_classes=classes,
        class_names=tuple(str(c) for c in range(classes)),
    )
