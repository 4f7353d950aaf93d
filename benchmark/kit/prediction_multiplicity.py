"""Predictive multiplicity: how much the equally good models of a Rashomon set disagree.

Models that score the same on validation can still label many test images differently, and a
benchmark that reports one of them hides that arbitrariness. Every function here is pure and
takes ``probs``, an ``(M, N, C)`` tensor of the class probabilities (rows summing to 1) of ``M``
models on the same ``N`` samples; it runs batched over all samples, in float64, on the input's
device, under ``torch.no_grad()``. Predicted labels are ``probs.argmax(-1)`` (ties go to the
lowest class index, as NumPy's ``argmax`` in the reference code).

Definitions and their sources:

* ``accuracy_range``: largest minus smallest test accuracy over the set.
* ``ambiguity`` and ``discrepancy`` (Marx, Calmon & Ustun, "Predictive Multiplicity in
  Classification", ICML 2020, sec. 2): against a baseline model (the set's best on
  validation), the share of samples on which *some* model's label differs, and the largest
  share on which *one* model's does. Hence ``ambiguity >= discrepancy``.
* ``pairwise_churn`` (Milani Fard et al. 2016, "Launch and Iterate: Reducing Prediction Churn"):
  per pair of models, the share of samples they label differently.
* ``label_disagreement``: per sample, the entropy of the ``M`` predicted labels' empirical
  distribution over ``log(min(M, C))``.
* ``viable_prediction_range`` (Watson-Daniels, Parkes & Ustun, AAAI 2023; Hsu et al.,
  "Dropout-Based Rashomon Set Exploration for Efficient Predictive Multiplicity Estimation",
  ICLR 2024) and ``score_variance`` (Hsu et
  al. 2024): per sample and class, the largest minus the smallest probability over the set,
  and the variance over it (ddof=0, NumPy's ``var`` in their code).
* ``rashomon_capacity`` (Hsu & Calmon, "Rashomon Capacity: A Metric for Predictive Multiplicity
  in Classification", NeurIPS 2022): per sample, ``2 ** C_n`` with ``C_n`` the capacity
  in bits of the channel from models to labels whose rows are ``probs[:, n]``, in
  ``[1, min(M, C)]``: 1 when all models give the same distribution, ``k`` when ``k`` models are
  certain of ``k`` different classes.

Reference code: HsiangHsu/rashomon-capacity ``utils/capacity.py`` and
jpmorganchase/dropout-rashomon-set-exploration ``utils/evaluation.py`` (NumPy, one sample per
process in a ``multiprocessing.Pool``). Why by hand: no maintained library computes these on
batches of torch predictions. ``tests/test_prediction_multiplicity.py`` holds each function to
hand-computed values and the vectorised capacity to a per-sample NumPy Blahut-Arimoto.

Deliberate deviations from the reference code:

1. VPR and score variance are returned for every class, ``(N, C)``; Hsu et al. keep only the
   true label's column. The caller gathers a column or averages over classes.
2. Label disagreement is a normalised entropy; Hsu et al.'s ``4 mu (1 - mu)`` of the mean
   label is defined for binary labels only.
3. Blahut-Arimoto stops per sample on the capacity's bounds (Blahut 1972):
   ``sum_m q_m D_m <= C_n <= max_m D_m``, ``D_m = KL(P_m || sum_m' q_m' P_m')``, once their gap
   is below ``tol`` nats, and returns the lower bound, so the error in bits is at most
   ``tol / ln 2``. The reference stops when ``q`` moves by less than ``1e-12`` (squared),
   which bounds nothing about the capacity. A sample that has converged leaves the batch, so
   its value does not depend on the others.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "accuracy_range",
    "ambiguity",
    "discrepancy",
    "label_disagreement",
    "pairwise_churn",
    "predicted_labels",
    "rashomon_capacity",
    "score_variance",
    "summary",
    "viable_prediction_range",
]

_TINY = 1e-300  # clamp before a log: 0 log 0 = 0 is applied explicitly, this only avoids -inf


def _checked(probs: torch.Tensor) -> torch.Tensor:
    if probs.dim() != 3 or 0 in probs.shape:
        raise ValueError(
            f"probs must be a non-empty (models, samples, classes) tensor, got shape "
            f"{tuple(probs.shape)}"
        )
    return probs


def _baseline_labels(labels: torch.Tensor, baseline: int) -> torch.Tensor:
    m = labels.shape[0]
    if not -m <= baseline < m:
        raise ValueError(f"baseline {baseline} is not a model index (there are {m} models)")
    return labels[baseline]


@torch.no_grad()
def predicted_labels(probs: torch.Tensor) -> torch.Tensor:
    """``(M, N)`` int64: each model's label per sample, ``argmax`` over classes."""
    return _checked(probs).argmax(2)


