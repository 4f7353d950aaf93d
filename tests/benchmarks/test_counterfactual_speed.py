"""Throughput of the counterfactual searches against the forward+backward limit of the model.

A search of S gradient steps needs at least S forward+backward passes over its images, so the
limit row (``forward_backward``: one pass of the input gradient over the batch) times the
steps is its floor: Wachter with ``search_steps`` x ``steps`` passes, the prototype search
with the same plus the autoencoder's, targeted PGD with ``steps`` per rung of the eps ladder
it needs. ``cf-nearest`` needs one forward pass over the training split plus a distance matrix.
The field's image counterfactual library (alibi) runs on TensorFlow, which this project does
not install, so no same-input comparison with it is made here. ``pytest
tests/benchmarks/test_counterfactual_speed.py --benchmark-enable`` prints the table (the
``passes`` extra info is the floor's multiple); nothing here asserts a time.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.kit.attacks import loss_and_gradient, objective_fn
from benchmark.kit.autoencoders import train_autoencoder
from benchmark.kit.counterfactual_search import nearest_of_target, targeted_pgd, wachter
from benchmark.kit.prototypes import prototype_counterfactuals
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.models.seed_cnn import build_seed_cnn

N_IMAGES = 64
STEPS = 10


@pytest.fixture(scope="module")
def setup():
    data = load_mnist(train_limit=1000, test_limit=200)
    model = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=2).eval()
    x = data.test.x[:N_IMAGES]
    with torch.no_grad():
        target = (model(x).argmax(1) + 1) % 10
    return model, x, target, data.train.x


def test_forward_backward_limit(benchmark, setup):
    model, x, target, _ = setup
    benchmark.extra_info["passes"] = 1
    _, _, grad = benchmark(loss_and_gradient, model, x, target, objective_fn("ce"))
    assert grad.shape == x.shape


def test_wachter(benchmark, setup):
    model, x, target, _ = setup
    benchmark.extra_info["passes"] = 2 * STEPS
    cf = benchmark(wachter, model, x, target, steps=STEPS, search_steps=2)
    assert cf.shape == x.shape


def test_targeted_pgd(benchmark, setup):
    model, x, target, _ = setup
    benchmark.extra_info["passes"] = f"{STEPS} per rung"
    cf = benchmark(targeted_pgd, model, x, target, steps=STEPS, eps_ladder=(0.3,))
    assert cf.shape == x.shape


def test_prototypes(benchmark, setup):
    model, x, target, train = setup
    autoencoder = train_autoencoder(train, steps=20)
    for parameter in autoencoder.parameters():
        parameter.requires_grad_(False)
    benchmark.extra_info["passes"] = 2 * STEPS
    cf = benchmark(
        prototype_counterfactuals, model, x, target, autoencoder, train, steps=STEPS,
        search_steps=2,
    )  # fmt: skip
    assert cf.shape == x.shape


def test_nearest(benchmark, setup):
    model, x, target, train = setup
    benchmark.extra_info["passes"] = "1 forward over the training split"
    cf = benchmark(nearest_of_target, model, x, target, train)
    assert cf.shape == x.shape
