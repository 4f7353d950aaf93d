"""The attack kit's invariants, on a seed-cnn really trained on MNIST.

No anchor tests these, and each one catches a classic bug of robustness evaluations: an attack
that leaves the eps ball or the image box, that writes to its input, that depends on the batch
it runs in, that cannot reach 0 % when nothing bounds it, or a DLR loss or APGD schedule that
differs from the paper's.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from benchmark.kit.apgd import apgd, checkpoints
from benchmark.kit.attacks import (
    dlr_loss,
    fgsm,
    misclassified,
    per_sample_norm,
    pgd,
    project,
    random_start,
)
from benchmark.kit.square import margin, square_linf, window_fraction
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.models.seed_cnn import build_seed_cnn


@pytest.fixture(scope="module")
def trained():
    """A seed-cnn trained 2 epochs on 1,000 MNIST images, and 64 held-out test images."""
    data = load_mnist(train_limit=1000, test_limit=200)
    torch.manual_seed(0)
    model = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=2)
    return model.eval(), data.test.x[:64], data.test.y[:64], data.test


def _attacks():
    return {
        "fgsm": lambda m, x, y, eps, norm: fgsm(m, x, y, eps, norm=norm),
        "pgd": lambda m, x, y, eps, norm: pgd(m, x, y, eps, norm=norm, steps=10, restarts=2),
        "apgd-ce": lambda m, x, y, eps, norm: apgd(m, x, y, eps, norm=norm, steps=20),
        "apgd-dlr": lambda m, x, y, eps, norm: apgd(
            m, x, y, eps, norm=norm, steps=20, objective="dlr"
        ),
        "square": lambda m, x, y, eps, norm: square_linf(m, x, y, eps, queries=50),
    }


@pytest.mark.parametrize("name", list(_attacks()))
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attack_stays_in_the_ball_and_box_and_leaves_its_input_alone(trained, name, norm):
    if name == "square" and norm == "l2":
        pytest.skip("the Square Attack is implemented for Linf only")
    model, x, y, _ = trained
    eps = 0.2 if norm == "linf" else 1.5
    before = x.clone()
    grads_before = [p.grad for p in model.parameters()]
    x_adv = _attacks()[name](model, x, y, eps, norm)
    assert torch.equal(x, before), "the attack wrote to its input"
    assert not model.training, "the attack changed the model's mode"
    assert all(p.grad is g for p, g in zip(model.parameters(), grads_before, strict=True))
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (per_sample_norm(x_adv - x, norm) <= eps + 1e-5).all()
    assert not x_adv.requires_grad


@pytest.mark.parametrize("name", list(_attacks()))
def test_batched_results_equal_per_image_results(trained, name):
    model, x, y, _ = trained
    attack = _attacks()[name]
    batched = attack(model, x[:8], y[:8], 0.1, "linf")
    single = torch.cat([attack(model, x[i : i + 1], y[i : i + 1], 0.1, "linf") for i in range(8)])
    # rows are independent: only float rounding of a different batch shape may differ
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.equal(misclassified(model, batched, y[:8]), misclassified(model, single, y[:8]))


@pytest.mark.parametrize("name", list(_attacks()))
def test_attacks_are_deterministic(trained, name):
    model, x, y, _ = trained
    attack = _attacks()[name]
    assert torch.equal(attack(model, x, y, 0.1, "linf"), attack(model, x, y, 0.1, "linf"))


def test_at_eps_zero_nothing_moves(trained):
    model, x, y, _ = trained
    for name, attack in _attacks().items():
        assert torch.equal(attack(model, x, y, 0.0, "linf"), x), name


def test_robust_accuracy_falls_with_eps_and_reaches_zero_unbounded(trained):
    model, x, y, _ = trained
    clean = 1 - misclassified(model, x, y).float().mean().item()
    accuracies = []
    for eps in (0.0, 0.05, 0.1, 0.2, 0.3, 1.0):
        x_adv = pgd(model, x, y, eps, steps=20) if eps else x
        accuracies.append(1 - misclassified(model, x_adv, y).float().mean().item())
    assert accuracies[0] == clean
    assert all(b <= a for a, b in itertools.pairwise(accuracies)), accuracies
    assert accuracies[-1] <= 1 / 64, "unbounded PGD must fool (about) every image"


def test_at_half_the_box_robust_accuracy_is_at_most_the_largest_class_share(trained):
    """At Linf eps >= 0.5 every image of [0, 1] can reach the uniform grey image, whose one
    predicted class bounds robust accuracy by that class's share."""
    model, _, _, test = trained
    x, y = test.x[:200], test.y[:200]
    largest_share = torch.bincount(y).max().item() / len(y)
    for attack in ("pgd", "apgd-ce"):
        x_adv = _attacks()[attack](model, x, y, 0.5, "linf")
        robust = 1 - misclassified(model, x_adv, y).float().mean().item()
        assert robust <= largest_share, attack


def test_projection_and_random_start():
    delta = torch.tensor([[[[3.0, -4.0]]], [[[0.1, 0.0]]]])
    assert torch.allclose(
        project(delta, "l2", 1.0).flatten(1), torch.tensor([[0.6, -0.8], [0.1, 0.0]])
    )
    assert torch.equal(
        project(delta, "linf", 0.5).flatten(1), torch.tensor([[0.5, -0.5], [0.1, 0.0]])
    )
    x = torch.full((3, 1, 4, 4), 0.5)
    for norm, eps in (("linf", 0.3), ("l2", 0.7)):
        start = random_start(x, norm, eps, seed=1)
        assert (per_sample_norm(start, norm) <= eps + 1e-6).all()
        # keyed by content: identical images get identical starts, another seed another one
        assert torch.equal(start[0], start[1])
        assert not torch.equal(start, random_start(x, norm, eps, seed=2))


def test_dlr_loss_by_hand():
    logits = torch.tensor([[4.0, 1.0, 3.0, 0.0], [1.0, 5.0, 2.0, 0.0]])
    y = torch.tensor([0, 0])
    # row 0: true class on top: -(4 - 3) / (4 - 1); row 1: -(1 - 5) / (5 - 1)
    assert torch.allclose(dlr_loss(logits, y), torch.tensor([-1 / 3, 1.0]))
    # invariant to shifting and positive rescaling of the logits
    assert torch.allclose(dlr_loss(3 * logits + 7, y), dlr_loss(logits, y))
    assert torch.allclose(margin(logits, y), torch.tensor([1.0, -4.0]))


def test_apgd_checkpoints_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == [1]


def test_square_schedule_matches_the_reference():
    assert window_fraction(0, 10000) == 0.8
    assert window_fraction(11, 10000) == 0.4
    assert window_fraction(600, 10000) == 0.8 / 16
    assert window_fraction(100, 1000) == 0.8 / 16  # rescaled to the budget: 1,000 of 10,000


def test_pgd_keeps_the_first_misclassified_iterate(trained):
    model, x, y, _ = trained
    seen = []
    x_adv = pgd(model, x, y, 0.3, steps=10, restarts=3, on_restart=lambda r, f: seen.append(f))
    assert len(seen) == 3 and all((b >= a).all() for a, b in itertools.pairwise(seen))
    assert torch.equal(misclassified(model, x_adv, y), seen[-1])
    last = pgd(model, x, y, 0.3, steps=10, keep="last")
    assert misclassified(model, x_adv, y).sum() >= misclassified(model, last, y).sum()
