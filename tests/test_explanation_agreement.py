"""Explanation agreement metrics: identities, hand-computed values, chance levels, references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark.kit import explanation_agreement as ea

SET_METRICS = (
    ea.feature_agreement,
    ea.rank_agreement,
    ea.sign_agreement,
    ea.signed_rank_agreement,
    ea.topk_iou,
)


def test_identical_maps_agree_exactly_even_with_ties_and_zeros():
    a = torch.randn(20, 784)
    a[:, :400] = 0.0  # integrated gradients' zeros
    a[:, 400:500] = 0.25  # a Grad-CAM plateau
    pairs = ea.sample_pixel_pairs(784, 500, 0)
    for fn in SET_METRICS:
        for k in (1, 8, 78):
            assert torch.equal(fn(a, a.clone(), k), torch.ones(20, dtype=torch.float64))
    assert torch.equal(ea.rank_correlation(a, a.clone()), torch.ones(20, dtype=torch.float64))
    assert torch.allclose(ea.pearson(a, a.clone()), torch.ones(20, dtype=torch.float64))
    assert torch.equal(ea.pairwise_rank_agreement(a, a.clone(), pairs), torch.ones(20).double())


def test_hand_computed_set_metrics():
    # |a| order: pixel 0 (5), 2 (-4), 4 (3), ...; |b| order: pixel 2 (6), 0 (-5), 5 (2.5), ...
    a = torch.tensor([[5.0, 1.0, -4.0, 0.5, 3.0, 0.0]])
    b = torch.tensor([[-5.0, 0.2, 6.0, 0.1, 0.0, 2.5]])
    # k = 2: S_a = [0, 2], S_b = [2, 0]: both hold {0, 2}
    assert ea.feature_agreement(a, b, 2).item() == 1.0
    assert ea.rank_agreement(a, b, 2).item() == 0.0  # position 1: 0 vs 2; position 2: 2 vs 0
    # signs on {0, 2}: pixel 0 (+ vs -) differs, pixel 2 (- vs +) differs
    assert ea.sign_agreement(a, b, 2).item() == 0.0
    assert ea.signed_rank_agreement(a, b, 2).item() == 0.0
    assert ea.topk_iou(a, b, 2).item() == 1.0
    # k = 3: S_a = [0, 2, 4], S_b = [2, 0, 5]: common {0, 2} -> 2/3; IoU 2 / 4
    assert ea.feature_agreement(a, b, 3).item() == pytest.approx(2 / 3)
    assert ea.topk_iou(a, b, 3).item() == pytest.approx(0.5)
    c = torch.tensor([[5.0, 1.0, 4.0, 0.5, -3.0, 0.0]])
    # a vs c at k = 3: same pixels at the same positions; signs agree on 0, not on 2 and 4
    assert ea.rank_agreement(a, c, 3).item() == 1.0
    assert ea.sign_agreement(a, c, 3).item() == pytest.approx(1 / 3)
    assert ea.signed_rank_agreement(a, c, 3).item() == pytest.approx(1 / 3)


def test_negated_map_keeps_magnitudes_and_flips_every_sign():
    a = torch.randn(10, 100)
    assert torch.equal(ea.feature_agreement(a, -a, 10), torch.ones(10, dtype=torch.float64))
    assert torch.equal(ea.sign_agreement(a, -a, 10), torch.zeros(10, dtype=torch.float64))
    assert torch.allclose(ea.pearson(a, -a), -torch.ones(10, dtype=torch.float64))


def test_a_random_permutation_sits_at_chance():
    torch.manual_seed(0)
    a = torch.randn(200, 784)
    b = a[:, torch.randperm(784)]
    k = ea.k_of(0.10, 784)
    fa = ea.feature_agreement(a, b, k)
    chance = k / 784
    assert abs(float(fa.mean()) - chance) < 4 * float(fa.std()) / 200**0.5 + 1e-3
    assert abs(float(ea.rank_correlation(a, b).mean())) < 0.02
    pairs = ea.sample_pixel_pairs(784, 2000, 1)
    assert abs(float(ea.pairwise_rank_agreement(a, b, pairs).mean()) - 0.5) < 0.02


def test_correlations_match_scipy_and_numpy_with_ties():
    torch.manual_seed(1)
    a = torch.randn(30, 50).round(decimals=1)
    b = (a + torch.randn(30, 50)).round(decimals=0)
    a[:, :15] = 0.0
    got = ea.rank_correlation(a, b)
    an, bn = a.numpy(), b.numpy()
    want = [stats.spearmanr(np.abs(x), np.abs(y)).statistic for x, y in zip(an, bn, strict=True)]
    assert got.tolist() == pytest.approx(want, abs=1e-9)
    want_r = [np.corrcoef(x, y)[0, 1] for x, y in zip(a.double(), b.double(), strict=True)]
    assert ea.pearson(a, b).tolist() == pytest.approx(want_r, abs=1e-9)
    ranks = ea.average_ranks(a)
    assert ranks.numpy() == pytest.approx(stats.rankdata(a.numpy(), axis=1))


def test_constant_rows_and_batches_and_inputs():
    a = torch.zeros(2, 6)
    b = torch.tensor([[0.0] * 6, [1.0, 2, 3, 4, 5, 6]])
    assert ea.rank_correlation(a, b).tolist() == [1.0, 0.0]
    x, y = torch.randn(8, 64), torch.randn(8, 64)
    x0, y0 = x.clone(), y.clone()
    pairs = ea.sample_pixel_pairs(64, 100, 3)
    for fn in (ea.rank_correlation, ea.pearson):
        batch = fn(x, y)
        single = torch.cat([fn(x[i : i + 1], y[i : i + 1]) for i in range(8)])
        assert torch.allclose(batch, single)
    for fn in SET_METRICS:
        assert torch.equal(
            fn(x, y, 7), torch.cat([fn(x[i : i + 1], y[i : i + 1], 7) for i in range(8)])
        )
    single = [ea.pairwise_rank_agreement(x[i : i + 1], y[i : i + 1], pairs) for i in range(8)]
    assert torch.equal(ea.pairwise_rank_agreement(x, y, pairs), torch.cat(single))
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_pixel_pairs_are_deterministic_distinct_and_in_range():
    one, two = ea.sample_pixel_pairs(784, 5000, 7), ea.sample_pixel_pairs(784, 5000, 7)
    assert torch.equal(one, two) and not torch.equal(one, ea.sample_pixel_pairs(784, 5000, 8))
    assert (one[:, 0] != one[:, 1]).all() and one.min() >= 0 and one.max() < 784
    assert ea.k_of(0.01, 784) == 8 and ea.k_of(0.10, 784) == 78 and ea.k_of(0.0001, 10) == 1


def test_agreement_matrix_is_symmetric_with_the_self_agreement_on_the_diagonal():
    maps = torch.randn(3, 10, 50)
    maps[2] = maps[0]
    matrix = ea.agreement_matrix(maps, lambda a, b: ea.feature_agreement(a, b, 5))
    assert torch.equal(matrix, matrix.T) and torch.equal(matrix.diag(), torch.ones(3).double())
    assert matrix[0, 2] == 1.0
