"""The built-in `multiplicity` suite: its plan, and a miniature of it run end to end."""

from __future__ import annotations

import json
import sqlite3

import pytest

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.registry import Registry
from benchmark.testing import run_suite


def test_builtin_suite_plans_sets_of_ten_seeds_standard_and_robust():
    suite = suite_module.load("multiplicity", Registry.load())
    plan = planner.expand(suite)
    sets = [j for j in plan.jobs if j.members]
    assert all(len(j.members) == 10 for j in sets)
    cells = {(j.dataset.label, j.model.label, j.debiaser.label) for j in sets}
    expected = {
        (d, m, "erm")
        for d in ("mnist", "colored-mnist")
        for m in ("seed-cnn", "simple-conv", "resnet18")
    } | {("mnist", "seed-cnn", "trades")}
    assert cells == expected
    explained = {j.explainer.label for j in sets if j.explainer is not None}
    assert explained == {
        "gradient",
        "integrated-gradients",
        "grad-cam",
        "deep-shap",
        "smoothgrad",
        "sobel",
    }
    # every member is trained by a per-model (classification) job that runs first
    per_model = {j.train_key for j in plan.jobs if not j.members}
    assert {k for j in sets for k in j.member_keys()} == per_model
    assert plan.trainings()[0] == 7 * 10
    # validation held out of both datasets, never the test split
    assert {j.dataset.validation for j in plan.jobs} == {500}


MINI_SUITE = """\
name: mini-multiplicity
datasets:
  - {name: mnist, params: {train_limit: 600, test_limit: 100}, validation: 100}
models: [seed-cnn]
debiasers:
  - {name: none, label: erm, params: {epochs: 1}}
explainers: [gradient, sobel]
evaluators:
  - classification
  - {name: prediction-multiplicity, params: {rashomon_eps: 0.2}}
  - {name: prediction-multiplicity, label: best-only, params: {rashomon_eps: 0.0}}
  - {name: explanation-disagreement, params: {images: 16, pixel_pairs: 200, rashomon_eps: 0.2}}
seeds: [0, 1, 2]
leaderboard:
  metric: feature_agreement_k10
  columns: [prediction-multiplicity.ambiguity, feature_agreement_k10,
            control_feature_agreement_k10, rank_correlation, control_rank_correlation]
"""


@pytest.mark.slow
def test_mini_multiplicity_suite_through_the_cli(tmp_path):
    """Real training of three seeds, the sets filtered on the validation split, both
    evaluators, the figures, and a rerun that trains nothing."""
    first = run_suite(MINI_SUITE, tmp_path, timeout=1200)
    assert first.returncode == 0, first.stderr
    assert "0 failed" in first.stderr, first.stderr
    # the three models are trained once, by the classification jobs, before the sets run
    assert "3 trained" in first.stderr, first.stderr
    cells = first.leaderboard("mini-multiplicity").fillna({"explainer": ""})
    # a metric two evaluator entries return is named label.metric: key by the bare name
    bare = [
        m.removeprefix(f"{e}.") for e, m in zip(cells["evaluator"], cells["metric"], strict=True)
    ]
    value = cells.assign(metric=bare).set_index(["evaluator", "explainer", "metric"])["mean"]
    assert value[("prediction-multiplicity", "", "set_size")] >= 2
    assert value[("best-only", "", "set_size")] >= 1
    assert 0 <= value[("prediction-multiplicity", "", "ambiguity")] <= 1
    # the model-independent explainer agrees with itself across models, exactly
    assert value[("explanation-disagreement", "sobel", "feature_agreement_k10")] == 1.0
    assert value[("explanation-disagreement", "sobel", "rank_correlation")] == pytest.approx(1.0)
    # and the permutation control sits near chance for the gradient
    control = value[("explanation-disagreement", "gradient", "control_feature_agreement_k10")]
    assert control < value[("explanation-disagreement", "gradient", "feature_agreement_k10")]
    store = tmp_path / ".bench" / "results.sqlite"
    with sqlite3.connect(store) as conn:
        (stored,) = conn.execute(
            "SELECT a.value FROM arrays a JOIN jobs j ON a.job_key = j.job_key "
            "WHERE j.evaluator = 'best-only' AND j.status = 'ok' AND a.name = 'model_set'"
        ).fetchone()
    described = json.loads(stored)
    assert len(described["candidates"]) == 3 and described["validation_images"] == 100
    best = max(described["validation_accuracy"])
    kept = [
        c
        for c, a in zip(described["candidates"], described["validation_accuracy"], strict=True)
        if a == best
    ]
    assert set(described["kept"]) == set(kept)
    board = tmp_path / "leaderboards" / "mini-multiplicity"
    figures = {p.name for p in (board / "figures").iterdir()}
    assert any("agreement-models-mnist" in name for name in figures), figures
    assert any("agreement-explainers-mnist" in name for name in figures), figures
    again = run_suite(MINI_SUITE, tmp_path)
    assert again.returncode == 0 and "0 trained" in again.stderr, again.stderr
