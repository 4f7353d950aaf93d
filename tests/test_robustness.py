"""The ``robustness`` evaluator end to end: its bookkeeping on a really trained model, and each
reliability flag raised by a model built to deserve it (masked, saturated, randomised)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from benchmark.params import check_value
from benchmark.specs import EvaluationContext, ModelSpec
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.evaluators import robustness
from plugins.evaluators.robustness import evaluate_robustness, metric_name, returned_metrics
from plugins.evaluators.robustness_figures import plot_robustness
from plugins.models.seed_cnn import build_seed_cnn

FAST = {
    "n_images": 100,
    "linf_eps": [0.0, 0.1, 0.3],
    "l2_eps": [1.0],
    "pgd_steps": 10,
    "apgd_steps": 20,
    "square_queries": 200,
    "check_restarts": 2,
}


@pytest.fixture(scope="module")
def data():
    return load_mnist(train_limit=1000, test_limit=100)


@pytest.fixture(scope="module")
def model(data):
    return train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=2).eval()


def _context(data, model):
    spec = ModelSpec("seed-cnn", build_seed_cnn)
    return EvaluationContext(data, model, spec, seed=0, train=None)


@pytest.fixture(scope="module")
def evaluation(data, model):
    return evaluate_robustness(_context(data, model), **FAST)


def test_metrics_are_what_the_spec_says_and_obey_the_invariants(evaluation):
    metrics = evaluation.metrics
    assert set(metrics) == set(returned_metrics(FAST))
    spec = robustness.specs()[0]
    assert set(metrics) <= set(spec.directions)
    clean = metrics["clean_accuracy"]
    assert metrics["robust_linf_0"] == clean
    for norm, grid in (("linf", FAST["linf_eps"]), ("l2", FAST["l2_eps"])):
        worst = [metrics[metric_name("robust", norm, e)] for e in grid]
        assert worst == sorted(worst, reverse=True), "robust accuracy must not rise with eps"
        for eps in grid[1:] if norm == "linf" else grid:
            for attack in ("fgsm", "pgd", "apgd_ce", "apgd_dlr"):
                single = metrics[f"{attack}_{norm}_{robustness.eps_token(eps)}"]
                assert metrics[metric_name("robust", norm, eps)] <= single <= clean
    # a standard model: nearly nothing survives Linf 0.3, and nothing flags
    assert metrics["robust_linf_0_3"] <= 0.05
    assert metrics["unbounded_accuracy"] == 0.0
    assert metrics["flags"] == 0.0, {k: v for k, v in metrics.items() if k.startswith("flag")}
    assert evaluation.per_image["robust_linf_0_3"].shape == (100,)


def test_the_evaluation_is_deterministic(data, model, evaluation):
    assert evaluate_robustness(_context(data, model), **FAST).metrics == evaluation.metrics


class Quantised(nn.Module):
    """Rounds the input to 4 grey levels first: the input gradient is exactly 0 everywhere,
    the classic masked gradient (Athalye et al. 2018's shattered gradients)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 3) / 3)


def test_masked_gradients_raise_the_gradient_black_box_and_unbounded_flags(data, model):
    masked = Quantised(model).eval()
    metrics = evaluate_robustness(_context(data, masked), **FAST).metrics
    assert metrics["flag_gradients"] == 1.0 and metrics["zero_gradient_share"] == 1.0
    assert metrics["flag_black_box"] == 1.0 and metrics["black_box_gain"] > 0.05
    assert metrics["square_linf_0_3"] < metrics["pgd_linf_0_3"]
    assert metrics["flag_unbounded"] == 1.0
    assert metrics["flags"] >= 3


class Noisy(nn.Module):
    """Adds fresh noise to its input on every call, even in eval mode."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.05 * torch.randn_like(x))


def test_a_randomised_model_raises_the_randomness_flag(data, model):
    metrics = evaluate_robustness(_context(data, Noisy(model).eval()), **FAST).metrics
    assert metrics["flag_randomness"] == 1.0


class Saturated(nn.Module):
    """Logits scaled by 1e4: a confident softmax is exactly one-hot in float32, so the
    cross-entropy's input gradient is exactly 0 while DLR (scale-invariant) still works."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * 1e4


def test_saturated_softmax_flags_zero_gradients_that_dlr_sees_through(data, model):
    metrics = evaluate_robustness(_context(data, Saturated(model).eval()), **FAST).metrics
    assert metrics["flag_gradients"] == 1.0 and metrics["zero_gradient_share"] > 0.5
    assert metrics["apgd_dlr_linf_0_1"] < metrics["pgd_linf_0_1"]


def test_bad_parameters_are_clear_errors(data, model):
    types = robustness.specs()[0].param_types()
    assert "not on the grid" in check_value(types["linf_eps"], [0.1, 0.125])
    assert "not on the grid" in check_value(types["l2_eps"], [11.0])
    assert check_value(types["linf_eps"], [0.0, 0.3]) == ""
    with pytest.raises(ValueError, match=r"check_eps 0\.2 must be one of linf_eps"):
        evaluate_robustness(_context(data, model), **{**FAST, "check_eps": 0.2})
    with pytest.raises(ValueError, match="attacks must be"):
        evaluate_robustness(_context(data, model), **{**FAST, "attacks": ["cw"]})


def test_the_reference_backend_agrees_with_ours(data, model, evaluation):
    pytest.importorskip("pyautoattack")
    params = {**FAST, "linf_eps": [0.0, 0.1], "check_eps": 0.1, "l2_eps": [1.0]}
    native = evaluate_robustness(_context(data, model), **params).metrics
    state = torch.random.get_rng_state()
    reference = evaluate_robustness(_context(data, model), **params, backend="autoattack").metrics
    assert torch.equal(torch.random.get_rng_state(), state), "the global generator moved"
    for name in ("apgd_ce_linf_0_1", "apgd_dlr_linf_0_1", "apgd_ce_l2_1", "square_linf_0_1"):
        assert abs(native[name] - reference[name]) <= 0.05, name


def test_the_figure_is_drawn_from_stored_curves(evaluation):
    results = pd.DataFrame(
        [
            {"dataset": "mnist", "model": "seed-cnn", "debiaser": d, "seed": s, "arrays": a}
            for d in ("none", "adv-pgd")
            for s in (0, 1)
            for a in [evaluation.arrays]
        ]
    )
    figures = plot_robustness(results)
    assert set(figures) == {"robust-linf-mnist-seed-cnn", "robust-l2-mnist-seed-cnn"}
    axis = figures["robust-linf-mnist-seed-cnn"].axes[0]
    solid = [line for line in axis.lines if line.get_linestyle() == "-"]
    assert len(solid) == 2
    assert list(solid[0].get_ydata()) == evaluation.arrays["curves"]["linf"]["robust"]
