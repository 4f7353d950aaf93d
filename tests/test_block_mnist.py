"""block-mnist: the digit block is the exact MNIST digit, the null block the same patch in every
image, the mask marks the digit, positions are balanced and fixed, limits cut like mnist's."""

import numpy as np
import pytest
import torch

from benchmark.registry import Registry
from plugins.datasets import block_mnist, mnist
from plugins.datasets.block_mnist import BLOCK, load_block_mnist, null_block
from plugins.models.seed_cnn import build_seed_cnn
from plugins.models.simple_conv import build_simple_conv


@pytest.fixture(scope="module")
def full():
    return load_block_mnist()


@pytest.fixture(scope="module")
def digits():
    return mnist.load_mnist()


def blocks(split):
    """``(signal, null)`` blocks of every image, ``(N, 1, 28, 28)`` each."""
    x, bottom = split.x, split.groups.bool()[:, None, None, None]
    top, low = x[:, :, :BLOCK], x[:, :, BLOCK:]
    return torch.where(bottom, low, top), torch.where(bottom, top, low)


def test_shapes_types_ranges_and_registration(full):
    for split, n in ((full.train, 4000), (full.test, 1000)):
        assert split.x.shape == (n, 1, 56, 28) and split.x.dtype == torch.float32
        assert split.x.is_contiguous() and split.x.min() >= 0 and split.x.max() <= 1
        assert split.y.dtype == torch.int64 and split.groups.dtype == torch.int64
        assert set(split.groups.unique().tolist()) == {0, 1}
        mask = split.extras["signal_mask"]
        assert mask.shape == (n, 1, 56, 28) and mask.dtype == torch.bool
    assert full.num_classes == 10 and full.input_shape == (1, 56, 28)
    assert full.class_names == tuple("0123456789")
    spec = Registry.load().get("dataset", "block-mnist")
    assert spec.factory is load_block_mnist
    assert spec.provides == {"images", "groups", "signal_block"}
    assert dict(spec.params) == {"train_limit": None, "test_limit": None}


def test_the_signal_block_is_the_exact_mnist_digit_with_its_label(full, digits):
    for split, plain in ((full.train, digits.train), (full.test, digits.test)):
        signal, _ = blocks(split)
        assert torch.equal(signal, plain.x)  # bit for bit, in the order of mnist's split
        assert torch.equal(split.y, plain.y)


def test_the_null_block_is_one_patch_for_every_image_and_class(full):
    patch = torch.from_numpy(null_block())
    for split in (full.train, full.test):
        _, null = blocks(split)
        assert torch.equal(null, patch.expand_as(null))
    # the patch has ink (it is not a blank block) and the digit's bounding box
    assert patch.sum() > 0 and patch[0, :4].sum() == 0 and patch[0, 24:].sum() == 0


def test_the_mask_marks_exactly_the_signal_block(full):
    for split in (full.train, full.test):
        mask = split.extras["signal_mask"][:, 0]
        top = split.groups == 0
        assert mask[top, :BLOCK].all() and not mask[top, BLOCK:].any()
        assert mask[~top, BLOCK:].all() and not mask[~top, :BLOCK].any()
        # inside the mask, pixel for pixel, the digit; outside it the null patch
        signal, null = blocks(split)
        full_mask = split.extras["signal_mask"]
        assert torch.equal(split.x[full_mask].view(len(split), -1), signal.flatten(1))
        assert torch.equal(split.x[~full_mask].view(len(split), -1), null.flatten(1))


def test_positions_are_balanced_overall_and_within_every_class(full):
    for split in (full.train, full.test):
        assert split.groups.double().mean().item() == pytest.approx(0.5, abs=0.01)
        for c in range(10):
            rows = split.y == c
            bottom = int(split.groups[rows].sum())
            assert abs(2 * bottom - int(rows.sum())) <= 1
    # not a fixed pattern such as alternating rows
    g = full.train.groups.numpy()
    assert 0.3 < np.mean(g[1:] != g[:-1]) < 0.7


def test_deterministic_and_limits_keep_mnist_subsets_and_positions(full, digits):
    again = load_block_mnist()
    assert torch.equal(again.train.x, full.train.x) and torch.equal(
        again.test.groups, full.test.groups
    )
    small = load_block_mnist(train_limit=200, test_limit=50)
    plain = mnist.load_mnist(train_limit=200, test_limit=50)
    assert (len(small.train), len(small.test)) == (200, 50)
    assert torch.equal(small.train.y, plain.train.y)
    signal, _ = blocks(small.train)
    assert torch.equal(signal, plain.train.x)
    # every kept digit keeps the position it has in the full split
    rows = {row.tobytes(): i for i, row in enumerate(full.train.x.flatten(1).numpy())}
    index = [rows[row.tobytes()] for row in small.train.x.flatten(1).numpy()]
    assert torch.equal(small.train.groups, full.train.groups[index])
    # loads do not share memory with the memoised arrays
    small.train.x.fill_(0.5)
    assert not torch.equal(load_block_mnist(train_limit=200).train.x, small.train.x)
    with pytest.raises(ValueError, match="block-mnist train_limit"):
        load_block_mnist(train_limit=5)


def test_positions_and_masks_from_the_building_blocks():
    labels = np.array([0, 0, 1, 1, 1, 2])
    positions = block_mnist.signal_positions(labels, 0)
    assert np.array_equal(positions, block_mnist.signal_positions(labels, 0))
    for c in (0, 1, 2):
        assert abs(2 * positions[labels == c].sum() - (labels == c).sum()) <= 1
    digits = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    images, masks = block_mnist.compose(digits, np.array([0, 1]))
    assert np.array_equal(images[0, :, :28], digits[0]) and np.array_equal(
        images[1, :, 28:], digits[1]
    )
    assert np.array_equal(images[0, :, 28:], null_block()) and masks[1, 0, 28:].all()


@pytest.mark.parametrize("build", [build_seed_cnn, build_simple_conv])
def test_seed_cnn_and_simple_conv_build_and_forward_on_blocks(full, build):
    torch.manual_seed(0)
    model = build(10, full.input_shape).eval()
    with torch.no_grad():
        logits = model(full.test.x[:4])
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
