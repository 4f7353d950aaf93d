"""The classification evaluator against values computed by hand and by scikit-learn.

The model under test is a lookup table: image ``i`` carries ``i`` in its first pixel and the
model returns the logits chosen for it, so every metric can be worked out on paper.
"""

import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch import nn

from benchmark.specs import Dataset, EvaluationContext, EvaluatorSpec, ModelSpec, Split
from plugins import evaluators as evaluators_plugin
from plugins.evaluators.classification import classification_metrics, evaluate_classification

# 6 test images, 3 classes. Truth [0, 0, 1, 1, 2, 2]; argmax predictions [0, 0, 1, 2, 2, 1].
# No two images share a score for the same class, so float rounding in softmax(log p) cannot
# turn a strict order into a tie (ties are checked on exact probabilities further down).
TRUTH = [0, 0, 1, 1, 2, 2]
PROBABILITIES = [
    [0.8, 0.1, 0.1],
    [0.6, 0.25, 0.15],
    [0.2, 0.7, 0.1],
    [0.1, 0.3, 0.6],
    [0.15, 0.2, 0.65],
    [0.3, 0.4, 0.3],
]


class LookupModel(nn.Module):
    """Returns ``table[i]`` for an image whose first pixel is ``i``; records how it was called."""

    def __init__(self, table: torch.Tensor, dropout: float = 0.0) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())
        self.dropout = nn.Dropout(dropout)
        self.calls: list[tuple[int, bool, bool]] = []  # (batch size, training, grad enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), self.training, torch.is_grad_enabled()))
        return self.dropout(self.table[x[:, 0, 0, 0].long()])


def context_for(model: nn.Module, truth: list[int], num_classes: int) -> EvaluationContext:
    n = len(truth)
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    split = Split(x=x, y=torch.tensor(truth, dtype=torch.int64))
    dataset = Dataset(train=split, test=split, num_classes=num_classes)

    def no_retraining(*args, **kwargs):
        raise AssertionError("the classification evaluator never retrains")

    spec = ModelSpec(name="lookup", factory=lambda *a, **k: model)
    return EvaluationContext(
        dataset=dataset, model=model, model_spec=spec, seed=0, train=no_retraining
    )


def hand_case() -> tuple[LookupModel, EvaluationContext]:
    model = LookupModel(torch.tensor(PROBABILITIES).log())  # softmax(log p) = p
    return model, context_for(model, TRUTH, 3)


def test_registered_with_directions_for_every_metric_and_no_requirements():
    specs: list[EvaluatorSpec] = []
    evaluators_plugin.bench_register_evaluators(register=specs.append)
    (spec,) = [s for s in specs if s.name == "classification"]
    assert spec.name == "classification" and spec.factory is evaluate_classification
    assert dict(spec.params) == {"batch_size": 512}
    assert spec.requires == frozenset() and spec.provides == frozenset()
    _, context = hand_case()
    metrics = evaluate_classification(context).metrics
    expected = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc_macro")
    assert dict(spec.directions) == dict.fromkeys(expected, "higher")
    assert set(metrics) == set(expected)


