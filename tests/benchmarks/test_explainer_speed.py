"""Throughput of every built-in explainer with its default parameters on seed-cnn and MNIST.

ROAR needs attributions for all 5,000 MNIST images, so what matters is images per second for
a large batch. Each benchmark explains ``N_IMAGES`` test images in one call (a multiple of the
default ``batch_size`` chunking, so the per-call overhead is included); multiply the mean by
``5000 / N_IMAGES`` for the full set. ``pytest tests/benchmarks --benchmark-enable`` prints the
table; nothing here asserts a time.
"""

import pytest
import torch

from benchmark.registry import Registry
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.models.seed_cnn import build_seed_cnn

N_IMAGES = 128
REGISTRY = Registry.load()


@pytest.fixture(scope="module")
def setup():
    data = load_mnist(train_limit=1000, test_limit=N_IMAGES)
    torch.manual_seed(0)
    model = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=1).eval()
    return model, data.test.x, data.test.y


@pytest.mark.parametrize(
    "name", [s.name for s in REGISTRY.specs("explainer") if s.output == "attribution"]
)
def test_explainer_throughput(benchmark, setup, name):
    model, x, y = setup
    spec = REGISTRY.get("explainer", name)
    params = dict(spec.params)
    if spec.uses_target_layer:
        params["target_layer"] = "conv_layers.3"
    benchmark.extra_info["images"] = N_IMAGES
    out = benchmark(spec.factory, model, x, y, **params)
    assert out.shape[0] == N_IMAGES and torch.isfinite(out).all()
