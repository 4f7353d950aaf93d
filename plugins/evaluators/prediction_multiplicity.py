"""``prediction-multiplicity``: how much the equally good models of a Rashomon set disagree on
their predictions.

A model-set evaluator (``EvaluatorSpec.model_set``): one job receives the models the core
kept (validation accuracy within ``rashomon_eps`` of the best; ``context.members``, the best
first, which is Marx et al.'s baseline model) and scores all of them on the same test images.
The metrics are ``benchmark.kit.prediction_multiplicity``'s (Marx, Calmon & Ustun 2020;
Hsu & Calmon 2022; Hsu et al. 2024), each per-sample quantity summed up by its mean and upper
quantiles, since multiplicity concentrates on few samples.

One control is computed with the metrics, because a churn of 0.03 means nothing alone:
``churn_independent_errors`` is the churn two models with these error rates would have if
their errors fell on unrelated samples, wrong labels spread over the other classes. Measured
churn far below it says the models err on the same hard samples; near it, that they are as
arbitrary as their error rates allow.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt

from benchmark.kit import prediction_multiplicity as pm
from benchmark.kit.evaluation import predict_logits
from benchmark.model_sets import DEFAULT_EPS, Across, RashomonEps
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec

QUANTILES = ("mean", "q90", "max")
DIRECTIONS: dict[str, Direction] = {
    "set_size": "neither",
    "best_test_accuracy": "higher",
    "accuracy_range": "lower",
    "ambiguity": "lower",
    "discrepancy": "lower",
    "churn_mean": "lower",
    "churn_max": "lower",
    "churn_independent_errors": "neither",
    "disagreement_mean": "lower",
    "disagreement_q90": "lower",
    **{f"viable_prediction_range_{q}": "lower" for q in QUANTILES},
    "score_variance_mean": "lower",
    **{f"rashomon_capacity_{q}": "lower" for q in QUANTILES},
}
GLOSSARY = {
    "set_size": "Models in the Rashomon set (validation accuracy within eps of the best).",
    "best_test_accuracy": "Test accuracy of the set's best model on validation (the baseline).",
    "accuracy_range": "Largest minus smallest test accuracy over the set.",
    "ambiguity": "Share of test images on which some model of the set predicts another label "
    "than the baseline (Marx et al. 2020).",
    "discrepancy": "Largest share of test images on which one model of the set contradicts the "
    "baseline (Marx et al. 2020).",
    "churn_mean": "Share of test images two models of the set label differently, mean over pairs.",
    "churn_max": "The same, for the most different pair.",
    "churn_independent_errors": "Control: the mean churn if each pair erred, at its error "
    "rates, on unrelated images (wrong labels uniform over the other classes).",
    "disagreement_mean": "Entropy of the set's predicted labels per image, normalised to [0, 1], "
    "mean over images.",
    "disagreement_q90": "Its 90th percentile over images.",
    "viable_prediction_range_mean": "Per image and class, largest minus smallest probability "
    "over the set, mean over classes, then over images (Watson-Daniels et al. 2023).",
    "score_variance_mean": "Variance over the set of each class probability, mean over classes "
    "and images (Hsu et al. 2024).",
    "rashomon_capacity_mean": "2 to the capacity (bits) of the channel from the set's models "
    "to labels, per image, in [1, set size]; mean over images (Hsu & Calmon 2022).",
}
REFERENCE = (
    "Marx, Calmon & Ustun 2020, Predictive Multiplicity in Classification (ICML); Hsu & "
    "Calmon 2022, Rashomon Capacity (NeurIPS); Hsu et al. 2024, Dropout-Based Rashomon Set "
    "Exploration (ICLR)"
)


def _quantiles(prefix: str, values: torch.Tensor) -> dict[str, float]:
    stats = pm.summary(values)
    picked = {"mean": stats["mean"], "q90": stats["q90"], "max": stats["max"]}
    return {f"{prefix}_{q}": float(picked[q]) for q in QUANTILES}


def independent_churn(errors: torch.Tensor, num_classes: int) -> float:
    """Mean over pairs of ``e_i (1 - e_j) + e_j (1 - e_i) + e_i e_j (C - 2) / (C - 1)``: how
    often two models with error rates ``e_i``, ``e_j`` would disagree if their errors were
    independent and their wrong labels uniform over the ``C - 1`` other classes."""
    m = len(errors)
    if m < 2:
        return 0.0
    e = errors.double()
    both_wrong_apart = (num_classes - 2) / max(1, num_classes - 1)
    pair = e[:, None] * (1 - e[None, :]) + e[None, :] * (1 - e[:, None])
    pair = pair + e[:, None] * e[None, :] * both_wrong_apart
    upper = torch.triu_indices(m, m, 1)
    return float(pair[upper[0], upper[1]].mean())


def prediction_multiplicity(
    context: EvaluationContext,
    across: Across = "seeds",
    rashomon_eps: RashomonEps = DEFAULT_EPS,
    test_limit: PositiveInt | None = None,
    batch_size: PositiveInt = 512,
) -> Evaluation:
    """Multiplicity metrics of ``context.members`` on the test split (``across`` and
    ``rashomon_eps`` are read by the core, which builds and filters the set)."""
    members = context.members or ()
    if not members:
        raise ValueError("prediction-multiplicity is a model-set evaluator: it needs members")
    test = context.dataset.test
    x, y = test.x[:test_limit], test.y[:test_limit]
    probs = torch.stack(
        [predict_logits(m.model, x, batch_size).double().softmax(1) for m in members]
    )
    labels = probs.argmax(2)
    accuracies = (labels == y[None, :]).double().mean(1)
    churn = pm.pairwise_churn(probs)
    m = len(members)
    upper = torch.triu_indices(m, m, 1)
    pairs = churn[upper[0], upper[1]] if m > 1 else torch.zeros(1, dtype=churn.dtype)
    disagreement = pm.label_disagreement(probs)
    vpr = pm.viable_prediction_range(probs)
    variance = pm.score_variance(probs)
    capacity = pm.rashomon_capacity(probs)
    metrics = {
        "set_size": float(m),
        "best_test_accuracy": float(accuracies[0]),
        "accuracy_range": float(pm.accuracy_range(probs, y)),
        "ambiguity": float(pm.ambiguity(probs, 0)),
        "discrepancy": float(pm.discrepancy(probs, 0)),
        "churn_mean": float(pairs.mean()),
        "churn_max": float(pairs.max()),
        "churn_independent_errors": independent_churn(1 - accuracies, probs.shape[2]),
        "disagreement_mean": float(disagreement.mean()),
        "disagreement_q90": float(pm.summary(disagreement)["q90"]),
        **_quantiles("viable_prediction_range", vpr.mean(1)),
        "score_variance_mean": float(variance.mean()),
        **_quantiles("rashomon_capacity", capacity),
    }
    num_classes = probs.shape[2]
    by_class = torch.zeros(num_classes, dtype=torch.float64)
    counts = torch.bincount(y.cpu(), minlength=num_classes).double()
    by_class.index_add_(0, y.cpu(), vpr.cpu().mean(1))
    return Evaluation(
        metrics=metrics,
        arrays={
            "members": [member.label for member in members],
            "test_accuracy": accuracies.cpu().tolist(),
            "churn_matrix": churn.cpu().tolist(),
            "viable_prediction_range_per_class": (by_class / counts.clamp(min=1)).tolist(),
            "score_variance_per_class": variance.mean(0).cpu().tolist(),
        },
        per_image={
            "disagreement": disagreement.float().cpu(),
            "viable_prediction_range": vpr.mean(1).float().cpu(),
            "rashomon_capacity": capacity.float().cpu(),
        },
    )


def specs() -> list[EvaluatorSpec]:
    """``prediction-multiplicity``, for ``plugins.evaluators`` to register."""
    spec = evaluator_spec(
        "prediction-multiplicity",
        prediction_multiplicity,
        "Predictive multiplicity of a Rashomon set of equally accurate models: ambiguity, "
        "discrepancy, churn, label entropy, viable prediction range, Rashomon capacity",
        DIRECTIONS,
        requires=frozenset(),
        glossary=GLOSSARY,
        reference=REFERENCE,
        model_set=True,
    )
    return [spec]
