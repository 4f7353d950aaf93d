"""scikit-learn's 1,797 real 8x8 handwritten digits (UCI optical recognition set), no download.

Pixel values are 0..16 and are scaled to [0, 1]. A fixed stratified 80 / 20 split
(1,437 / 360) keeps the test images the same for every job.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from benchmark.specs import Dataset, DatasetSpec
from plugins.datasets.splits import Limit, fixed_split_dataset

TEST_SIZE = 360


@lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:, None, :, :] / 16.0).astype(np.float32)
    return images, digits.target.astype(np.int64)


def load_digits(train_limit: Limit = None, test_limit: Limit = None) -> Dataset:
    """The fixed split; ``*_limit`` takes a stratified subset (fast tests), never a reshuffle."""
    return fixed_split_dataset("digits", *_arrays(), TEST_SIZE, train_limit, test_limit)


DESCRIPTION = "scikit-learn's 1,797 real 8x8 digits, fixed stratified 1,437/360 split"
PROVIDES = frozenset({"images"})


def specs() -> list[DatasetSpec]:
    """``digits``, for ``plugins.datasets`` to register."""
    return [DatasetSpec("digits", load_digits, DESCRIPTION, version="1", provides=PROVIDES)]
