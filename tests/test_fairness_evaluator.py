"""The fairness evaluator against values worked out by hand, the seed report and Fairlearn.

The model under test is a real ``nn.Module`` holding a logit table: image ``i`` carries
``i / SCALE`` in its first pixel and the model returns row ``i`` of the table, so every
prediction, and hence every metric, is chosen by the test and can be worked out on paper.
"""

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn import metrics as flm
from sklearn import metrics as skm
from torch import nn

from benchmark.registry import Registry
from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from plugins.datasets.colored_mnist import load_colored_mnist
from plugins.datasets.mnist import load_mnist
from plugins.evaluators import fairness
from plugins.evaluators.fairness import evaluate_fairness, fairness_metrics
from plugins.evaluators.fairness_figures import plot_fairness
from plugins.models.seed_cnn import build_seed_cnn

matplotlib.use("Agg")

SCALE = 4096  # images in [0, 1] still index up to 4,096 table rows


def marked_images(n: int) -> torch.Tensor:
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32) / SCALE
    return x


def rows_of(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0, 0, 0] * SCALE).round().long()


class LookupModel(nn.Module):
    """Logits ``table[i]`` for the image marked ``i``; records (batch, training, grad)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table.clone())
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), self.training, torch.is_grad_enabled()))
        return self.table[rows_of(x)]


class TwoHeadLookup(LookupModel):
    """The multi-head contract: ``head_logits -> (H, N, K)`` from a ``(H, images, K)`` table,
    ``forward`` = their average; ``calls`` records the head passes."""

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), self.training, torch.is_grad_enabled()))
        return self.table[:, rows_of(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_logits(x).mean(dim=0)


def logits_for(predictions: list[int], num_classes: int, seed: int = 0) -> torch.Tensor:
    """Logits whose argmax is ``predictions``: 3 on the predicted class plus noise in [0, 1)."""
    noise = torch.rand(len(predictions), num_classes, generator=torch.Generator().manual_seed(seed))
    return 3 * nn.functional.one_hot(torch.tensor(predictions), num_classes).float() + noise


def context_for(
    model: nn.Module,
    y: list[int],
    groups: list[int],
    num_classes: int,
    aligned: list[bool] | None = None,
) -> EvaluationContext:
    extras = {} if aligned is None else {"bias_aligned": torch.tensor(aligned)}
    split = Split(
        x=marked_images(len(y)),
        y=torch.tensor(y, dtype=torch.int64),
        groups=torch.tensor(groups, dtype=torch.int64),
        extras=extras,
    )
    dataset = Dataset(train=split, test=split, num_classes=num_classes)

    def no_retraining(*args, **kwargs):
        raise AssertionError("the fairness evaluator never retrains")

    return EvaluationContext(
        dataset=dataset,
        model=model,
        model_spec=ModelSpec(name="lookup", factory=lambda *a, **k: model),
        seed=0,
        train=no_retraining,
    )


# The hand-made test split: 3 classes, 3 groups (colours), bias-aligned = (group == class).
# Two images per filled (class, group) cell; three cells stay empty.
#   cell (y, a):  (0,0)  (0,1)  (1,1)  (1,2)  (2,2)  (2,0)
#   predictions:  0 1    0 1    1 1    2 2    2 1    0 2
#   cell acc:     1/2    1/2    1      0      1/2    1/2
Y = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
A = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0]
PRED = [0, 1, 0, 1, 1, 1, 2, 2, 2, 1, 0, 2]
ALIGNED = [y == a for y, a in zip(Y, A, strict=True)]


def hand_case(batch_size: int = 5):
    model = LookupModel(logits_for(PRED, 3))
    context = context_for(model, Y, A, 3, ALIGNED)
    # two images per cell: every filled cell counts for the worst group here
    return model, evaluate_fairness(context, batch_size=batch_size, min_cell_size=1)


def test_registered_through_the_real_entry_points_with_a_direction_for_every_metric():
    spec = Registry.load().get("evaluator", "fairness")
    assert spec.factory is evaluate_fairness and spec.figures is plot_fairness
    assert spec.plugin == "builtin_evaluators" and spec.version == "2"
    assert spec.requires == {"groups"}
    assert dict(spec.params) == {
        "ddof": 0,
        "batch_size": 512,
        "min_cell_size": 30,
        "bootstrap": 1000,
    }
    _, evaluation = hand_case()
    assert set(evaluation.metrics) <= set(spec.directions)
    lower = {k for k, v in spec.directions.items() if v == "lower"}
    assert lower == {
        "degree_of_bias",
        "precision_std",
        "dp_difference_max",
        "dp_difference_mean",
        "eo_difference_max",
        "eo_difference_mean",
    }


def test_every_metric_on_the_hand_made_split():
    model, evaluation = hand_case(batch_size=5)
    evaluation.check()  # all finite floats
    m = evaluation.metrics
    # batched inference in eval mode without gradients: 12 images in batches of 5
    assert [c[0] for c in model.calls] == [5, 5, 2]
    assert not any(training or grad for _, training, grad in model.calls)
    # confusion matrix [[2, 2, 0], [0, 2, 2], [1, 1, 2]]
    assert evaluation.arrays["confusion_matrix"] == [[2, 2, 0], [0, 2, 2], [1, 1, 2]]
    assert m["accuracy"] == pytest.approx(6 / 12)
    precision = [2 / 3, 2 / 5, 1 / 2]
    assert m["precision_macro"] == pytest.approx(sum(precision) / 3)
    assert m["recall_macro"] == pytest.approx(1 / 2)
    assert m["f1_macro"] == pytest.approx((4 / 7 + 4 / 9 + 1 / 2) / 3)
    probabilities = logits_for(PRED, 3).double().softmax(1).numpy()
    assert m["auroc_macro"] == pytest.approx(skm.roc_auc_score(Y, probabilities, multi_class="ovr"))
    # degree of bias: group accuracies 2/4, 3/4, 1/4 -> population std sqrt(1/24)
    assert evaluation.arrays["group_accuracy"] == pytest.approx([1 / 2, 3 / 4, 1 / 4])
    assert m["degree_of_bias"] == pytest.approx(math.sqrt(1 / 24))
    # precision std: mean 47/90, squared deviations (13^2 + 11^2 + 2^2) / 90^2 over 3
    assert m["precision_std"] == pytest.approx(7 * math.sqrt(2) / 90)
    # selection rates P(yhat=c | a), rows classes, columns groups
    selection = [[1 / 2, 1 / 4, 0], [1 / 4, 3 / 4, 1 / 4], [1 / 4, 0, 3 / 4]]
    assert np.allclose(evaluation.arrays["selection_rate"], selection)
    # DI_c = min_a / max_a x 100: 0, (1/4)/(3/4), 0
    assert evaluation.arrays["di"] == pytest.approx([0, 100 / 3, 0])
    assert m["di_mean"] == pytest.approx(100 / 9) and m["di_min"] == 0
    # DP_c = max_a - min_a: 1/2, 1/2, 3/4
    assert evaluation.arrays["dp_difference"] == pytest.approx([1 / 2, 1 / 2, 3 / 4])
    assert m["dp_difference_max"] == pytest.approx(3 / 4)
    assert m["dp_difference_mean"] == pytest.approx(7 / 12)
    # EO_c = max(TPR range, FPR range) over groups where the rate is defined:
    #   class 0: TPR 1/2, 1/2, (none) -> 0;  FPR 1/2, 0, 0 -> 1/2
    #   class 1: TPR (none), 1, 0 -> 1;      FPR 1/4, 1/2, 1/2 -> 1/4
    #   class 2: TPR 1/2, (none), 1/2 -> 0;  FPR 0, 0, 1 -> 1
    assert evaluation.arrays["eo_difference"] == pytest.approx([1 / 2, 1, 1])
    assert m["eo_difference_max"] == 1 and m["eo_difference_mean"] == pytest.approx(5 / 6)
    # (y, a) cells
    assert evaluation.arrays["cell_counts"] == [[2, 2, 0], [0, 2, 2], [2, 0, 2]]
    assert evaluation.arrays["cell_accuracy"] == [
        [0.5, 0.5, None],
        [None, 1.0, 0.0],
        [0.5, None, 0.5],
    ]
    assert evaluation.arrays["cell_aligned"] == np.eye(3, dtype=bool).tolist()
    assert m["worst_group_accuracy"] == 0
    assert m["worst_group_cells"] == 6 and m["worst_group_images"] == 12
    assert m["worst_group_cell_size"] == 2
    # the 0/2 cell keeps the bootstrap minimum at 0, unless a resample leaves it out
    assert m["worst_group_ci_low"] == 0 < m["worst_group_ci_high"] < 1
    assert m["adjusted_accuracy"] == pytest.approx(3 / 6)
    assert m["bias_aligned_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["bias_conflicting_accuracy"] == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert m["unbiased_accuracy"] == pytest.approx(1 / 2)
    assert not any(k.startswith("head") for k in m)
    assert set(m) == {k for k in fairness.DIRECTIONS if not k.startswith("head")}


def test_ddof_changes_only_the_standard_deviations():
    model = LookupModel(logits_for(PRED, 3))
    context = context_for(model, Y, A, 3, ALIGNED)
    base, sample = evaluate_fairness(context), evaluate_fairness(context, ddof=1)
    assert sample.metrics["degree_of_bias"] == pytest.approx(1 / 4)  # sqrt((1/16 + 1/16) / 2)
    assert sample.metrics["precision_std"] == pytest.approx(7 * math.sqrt(2) / 90 * math.sqrt(1.5))
    others = set(base.metrics) - {"degree_of_bias", "precision_std"}
    assert {k: base.metrics[k] for k in others} == {k: sample.metrics[k] for k in others}
    # a std with ddof >= the number of values is undefined: omitted, never NaN
    omitted = evaluate_fairness(context, ddof=3).metrics
    assert "degree_of_bias" not in omitted and "precision_std" not in omitted
    for bad in (-1, 0.5, True):
        with pytest.raises(ValueError, match="ddof"):
            evaluate_fairness(context, ddof=bad)


def test_group_values_are_labels_not_positions():
    model = LookupModel(logits_for(PRED, 3))
    renamed = [{0: 40, 1: 7, 2: 12}[a] for a in A]  # any integers; sorted: 7, 12, 40
    moved = evaluate_fairness(context_for(model, Y, renamed, 3, ALIGNED), min_cell_size=1)
    _, original = hand_case()
    assert moved.arrays["group_values"] == [7, 12, 40]
    assert moved.metrics == pytest.approx(original.metrics)
    assert moved.arrays["group_accuracy"] == pytest.approx([3 / 4, 1 / 4, 1 / 2])


def test_dp_and_eo_match_fairlearn_where_every_rate_is_defined():
    rng = np.random.default_rng(0)
    n, k, g = 400, 4, 3
    y = rng.integers(0, k, n)
    groups = rng.integers(0, g, n)
    # a biased predictor: right 70% of the time, otherwise the group's favourite class
    pred = np.where(rng.random(n) < 0.7, y, groups % k)
    counts = np.bincount(y * g + groups, minlength=k * g)
    assert counts.min() > 0  # every group holds positives and negatives of every class
    probabilities = logits_for(pred.tolist(), k).double().softmax(1).numpy()
    evaluation = fairness_metrics(y, probabilities, groups, k)
    dp, eo = [], []
    for c in range(k):
        truth, hit = (y == c).astype(int), (pred == c).astype(int)
        dp.append(flm.demographic_parity_difference(truth, hit, sensitive_features=groups))
        eo.append(flm.equalized_odds_difference(truth, hit, sensitive_features=groups))
    assert evaluation.arrays["dp_difference"] == pytest.approx(dp, abs=1e-12)
    assert evaluation.arrays["eo_difference"] == pytest.approx(eo, abs=1e-12)
    m = evaluation.metrics
    assert m["dp_difference_max"] == pytest.approx(max(dp))
    assert m["dp_difference_mean"] == pytest.approx(np.mean(dp))
    assert m["eo_difference_max"] == pytest.approx(max(eo))
    assert m["eo_difference_mean"] == pytest.approx(np.mean(eo))
    assert min(eo) > 0.05  # the check is not vacuous


def test_undefined_rates_are_left_out_where_fairlearn_scores_them_zero():
    # groups = classes (the mnist view): group 0 has no positives of class 1 and no negatives
    # of class 0, so only one TPR and one FPR per class is defined and both ranges are 0.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 1, 0, 0])
    probabilities = logits_for(pred.tolist(), 2).double().softmax(1).numpy()
    evaluation = fairness_metrics(y, probabilities, y, 2)
    assert evaluation.arrays["eo_difference"] == [0.0, 0.0]
    # Fairlearn fills 0/0 with 0: its EO becomes max(recall_0, FPR) = 3/4 for class 0
    reference = flm.equalized_odds_difference(
        (y == 0).astype(int), (pred == 0).astype(int), sensitive_features=y
    )
    assert reference == pytest.approx(3 / 4)


def test_mixed_alignment_within_a_cell_is_an_error():
    model = LookupModel(logits_for(PRED, 3))
    aligned = list(ALIGNED)
    aligned[0] = False  # cell (0, 0) now holds an aligned and a conflicting image
    with pytest.raises(ValueError, match="bias_aligned"):
        evaluate_fairness(context_for(model, Y, A, 3, aligned))


def test_a_split_without_groups_is_a_clear_error():
    model = LookupModel(logits_for(PRED, 3))
    context = context_for(model, Y, A, 3)
    plain = Split(x=context.dataset.test.x, y=context.dataset.test.y)
    bare = EvaluationContext(
        dataset=Dataset(train=plain, test=plain, num_classes=3),
        model=model,
        model_spec=context.model_spec,
        seed=0,
        train=context.train,
    )
    with pytest.raises(ValueError, match="no groups"):
        evaluate_fairness(bare)


def test_multi_head_models_get_per_head_metrics():
    # head 0 predicts PRED (logit 3 + noise), head 1 is always right with logit 1: the ensemble
    # (their average) keeps head 0's argmax, so its metrics are the hand case's.
    heads = torch.stack([logits_for(PRED, 3), nn.functional.one_hot(torch.tensor(Y), 3).float()])
    model = TwoHeadLookup(heads)
    evaluation = evaluate_fairness(
        context_for(model, Y, A, 3, ALIGNED), batch_size=4, min_cell_size=1
    )
    m = evaluation.metrics
    _, single = hand_case()
    for name, value in single.metrics.items():
        if name != "auroc_macro":  # the average changes the scores, not the argmax
            assert m[name] == pytest.approx(value), name
    assert m["head0_accuracy"] == pytest.approx(1 / 2)
    assert m["head0_unbiased_accuracy"] == pytest.approx(1 / 2)
    assert m["head0_worst_group_accuracy"] == 0
    assert m["head1_accuracy"] == m["head1_unbiased_accuracy"] == 1
    assert m["head1_worst_group_accuracy"] == 1
    assert evaluation.arrays["head_accuracy"] == pytest.approx([1 / 2, 1])
    assert "head2_accuracy" not in m
    # the ensemble (forward) and then the heads are scored in batches of 4, in eval mode,
    # without gradients
    assert [c[0] for c in model.calls] == [4] * 6
    assert not any(training or grad for _, training, grad in model.calls)
    # without alignment extras (mnist-like), heads get no unbiased accuracy
    plain = evaluate_fairness(context_for(model, Y, A, 3)).metrics
    assert "head0_accuracy" in plain and "head0_unbiased_accuracy" not in plain


# The seed report's four confusion matrices (seeds/000, "Class wise AUROC, DI, and confusion
# matrix") with its DoB and precision-std columns: DoB is the population std of the
# per-class recalls (groups = classes), precision std the population std of the precisions.
SEED_REPORT = {
    "LSTMCNN_Res": (0.128, 0.083),
    "LSTMCNN_Shfl": (0.096, 0.127),
    "LSTMCNN_Res_MTL": (0.088, 0.110),
    "LSTMCNN_Shfl_MTL": (0.364, 0.348),
}
"""Network: (DoB, precision std) as the report prints them."""
CONFUSION = {
    "LSTMCNN_Res": "172 2 4 38 0/6 539 0 3 24/5 2 56 10 0/26 1 4 141 4/4 47 0 5 67",
    "LSTMCNN_Shfl": "173 16 0 0 27/6 557 0 0 9/0 0 50 22 1/6 0 31 132 7/17 1 1 3 101",
    "LSTMCNN_Res_MTL": "182 20 0 0 14/5 563 1 1 2/0 0 55 15 3/2 2 22 132 18/15 3 5 5 95",
    "LSTMCNN_Shfl_MTL": "194 1 0 6 15/2 557 0 1 12/1 0 0 72 0/12 0 0 157 7/8 8 0 2 105",
}
"""Network: its confusion matrix, rows (true classes) separated by ``/``."""


@pytest.mark.parametrize("network", SEED_REPORT)
def test_degree_of_bias_and_precision_std_reproduce_the_seed_report(network):
    dob, precision_std = SEED_REPORT[network]
    confusion = [[int(v) for v in row.split()] for row in CONFUSION[network].split("/")]
    y, pred = [], []
    for true, row in enumerate(confusion):
        for predicted, count in enumerate(row):
            y += [true] * count
            pred += [predicted] * count
    model = LookupModel(logits_for(pred, 5))
    evaluation = evaluate_fairness(context_for(model, y, y, 5))  # groups = classes
    assert evaluation.arrays["confusion_matrix"] == confusion
    assert round(evaluation.metrics["degree_of_bias"], 3) == dob
    assert round(evaluation.metrics["precision_std"], 3) == precision_std
    recall = np.diag(confusion) / np.sum(confusion, axis=1)
    assert evaluation.metrics["degree_of_bias"] == pytest.approx(np.std(recall))


def test_mnist_with_class_groups_omits_the_alignment_metrics():
    torch.manual_seed(0)
    data = load_mnist(train_limit=100, test_limit=200)
    model = build_seed_cnn(10, data.input_shape)
    context = EvaluationContext(
        dataset=data,
        model=model,
        model_spec=ModelSpec(name="seed-cnn", factory=build_seed_cnn),
        seed=0,
        train=lambda *a, **k: None,
    )
    evaluation = evaluate_fairness(context, batch_size=64)
    evaluation.check()
    m = evaluation.metrics
    assert not {"bias_aligned_accuracy", "bias_conflicting_accuracy", "unbiased_accuracy"} & set(m)
    assert "cell_aligned" not in evaluation.arrays
    # groups = classes: group accuracy is the recall, and DoB its spread
    assert evaluation.arrays["group_accuracy"] == pytest.approx(evaluation.arrays["recall"])
    assert m["degree_of_bias"] == pytest.approx(np.std(evaluation.arrays["recall"]))
    counts = np.asarray(evaluation.arrays["cell_counts"])
    assert (counts == np.diag([20] * 10)).all()  # only the diagonal cells are filled
    # 20 images per class: below the default 30, no cell is large enough for a minimum
    assert m["worst_group_cells"] == 0 and "worst_group_accuracy" not in m
    small = evaluate_fairness(context, batch_size=64, min_cell_size=20).metrics
    assert small["worst_group_accuracy"] == pytest.approx(min(evaluation.arrays["recall"]))
    assert small["worst_group_cells"] == 10 and small["worst_group_images"] == 200
    json.dumps(evaluation.arrays, allow_nan=False)


def test_colored_mnist_test_split_fills_every_cell_and_reports_alignment():
    data = load_colored_mnist(train_limit=100, test_limit=200)
    # a colour-only "model": predicts the colour, i.e. the pure shortcut
    colour_logits = 3 * nn.functional.one_hot(data.test.groups, 10).float()
    model = LookupModel(colour_logits)
    marked = Split(
        x=marked_images(len(data.test)),
        y=data.test.y,
        groups=data.test.groups,
        extras=data.test.extras,
    )
    context = EvaluationContext(
        dataset=Dataset(train=marked, test=marked, num_classes=10),
        model=model,
        model_spec=ModelSpec(name="lookup", factory=lambda *a, **k: model),
        seed=0,
        train=lambda *a, **k: None,
    )
    m = evaluate_fairness(context, min_cell_size=20).metrics
    # the shortcut is right exactly on the aligned cells: 100% aligned, 0% conflicting
    assert m["bias_aligned_accuracy"] == 1 and m["bias_conflicting_accuracy"] == 0
    assert m["unbiased_accuracy"] == pytest.approx(0.1) == m["accuracy"]
    assert m["worst_group_accuracy"] == 0 and m["worst_group_cells"] == 100
    assert m["worst_group_images"] == 2000  # 200 digits in all ten colours
    # it predicts class c for all of colour c and nothing else: DP 1, DI 0 for every class
    assert m["dp_difference_max"] == m["dp_difference_mean"] == 1
    assert m["di_mean"] == 0


def test_roc_curves_are_step_curves_on_the_fixed_grid():
    _, evaluation = hand_case()
    grid = np.asarray(evaluation.arrays["roc_fpr"])
    assert len(grid) == fairness.ROC_POINTS and grid[0] == 0 and grid[-1] == 1
    probabilities = logits_for(PRED, 3).double().softmax(1).numpy()
    for c, curve in enumerate(evaluation.arrays["roc_tpr"]):
        fpr, tpr, _ = skm.roc_curve(np.asarray(Y) == c, probabilities[:, c])
        expected = [tpr[fpr <= x + 1e-12].max() for x in grid]
        assert curve == pytest.approx(expected)
        assert curve[-1] == 1 and np.all(np.diff(curve) >= 0)
        # the area under the step curve is the AUROC (up to the grid's resolution)
        area = np.trapezoid(curve, grid)
        assert area == pytest.approx(evaluation.arrays["auroc"][c], abs=0.03)


def test_figures_draw_seed_averaged_confusion_and_roc_per_combination():
    from matplotlib.figure import Figure

    stored = []
    for debiaser, seeds in (("none", (0, 1)), ("mtl-heads", (0,))):
        for seed in seeds:
            predictions = PRED if seed == 0 else Y  # seed 1 is a perfect model
            model = LookupModel(logits_for(predictions, 3, seed=seed))
            evaluation = evaluate_fairness(context_for(model, Y, A, 3, ALIGNED))
            arrays = json.loads(json.dumps(evaluation.arrays))  # as the store gives them back
            stored.append(
                {
                    "dataset": "toy",
                    "model": "lookup",
                    "debiaser": debiaser,
                    "explainer": None,
                    "evaluator": "fairness",
                    "seed": seed,
                    "arrays": arrays,
                }
            )
    figures = plot_fairness(pd.DataFrame(stored))
    # one confusion and one ROC figure per (dataset, model), a row / panel per debiaser
    assert set(figures) == {"confusion-toy-lookup", "roc-toy-lookup"}
    assert all(isinstance(f, Figure) for f in figures.values())
    panels = figures["confusion-toy-lookup"].axes  # row-major: none (conf, cells), mtl-heads ...
    assert len(panels) == 4
    # "none": counts summed over the two seeds, then normalised by row
    shown = panels[0].images[0].get_array()
    summed = np.array([[2, 2, 0], [0, 2, 2], [1, 1, 2]]) + 4 * np.eye(3)
    assert np.allclose(shown, summed / summed.sum(1, keepdims=True))
    # the cell panel averages the seeds: cell (1, 2) is 0 then 1
    cells = panels[1].images[0].get_array()
    assert cells[1, 2] == pytest.approx(0.5) and np.ma.is_masked(cells[0, 2])
    # mtl-heads (seed 0 only): its own confusion matrix
    mtl = np.array([[2, 2, 0], [0, 2, 2], [1, 1, 2]], dtype=float)
    assert np.allclose(panels[2].images[0].get_array(), mtl / mtl.sum(1, keepdims=True))
    roc_axes = [a for a in figures["roc-toy-lookup"].axes if a.get_visible()]
    assert [a.get_title().split(" (")[0] for a in roc_axes] == ["none", "mtl-heads"]
    assert len(roc_axes[0].get_lines()) == 4  # three classes and the chance diagonal
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)


def test_worst_group_interval_resamples_whole_digits_and_covers_the_minimum():
    """Bootstrap over test images: the interval holds the observed minimum of cells that are
    neither all right nor all wrong, is seeded, and with copies of one digit declared as one
    unit it is at least as wide as when the copies are taken as independent images."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 50)  # 2 classes x 50 digits, each digit in 2 groups
    y = np.concatenate([y, y])
    groups = np.repeat([0, 1], 100)
    units = np.concatenate([np.arange(100), np.arange(100)])
    right = rng.random(100) < 0.7
    correct = np.concatenate([right, right])  # a digit is right in both colours or neither
    pred = np.where(correct, y, 1 - y)
    probabilities = np.eye(2)[pred] * 0.8 + 0.1
    paired = fairness_metrics(y, probabilities, groups, 2, units=units, seed=3).metrics
    naive = fairness_metrics(y, probabilities, groups, 2, seed=3).metrics
    again = fairness_metrics(y, probabilities, groups, 2, units=units, seed=3).metrics
    assert paired == again
    assert paired["worst_group_ci_low"] < paired["worst_group_accuracy"]
    assert paired["worst_group_accuracy"] <= paired["worst_group_ci_high"]
    width = paired["worst_group_ci_high"] - paired["worst_group_ci_low"]
    assert width >= naive["worst_group_ci_high"] - naive["worst_group_ci_low"] - 0.02
    assert paired["worst_group_cells"] == 4 and paired["worst_group_cell_size"] == 50
    off = fairness_metrics(y, probabilities, groups, 2, bootstrap=0).metrics
    assert (
        "worst_group_ci_low" not in off
        and off["worst_group_accuracy"] == paired["worst_group_accuracy"]
    )
