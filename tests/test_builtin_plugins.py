"""Built-in datasets, models, ERM and the classification evaluator, on real data."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from benchmark import EvaluationContext, Split
from plugins.datasets.digits import load_digits
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.evaluators.classification import classification_metrics, evaluate_classification
from plugins.models.mlp import build_mlp
from plugins.models.seed_cnn import build_seed_cnn


@pytest.mark.parametrize(
    ("loader", "shape", "sizes"),
    [(load_mnist, (1, 28, 28), (4000, 1000)), (load_digits, (1, 8, 8), (1437, 360))],
)
def test_datasets_are_real_fixed_and_stratified(loader, shape, sizes):
    data = loader()
    assert (len(data.train), len(data.test)) == sizes
    assert data.input_shape == shape and data.num_classes == 10
    for split in (data.train, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.min() == 0.0 and split.x.max() == 1.0
    # stratified: each split has the class proportions of the whole set, to within one image
    total = torch.bincount(torch.cat([data.train.y, data.test.y]), minlength=10).double()
    for split in (data.train, data.test):
        expected = total / total.sum() * len(split)
        assert (torch.bincount(split.y, minlength=10) - expected).abs().max() <= 1
    again = loader()
    assert torch.equal(data.test.x, again.test.x) and torch.equal(data.train.y, again.train.y)
    # train and test never share an image
    train_rows = {row.tobytes() for row in data.train.x.flatten(1).numpy()}
    assert not any(row.tobytes() in train_rows for row in data.test.x.flatten(1).numpy())


def test_limits_take_stratified_subsets_and_reject_bad_values():
    data = load_mnist(train_limit=200, test_limit=50)
    assert (len(data.train), len(data.test)) == (200, 50)
    assert torch.bincount(data.train.y, minlength=10).tolist() == [20] * 10
    with pytest.raises(ValueError, match="train_limit"):
        load_mnist(train_limit=5)
    with pytest.raises(ValueError, match="positive integer"):
        load_digits(test_limit=0)


def test_seed_cnn_is_exactly_the_source_architecture():
    model = build_seed_cnn(10, (1, 28, 28))
    layers = [type(m).__name__ for m in [*model.conv_layers, *model.fc_layers]]
    assert layers == [
        "Conv2d",
        "MaxPool2d",
        "ReLU",
        "Conv2d",
        "Dropout",
        "MaxPool2d",
        "ReLU",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert model.conv_layers[0].kernel_size == (5, 5) and model.conv_layers[3].out_channels == 20
    assert model.fc_layers[0].in_features == 320 and model.fc_layers[0].out_features == 50
    assert sum(p.numel() for p in model.parameters()) == 21_840
    assert model.get_submodule("conv_layers.3") is model.conv_layers[3]  # Grad-CAM target


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize("classes", [2, 10])
def test_models_adapt_to_input_shape_and_classes(shape, classes):
    x = torch.rand(4, *shape)
    for model in (build_seed_cnn(classes, shape), build_mlp(classes, shape)):
        assert model(x).shape == (4, classes)


def test_erm_is_deterministic_learns_and_never_reads_groups():
    data = load_mnist(train_limit=600, test_limit=200)

    groups = torch.arange(len(data.train)) % 2
    shuffled = groups[torch.randperm(len(groups), generator=torch.Generator().manual_seed(5))]

    def fit(seed, group_labels):
        torch.manual_seed(123)
        train = Split(x=data.train.x, y=data.train.y, groups=group_labels)
        return train_erm(build_seed_cnn(10, (1, 28, 28)), train, seed=seed, epochs=6)

    # same seed, different (shuffled) group labels: identical weights -> groups are unused
    a, b, c = fit(0, groups), fit(0, shuffled), fit(1, groups)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    assert not a.training
    with torch.no_grad():
        accuracy = (a(data.test.x).argmax(1) == data.test.y).float().mean()
    assert accuracy > 0.75  # chance is 0.1
    with pytest.raises(ValueError, match="optimizer"):
        train_erm(build_mlp(10, (1, 28, 28)), data.train, seed=0, optimizer="lbfgs")


def test_classification_metrics_against_hand_computed_values():
    # 6 samples, 3 classes. Predictions: [0, 0, 1, 2, 2, 1]; truth: [0, 0, 1, 1, 2, 2]
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.3, 0.6],
            [0.1, 0.2, 0.7],
            [0.3, 0.4, 0.3],
        ]
    )
    ev = classification_metrics(y, p, 3)
    assert ev.metrics["accuracy"] == pytest.approx(4 / 6)
    # class 0: P=2/2 R=2/2; class 1: P=1/2 R=1/2; class 2: P=1/2 R=1/2
    assert ev.metrics["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert ev.metrics["recall_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert ev.metrics["f1_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert np.array_equal(ev.arrays["confusion_matrix"], [[2, 0, 0], [0, 1, 1], [0, 1, 1]])
    # class 0 scores: positives 0.8, 0.6 above every negative -> AUROC 1.
    # class 1 scores: positives {0.7, 0.3}, negatives {0.1, 0.3, 0.2, 0.4}:
    #   pairs won 0.7: 4; 0.3: beats 0.1, 0.2, ties 0.3 (0.5) -> 2.5; total 6.5 / 8
    # class 2 scores: positives {0.7, 0.3}, negatives {0.1, 0.1, 0.1, 0.6}:
    #   0.7: 4; 0.3: 3; total 7 / 8
    assert ev.arrays["auroc"] == pytest.approx([1.0, 6.5 / 8, 7 / 8])
    assert ev.metrics["auroc_macro"] == pytest.approx((1 + 6.5 / 8 + 7 / 8) / 3)
    assert ev.metrics["auroc_macro"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    )


def test_auroc_skips_classes_absent_from_the_labels():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    ev = classification_metrics(y, p, 3)
    assert ev.arrays["auroc"][2] is None
    assert ev.metrics["auroc_macro"] == pytest.approx(1.0)


def test_classification_evaluator_on_a_trained_model():
    data = load_digits(train_limit=400)
    model = train_erm(build_mlp(10, data.input_shape), data.train, seed=0, epochs=10)
    context = EvaluationContext(
        dataset=data, model=model, model_spec=None, seed=0, train=lambda *a, **k: None
    )
    ev = evaluate_classification(context, batch_size=64)
    ev.check()
    with torch.no_grad():
        direct = (model(data.test.x).argmax(1) == data.test.y).float().mean().item()
    assert ev.metrics["accuracy"] == pytest.approx(direct)
    assert ev.metrics["accuracy"] > 0.85
    assert np.asarray(ev.arrays["confusion_matrix"]).sum() == len(data.test)
