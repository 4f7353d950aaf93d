"""Prediction multiplicity metrics against hand-computed values and a per-sample reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.kit import prediction_multiplicity as pm
from plugins.evaluators.prediction_multiplicity import independent_churn


def _one_hot_probs(labels: list[list[int]], classes: int, sharp: float = 0.9) -> torch.Tensor:
    """(M, N, C) probabilities putting ``sharp`` on each given label, the rest spread evenly."""
    y = torch.tensor(labels)
    rest = (1 - sharp) / (classes - 1)
    probs = torch.full((*y.shape, classes), rest, dtype=torch.float64)
    return probs.scatter(2, y[..., None], sharp)


def test_identical_models_show_no_multiplicity():
    probs = torch.distributions.Dirichlet(torch.ones(5)).sample((12,)).double()
    same = probs[None].repeat(4, 1, 1)
    assert pm.ambiguity(same) == 0 and pm.discrepancy(same) == 0
    assert pm.pairwise_churn(same).abs().max() == 0
    assert pm.label_disagreement(same).abs().max() == 0
    assert pm.viable_prediction_range(same).abs().max() == 0
    assert pm.score_variance(same).abs().max() < 1e-15
    assert torch.allclose(pm.rashomon_capacity(same), torch.ones(12, dtype=torch.float64))


def test_hand_computed_three_models_four_samples_three_classes():
    # labels per model (rows) and sample (columns); model 0 is the baseline
    labels = [[0, 1, 2, 0], [0, 1, 1, 2], [0, 2, 2, 1]]
    probs = _one_hot_probs(labels, 3)
    # sample 0 unanimous; 1: model 2 differs; 2: model 1 differs; 3: both differ -> 3 of 4
    assert pm.ambiguity(probs, 0) == 0.75
    # model 1 differs from the baseline on samples 2, 3; model 2 on 1, 3: each 2/4
    assert pm.discrepancy(probs, 0) == 0.5
    churn = pm.pairwise_churn(probs)
    # 0-1: samples 2, 3; 0-2: samples 1, 3; 1-2: samples 1, 2, 3
    expected = torch.tensor([[0, 0.5, 0.5], [0.5, 0, 0.75], [0.5, 0.75, 0]], dtype=torch.float64)
    assert torch.equal(churn, expected)
    # entropies / log 3: unanimous 0; two-one split -(2/3 ln 2/3 + 1/3 ln 1/3); all differ 1
    split = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(3)
    got = pm.label_disagreement(probs)
    assert got.tolist() == pytest.approx([0.0, split, split, 1.0])
    vpr = pm.viable_prediction_range(probs)
    # sample 0: every model 0.9 on class 0 -> range 0; sample 3: every class has 0.9 once
    assert vpr[0].tolist() == pytest.approx([0, 0, 0])
    assert vpr[3].tolist() == pytest.approx([0.85, 0.85, 0.85])
    var = pm.score_variance(probs)
    # sample 3, class 0: values 0.9, 0.05, 0.05 -> mean 1/3, var ((0.9-1/3)^2 + 2 (0.05-1/3)^2) / 3
    mean = 1 / 3
    assert float(var[3, 0]) == pytest.approx(((0.9 - mean) ** 2 + 2 * (0.05 - mean) ** 2) / 3)
    # against labels [0, 1, 2, 0]: model 0 right 4/4, models 1 and 2 right 2/4 each
    assert pm.accuracy_range(probs, torch.tensor([0, 1, 2, 0])) == 0.5


def test_rashomon_capacity_of_known_channels():
    # two models certain of different classes: a noiseless binary channel, 1 bit -> 2
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
    assert float(pm.rashomon_capacity(probs)[0]) == pytest.approx(2.0, abs=1e-6)
    # M models one-hot on M different classes of C: capacity log2 M -> M
    eye = torch.eye(5, dtype=torch.float64)[:, None, :]  # (5 models, 1 sample, 5 classes)
    assert float(pm.rashomon_capacity(eye)[0]) == pytest.approx(5.0, abs=1e-5)
    # binary symmetric channel with crossover p: 1 - H2(p) bits
    p = 0.2
    bsc = torch.tensor([[[1 - p, p]], [[p, 1 - p]]], dtype=torch.float64)
    h2 = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert float(pm.rashomon_capacity(bsc)[0]) == pytest.approx(2 ** (1 - h2), abs=1e-6)


def _reference_capacity(rows: np.ndarray, iterations: int = 20000) -> float:
    """Plain Blahut-Arimoto for one sample's (M, C) channel, in bits, as 2 ** C."""
    m = rows.shape[0]
    q = np.full(m, 1.0 / m)
    for _ in range(iterations):
        r = q @ rows
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(rows > 0, rows * np.log(rows / r), 0.0)
        d = terms.sum(1)
        if d.max() - (q * d).sum() < 1e-12:
            break
        q = q * np.exp(d - d.max())
        q /= q.sum()
    return float(2 ** ((q * d).sum() / math.log(2)))


@pytest.mark.parametrize(("m", "c"), [(2, 2), (5, 2), (5, 10), (10, 10), (2, 10)])
def test_vectorised_capacity_matches_a_per_sample_reference(m, c):
    torch.manual_seed(m * 100 + c)
    probs = torch.distributions.Dirichlet(torch.full((c,), 0.5)).sample((m, 20)).double()
    got = pm.rashomon_capacity(probs, tol=1e-12, iterations=20000)
    reference = [_reference_capacity(probs[:, n].numpy()) for n in range(probs.shape[1])]
    assert got.tolist() == pytest.approx(reference, abs=1e-6)
    assert (got >= 1 - 1e-12).all() and (got <= min(m, c) + 1e-9).all()


def test_bounds_on_random_sets_and_a_single_model():
    probs = torch.distributions.Dirichlet(torch.ones(4)).sample((6, 50)).double()
    disagreement = pm.label_disagreement(probs)
    assert (disagreement >= 0).all() and (disagreement <= 1).all()
    assert pm.ambiguity(probs) >= pm.discrepancy(probs)
    single = probs[:1]
    assert pm.ambiguity(single) == 0 and pm.label_disagreement(single).abs().max() == 0
    assert torch.allclose(pm.rashomon_capacity(single), torch.ones(50, dtype=torch.float64))
    stats = pm.summary(torch.arange(101, dtype=torch.float64))
    assert stats["mean"] == 50 and stats["q90"] == 90 and stats["max"] == 100


def test_independent_errors_control():
    # two models with errors 0.1 and 0.2, ten classes
    e = torch.tensor([0.1, 0.2])
    expected = 0.1 * 0.8 + 0.2 * 0.9 + 0.1 * 0.2 * 8 / 9
    assert independent_churn(e, 10) == pytest.approx(expected)
    assert independent_churn(torch.tensor([0.3]), 10) == 0.0
