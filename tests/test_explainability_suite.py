"""The built-in `explainability` suite: its plan, and a miniature of it run end to end."""

import pytest

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.registry import Registry
from benchmark.testing import run_suite


def test_builtin_suite_pairs_every_explainer_with_every_evaluator():
    registry = Registry.load()
    suite = suite_module.load("explainability", registry)
    plan = planner.expand(suite)
    explainers = {c.spec.name for c in suite.components["explainer"]}
    attribution = {s.name for s in registry.specs("explainer") if s.output == "attribution"}
    assert explainers == attribution  # every built-in attribution method
    assert {"random", "sobel"} <= explainers  # the two controls
    evaluators = suite.components["evaluator"]
    assert {"roar", "kar", "road", "pixel-flipping", "insertion", "deletion"} <= {
        c.spec.name for c in evaluators
    }
    assert not plan.skipped  # seed-cnn provides everything every explainer needs
    assert len(plan.jobs) == len(explainers) * len(evaluators) * len(suite.model.seeds)


MINI_SUITE = """\
name: mini-explainability
datasets:
  - {name: mnist, params: {train_limit: 600, test_limit: 200}}
models: [seed-cnn]
debiasers:
  - {name: none, params: {epochs: 2}}
explainers: [gradient, grad-cam, random, sobel]
evaluators:
  - {name: roar, params: {thresholds: [50], retrain_seeds: 2}}
  - {name: pixel-flipping, params: {n_images: 64}}
  - {name: road, params: {n_images: 32, percentages: [20, 60]}}
  - {name: quantus, label: sparseness, params: {metric: Sparseness, n_images: 32}}
seeds: [0]
leaderboard:
  metric: pixel-flipping.auc
  columns: [roar.auc, verdict, morf_auc, sparseness]
"""


@pytest.mark.slow
def test_mini_explainability_suite_through_the_cli(tmp_path):
    """The whole road a user takes: real training, retraining, four kinds of evaluator, the
    leaderboard with its rank table and figures, then a rerun that retrains nothing."""
    first = run_suite(MINI_SUITE, tmp_path, timeout=1800)
    assert first.returncode == 0, first.stderr
    assert "16 run" in first.stderr and "0 failed" in first.stderr

    board = tmp_path / "leaderboards" / "mini-explainability"
    cells = first.leaderboard("mini-explainability")
    assert cells["n_failed"].sum() == 0 and (cells["n"] == 1).all()
    flipping = cells.query("metric == 'pixel-flipping.auc'").set_index("explainer")["mean"]
    # the model's own gradient finds the pixels it needs; a random ranking does not
    assert flipping["gradient"] < flipping["random"]
    roar = cells.query("metric == 'roar.auc'").set_index("explainer")["mean"]
    assert roar.between(0.0, 1.0).all() and len(roar) == 4
    text = (board / "README.md").read_text()
    assert "Kendall's τ" in text and "| sobel |" in text
    figures = {p.name for p in (board / "figures").iterdir()}
    assert any(name.startswith("roar-curves") for name in figures)
    assert any(name.startswith("road-curves") for name in figures)

    again = run_suite(MINI_SUITE, tmp_path)
    assert again.returncode == 0 and "0 trained" in again.stderr, again.stderr
