"""Standard classification quality on the held-out split, computed with scikit-learn.

* accuracy;
* macro precision, recall and F1 with ``zero_division=0`` (a class never predicted counts as
  precision 0, the conservative reading), exactly scikit-learn's ``average="macro"``: the mean
  over the classes that occur in the labels or the predictions, so a class absent from both
  (a small test subset) is not averaged in as a zero;
* macro one-vs-rest AUROC on softmax probabilities (the multi-class AUC variants are reviewed
  in Fawcett 2006, "An introduction to ROC analysis", sec. 10; unweighted OvR is
  scikit-learn's ``multi_class="ovr", average="macro"``). It is computed
  class by class and averaged over the classes that have both positives and negatives in the
  test labels, so a test subset missing a class still gets a score where scikit-learn's
  ``multi_class="ovr"`` refuses one; with every class present the two are equal, which the
  tests check;
* as JSON-ready lists: the confusion matrix (rows are true classes, columns predicted ones) and
  per-class precision / recall / F1 / AUROC over all ``num_classes`` (AUROC ``None`` where it
  is undefined).
"""

from __future__ import annotations

import numpy as np
from pydantic import PositiveInt

from benchmark.kit.evaluation import split_logits
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import IMAGE_AND_TEXT, evaluator_spec

DIRECTIONS: dict[str, Direction] = {
    "accuracy": "higher",
    "precision_macro": "higher",
    "recall_macro": "higher",
    "f1_macro": "higher",
    "auroc_macro": "higher",
}


def per_class_auroc(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """One-vs-rest AUROC per class; NaN where a class is all-positive or all-negative."""
    from sklearn import metrics as skm  # lazy: keeps `bench` start-up fast

    scores = np.full(probabilities.shape[1], np.nan)
    for c in range(probabilities.shape[1]):
        positives = y_true == c
        if 0 < positives.sum() < len(y_true):
            scores[c] = skm.roc_auc_score(positives, probabilities[:, c])
    return scores


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, num_classes: int
) -> Evaluation:
    """All metrics from true labels and predicted class probabilities ``(N, num_classes)``."""
    from sklearn import metrics as skm

    labels = np.arange(num_classes)
    y_pred = probabilities.argmax(axis=1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    macro_p, macro_r, macro_f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    auroc = per_class_auroc(y_true, probabilities)
    if np.isnan(auroc).all():
        raise ValueError("AUROC is undefined: the test labels hold a single class")
    return Evaluation(
        metrics={
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "precision_macro": float(macro_p),
            "recall_macro": float(macro_r),
            "f1_macro": float(macro_f1),
            "auroc_macro": float(np.nanmean(auroc)),
        },
        arrays={
            "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "auroc": [None if np.isnan(a) else float(a) for a in auroc],
        },
    )


def evaluate_classification(
    context: EvaluationContext, batch_size: PositiveInt = 512
) -> Evaluation:
    """Score ``context.model`` on the test split; inference in eval mode, batched, no_grad
    (captions included for a model that reads them)."""
    test = context.dataset.test
    logits = split_logits(context, test, batch_size)
    probabilities = logits.softmax(dim=1).double().cpu().numpy()
    return classification_metrics(test.y.cpu().numpy(), probabilities, context.dataset.num_classes)


GLOSSARY = {
    "accuracy": "Share of test images classified correctly.",
    "precision_macro": "Precision per class, averaged over classes.",
    "recall_macro": "Recall per class, averaged over classes.",
    "f1_macro": "F1 per class, averaged over classes.",
    "auroc_macro": "One-vs-rest area under the ROC curve per class, averaged over classes.",
}
"""What each metric measures, for the published glossary."""


def specs() -> list[EvaluatorSpec]:
    """The ``classification`` evaluator: no explainer needed; ``batch_size`` is its parameter."""
    description = "accuracy, macro P/R/F1, macro OvR AUROC, confusion matrix (test split)"
    spec = evaluator_spec(
        "classification",
        evaluate_classification,
        description,
        DIRECTIONS,
        requires=frozenset(),
        glossary=GLOSSARY,
        modalities=IMAGE_AND_TEXT,
    )
    return [spec]
