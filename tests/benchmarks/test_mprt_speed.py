"""MPRT throughput: the native ``sanity-model`` evaluator vs Quantus 0.6.0's ``MPRT`` on the same
trained seed-cnn, the same 256 MNIST test images and the same gradient explainer, plus the
limit both share: one batched gradient pass per randomised layer.

Same cascade on both sides: cascading randomisation of seed-cnn's 4 parameterised layers, top
down, Spearman rank correlation of absolute attributions. The native evaluator also computes
its floors (``plugins.evaluators.floors``: the maps of two untrained models and of the next
training seed, 3 more gradient passes); the next seed's model comes from ``train`` already
trained, as from the runner's model cache. Read the images/s column of
``pytest tests/benchmarks --benchmark-enable``; nothing here asserts a time.
"""

import numpy as np
import pytest
import quantus
import torch

from benchmark.specs import EvaluationContext, ModelSpec
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.evaluators.model_randomisation import evaluate_model_randomisation
from plugins.models.seed_cnn import build_seed_cnn

N_IMAGES = 256


def gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        model(x).gather(1, target[:, None]).sum().backward()
    return x.grad


def quantus_gradient(model, inputs, targets, **kwargs):
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    return gradient(model, x, torch.as_tensor(np.asarray(targets))).numpy()


@pytest.fixture(scope="module")
def setup():
    data = load_mnist(train_limit=1000, test_limit=N_IMAGES)
    torch.manual_seed(0)
    model = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=3).eval()
    torch.manual_seed(1)
    other = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=1, epochs=3).eval()
    return data, model, other


def test_gradient_pass_limit(benchmark, setup):
    data, model, _ = setup
    x, y = data.test.x, data.test.y
    maps = benchmark(lambda: [gradient(model, x, y) for _ in range(4)])  # one pass per layer
    assert len(maps) == 4 and maps[0].shape == x.shape


def test_native_mprt(benchmark, setup):
    data, model, other = setup
    spec = ModelSpec("seed-cnn", build_seed_cnn)

    def train(split, seed):  # the runner's model cache: the next seed is already trained
        return other

    context = EvaluationContext(data, model, spec, seed=0, train=train, explain=gradient)
    result = benchmark(
        evaluate_model_randomisation,
        context,
        n_images=N_IMAGES,
        target="label",
        measures=["spearman_abs"],
        modes=["cascading"],
        verdict_measure="spearman_abs",
    )
    assert len(result.arrays["curves"]["cascading"]["spearman_abs"]) == 4


def test_quantus_mprt(benchmark, setup):
    data, model, _ = setup
    x, y = data.test.x.numpy(), data.test.y.numpy()
    metric = quantus.MPRT(
        disable_warnings=True, display_progressbar=False, return_last_correlation=True
    )
    scores = benchmark(
        lambda: metric(
            model=model,
            x_batch=x,
            y_batch=y,
            a_batch=None,
            explain_func=quantus_gradient,
            device="cpu",
            batch_size=N_IMAGES,
        )
    )
    assert len(scores) == N_IMAGES
