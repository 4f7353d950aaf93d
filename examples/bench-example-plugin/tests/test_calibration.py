"""Calibration metrics against hand-computed values, scikit-learn and a plain per-bin loop.

Hand-computed cases use 4 samples with confidences away from bin edges, except the one test that
is about edges; tolerances are pytest's default (relative 1e-6), as everything is float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from benchmark.testing import check_evaluator, check_model, check_plugin, make_context
from sklearn.metrics import brier_score_loss, log_loss

import bench_example_plugin
from bench_example_plugin.calibration import (
    DIRECTIONS,
    bin_statistics,
    brier_score,
    calibration_metrics,
    evaluate_calibration,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from bench_example_plugin.logistic import build_logistic_regression

# Top-class confidences 0.92, 0.83, 0.64, 0.75; the third prediction (class 0) is wrong.
PROBS = torch.tensor([[0.92, 0.08], [0.17, 0.83], [0.64, 0.36], [0.25, 0.75]], dtype=torch.float64)
LABELS = torch.tensor([0, 1, 1, 1])


def reference_ece_mce(probs: np.ndarray, labels: np.ndarray, bins: int) -> tuple[float, float]:
    """Guo et al. 2017, eqs. 3 and 5, written as the paper reads: one mask per bin."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    ece, mce = 0.0, 0.0
    for m in range(bins):
        in_bin = (confidence > m / bins) & (confidence <= (m + 1) / bins)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            ece += in_bin.mean() * gap
            mce = max(mce, gap)
    return ece, mce


def test_one_bin_compares_mean_accuracy_with_mean_confidence():
    # bins=2: every confidence lies in (0.5, 1]; accuracy 3/4, mean confidence 3.14/4 = 0.785
    assert expected_calibration_error(PROBS, LABELS, bins=2) == pytest.approx(0.035)
    assert maximum_calibration_error(PROBS, LABELS, bins=2) == pytest.approx(0.035)


def test_one_sample_per_bin_hand_computed():
    # bins=10: gaps 1-0.92, 1-0.83, 0.64 (wrong), 1-0.75, each weighing 1/4
    assert expected_calibration_error(PROBS, LABELS, bins=10) == pytest.approx(1.14 / 4)
    assert maximum_calibration_error(PROBS, LABELS, bins=10) == pytest.approx(0.64)
    # squared distance to one-hot: 2*0.08², 2*0.17², 2*0.64², 2*0.25²
    assert brier_score(PROBS, LABELS) == pytest.approx((0.0128 + 0.0578 + 0.8192 + 0.125) / 4)
    nll = -(math.log(0.92) + math.log(0.83) + math.log(0.36) + math.log(0.75)) / 4
    assert negative_log_likelihood(PROBS.log(), LABELS) == pytest.approx(nll)


def test_confidence_on_an_edge_falls_in_the_lower_bin_and_calibrated_bins_score_zero():
    probs = torch.tensor([[0.75, 0.25, 0.0], [0.5, 0.3, 0.2]], dtype=torch.float64)
    count, _, _ = bin_statistics(probs, torch.tensor([0, 1]), bins=4)
    assert count.tolist() == [0, 1, 1, 0]  # 0.5 in (0.25, 0.5], 0.75 in (0.5, 0.75]

    # 10 predictions at confidence 0.8, 8 of them right: perfectly calibrated
    probs = torch.tensor([[0.8, 0.2]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert maximum_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 5])
def test_metrics_from_logits_match_independent_implementations(classes):
    g = torch.Generator().manual_seed(classes)
    logits = 3 * torch.randn(1000, classes, generator=g, dtype=torch.float64)
    probs = logits.softmax(dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)  # roughly calibrated
    labels[:100] = torch.randint(0, classes, (100,), generator=g)  # and some noise
    p, y = probs.numpy(), labels.numpy()

    evaluation = calibration_metrics(logits, labels, bins=15)
    evaluation.check()
    m = evaluation.metrics
    ece, mce = reference_ece_mce(p, y, bins=15)
    assert m["ece"] == pytest.approx(ece)
    assert m["mce"] == pytest.approx(mce)
    assert m["nll"] == pytest.approx(log_loss(y, p, labels=list(range(classes))))
    assert m["brier"] == pytest.approx(((p - np.eye(classes)[y]) ** 2).sum(axis=1).mean())
    if classes == 2:  # scikit-learn's binary Brier scores one column: half the two-class sum
        assert m["brier"] == pytest.approx(2 * brier_score_loss(y, p[:, 1]))
    assert sum(evaluation.arrays["bin_count"]) == 1000
    assert len(evaluation.arrays["bin_accuracy"]) == 15


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error(PROBS, LABELS, bins=0)
    with pytest.raises(ValueError, match="expected scores"):
        brier_score(PROBS, LABELS[:3])
    with pytest.raises(ValueError, match="at least one sample"):
        negative_log_likelihood(PROBS[:0], LABELS[:0])


def test_the_components_keep_the_bench_contracts():
    """benchmark.testing's checks, on tiny real data through the installed plugins."""
    check_plugin(bench_example_plugin)
    check_model("logistic-regression", input_shapes=((1, 8, 8), (3, 32, 32)))
    evaluation = check_evaluator("calibration", dataset="digits", model="logistic-regression")
    assert set(evaluation.metrics) == set(DIRECTIONS)


def test_evaluator_on_a_logistic_regression_batches_without_changing_the_result(tmp_path):
    context = make_context(
        dataset="digits",
        model="logistic-regression",
        dataset_params={"train_limit": 300, "test_limit": 70},
        debiaser_params={"epochs": 2},
        cache_dir=str(tmp_path),
    )
    model, test = context.model, context.dataset.test
    model.train()
    batched = evaluate_calibration(context, bins=5, batch_size=16)
    assert model.training  # the evaluator restores the mode it found
    whole = evaluate_calibration(context, bins=5, batch_size=512)
    assert batched.metrics == pytest.approx(whole.metrics)
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(model.eval()(test.x).double(), test.y).item()
    assert batched.metrics["nll"] == pytest.approx(nll)
    assert build_logistic_regression(3, (1, 4, 4), bias=False)[1].bias is None
