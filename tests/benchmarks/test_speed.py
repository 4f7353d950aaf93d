"""Speed of the hot paths, measured with pytest-benchmark (``tox -e benchmarks``).

CI runs these once with ``--benchmark-disable`` as plain tests; timings are never asserted.
The assertions only check that each benchmarked call did its real work.
"""

import textwrap

import pytest
import torch

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.kit.evaluation import predict_logits
from benchmark.registry import Registry
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.models.seed_cnn import build_seed_cnn


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_erm_one_epoch_seed_cnn_on_4000_mnist_images(benchmark, mnist):
    def one_epoch():
        model = build_seed_cnn(10, mnist.input_shape)
        return train_erm(model, mnist.train, seed=0, epochs=1)

    model = benchmark.pedantic(one_epoch, rounds=3, iterations=1)
    accuracy = (predict_logits(model, mnist.test.x).argmax(1) == mnist.test.y).float().mean()
    assert accuracy > 0.5


def test_batched_inference_on_1000_test_images(benchmark, mnist):
    model = build_seed_cnn(10, mnist.input_shape).eval()
    logits = benchmark(predict_logits, model, mnist.test.x)
    assert logits.shape == (1000, 10) and torch.isfinite(logits).all()


def test_plugin_loading_and_planning(benchmark):
    text = textwrap.dedent("""\
        name: plan-speed
        datasets: [mnist, digits]
        models: [seed-cnn, mlp]
        debiasers: [none]
        evaluators: [classification]
        seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        leaderboard: {metric: accuracy}
        """)

    def load_and_plan():
        registry = Registry.load()
        return planner.expand(suite_module.parse(text, "speed.yaml", registry))

    plan = benchmark(load_and_plan)
    assert len(plan.jobs) == 2 * 2 * 10