def test_metrics_match_values_worked_out_by_hand():
    _, context = hand_case()
    ev = evaluate_classification(context)
    ev.check()
    m, a = ev.metrics, ev.arrays
    assert m["accuracy"] == pytest.approx(4 / 6)
    # class 0: P 2/2, R 2/2; class 1: P 1/2 (images 2, 5), R 1/2; class 2: P 1/2, R 1/2
    assert a["precision"] == pytest.approx([1, 0.5, 0.5])
    assert a["recall"] == pytest.approx([1, 0.5, 0.5])
    assert a["f1"] == pytest.approx([1, 0.5, 0.5])
    for name in ("precision_macro", "recall_macro", "f1_macro"):
        assert m[name] == pytest.approx(2 / 3)
    assert a["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 1, 1]]
    # One-vs-rest AUROC = P(score of a positive > score of a negative) over the 2 x 4 pairs.
    # class 0: positives 0.8, 0.6 beat every negative (<= 0.3)               -> 8 / 8
    # class 1: positives 0.7, 0.3 vs negatives 0.1, 0.25, 0.2, 0.4: 4 + 3    -> 7 / 8
    # class 2: positives 0.65, 0.3 vs negatives 0.1, 0.15, 0.1, 0.6: 4 + 3   -> 7 / 8
    assert a["auroc"] == pytest.approx([1.0, 7 / 8, 7 / 8])
    assert m["auroc_macro"] == pytest.approx((1 + 7 / 8 + 7 / 8) / 3)


def test_tied_scores_count_one_half_in_auroc():
    # class 0 scores: positives 0.6, 0.3; negatives 0.3, 0.1 -> 2 + (1 + 0.5) = 3.5 / 4
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.6, 0.4], [0.3, 0.7], [0.3, 0.7], [0.1, 0.9]])
    ev = classification_metrics(y, p, 2)
    assert ev.arrays["auroc"] == pytest.approx([3.5 / 4, 3.5 / 4])
    assert ev.metrics["auroc_macro"] == pytest.approx(skm.roc_auc_score(y, p[:, 1]))


def test_metrics_equal_the_scikit_learn_reference_on_random_predictions():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    logits = rng.normal(size=(100, 4)) + 1.5 * np.eye(4)[y]  # informative but imperfect
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ev = classification_metrics(y, p, 4)
    pred = p.argmax(1)
    assert ev.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert ev.metrics["precision_macro"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0)
    )
    assert ev.metrics["recall_macro"] == pytest.approx(
        skm.recall_score(y, pred, average="macro", zero_division=0)
    )
    assert ev.metrics["f1_macro"] == pytest.approx(
        skm.f1_score(y, pred, average="macro", zero_division=0)
    )
    assert ev.metrics["auroc_macro"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12
    )
    assert ev.arrays["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_a_class_absent_from_the_test_labels_is_left_out_of_the_averages():
    # 3 classes, class 2 neither occurs nor is predicted; classes 0 and 1 perfectly separated
    truth = [0, 0, 1, 1]
    probabilities = [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]]
    model = LookupModel(torch.tensor(probabilities).log())
    ev = evaluate_classification(context_for(model, truth, 3))
    ev.check()
    assert ev.arrays["auroc"] == [pytest.approx(1.0), pytest.approx(1.0), None]
    assert ev.metrics["auroc_macro"] == pytest.approx(1.0)
    assert ev.metrics["recall_macro"] == pytest.approx(1.0)  # not 2/3: class 2 is not a zero
    assert ev.arrays["recall"] == [1.0, 1.0, 0.0]
    assert ev.arrays["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_a_predicted_class_that_never_occurs_counts_as_zero_precision():
    # image 3 (truth 1) is predicted as class 2, which is absent from the labels
    truth = [0, 0, 1, 1]
    probabilities = [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]
    model = LookupModel(torch.tensor(probabilities).log())
    m = evaluate_classification(context_for(model, truth, 3)).metrics
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["precision_macro"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["recall_macro"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_single_class_test_labels_have_no_auroc():
    model = LookupModel(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="single class"):
        evaluate_classification(context_for(model, [1, 1, 1], 2))


def test_inference_is_batched_in_eval_mode_without_gradients():
    model, context = hand_case()
    model.dropout.p = 0.9  # would scramble the logits if dropout were active
    model.train()
    reference = evaluate_classification(context).metrics
    batched = evaluate_classification(context, batch_size=4).metrics
    assert batched == reference and reference["accuracy"] == pytest.approx(4 / 6)
    assert [size for size, _, _ in model.calls[-2:]] == [4, 2]
    assert all(not training and not grad for _, training, grad in model.calls)
    assert model.training  # the caller's mode is given back


def test_arrays_are_plain_json():
    _, context = hand_case()
    ev = evaluate_classification(context)
    decoded = json.loads(json.dumps(ev.arrays))
    assert decoded["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 1, 1]]
    assert all(math.isfinite(v) for v in ev.metrics.values())
