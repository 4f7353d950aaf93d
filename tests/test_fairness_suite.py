"""The built-in `fairness` suite: its plan, and a miniature of it run end to end."""

import pytest

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.registry import Registry
from benchmark.testing import run_suite

UNSUPERVISED = {"lff", "jtt", "bottleneck-reweight"}
ROBUST_TRAINING = {"adv-pgd", "adv-fgsm-rs", "trades"}
MULTIMODAL = {"mtl-multimodal"}
"""Trains image + caption models (the multimodal suite); no image-only model can use it."""
SUPERVISED = {"reweight", "resample", "group-dro", "end", "irene"}


def test_builtin_suite_runs_every_model_with_every_debiaser_on_both_datasets():
    registry = Registry.load()
    suite = suite_module.load("fairness", registry)
    plan = planner.expand(suite)
    debiasers = {c.spec.name for c in suite.components["debiaser"]}
    # ERM and every built-in debiaser against a spurious attribute (the adversarial training
    # procedures fight small perturbations instead: the robustness suite runs them; the
    # multimodal MTL loss needs a caption model: the multimodal suite runs it)
    assert debiasers == set(registry.names("debiaser")) - ROBUST_TRAINING - MULTIMODAL
    models = {c.spec.name for c in suite.components["model"]}
    assert {"seed-cnn", "simple-conv", "resnet18", "shufflenet", "pyramidnet"} <= models
    assert {c.spec.name for c in suite.components["dataset"]} == {"colored-mnist", "mnist"}
    # EnD and IRENE remove the group information from the representation: on mnist the groups
    # are the classes, so they are skipped there (and only there), with the reason
    skipped = {(s.components[0].spec.name, s.components[2].spec.name) for s in plan.skipped}
    assert skipped == {("mnist", "end"), ("mnist", "irene")} and len(plan.skipped) == 2 * len(
        models
    )
    assert all("bias_attribute" in s.reason for s in plan.skipped)
    combos = (2 * len(debiasers) - 2) * len(models)
    assert len(plan.jobs) == combos * len(suite.model.seeds)
    assert suite.model.seeds == [0, 1, 2]
    # every procedure gets the same training budget, so the comparison is fair
    budgets = {
        (c.params["lr"], c.params["epochs"], c.params["optimizer"])
        for c in suite.components["debiaser"]
    }
    assert len(budgets) == 1


def test_supervised_debiasers_require_groups_and_unsupervised_ones_do_not():
    registry = Registry.load()
    specs = {spec.name: spec for spec in registry.specs("debiaser")}
    others = {"none", "augment", "padain", "mtl-heads"}
    assert SUPERVISED | UNSUPERVISED | ROBUST_TRAINING | MULTIMODAL | others == set(specs)
    assert "groups" not in specs["mtl-multimodal"].requires
    for name in SUPERVISED:
        assert "groups" in specs[name].requires, name
    assert "bias_attribute" in specs["end"].requires and "bias_attribute" in specs["irene"].requires
    for name in UNSUPERVISED | ROBUST_TRAINING | {"none"}:
        assert "groups" not in specs[name].requires, name


MINI_SUITE = """\
name: mini-fairness
datasets:
  - {name: colored-mnist, params: {rho: 0.99, train_limit: 600, test_limit: 200}}
  - {name: mnist, params: {train_limit: 400, test_limit: 200}}
models: [seed-cnn]
debiasers:
  - {name: none, label: erm, params: {optimizer: adam, lr: 0.003, epochs: 2}}
  - {name: augment, params: {epochs: 1}}
  - {name: padain, params: {epochs: 1}}
  - {name: mtl-heads, params: {epochs: 1}}
  - {name: reweight, params: {epochs: 1}}
  - {name: resample, params: {epochs: 1}}
  - {name: group-dro, params: {epochs: 1}}
  - {name: end, params: {epochs: 1}}
  - {name: irene, params: {epochs: 1}}
  - {name: lff, params: {epochs: 1}}
  - {name: jtt, params: {epochs: 1}}
  - {name: bottleneck-reweight, params: {epochs: 1}}
evaluators: [{name: fairness, params: {min_cell_size: 10}}]
seeds: [0]
leaderboard:
  metric: unbiased_accuracy
  metric_by_dataset: {mnist: worst_group_accuracy}
  columns: [bias_aligned_accuracy, bias_conflicting_accuracy, degree_of_bias, di_mean]
"""


@pytest.mark.slow
def test_mini_fairness_suite_through_the_cli(tmp_path):
    """Every debiaser trains for real on both datasets, the leaderboard ranks colored-mnist by
    unbiased accuracy and MNIST by worst-group accuracy, and the figures are drawn."""
    run = run_suite(MINI_SUITE, tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr
    assert "22 run" in run.stderr and "0 failed" in run.stderr

    board = tmp_path / "leaderboards" / "mini-fairness"
    cells = run.leaderboard("mini-fairness")
    assert cells["n_failed"].sum() == 0 and (cells["n"] == 1).all()
    colored = cells.query("dataset == 'colored-mnist'").set_index(["debiaser", "metric"])["mean"]
    # ERM takes the colour shortcut: right on bias-aligned cells, wrong on the others
    assert colored[("erm", "bias_aligned_accuracy")] > 0.9
    assert colored[("erm", "bias_conflicting_accuracy")] < 0.3
    # MNIST has no bias-aligned cells (groups are the classes): those metrics are absent there
    mnist = cells.query("dataset == 'mnist'")
    assert "bias_aligned_accuracy" not in set(mnist["metric"])
    assert set(mnist.query("metric == 'worst_group_accuracy'")["debiaser"]) == {
        "erm",
        "augment",
        "padain",
        "mtl-heads",
        "reweight",
        "resample",
        "group-dro",
        "lff",
        "jtt",
        "bottleneck-reweight",
    }  # not end / irene: mnist's groups are its classes
    # the multi-head debiaser reports each head next to the ensemble
    assert {"head0_accuracy", "head2_accuracy"} <= set(
        cells.query("debiaser == 'mtl-heads'")["metric"]
    )
    # 200 test digits in all ten colours: 100 cells of 20 images; mnist: 10 cells of 20
    counted = cells.query("metric == 'worst_group_cells'").groupby("dataset")["mean"].unique()
    assert list(counted["colored-mnist"]) == [100] and list(counted["mnist"]) == [10]
    sizes = cells.query("metric == 'worst_group_cell_size'")["mean"]
    assert set(sizes) == {20}
    text = (board / "README.md").read_text()
    assert (
        "Ranked by **unbiased\\_accuracy**" in text
        and "Ranked by **worst\\_group\\_accuracy**" in text
    )
    assert (board / "index.html").is_file() and (board / "data.json").is_file()
    assert any(p.name.startswith("fairness-") for p in (board / "figures").iterdir())
