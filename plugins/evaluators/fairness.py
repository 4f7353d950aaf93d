"""Fairness and bias of a trained classifier on the test split: one evaluator, many metrics.

"Groups" are the values ``a`` of ``Split.groups`` (the colour on ``colored-mnist``, the class
itself on ``mnist``); a *cell* is a pair ``g = (y, a)`` of true class and group, as in
Sagawa et al. 2020 (Group DRO, ICLR) and ReBias (Bahng et al. 2020, ICML). Every metric
below is computed from the test labels, the groups and the model's softmax outputs.

Classification quality (``plugins.evaluators.classification``, scikit-learn): ``accuracy``,
macro ``precision_macro`` / ``recall_macro`` / ``f1_macro`` and macro one-vs-rest
``auroc_macro``.

Class-wise bias, as in the seed report (``seeds/000``, "Average metrics", "Another metrics
for bias measurement", "Class wise DI"):

* ``degree_of_bias`` (DoB): the standard deviation of the per-group accuracy,
  ``std_a acc(a)`` with ``ddof`` (default 0, the population std). The report gives no formula,
  but its DoB column is reproduced to the third decimal by the population std (ddof 0) of the
  per-class recalls of its own confusion matrices (e.g. LSTMCNN + ResNet: 0.128; ddof 1 would
  give 0.143), i.e. this definition with groups = classes, which is what ``mnist`` provides;
  the tests check those four values. Lower is better.
* ``precision_std``: std (same ``ddof``) of the class-wise precision; the report's "precision
  std" column is again the ddof-0 std of its class-wise precisions (0.083 for ResNet).
* class-wise disparate impact ``DI_c = min_a P(yhat=c | a) / max_a P(yhat=c | a) * 100``
  (Feldman et al. 2015's ratio taken over all groups, per predicted class; 100 is parity,
  reported x100 like the seed report). ``di_mean`` / ``di_min`` over the classes, per-class
  values in the arrays; a class never predicted in any group has no DI.

Group robustness (cells with at least one test image):

* ``worst_group_accuracy``: ``min_g acc(g)`` (Sagawa et al. 2020) over the cells holding at
  least ``min_cell_size`` test images (default 30). A minimum over small cells measures their
  size, not the model: with 10 images a cell's accuracy moves in steps of 0.1 and the lowest
  of 100 such cells is 0 for nearly any model. ``worst_group_cells`` says over how many cells
  it was taken, ``worst_group_images`` how many images they hold and ``worst_group_cell_size``
  how many the worst cell holds (direction ``neither``: sizes, not scores). With no cell that
  large the accuracy is omitted and ``worst_group_cells`` is 0. ``worst_group_ci_low`` /
  ``_ci_high``: a 95 % percentile bootstrap interval of that minimum over the test images
  (``bootstrap`` replicates, default 1,000, seeded by the job's seed; 0 turns it off),
  resampling whole digits where the split says which rows are copies of one digit
  (``extras["source_image"]``, colored-mnist's every-colour split), since copies are not
  independent draws. The minimum of noisy cell accuracies is biased low, and the interval says
  by how much it could move with other test images; it does not correct the bias;
* ``adjusted_accuracy``: the unweighted mean of the cell accuracies (Idrissi et al. 2022,
  "Simple data balancing achieves competitive worst-group-accuracy");
* ``bias_aligned_accuracy`` / ``bias_conflicting_accuracy`` / ``unbiased_accuracy``, only
  when the split carries ``extras["bias_aligned"]`` (``colored-mnist``): the mean cell
  accuracy over the aligned cells, over the conflicting ones, and over all cells. These are
  ReBias's "biased" and "unbiased" accuracies (mean over (y, b) pairs with y = b, and over
  all pairs) and LfF's (Nam et al. 2020, NeurIPS) aligned / conflicting split. On a dataset
  without that extra they are omitted (``unbiased_accuracy`` then equals
  ``adjusted_accuracy``, which is always reported).

Group fairness of the decisions, one-vs-rest per class ``c`` with the group as sensitive
feature, Fairlearn's definitions (Hardt et al. 2016 for equalized odds):

* demographic-parity difference ``DP_c = max_a P(yhat=c | a) - min_a P(yhat=c | a)``;
* equalized-odds difference ``EO_c = max(TPR range, FPR range)`` over the groups, with
  ``TPR_c(a) = P(yhat=c | y=c, a)`` and ``FPR_c(a) = P(yhat=c | y!=c, a)``
  (``fairlearn.metrics.equalized_odds_difference``, ``agg="worst_case"``);
* aggregated over classes by max and by mean: ``dp_difference_max`` / ``_mean``,
  ``eo_difference_max`` / ``_mean``. Lower is better.

Written by hand (numpy ``bincount`` over all classes at once) rather than looping Fairlearn's
``MetricFrame`` over the classes, and for one definitional reason: where a group has no
positives (or no negatives) of a class, its TPR (FPR) is undefined. Fairlearn scores it 0
(``confusion_matrix(normalize="true")`` fills 0/0 with 0), which on ``mnist`` (groups =
classes: every group but one lacks positives of each class) turns EO into the recall. We
take each range over the groups where the rate is defined. Where every rate is defined the
two agree; ``tests/test_fairness_evaluator.py`` checks that against ``fairlearn.metrics``.

The classes over which class-wise values are aggregated (precision std, DI, DP, EO) are those
present in the labels or the predictions, the same set as scikit-learn's macro averages, so
a class missing from a small test subset is not counted as perfectly fair.

A model that reads captions (``benchmark.modalities``) is scored on the test images with their
captions; the groups are then whatever the captioned dataset makes them (``caption-mnist``: the
spurious caption token), so the same metrics say how the model treats each text group.

Multi-head models (``head_logits(x) -> (H, N, K)``, ``forward`` = the logit average): the main
metrics score the ensemble; ``head{i}_accuracy``, ``head{i}_worst_group_accuracy`` and, where
defined, ``head{i}_unbiased_accuracy`` score each head (the seed report's per-head table).

Arrays (JSON): the classification arrays (confusion matrix, per-class P/R/F1/AUROC), group
values, counts and accuracies, the selection-rate matrix ``P(yhat=c | a)``, DI / DP / EO per
class, cell accuracies and counts (``None`` for empty cells), cell alignment, and one-vs-rest
ROC curves per class as TPR on a fixed grid of 101 FPR values (the step curve: the best TPR at
an FPR no larger than the grid value), so that curves average over seeds point by point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from benchmark.kit.devices import as_numpy
from benchmark.kit.evaluation import predict_logits, split_logits
from benchmark.modalities import model_inputs
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.classification import DIRECTIONS as CLASSIFICATION_DIRECTIONS
from plugins.evaluators.classification import GLOSSARY as CLASSIFICATION_GLOSSARY
from plugins.evaluators.classification import classification_metrics
from plugins.evaluators.declaring import IMAGE_AND_TEXT, evaluator_spec
from plugins.evaluators.worst_group import bootstrap_worst_group

MAX_HEADS = 16
"""Heads whose metrics get a direction (a leaderboard ranks ``head{i}_*`` for i below it)."""
ROC_POINTS = 101
"""ROC curves are stored as TPR at this many equally spaced FPR values in [0, 1]."""

DIRECTIONS: dict[str, Direction] = {
    **CLASSIFICATION_DIRECTIONS,
    "degree_of_bias": "lower",
    "precision_std": "lower",
    "di_mean": "higher",
    "di_min": "higher",
    "worst_group_accuracy": "higher",
    "worst_group_ci_low": "higher",
    "worst_group_ci_high": "higher",
    "worst_group_cells": "neither",
    "worst_group_images": "neither",
    "worst_group_cell_size": "neither",
    "adjusted_accuracy": "higher",
    "bias_aligned_accuracy": "higher",
    "bias_conflicting_accuracy": "higher",
    "unbiased_accuracy": "higher",
    "dp_difference_max": "lower",
    "dp_difference_mean": "lower",
    "eo_difference_max": "lower",
    "eo_difference_mean": "lower",
}
for _i in range(MAX_HEADS):
    for _m in ("accuracy", "unbiased_accuracy", "worst_group_accuracy"):
        DIRECTIONS[f"head{_i}_{_m}"] = "higher"


GLOSSARY = {
    **CLASSIFICATION_GLOSSARY,
    "degree_of_bias": "Population standard deviation of the per-group accuracies (the source "
    "report's Degree of Bias); 0 when every group is served equally well.",
    "precision_std": "Standard deviation of the class-wise precision.",
    "di_mean": "Class-wise disparate impact min_a P(yhat=c|a) / max_a P(yhat=c|a) x 100, "
    "averaged over classes; 100 is parity.",
    "di_min": "The smallest class-wise disparate impact (x100).",
    "worst_group_accuracy": "Lowest accuracy over the (class, group) cells holding at least "
    "min_cell_size test images.",
    "worst_group_ci_low": "Lower end of the 95 % bootstrap interval of worst-group accuracy, "
    "resampling test digits.",
    "worst_group_ci_high": "Upper end of the 95 % bootstrap interval of worst-group accuracy.",
    "worst_group_cells": "How many (class, group) cells were large enough to count for the "
    "worst group.",
    "worst_group_images": "How many test images those cells hold.",
    "worst_group_cell_size": "How many test images the worst cell holds.",
    "adjusted_accuracy": "Unweighted mean of the cell accuracies (Idrissi et al. 2022).",
    "bias_aligned_accuracy": "Mean accuracy over the cells whose images wear their class's "
    "bias attribute (ReBias's biased accuracy).",
    "bias_conflicting_accuracy": "Mean accuracy over the cells whose images do not.",
    "unbiased_accuracy": "Mean accuracy over all (class, group) cells (ReBias's unbiased "
    "accuracy): what a model scores when the shortcut no longer helps.",
    "dp_difference_max": "Largest demographic-parity difference over classes: max_a - min_a "
    "of P(yhat=c|a).",
    "dp_difference_mean": "Demographic-parity difference averaged over classes.",
    "eo_difference_max": "Largest equalized-odds difference over classes (max of the TPR and "
    "FPR ranges over groups).",
    "eo_difference_mean": "Equalized-odds difference averaged over classes.",
}
"""What each metric measures, for the published glossary."""


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator``, NaN where the denominator is 0."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _listed(values: np.ndarray) -> list[Any]:
    """A JSON-ready (nested) list with ``None`` for NaN."""
    if values.ndim > 1:
        return [_listed(row) for row in values]
    return [None if np.isnan(v) else float(v) for v in values]


def _spread(values: np.ndarray) -> np.ndarray:
    """``max - min`` per row over the defined (non-NaN) entries; NaN for an all-NaN row."""
    defined = ~np.isnan(values)
    high = np.where(defined, values, -np.inf).max(axis=1)
    low = np.where(defined, values, np.inf).min(axis=1)
    return np.where(defined.any(axis=1), high - low, np.nan)


class Cells:
    """Counts over (true class, group) cells for one set of predictions."""

    def __init__(self, y: np.ndarray, pred: np.ndarray, group: np.ndarray, k: int, g: int):
        def table(index: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(index, weights=weights, minlength=k * g).reshape(k, g)

        self.counts = table(y * g + group).astype(np.int64)
        """``(K, G)`` test images per cell."""
        self.hits = table(y * g + group, (pred == y).astype(np.float64))
        """``(K, G)`` correctly classified images per cell."""
        self.predicted = table(pred * g + group)
        """``(K, G)`` images of group ``a`` predicted as class ``c``."""
        self.accuracy = ratio(self.hits, self.counts)
        """``(K, G)`` cell accuracy, NaN for an empty cell."""

    def robustness(self, aligned: np.ndarray | None, min_cell_size: int = 1) -> dict[str, float]:
        """Worst-group (over cells of at least ``min_cell_size`` images, with their count),
        adjusted and (with a cell alignment) aligned / conflicting / unbiased accuracy."""
        filled = self.counts > 0
        cell = self.accuracy[filled]
        metrics = {"adjusted_accuracy": float(cell.mean())}
        large = self.counts >= min_cell_size
        metrics["worst_group_cells"] = float(large.sum())
        if large.any():
            worst = np.argmin(np.where(large, self.accuracy, np.inf))
            metrics["worst_group_accuracy"] = float(self.accuracy.flat[worst])
            metrics["worst_group_images"] = float(self.counts[large].sum())
            metrics["worst_group_cell_size"] = float(self.counts.flat[worst])
        if aligned is not None:
            metrics["unbiased_accuracy"] = float(cell.mean())
            for name, chosen in (("aligned", aligned), ("conflicting", ~aligned)):
                values = self.accuracy[filled & chosen]
                if values.size:
                    metrics[f"bias_{name}_accuracy"] = float(values.mean())
        return metrics


def _cell_alignment(
    y: np.ndarray, group: np.ndarray, flags: np.ndarray, cells: Cells, g: int
) -> np.ndarray:
    """``(K, G)`` bool: the cells whose images are bias-aligned (all of them or none)."""
    flagged = np.bincount(
        y * g + group, weights=flags.astype(np.float64), minlength=cells.counts.size
    ).reshape(cells.counts.shape)
    mixed = (flagged > 0) & (flagged < cells.counts)
    if mixed.any():
        c, a = np.argwhere(mixed)[0]
        raise ValueError(
            f"extras['bias_aligned'] is not constant within the cell (class {c}, group index {a})"
        )
    return flagged > 0


def _roc_grid(y: np.ndarray, probabilities: np.ndarray) -> list[list[float] | None]:
    """One-vs-rest ROC per class as TPR on ``ROC_POINTS`` FPR values (None if undefined)."""
    from sklearn.metrics import roc_curve

    grid = np.linspace(0.0, 1.0, ROC_POINTS)
    curves: list[list[float] | None] = []
    for c in range(probabilities.shape[1]):
        positives = y == c
        if not 0 < positives.sum() < len(y):
            curves.append(None)
            continue
        fpr, tpr, _ = roc_curve(positives, probabilities[:, c])
        last = np.searchsorted(fpr, grid, side="right") - 1  # last point with fpr <= grid
        curves.append(tpr[last].tolist())
    return curves


def fairness_metrics(
    y: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    num_classes: int,
    bias_aligned: np.ndarray | None = None,
    ddof: int = 0,
    min_cell_size: int = 30,
    bootstrap: int = 1000,
    seed: int = 0,
    units: np.ndarray | None = None,
) -> Evaluation:
    """Every metric of the module docstring from labels, ``(N, K)`` probabilities and groups;
    ``units`` (one per row) names the digit a row is a copy of, for the bootstrap."""
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
        raise ValueError(f"fairness: ddof must be a non-negative integer, got {ddof!r}")
    y = np.asarray(y, dtype=np.int64)
    if len(groups) != len(y):
        raise ValueError(f"fairness: {len(groups)} group labels for {len(y)} test images")
    base = classification_metrics(y, probabilities, num_classes)
    metrics, arrays = dict(base.metrics), dict(base.arrays)
    pred = probabilities.argmax(axis=1)
    values, group = np.unique(np.asarray(groups), return_inverse=True)
    k, g = num_classes, len(values)
    cells = Cells(y, pred, group, k, g)
    present = np.zeros(k, dtype=bool)
    present[np.union1d(y, pred)] = True

    # Degree of bias: spread of the per-group accuracy (seed report; ddof 0 reproduces it).
    group_counts = cells.counts.sum(axis=0)
    group_accuracy = cells.hits.sum(axis=0) / group_counts
    if g > ddof:
        metrics["degree_of_bias"] = float(np.std(group_accuracy, ddof=ddof))
    precision = np.asarray(arrays["precision"])[present]
    if len(precision) > ddof:
        metrics["precision_std"] = float(np.std(precision, ddof=ddof))

    # Selection rates P(yhat = c | a): disparate impact and demographic parity.
    selection = cells.predicted / group_counts
    top, bottom = selection.max(axis=1), selection.min(axis=1)
    di = np.where(present, ratio(100.0 * bottom, top), np.nan)
    dp = np.where(present, top - bottom, np.nan)
    # Equalized odds, one-vs-rest: TPR_c(a) is the accuracy of cell (c, a); FPR_c(a) counts
    # the images of group a predicted c among those whose class is not c.
    tpr = cells.accuracy
    fpr = ratio(cells.predicted - cells.hits, group_counts - cells.counts)
    eo = np.where(present, np.fmax(_spread(tpr), _spread(fpr)), np.nan)
    for name, per_class in (("di", di), ("dp_difference", dp), ("eo_difference", eo)):
        defined = per_class[~np.isnan(per_class)]
        if defined.size:
            low = "min" if name == "di" else "max"
            pick = np.min if name == "di" else np.max
            metrics[f"{name}_mean"] = float(defined.mean())
            metrics[f"{name}_{low}"] = float(pick(defined))

    aligned = None
    if bias_aligned is not None:
        aligned = _cell_alignment(y, group, np.asarray(bias_aligned, dtype=bool), cells, g)
        arrays["cell_aligned"] = aligned.tolist()
    metrics |= cells.robustness(aligned, min_cell_size)
    large = cells.counts >= min_cell_size
    if bootstrap and large.any():
        low, high = bootstrap_worst_group(y, pred == y, group, large, g, bootstrap, seed, units)
        metrics["worst_group_ci_low"], metrics["worst_group_ci_high"] = low, high

    arrays |= {
        "group_values": values.tolist(),
        "group_counts": group_counts.tolist(),
        "group_accuracy": group_accuracy.tolist(),
        "selection_rate": _listed(selection),
        "di": _listed(di),
        "dp_difference": _listed(dp),
        "eo_difference": _listed(eo),
        "cell_accuracy": _listed(cells.accuracy),
        "cell_counts": cells.counts.tolist(),
        "roc_fpr": np.linspace(0.0, 1.0, ROC_POINTS).tolist(),
        "roc_tpr": _roc_grid(y, probabilities),
    }
    return Evaluation(metrics=metrics, arrays=arrays)


class _Heads(nn.Module):
    """``head_logits`` as a forward returning ``(N, H, K)``, so inference batches over N."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model.head_logits(x, *inputs).transpose(0, 1)


