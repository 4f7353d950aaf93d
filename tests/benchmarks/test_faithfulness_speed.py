"""Throughput of the native faithfulness evaluators against their limit and against Quantus.

One trained seed-cnn, the same 256 MNIST test images, the same gradient maps (computed once,
handed out as the runner's attribution cache would), in one run:

(a) ``test_forward_limit[metric]``: the model's bare batched forward passes, as many as the
    metric needs (``steps x images`` copies, 1,024 per call): what no perturbation metric can
    beat. Pixel flipping: 28 steps; insertion / deletion: 29 (the unperturbed point too);
    region perturbation: 50 (49 regions of 4x4 and the clean image); ROAD: 18 (9 percentages,
    MoRF and LeRF; ROAD also solves 18 imputation systems per image).
(b) ``test_native[metric]``: each evaluator with its default parameters (plus one forward pass
    to find the predicted class).
(c) Quantus 0.6.0 on the same inputs: ``PixelFlipping`` with the same 28 steps,
    ``FaithfulnessCorrelation`` (defaults: 100 random subsets of 224 pixels), and ``ROAD`` at
    its default 50 percentages and at our 9 (MoRF only: Quantus has no LeRF).

Read images/s as 256 / mean time from ``pytest tests/benchmarks/test_faithfulness_speed.py
--benchmark-enable``. Nothing here asserts a time. Under ``--benchmark-disable`` (the normal
test run) each call runs once and the Quantus ROAD / FaithfulnessCorrelation calls score 32
images, so the file stays fast; the assertions only check that each call did its work.
"""

import numpy as np
import pytest
import quantus
import torch

from benchmark.specs import EvaluationContext, ModelSpec
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.evaluators import faithfulness as fa
from plugins.evaluators import road
from plugins.models.seed_cnn import build_seed_cnn

N_IMAGES = 256
BATCH = 1024
NATIVE = {
    "pixel-flipping": (fa.evaluate_pixel_flipping, 28),
    "deletion": (fa.evaluate_deletion, 29),
    "insertion": (fa.evaluate_insertion, 29),
    "region-perturbation": (fa.evaluate_region_perturbation, 50),
    "road": (road.evaluate_road, 18),
}


def gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        model(x).gather(1, target[:, None]).sum().backward()
    return x.grad.detach()


@pytest.fixture(scope="module")
def setup():
    data = load_mnist(train_limit=1000, test_limit=N_IMAGES)
    torch.manual_seed(0)
    model = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=3).eval()
    x = data.test.x
    with torch.no_grad():
        target = model(x).argmax(1)
    maps = gradient(model, x, target)

    def cached(m, xs, t):  # the runner's attribution cache: explained once, looked up after
        assert xs.shape[0] == N_IMAGES and torch.equal(t, target)
        return maps

    context = EvaluationContext(data, model, ModelSpec("seed-cnn", build_seed_cnn), 0, None, cached)
    return context, model, x, target, maps


def rounds(benchmark, slow=False):
    return 1 if benchmark.disabled or slow else 5


@pytest.mark.parametrize("metric", NATIVE)
def test_forward_limit(benchmark, setup, metric):
    _, model, x, _, _ = setup
    copies = x.repeat(NATIVE[metric][1], 1, 1, 1)

    def forward_all():
        with torch.no_grad():
            return [model(copies[i : i + BATCH]) for i in range(0, len(copies), BATCH)]

    out = benchmark.pedantic(forward_all, rounds=rounds(benchmark), warmup_rounds=1)
    assert sum(len(o) for o in out) == len(copies)


@pytest.mark.parametrize("metric", NATIVE)
def test_native(benchmark, setup, metric):
    context = setup[0]
    evaluate = NATIVE[metric][0]
    result = benchmark.pedantic(
        evaluate, args=(context,), rounds=rounds(benchmark), warmup_rounds=1
    )
    scores = next(v for k, v in result.arrays.items() if k in ("auc", "aopc", "morf_auc"))
    assert len(scores) == N_IMAGES and np.isfinite(scores).all()


def quantus_inputs(setup, n):
    _, model, x, target, maps = setup
    return {
        "model": model,
        "x_batch": x[:n].numpy().copy(),
        "y_batch": target[:n].numpy().copy(),
        "a_batch": maps[:n].numpy().copy(),
        "device": "cpu",
    }


def test_quantus_pixel_flipping(benchmark, setup):
    metric = quantus.PixelFlipping(features_in_step=28, disable_warnings=True)
    inputs = quantus_inputs(setup, N_IMAGES)
    curves = benchmark.pedantic(
        lambda: metric(**inputs, batch_size=N_IMAGES), rounds=rounds(benchmark)
    )
    assert np.asarray(curves).shape == (N_IMAGES, 28)


def test_quantus_faithfulness_correlation(benchmark, setup):
    n = 32 if benchmark.disabled else N_IMAGES
    metric = quantus.FaithfulnessCorrelation(return_aggregate=False, disable_warnings=True)
    inputs = quantus_inputs(setup, n)
    scores = benchmark.pedantic(
        lambda: metric(**inputs, batch_size=n), rounds=rounds(benchmark, slow=True)
    )
    assert len(scores) == n


@pytest.mark.parametrize("percentages", ["quantus-default", "10-90"])
def test_quantus_road(benchmark, setup, percentages):
    n = 32 if benchmark.disabled else N_IMAGES
    grid = list(range(1, 100, 2)) if percentages == "quantus-default" else list(range(10, 100, 10))
    metric = quantus.ROAD(percentages=grid, disable_warnings=True)
    inputs = quantus_inputs(setup, n)
    # batch_size=n: Quantus only reports its first batch, so let that be every image
    scores = benchmark.pedantic(
        lambda: metric(**inputs, batch_size=n), rounds=rounds(benchmark, slow=True)
    )
    assert list(scores) == grid
