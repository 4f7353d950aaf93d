"""MPRT (sanity-model): similarity measures against scipy / scikit-image, layer randomisation,
and the verdicts of a model-independent control versus the gradient."""

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import structural_similarity

from benchmark.specs import EvaluationContext, ModelSpec
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.evaluators import similarity
from plugins.evaluators.model_randomisation import (
    evaluate_model_randomisation,
    randomisable_layers,
    reinitialise,
    specs,
)
from plugins.explainers.controls import sobel
from plugins.explainers.gradients import gradient
from plugins.models.seed_cnn import build_seed_cnn


def test_rowwise_spearman_equals_scipy_per_row_with_ties():
    g = np.random.default_rng(0)
    a = g.normal(size=(5, 40))
    b = a + g.normal(size=(5, 40))
    a[:, :10] = 0.0  # ties, as in ReLU'd maps
    got = similarity.rowwise_spearman(a, b)
    expected = [stats.spearmanr(x, y).statistic for x, y in zip(a, b, strict=True)]
    assert np.allclose(got, expected, atol=1e-12)
    assert similarity.rowwise_spearman(np.ones((1, 4)), np.ones((1, 4)))[0] == 1.0
    assert similarity.rowwise_spearman(np.ones((1, 4)), np.arange(4.0)[None])[0] == 0.0


def test_measures_are_per_image_and_equal_references():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 1, 28, 28, generator=g)
    b = a + 0.5 * torch.randn(4, 1, 28, 28, generator=g)
    for measure in similarity.MEASURES:
        together = similarity.similarity(measure, a, b)
        alone = np.concatenate(
            [similarity.similarity(measure, a[i : i + 1], b[i : i + 1]) for i in range(4)]
        )
        assert np.allclose(together, alone)  # an image's score ignores the rest of the batch
        assert np.allclose(similarity.similarity(measure, a, a), 1.0)
    ua = similarity._unit(a.sum(1).numpy().astype(float))
    ub = similarity._unit(b.sum(1).numpy().astype(float))
    expected = [
        structural_similarity(x, y, data_range=1.0, win_size=7) for x, y in zip(ua, ub, strict=True)
    ]
    assert np.allclose(similarity.ssim(a, b), expected)
    expected = [
        stats.spearmanr(x.abs().flatten(), y.abs().flatten()).statistic
        for x, y in zip(a, b, strict=True)
    ]
    assert np.allclose(similarity.spearman_abs(a, b), expected)
    with pytest.raises(ValueError, match="unknown similarity"):
        similarity.similarity("cosine", a, b)


def test_reinitialise_changes_one_layer_reproducibly_without_touching_global_rng():
    model = build_seed_cnn(10, (1, 28, 28))
    assert randomisable_layers(model) == [
        "conv_layers.0",
        "conv_layers.3",
        "fc_layers.0",
        "fc_layers.3",
    ]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    reinitialise(model, "fc_layers.0", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc_layers.0.weight", "fc_layers.0.bias"}
    again = build_seed_cnn(10, (1, 28, 28))
    again.load_state_dict(before)
    reinitialise(again, "fc_layers.0", seed=3)
    assert torch.equal(again.fc_layers[0].weight, model.fc_layers[0].weight)


@pytest.fixture(scope="module")
def trained():
    data = load_mnist(train_limit=600, test_limit=100)
    torch.manual_seed(0)
    return data, train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=4).eval()


def retrain(split, *, seed):
    torch.manual_seed(seed)
    return train_erm(build_seed_cnn(10, (1, 28, 28)), split, seed=seed, epochs=4)


def context_for(trained, explain, train=retrain) -> EvaluationContext:
    data, model = trained
    spec = ModelSpec("seed-cnn", build_seed_cnn)
    return EvaluationContext(data, model, spec, seed=0, train=train, explain=explain)


def run(trained, explain, **params):
    return evaluate_model_randomisation(context_for(trained, explain), n_images=32, **params)


