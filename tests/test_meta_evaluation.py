"""The ``meta-evaluation`` evaluator (MetaQuantus) on a seed-cnn trained on scikit-learn's digits.

* its explanation-only scores equal Quantus 0.6.0's ``Sparseness`` and ``Complexity`` (float32
  inside Quantus: ``rtol=1e-5``);
* a map that ignores the model (Sobel edges) gives scores that weight noise cannot move:
  resilience exactly 1 and reactivity exactly 0 under the model test, while the gradient's
  sparseness reacts;
* the minor noise keeps test accuracy within the stated tolerance, checked here on models
  rebuilt independently from the recorded noise level;
* the statistics are MetaQuantus's (scipy's Wilcoxon, the IEC_AR share by hand).
"""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from scipy import stats

from benchmark.kit.seeding import generator, stream_seed
from benchmark.registry import Registry
from benchmark.specs import EvaluationContext, ModelSpec
from plugins.datasets.digits import load_digits
from plugins.debiasers.erm import train_erm
from plugins.evaluators import meta_evaluation as meta
from plugins.explainers.controls import sobel
from plugins.explainers.gradients import gradient
from plugins.models.seed_cnn import build_seed_cnn

FAST = {"n_images": 64, "perturbations_per_test": 2, "steps": 8}
"""Small enough for a unit test; the statistics need no more."""


@pytest.fixture(scope="module")
def trained():
    data = load_digits()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = train_erm(build_seed_cnn(10, data.input_shape), data.train, seed=0, epochs=5)
    return data, model.eval()


def context_for(trained, explain) -> EvaluationContext:
    data, model = trained
    spec = ModelSpec("seed-cnn", build_seed_cnn, target_layer="conv_layers.3")
    return EvaluationContext(data, model, spec, seed=0, train=lambda *a, **k: None, explain=explain)


def test_sparseness_and_complexity_equal_quantus(trained):
    data, model = trained
    x = data.test.x[:6]
    y = model(x).argmax(1)
    a = gradient(model, x, y)
    a[0] = 0.0  # a zero map: ours is uniform (Quantus divides by zero), left out below
    ours = {"Sparseness": meta.sparseness(a), "Complexity": meta.complexity(a)}
    assert ours["Sparseness"][0] == pytest.approx(0.0, abs=1e-6)
    assert ours["Complexity"][0] == pytest.approx(np.log(64))
    for name, cls in (("Sparseness", quantus.Sparseness), ("Complexity", quantus.Complexity)):
        expected = [
            cls(disable_warnings=True, display_progressbar=False)(
                model=None,
                x_batch=x[i : i + 1].numpy().copy(),
                y_batch=y[i : i + 1].numpy(),
                a_batch=a[i : i + 1].numpy().copy(),
                device="cpu",
            )[0]
            for i in range(1, 6)  # one image per call: Quantus normalises over the batch
        ]
        assert np.allclose(ours[name][1:], expected, rtol=1e-5)


def test_statistics_are_metaquantus(trained):
    g = np.random.default_rng(0)
    q = g.normal(size=40)
    q_hat = q + g.normal(scale=0.5, size=40)
    expected = stats.wilcoxon(q, q_hat, zero_method="zsplit").pvalue
    assert meta.wilcoxon_p(q, q_hat) == pytest.approx(expected)
    assert meta.wilcoxon_p(q, q.copy()) == 1.0
    assert meta.worse_share(np.array([1.0, 2, 3, 4]), np.array([0.5, 2, 4, 3]), "higher") == 0.5
    assert meta.worse_share(np.array([1.0, 2, 3, 4]), np.array([0.5, 2, 4, 3]), "lower") == 0.25


