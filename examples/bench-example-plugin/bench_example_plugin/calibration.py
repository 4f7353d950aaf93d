"""Calibration: does a classifier's confidence match how often it is right?

Accuracy says nothing about whether a model's 90% means 90%; a dependable classifier must also
say how sure it is. Four scores, all lower is better, on the test split:

* ECE, expected calibration error (Naeini et al. 2015; Guo et al. 2017, "On Calibration of
  Modern Neural Networks", eq. 3). The top-class confidences are put in ``bins`` equal-width
  bins ``B_m = ((m-1)/M, m/M]`` (half-open as in the paper: a confidence on an edge goes to the
  lower bin) and ``ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|``.
* MCE, maximum calibration error (Guo et al. 2017, eq. 5): ``max_m |acc(B_m) - conf(B_m)|`` over
  the non-empty bins.
* NLL: mean negative log-likelihood of the true class, from log-softmax of the logits so a
  probability that underflows to 0 still gives a finite score.
* Brier score (Brier 1950, multi-class form): mean over samples of ``sum_k (p_k - 1[y = k])^2``,
  in [0, 2]. It equals ``sklearn.metrics.brier_score_loss(..., scale_by_half=False)``.

Everything is vectorised: the binning is one ``bucketize`` and three ``bincount`` calls over the
whole split, in float64. ``tests/test_calibration.py`` checks each function against values
computed by hand, against scikit-learn (NLL, Brier) and against a plain per-bin loop (ECE, MCE).
Per-bin counts, mean confidences and accuracies are returned as arrays so a reliability diagram
can be drawn from the stored results.
"""

from __future__ import annotations

import torch
from benchmark import Evaluation, EvaluationContext
from benchmark.kit.evaluation import predict_logits
from benchmark.specs import Direction
from pydantic import PositiveInt
from torch import nn

DIRECTIONS: dict[str, Direction] = {
    "ece": "lower",
    "mce": "lower",
    "nll": "lower",
    "brier": "lower",
}


def _check(scores: torch.Tensor, labels: torch.Tensor) -> None:
    if scores.ndim != 2 or labels.ndim != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected scores (N, K) and labels (N,), got {tuple(scores.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if labels.shape[0] == 0:
        raise ValueError("calibration metrics need at least one sample")


def bin_statistics(
    probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin ``(count, mean confidence, accuracy)`` of the top-class predictions.

    ``probabilities`` is ``(N, K)`` with rows summing to 1, ``labels`` ``(N,)``. Bin ``m`` (from
    0) holds confidences in ``(m/bins, (m+1)/bins]``; mean confidence and accuracy are 0 in an
    empty bin, whose count is 0.
    """
    _check(probabilities, labels)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    probabilities = probabilities.double()
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    # Interior edges 1/M .. (M-1)/M; right=False puts a confidence equal to an edge in the lower
    # bin, Guo et al.'s ((m-1)/M, m/M]. Dividing integers keeps edges like 3/10 exactly 0.3.
    edges = torch.arange(1, bins, dtype=torch.float64) / bins
    index = torch.bucketize(confidence, edges, right=False)
    count = torch.bincount(index, minlength=bins).double()
    filled = count.clamp_min(1)
    mean_confidence = torch.bincount(index, weights=confidence, minlength=bins) / filled
    accuracy = torch.bincount(index, weights=correct, minlength=bins) / filled
    return count, mean_confidence, accuracy


def expected_calibration_error(
    probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15
) -> float:
    """ECE (Guo et al. 2017, eq. 3): bin-size-weighted mean of |accuracy - confidence|."""
    count, confidence, accuracy = bin_statistics(probabilities, labels, bins)
    return float((count / count.sum() * (accuracy - confidence).abs()).sum())


def maximum_calibration_error(
    probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15
) -> float:
    """MCE (Guo et al. 2017, eq. 5): the largest |accuracy - confidence| of a non-empty bin."""
    count, confidence, accuracy = bin_statistics(probabilities, labels, bins)
    return float((accuracy - confidence)[count > 0].abs().max())


def negative_log_likelihood(log_probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean ``-log p(y | x)`` from log-probabilities ``(N, K)`` (take ``log_softmax`` of logits)."""
    _check(log_probabilities, labels)
    return float(-log_probabilities.double().gather(1, labels[:, None]).mean())


def brier_score(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Multi-class Brier score: mean over samples of the squared distance to the one-hot label."""
    _check(probabilities, labels)
    one_hot = nn.functional.one_hot(labels, probabilities.shape[1]).double()
    return float(((probabilities.double() - one_hot) ** 2).sum(dim=1).mean())


def _per_bin(values: torch.Tensor, count: torch.Tensor) -> list[float | None]:
    """JSON-ready per-bin values; ``None`` for an empty bin, whose mean is undefined."""
    return [v if n > 0 else None for v, n in zip(values.tolist(), count.tolist(), strict=True)]


def calibration_metrics(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> Evaluation:
    """All four metrics plus the per-bin reliability arrays, from logits ``(N, K)``."""
    log_probabilities = logits.double().log_softmax(dim=1)
    probabilities = log_probabilities.exp()
    count, confidence, accuracy = bin_statistics(probabilities, labels, bins)
    gap = (accuracy - confidence).abs()
    return Evaluation(
        metrics={
            "ece": float((count / count.sum() * gap).sum()),
            "mce": float(gap[count > 0].max()),
            "nll": negative_log_likelihood(log_probabilities, labels),
            "brier": brier_score(probabilities, labels),
        },
        arrays={
            "bin_upper_edge": [(m + 1) / bins for m in range(bins)],
            "bin_count": [int(c) for c in count],
            "bin_confidence": _per_bin(confidence, count),
            "bin_accuracy": _per_bin(accuracy, count),
        },
    )


def evaluate_calibration(
    context: EvaluationContext, bins: PositiveInt = 15, batch_size: PositiveInt = 512
) -> Evaluation:
    """The ``calibration`` evaluator: metrics of ``context.model`` on the test split (the
    logits come back on the CPU, so the labels join them there)."""
    test = context.dataset.test
    if len(test.x) == 0:
        raise ValueError("the test split is empty: nothing to calibrate")
    # the toolkit's batched logits: eval mode and no_grad, the model's mode restored after
    logits = predict_logits(context.model, test.x, batch_size).cpu()
    return calibration_metrics(logits, test.y.cpu(), bins)
