"""Calibration metrics against hand-computed values and scikit-learn."""

import numpy as np
import pytest
import torch
from bench_example_plugin.calibration import calibration_metrics
from sklearn.metrics import log_loss

# confidences 0.92, 0.83, 0.64, 0.75 (kept away from bin edges); the third one is wrong
PROBS = torch.tensor([[0.92, 0.08], [0.17, 0.83], [0.64, 0.36], [0.25, 0.75]])
LABELS = torch.tensor([0, 1, 1, 1])


def test_one_bin_compares_mean_accuracy_with_mean_confidence():
    m = calibration_metrics(PROBS, LABELS, bins=2)  # all confidences in (0.5, 1]
    assert m["ece"] == pytest.approx(abs(3 / 4 - (0.92 + 0.83 + 0.64 + 0.75) / 4))


def test_one_sample_per_bin_hand_computed():
    m = calibration_metrics(PROBS, LABELS, bins=10)
    gaps = [1 - 0.92, 1 - 0.83, 0.64, 1 - 0.75]
    assert m["ece"] == pytest.approx(sum(gaps) / 4)
    assert m["mce"] == pytest.approx(0.64)
    brier = np.mean([2 * 0.08**2, 2 * 0.17**2, 2 * 0.64**2, 2 * 0.25**2])
    assert m["brier"] == pytest.approx(brier)


def test_nll_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(50, 4, generator=g).softmax(dim=1)
    y = torch.randint(0, 4, (50,), generator=g)
    m = calibration_metrics(p, y)
    assert m["nll"] == pytest.approx(log_loss(y.numpy(), p.numpy(), labels=[0, 1, 2, 3]))
    with pytest.raises(ValueError):
        calibration_metrics(p, y, bins=0)
