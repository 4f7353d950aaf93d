"""bam-mnist: every digit on every scene, masks and scene-only twins that agree with the
images, fixed splits and subsets, registration, and labels a small CNN can learn."""

import numpy as np
import pytest
import torch

from benchmark.registry import Registry
from plugins.datasets import mnist
from plugins.datasets.bam_mnist import SCENES, load_bam_mnist
from plugins.debiasers.erm import train_erm
from plugins.models.seed_cnn import build_seed_cnn


@pytest.fixture(scope="module")
def full():
    return load_bam_mnist()


def test_shapes_types_and_ranges(full):
    for split, n in ((full.train, 8000), (full.test, 2000)):  # each digit on two scenes
        assert split.x.shape == (n, 3, 32, 32) and split.x.dtype == torch.float32
        assert split.x.min() >= 0 and split.x.max() <= 1
        extras = split.extras
        assert extras["scene_only"].shape == split.x.shape
        assert extras["object_mask"].shape == (n, 32, 32)
        assert extras["object_mask"].dtype == torch.bool
        assert torch.equal(split.y, extras["object_labels"])
        assert split.groups is None
    assert full.num_classes == 10 and full.input_shape == (3, 32, 32)


def test_object_labels_are_the_mnist_digits_of_the_fixed_split(full):
    digits = mnist.load_mnist()
    assert torch.equal(full.train.y, digits.train.y.repeat(2))
    assert torch.equal(full.test.y, digits.test.y.repeat(2))
    once = load_bam_mnist(copies=1, test_limit=100)
    assert len(once.train) == 4000 and torch.equal(once.train.y, digits.train.y)
    # the two copies of a digit sit on different scenes
    scenes = full.train.extras["scene_labels"]
    assert (scenes[:4000] != scenes[4000:]).all()


def test_every_object_on_every_scene_balanced(full):
    for split in (full.train, full.test):
        cells = np.zeros((10, 10), dtype=int)
        np.add.at(cells, (split.extras["object_labels"], split.extras["scene_labels"]), 1)
        per_object = split.y.bincount().numpy()
        # each digit's images spread over the ten scenes as evenly as integers allow
        assert (cells.min(1) >= per_object // 10).all() and (
            cells.max(1) <= -(-per_object // 10)
        ).all()
        assert (cells > 0).all()


def test_twin_equals_the_image_outside_the_digit_and_differs_on_it(full):
    x, twin = full.test.x, full.test.extras["scene_only"]
    mask = full.test.extras["object_mask"]
    changed = (x - twin).abs().amax(1) > 0  # pixels the digit touched at all
    assert not changed[~changed].any()
    assert torch.equal(x.permute(0, 2, 3, 1)[~changed], twin.permute(0, 2, 3, 1)[~changed])
    assert (changed | ~mask).all()  # the mask lies inside what changed
    assert mask.flatten(1).any(1).all()  # every image has an object
    # where the digit is opaque, the image differs clearly from the scene behind it
    assert ((x - twin).abs().amax(1)[mask] > 0.05).float().mean() > 0.9


def test_objects_are_a_third_to_a_half_of_the_side_and_inside_the_image(full):
    touched = full.train.extras["object_mask"]
    rows, cols = touched.any(2), touched.any(1)
    height = 32 - rows.int().argmax(1) - rows.flip(1).int().argmax(1)
    width = 32 - cols.int().argmax(1) - cols.flip(1).int().argmax(1)
    side = torch.maximum(height, width)
    assert (side <= 16).all()  # the digit's box is at most half the side
    assert (side >= 8).float().mean() > 0.95  # and the digit fills most of its box of >= 11
    changed = (full.train.x - full.train.extras["scene_only"]).abs().amax(1) > 0
    assert changed.flatten(1).sum(1).max() <= 18 * 18  # digit and rim stay in a small box


def test_deterministic_subsets_and_scene_labels(full):
    again = load_bam_mnist()
    assert torch.equal(again.train.x, full.train.x)
    assert torch.equal(again.test.extras["scene_only"], full.test.extras["scene_only"])
    small = load_bam_mnist(train_limit=200, test_limit=50)
    assert len(small.train) == 200 and len(small.test) == 50
    index = {row.tobytes(): i for i, row in enumerate(full.train.x.flatten(1).numpy())}
    picked = [index[row.tobytes()] for row in small.train.x.flatten(1).numpy()]
    assert torch.equal(
        small.train.extras["scene_labels"], full.train.extras["scene_labels"][picked]
    )
    scene = load_bam_mnist(label="scene", test_limit=50)
    assert torch.equal(scene.test.y, scene.test.extras["scene_labels"])
    assert scene.class_names == SCENES
    small.train.x.zero_()  # a careless caller does not corrupt the cache
    assert load_bam_mnist(train_limit=200).train.x.max() > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"label": "colour"}, "label must be one of object, scene"),
        ({"size": 8}, "size"),
        ({"train_limit": 5}, "below the number of classes"),
    ],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        load_bam_mnist(**params)


def test_registered_through_the_entry_points_with_bam_tags():
    spec = Registry.load().get("dataset", "bam-mnist")
    assert spec.factory is load_bam_mnist
    assert {"images", "bam", "object_mask"} <= spec.provides
    assert dict(spec.params) == {
        "label": "object",
        "size": 32,
        "copies": 2,
        "train_limit": None,
        "test_limit": None,
    }


def test_colour_is_no_shortcut_to_the_scene(full):
    means = lambda split: split.extras["scene_only"].mean((2, 3)).numpy()  # noqa: E731
    train, test = means(full.train), means(full.test)
    scenes = full.train.extras["scene_labels"].numpy()
    centroids = np.stack([train[scenes == k].mean(0) for k in range(10)])
    guess = ((test[:, None] - centroids[None]) ** 2).sum(2).argmin(1)
    assert (guess == full.test.extras["scene_labels"].numpy()).mean() < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("label", ["object", "scene"])
def test_a_small_cnn_learns_both_labels(label):
    data = load_bam_mnist(label=label, test_limit=400)
    torch.manual_seed(0)  # the initial weights
    model = train_erm(
        build_seed_cnn(10, data.input_shape),
        data.train,
        seed=0,
        epochs=8,
        lr=0.001,
        optimizer="adam",
    ).eval()
    with torch.no_grad():
        accuracy = (model(data.test.x).argmax(1) == data.test.y).float().mean().item()
    # chance is 0.1; measured 0.41 (object) and 0.86 (scene) on 500 test images: a digit
    # anywhere in the image is hard for seed-cnn's fully connected head, textures are not
    assert accuracy > {"object": 0.3, "scene": 0.7}[label]