@torch.no_grad()
def accuracy_range(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Largest minus smallest test accuracy over the ``M`` models; ``labels`` is ``(N,)``."""
    predicted = predicted_labels(probs)
    if labels.shape != predicted.shape[1:]:
        raise ValueError(
            f"labels must have shape ({predicted.shape[1]},), got {tuple(labels.shape)}"
        )
    accuracy = (predicted == labels.to(predicted.device)[None, :]).double().mean(1)
    return float(accuracy.max() - accuracy.min())


@torch.no_grad()
def ambiguity(probs: torch.Tensor, baseline: int = 0) -> float:
    """Ambiguity (Marx et al. 2020): the share of samples ``n`` on which some model ``m`` has
    ``argmax P_m(n) != argmax P_baseline(n)``. In [0, 1]; 0 when all models agree."""
    labels = predicted_labels(probs)
    reference = _baseline_labels(labels, baseline)
    return float((labels != reference[None, :]).any(0).double().mean())


@torch.no_grad()
def discrepancy(probs: torch.Tensor, baseline: int = 0) -> float:
    """Discrepancy (Marx et al. 2020): ``max_m`` of the share of samples on which model ``m``'s
    label differs from the baseline's. In [0, ambiguity]."""
    labels = predicted_labels(probs)
    reference = _baseline_labels(labels, baseline)
    return float((labels != reference[None, :]).double().mean(1).max())


@torch.no_grad()
def pairwise_churn(probs: torch.Tensor) -> torch.Tensor:
    """``(M, M)`` float64, symmetric, diagonal 0: entry ``(m, m')`` is the share of samples on
    which models ``m`` and ``m'`` predict different labels (Milani Fard et al. 2016)."""
    labels = predicted_labels(probs)
    return (labels[:, None, :] != labels[None, :, :]).double().mean(2)


@torch.no_grad()
def label_disagreement(probs: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64 in [0, 1]: per sample, ``H(v) / log(min(M, C))`` where ``v_c`` is the share
    of the ``M`` models predicting class ``c`` and ``H`` the entropy (0 log 0 = 0). 0 when the
    models are unanimous, 1 when their labels are as spread as ``M`` models over ``C`` classes
    can be (all different if ``M <= C``, uniform over classes if ``M`` is a multiple of ``C``).
    Zeros when ``min(M, C) == 1``."""
    labels = predicted_labels(probs)  # (M, N)
    m, n, c = probs.shape
    if min(m, c) < 2:
        return torch.zeros(n, dtype=torch.float64, device=probs.device)
    votes = torch.zeros(n, c, dtype=torch.float64, device=probs.device)
    votes.scatter_add_(1, labels.T, torch.ones(n, m, dtype=torch.float64, device=probs.device))
    share = votes / m
    entropy = -torch.where(share > 0, share * torch.log(share.clamp_min(_TINY)), 0.0).sum(1)
    return (entropy / math.log(min(m, c))).clamp(0.0, 1.0)


@torch.no_grad()
def viable_prediction_range(probs: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` float64: ``max_m P_m(c | n) - min_m P_m(c | n)`` (Watson-Daniels et al. 2023;
    Hsu et al. 2024, who report the true label's column)."""
    p = _checked(probs).double()
    return p.amax(0) - p.amin(0)


@torch.no_grad()
def score_variance(probs: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` float64: the population variance (ddof=0) over models of ``P_m(c | n)`` (Hsu
    et al. 2024, NumPy's ``var``)."""
    return _checked(probs).double().var(0, unbiased=False)


def _divergences(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` nats: ``KL(P_m || r)`` with ``r = sum_m q_m P_m``; ``p`` is ``(B, M, C)``, ``q``
    ``(B, M)``. Terms with ``P_m(c) = 0`` are 0; ``r`` is clamped so a term with ``r(c) = 0``
    (only possible once some ``q_m`` underflowed) stays finite."""
    r = torch.einsum("bm,bmc->bc", q, p)
    log_ratio = torch.log(p.clamp_min(_TINY)) - torch.log(r.clamp_min(_TINY))[:, None, :]
    return torch.where(p > 0, p * log_ratio, 0.0).sum(2).clamp_min(0.0)


@torch.no_grad()
def rashomon_capacity(
    probs: torch.Tensor, iterations: int = 5000, tol: float = 1e-10
) -> torch.Tensor:
    """``(N,)`` float64 in ``[1, min(M, C)]``: Hsu & Calmon 2022's Rashomon capacity
    ``2 ** C_n``, ``C_n = max_{q in simplex(M)} sum_m q_m KL(P_m || sum_m' q_m' P_m')`` in bits,
    ``P_m = probs[m, n]``.

    Blahut-Arimoto (Blahut 1972; Arimoto 1972) on all samples at once: from uniform ``q``,
    ``q_m <- q_m exp(D_m) / sum_m' q_m' exp(D_m')`` with ``D_m = KL(P_m || r)``. A sample stops
    when ``max_m D_m - sum_m q_m D_m < tol`` (nats), the gap between the capacity's upper and
    lower bounds; one still open after ``iterations`` steps keeps its lower bound, which never
    exceeds the capacity. Rows are clipped at 0 and renormalised first, so float32 softmax
    outputs whose sums are off by rounding are accepted."""
    p = _checked(probs).double().clamp_min(0.0).permute(1, 0, 2)  # (N, M, C)
    p = p / p.sum(2, keepdim=True).clamp_min(_TINY)
    n, m, c = p.shape
    nats = torch.zeros(n, dtype=torch.float64, device=p.device)
    open_ = torch.arange(n, device=p.device)  # samples still iterating
    q = torch.full((n, m), 1.0 / m, dtype=torch.float64, device=p.device)
    for step in range(iterations + 1):
        divergence = _divergences(p, q)
        lower = (q * divergence).sum(1)
        upper = divergence.amax(1)
        nats[open_] = lower
        still_open = upper - lower >= tol
        if step == iterations or not bool(still_open.any()):
            break
        if not bool(still_open.all()):  # converged samples leave the batch
            open_, p, q, divergence = (
                open_[still_open],
                p[still_open],
                q[still_open],
                divergence[still_open],
            )
        q = q * torch.exp(divergence - divergence.amax(1, keepdim=True))
        q = q / q.sum(1, keepdim=True)
    return torch.exp2(nats / math.log(2.0)).clamp(1.0, float(min(m, c)))


@torch.no_grad()
def summary(values: torch.Tensor) -> dict[str, float]:
    """``{"mean", "q50", "q90", "q99", "max"}`` of a tensor's values (flattened; quantiles by
    linear interpolation, NumPy's default): per-sample arrays as scalar metrics, upper
    quantiles included because multiplicity concentrates on few samples."""
    v = values.detach().double().flatten()
    if v.numel() == 0:
        raise ValueError("summary of an empty tensor")
    levels = torch.tensor([0.5, 0.9, 0.99], dtype=v.dtype, device=v.device)
    q50, q90, q99 = torch.quantile(v, levels).tolist()
    return {"mean": float(v.mean()), "q50": q50, "q90": q90, "q99": q99, "max": float(v.max())}
