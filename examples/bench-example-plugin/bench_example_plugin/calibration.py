"""Calibration: does a classifier's confidence match how often it is right?

* ECE, expected calibration error (Naeini et al. 2015; Guo et al. 2017, eq. 3): predictions are
  put in ``bins`` equal-width confidence bins; ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)|.
* MCE, maximum calibration error: max over non-empty bins of |acc(B_b) - conf(B_b)|.
* NLL: mean negative log-likelihood of the true class.
* Brier score (Brier 1950, multi-class): mean over samples of sum_k (p_k - 1[y = k])^2.

All lower is better. Binning uses ``bincount`` over the whole split at once.
"""

from __future__ import annotations

import torch

from benchmark import Evaluation, EvaluationContext

DIRECTIONS = {"ece": "lower", "mce": "lower", "nll": "lower", "brier": "lower"}


def calibration_metrics(
    probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15
) -> dict[str, float]:
    """Metrics from class probabilities ``(N, K)`` (rows sum to 1) and labels ``(N,)``."""
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    probabilities = probabilities.double()
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    # bin b holds confidences in (b/bins, (b+1)/bins]; confidence 0 cannot occur (max >= 1/K)
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    conf_sum = torch.bincount(index, weights=confidence, minlength=bins)
    acc_sum = torch.bincount(index, weights=correct, minlength=bins)
    filled = count > 0
    gap = (acc_sum[filled] / count[filled] - conf_sum[filled] / count[filled]).abs()
    n = len(labels)
    true_class = probabilities.gather(1, labels[:, None]).squeeze(1)
    one_hot = torch.nn.functional.one_hot(labels, probabilities.shape[1]).double()
    return {
        "ece": float((count[filled] / n * gap).sum()),
        "mce": float(gap.max()),
        "nll": float(-torch.log(true_class.clamp_min(1e-12)).mean()),
        "brier": float(((probabilities - one_hot) ** 2).sum(dim=1).mean()),
    }


def evaluate_calibration(
    context: EvaluationContext, bins: int = 15, batch_size: int = 512
) -> Evaluation:
    model, test = context.model, context.dataset.test
    model.eval()
    with torch.no_grad():
        logits = torch.cat(
            [model(test.x[i : i + batch_size]) for i in range(0, len(test), batch_size)]
        )
    return Evaluation(calibration_metrics(logits.softmax(dim=1), test.y, bins))
