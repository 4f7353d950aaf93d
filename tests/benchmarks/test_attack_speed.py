"""Throughput of each attack against the forward+backward limit of the same model, and against
torchattacks' PGD on the same model and points.

An S-step gradient attack needs at least S forward+backward passes per image, so the limit row
(``forward_backward``: one pass of the input gradient over the batch) times S is the floor for
PGD and APGD; Square needs one forward pass per query. The eps is small (Linf 0.01), so almost
no point is fooled and our attacks' early exit for fooled points does not flatter them: the
comparison is per step. ``pytest tests/benchmarks/test_attack_speed.py --benchmark-enable``
prints the table (images x steps / mean time = image-steps per second); nothing here asserts a
time.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.kit.apgd import apgd
from benchmark.kit.attacks import fgsm, loss_and_gradient, misclassified, objective_fn, pgd
from benchmark.kit.square import square_linf
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.models.seed_cnn import build_seed_cnn

N_IMAGES = 256
STEPS = 10
EPS = 0.01


@pytest.fixture(scope="module")
def setup():
    data = load_mnist(train_limit=2000, test_limit=400)
    model = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=3).eval()
    correct = ~misclassified(model, data.test.x, data.test.y)
    # only correctly classified points: an attack on a misclassified one stops at once
    return model, data.test.x[correct][:N_IMAGES], data.test.y[correct][:N_IMAGES]


def _mark(benchmark, steps: int) -> None:
    benchmark.extra_info.update({"images": N_IMAGES, "steps": steps})


def test_forward_backward_limit(benchmark, setup):
    model, x, y = setup
    _mark(benchmark, 1)
    _, _, grad = benchmark(loss_and_gradient, model, x, y, objective_fn("ce"))
    assert grad.shape == x.shape


def test_fgsm(benchmark, setup):
    model, x, y = setup
    _mark(benchmark, 1)
    x_adv = benchmark(fgsm, model, x, y, EPS)
    assert (x_adv - x).abs().max() <= EPS + 1e-6


def test_pgd(benchmark, setup):
    model, x, y = setup
    _mark(benchmark, STEPS)
    x_adv = benchmark(pgd, model, x, y, EPS, steps=STEPS)
    assert misclassified(model, x_adv, y).float().mean() < 0.2


def test_apgd_ce(benchmark, setup):
    model, x, y = setup
    _mark(benchmark, STEPS)
    x_adv = benchmark(apgd, model, x, y, EPS, steps=STEPS)
    assert (x_adv - x).abs().max() <= EPS + 1e-6


def test_square(benchmark, setup):
    model, x, y = setup
    _mark(benchmark, STEPS)
    x_adv = benchmark(square_linf, model, x, y, EPS, queries=STEPS)
    assert (x_adv - x).abs().max() <= EPS + 1e-6


def test_torchattacks_pgd(benchmark, setup):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = setup
    attack = torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / STEPS, steps=STEPS)
    _mark(benchmark, STEPS)
    state = torch.random.get_rng_state()
    x_adv = benchmark(attack, x, y)
    torch.random.set_rng_state(state)
    ours = pgd(model, x, y, EPS, steps=STEPS)
    # the same attack: robust accuracies within a few images of each other
    gap = (
        misclassified(model, x_adv, y).float().mean() - misclassified(model, ours, y).float().mean()
    )
    assert abs(float(gap)) <= 0.03
