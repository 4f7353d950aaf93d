"""The built-in `robustness` suite: its plan, and a miniature of it run end to end."""

from __future__ import annotations

import pytest

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.registry import Registry
from benchmark.testing import run_suite


def test_builtin_suite_plans_what_its_description_promises():
    suite = suite_module.load("robustness", Registry.load())
    plan = planner.expand(suite)
    debiasers = {c.spec.name for c in suite.components["debiaser"]}
    assert debiasers == {"none", "adv-pgd", "adv-fgsm-rs", "trades"}
    trained = {(j.dataset.label, j.model.label, j.debiaser.label, j.seed) for j in plan.jobs}
    # seed-cnn on both datasets, the larger model on MNIST only, every procedure, 3 seeds
    assert len(trained) == (2 + 1) * 4 * 3
    by_evaluator: dict[str, set] = {}
    for job in plan.jobs:
        by_evaluator.setdefault(job.evaluator.label, set()).add(
            (job.dataset.label, job.debiaser.label, job.explainer and job.explainer.label)
        )
    assert {d for d, _, _ in by_evaluator["robustness"]} == {"mnist"}
    assert {b for _, b, _ in by_evaluator["autoattack"]} == {"adv-pgd"}
    assert {(d, e) for d, _, e in by_evaluator["diffroar"]} == {
        ("block-mnist", "gradient"),
        ("block-mnist", "grad-cam"),
        ("block-mnist", "random"),
    }
    assert {e for _, _, e in by_evaluator["gradient-alignment"]} == {
        "gradient",
        "integrated-gradients",
        "grad-cam",
        "deep-shap",
        "random",
        "sobel",
    }
    # everything left out is said, with the rule that left it out
    assert plan.skipped and all("excluded by the suite" in s.reason for s in plan.skipped)


MINI_SUITE = """\
name: mini-robustness
datasets:
  - {name: mnist, params: {train_limit: 800, test_limit: 100}}
  - {name: block-mnist, params: {train_limit: 400, test_limit: 50}}
models: [seed-cnn]
debiasers:
  - {name: none, label: erm, params: {epochs: 2}}
  - {name: adv-pgd, params: {epochs: 2, eps: 0.1, steps: 3}}
explainers: [gradient]
evaluators:
  - name: robustness
    params: {n_images: 64, linf_eps: [0.0, 0.1], l2_eps: [1.0], check_eps: 0.1,
             pgd_steps: 5, apgd_steps: 10, square_queries: 50}
  - {name: gradient-alignment, params: {n_images: 32}}
seeds: [0]
exclude:
  - {dataset: block-mnist, evaluator: robustness}
leaderboard:
  metric: robust_linf_0_1
  metric_by_dataset: {block-mnist: signal_mass}
  columns: [clean_accuracy, robust_linf_0_1, pgd_linf_0_1, flags, alignment, signal_mass]
"""


@pytest.mark.slow
def test_mini_robustness_suite_through_the_cli(tmp_path):
    """Real adversarial training, attacks, alignment, the leaderboard and its figures, and a
    rerun that trains nothing."""
    first = run_suite(MINI_SUITE, tmp_path, timeout=1800)
    assert first.returncode == 0, first.stderr
    assert "0 failed" in first.stderr, first.stderr
    cells = first.leaderboard("mini-robustness")
    assert cells["n_failed"].sum() == 0
    robust = cells.query("metric == 'robust_linf_0_1'").set_index("debiaser")["mean"]
    clean = cells.query("metric == 'clean_accuracy'").set_index("debiaser")["mean"]
    assert (robust <= clean).all() and (robust < clean).all()  # the attack does bite
    # that PGD training buys robustness is tested where it trains long enough for it:
    # tests/test_debiasers_adversarial.py (two epochs on 800 images do not)
    board = tmp_path / "leaderboards" / "mini-robustness"
    figures = {p.name for p in (board / "figures").iterdir()}
    prefix = "robustness-robust-linf-mnist-seed-cnn"
    assert any(name.startswith(prefix) for name in figures), figures
    assert any("saliency" in name for name in figures), figures
    again = run_suite(MINI_SUITE, tmp_path)
    assert again.returncode == 0 and "0 trained" in again.stderr, again.stderr