def head_metrics(
    y: np.ndarray,
    head_logits: np.ndarray,
    groups: np.ndarray,
    num_classes: int,
    bias_aligned: np.ndarray | None = None,
    min_cell_size: int = 30,
) -> dict[str, float]:
    """Accuracy, worst-group and (with alignment) unbiased accuracy of each head ``(H, N, K)``."""
    values, group = np.unique(np.asarray(groups), return_inverse=True)
    metrics: dict[str, float] = {}
    for i, logits in enumerate(head_logits):
        pred = logits.argmax(axis=1)
        cells = Cells(y, pred, group, num_classes, len(values))
        aligned = None
        if bias_aligned is not None:
            aligned = _cell_alignment(y, group, bias_aligned, cells, len(values))
        robust = cells.robustness(aligned, min_cell_size)
        metrics[f"head{i}_accuracy"] = float((pred == y).mean())
        if "worst_group_accuracy" in robust:
            metrics[f"head{i}_worst_group_accuracy"] = robust["worst_group_accuracy"]
        if "unbiased_accuracy" in robust:
            metrics[f"head{i}_unbiased_accuracy"] = robust["unbiased_accuracy"]
    return metrics


def evaluate_fairness(
    context: EvaluationContext,
    ddof: NonNegativeInt = 0,
    batch_size: PositiveInt = 512,
    min_cell_size: PositiveInt = 30,
    bootstrap: NonNegativeInt = 1000,
) -> Evaluation:
    """Score ``context.model`` (and each head of a multi-head model) on the test split."""
    test = context.dataset.test
    if test.groups is None:
        raise ValueError("fairness: the test split has no groups (the dataset must provide them)")
    y = as_numpy(test.y)
    groups = as_numpy(test.groups)
    aligned = test.extras.get("bias_aligned")
    aligned = None if aligned is None else as_numpy(aligned).astype(bool)
    model = context.model
    logits = split_logits(context, test, batch_size)
    probabilities = logits.double().softmax(dim=1).cpu().numpy()
    units = test.extras.get("source_image")
    evaluation = fairness_metrics(
        y,
        probabilities,
        groups,
        context.dataset.num_classes,
        aligned,
        ddof,
        min_cell_size,
        bootstrap,
        context.seed,
        None if units is None else as_numpy(units),
    )
    if hasattr(model, "head_logits"):
        extra = model_inputs(context.model_spec, test)
        heads = predict_logits(_Heads(model), test.x, batch_size, *extra)
        heads = heads.transpose(0, 1).cpu().numpy()
        per_head = head_metrics(
            y, heads, groups, context.dataset.num_classes, aligned, min_cell_size
        )
        evaluation.metrics |= per_head
        evaluation.arrays["head_accuracy"] = [
            per_head[f"head{i}_accuracy"] for i in range(len(heads))
        ]
    return evaluation


def specs() -> list[EvaluatorSpec]:
    """The ``fairness`` evaluator (it needs the dataset's groups); its parameters are
    ``evaluate_fairness``'s."""
    from plugins.evaluators.fairness_figures import plot_fairness  # which imports this module

    description = (
        "accuracy, macro P/R/F1/AUROC, degree of bias, class-wise DI, worst-group, adjusted, "
        "bias-aligned/conflicting/unbiased accuracy, DP/EO differences (test split)"
    )
    spec = evaluator_spec(
        "fairness",
        evaluate_fairness,
        description,
        DIRECTIONS,
        requires=frozenset({"groups"}),
        figures=plot_fairness,
        glossary=GLOSSARY,
        modalities=IMAGE_AND_TEXT,
        version="2",  # 2: worst-group over cells of at least min_cell_size, with its interval
    )
    return [spec]