def test_model_independent_control_fails_and_gradient_changes(trained):
    control = run(trained, sobel)
    assert all(control.metrics[f"{m}_full"] == pytest.approx(1.0) for m in similarity.MEASURES)
    assert control.metrics["verdict"] == 0.0
    snapshot = {k: v.clone() for k, v in trained[1].state_dict().items()}
    grad = run(trained, gradient)
    assert grad.metrics["spearman_full"] < 0.5 and grad.metrics["verdict"] == 1.0
    curves = grad.arrays["curves"]
    assert grad.arrays["layers"] == ["fc_layers.3", "fc_layers.0", "conv_layers.3", "conv_layers.0"]
    assert len(curves["cascading"]["ssim"]) == 4 and len(curves["independent"]["ssim"]) == 4
    assert len(grad.arrays["example_maps"]) == 5  # original + 4 cascade steps
    # per-layer columns by depth from the logits, equal to the stored curves, directions declared
    for depth in range(1, 5):
        assert grad.metrics[f"ssim_cascade_{depth}"] == curves["cascading"]["ssim"][depth - 1]
        assert grad.metrics[f"ssim_independent_{depth}"] == curves["independent"]["ssim"][depth - 1]
    assert grad.metrics["spearman_cascade_4"] == grad.metrics["spearman_full"]
    assert specs()[0].directions["spearman_cascade_4"] == "lower"
    # the original model is not modified by the randomisation
    assert all(torch.equal(v, snapshot[k]) for k, v in trained[1].state_dict().items())


def test_bad_parameters_are_refused(trained):
    with pytest.raises(ValueError, match="measures"):
        run(trained, gradient, measures=["spearman"], verdict_measure="ssim")
    with pytest.raises(ValueError, match="target"):
        run(trained, gradient, target="random")


def test_data_randomisation_retrains_on_permuted_labels_and_judges(trained):
    from plugins.evaluators.data_randomisation import evaluate_data_randomisation, permuted_labels

    data, _ = trained
    y = data.train.y
    shuffled = permuted_labels(y)
    assert torch.equal(shuffled.sort().values, y.sort().values) and not torch.equal(shuffled, y)
    seen = []

    def train(split, *, seed):
        seen.append(split)
        torch.manual_seed(seed)
        return train_erm(build_seed_cnn(10, (1, 28, 28)), split, seed=seed, epochs=3)

    control = evaluate_data_randomisation(context_for(trained, sobel, train), n_images=32)
    assert control.metrics["spearman"] == pytest.approx(1.0) and control.metrics["verdict"] == 0.0
    assert torch.equal(seen[0].y, shuffled) and torch.equal(seen[0].x, data.train.x)
    grad = evaluate_data_randomisation(context_for(trained, gradient, train), n_images=32)
    assert grad.metrics["spearman"] < 0.5 and grad.metrics["verdict"] == 1.0
    assert 0.0 <= grad.metrics["randomised_train_accuracy"] <= 1.0


def test_floors_equal_hand_computed_similarities(trained):
    """The floor compares two untrained models' maps, the ceiling the next seed's model's maps
    with the job's: recomputed here from scratch, they are the published numbers."""
    from plugins.evaluators import floors

    data, model = trained
    result = run(trained, gradient, modes=["cascading"])
    x = data.test.x[:32]

    def maps(m):
        return gradient(m, x, m(x).argmax(1))

    a, b = (floors.untrained_copy(model, s) for s in floors.FLOOR_SEEDS)  # job seed 0
    # untrained copies: every layer re-drawn, nothing shared with the trained weights
    assert all(
        not torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters(), strict=True)
    )
    other = retrain(data.train, seed=1).eval()
    for m in similarity.MEASURES:
        floor = similarity.similarity(m, maps(a), maps(b)).mean()
        seeds = similarity.similarity(m, maps(model), maps(other)).mean()
        assert result.metrics[f"floor_{m}"] == pytest.approx(floor, abs=1e-9)
        assert result.metrics[f"seeds_{m}"] == pytest.approx(seeds, abs=1e-9)
        observed = result.metrics[f"{m}_cascade_mean"]
        assert result.metrics[f"{m}_cascade_mean_minus_floor"] == pytest.approx(observed - floor)
        if seeds - floor > floors.MIN_GAP:
            relative = (observed - floor) / (seeds - floor)
            assert result.metrics[f"relative_{m}_cascade_mean"] == pytest.approx(relative)
    assert result.per_image["floor_spearman"].shape == (32,)
    s = result.metrics
    passed = s["spearman_cascade_mean"] - s["floor_spearman"] < 0.5 * (
        s["seeds_spearman"] - s["floor_spearman"]
    )
    assert s["floor_verdict"] == float(passed)


def test_a_model_independent_map_cannot_pass_relative_to_its_floor(trained):
    """Sobel ignores the model: untrained, retrained and randomised maps are all identical, so
    the floor equals the seeds' similarity and the relative verdict fails."""
    control = run(trained, sobel, modes=["cascading"])
    assert control.metrics["floor_spearman"] == pytest.approx(1.0)
    assert control.metrics["seeds_spearman"] == pytest.approx(1.0)
    assert "relative_spearman_cascade_mean" not in control.metrics
    assert control.metrics["floor_verdict"] == 0.0