def test_a_model_independent_map_does_not_react_and_the_gradient_does(trained):
    snapshot = {k: v.clone() for k, v in trained[1].state_dict().items()}
    scores = ("sparseness", "complexity")
    control = meta.evaluate_meta_evaluation(
        context_for(trained, sobel), scores=scores, tests=("model",), **FAST
    )
    control.check()
    for s in scores:  # the Sobel map and these scores never see the model: nothing moves
        assert control.metrics[f"{s}.resilience"] == 1.0
        assert control.metrics[f"{s}.reactivity"] == 0.0
        assert control.metrics[f"{s}.worse_under_disruption"] == 0.0
    grad = meta.evaluate_meta_evaluation(
        context_for(trained, gradient), scores=scores, tests=("model",), **FAST
    )
    for s in scores:
        assert grad.metrics[f"{s}.reactivity"] > 0.5
        assert grad.metrics[f"{s}.meta_consistency"] > control.metrics[f"{s}.meta_consistency"]
    # the disruptive noise changed the predictions substantially; the minor one did not
    assert grad.metrics["model_disruptive_accuracy_drop"] > 0.3
    assert grad.metrics["model_minor_accuracy_change"] < 0.01
    assert all(torch.equal(v, snapshot[k]) for k, v in trained[1].state_dict().items())
    # what the reliability table ranks explainers by: per draw, means of the kept images
    minor = grad.arrays["mean_scores"]["sparseness"]["model"]["minor"]
    assert len(minor["unperturbed"]) == len(minor["perturbed"]) == 2
    assert grad.per_image["sparseness.model_disruptive"].shape == (64, 2)


def test_minor_noise_is_scaled_down_until_accuracy_holds(trained):
    data, model = trained
    tolerance = 0.01
    ev = meta.evaluate_meta_evaluation(
        context_for(trained, gradient),
        scores=("pixel-flipping", "insertion"),
        model_minor_std=0.8,  # far too much: must be halved
        input_minor_std=0.8,
        accuracy_tolerance=tolerance,
        **FAST,
    )
    ev.check()
    assert set(ev.metrics) == set(
        meta.returned_metrics({"scores": ("pixel-flipping", "insertion")})
    )
    for test in ("model", "input"):
        used = ev.metrics[f"{test}_minor_std"]
        assert used < 0.8 and ev.metrics[f"{test}_minor_accuracy_change"] < tolerance
        assert ev.arrays["tests"][test]["minor"]["std"] == used
    # rebuilt here from the recorded level and the same noise draws: accuracy holds
    with torch.no_grad():
        clean = (model(data.test.x).argmax(1) == data.test.y).double().mean().item()
    for k in range(2):
        g = generator(stream_seed(0, 1000 + k))  # job seed 0, model-minor stream, draw k
        noise = [torch.randn(p.shape, generator=g) for p in model.parameters()]
        noisy = meta.noisy_model(model, noise, ev.metrics["model_minor_std"])
        with torch.no_grad():
            accuracy = (noisy(data.test.x).argmax(1) == data.test.y).double().mean().item()
        assert abs(accuracy - clean) < tolerance
    for s in ("pixel-flipping", "insertion"):
        assert 0.0 <= ev.metrics[f"{s}.resilience"] <= 1.0
        assert ev.metrics[f"{s}.reactivity"] > 0.5  # output-based scores react to broken weights


def test_reproducible_and_bad_parameters_refused(trained):
    params = {"scores": ("deletion",), "tests": ("input",), **FAST}
    first = meta.evaluate_meta_evaluation(context_for(trained, gradient), **params)
    again = meta.evaluate_meta_evaluation(context_for(trained, gradient), **params)
    assert first.metrics == again.metrics
    with pytest.raises(ValueError, match="scores must be among"):
        meta.evaluate_meta_evaluation(context_for(trained, gradient), scores=("nope",))
    with pytest.raises(ValueError, match="tests among"):
        meta.evaluate_meta_evaluation(context_for(trained, gradient), tests=())


def test_registered_like_every_built_in_evaluator():
    spec = Registry.load().get("evaluator", "meta-evaluation")
    assert spec.requires == frozenset({"explainer"})
    assert "MetaQuantus" in spec.reference and spec.description
    assert set(spec.returns(spec.params)) <= set(spec.directions)
    assert all(spec.directions[f"{s}.meta_consistency"] == "higher" for s in meta.SCORES)
    assert spec.directions["model_minor_accuracy_change"] == "neither"
