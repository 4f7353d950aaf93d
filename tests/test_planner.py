"""Planner: provides/requires compatibility, explainer pairing, stable content-addressed keys."""

import textwrap

from benchmark import planner
from benchmark import suite as suite_module

SUITE = """\
name: plan-test
datasets: [toy-bars]
models: [toy-linear]
debiasers: [toy-sgd, toy-group-sgd]
explainers: [toy-gradient]
evaluators: [toy-accuracy, toy-mass]
seeds: [0, 1, 2]
leaderboard: {metric: accuracy}
"""


def make_plan(registry, text=SUITE):
    return planner.expand(suite_module.parse(textwrap.dedent(text), "s.yaml", registry))


def test_unmet_requirement_is_skipped_with_reason(toy_registry):
    plan = make_plan(toy_registry)
    assert {j.debiaser.name for j in plan.jobs} == {"toy-sgd"}
    reasons = [s.reason for s in plan.skipped]
    assert len(plan.skipped) == 2  # toy-group-sgd x (toy-accuracy, toy-mass + gradient)
    assert all("debiaser 'toy-group-sgd' requires 'conv'" in r for r in reasons)
    assert not any("'groups'" in r for r in reasons)  # the toy dataset provides groups


def test_explainers_pair_only_with_evaluators_that_need_them(toy_registry):
    plan = make_plan(toy_registry)
    by_evaluator = {}
    for job in plan.jobs:
        by_evaluator.setdefault(job.evaluator.name, set()).add(
            job.explainer.name if job.explainer else None
        )
    assert by_evaluator == {"toy-accuracy": {None}, "toy-mass": {"toy-gradient"}}
    assert len(plan.jobs) == 2 * 3  # two evaluator combos x three seeds


def test_evaluator_needing_explainer_without_explainers_is_skipped(toy_registry):
    plan = make_plan(toy_registry, SUITE.replace("explainers: [toy-gradient]\n", ""))
    assert any(
        "requires 'explainer', but the suite lists no attribution explainer" in s.reason
        for s in plan.skipped
    )
    assert {j.evaluator.name for j in plan.jobs} == {"toy-accuracy"}


def test_jobs_sharing_a_model_are_adjacent_and_keys_are_stable(toy_registry):
    plan = make_plan(toy_registry)
    train_keys = [j.train_key for j in plan.jobs]
    # each trained model's jobs form one contiguous block
    blocks = [k for i, k in enumerate(train_keys) if i == 0 or train_keys[i - 1] != k]
    assert len(blocks) == len(set(train_keys)) == 3
    again = make_plan(toy_registry)
    assert [j.key for j in plan.jobs] == [j.key for j in again.jobs]
    assert len({j.key for j in plan.jobs}) == len(plan.jobs)


def test_keys_change_with_params_and_seed(toy_registry):
    base = make_plan(toy_registry)
    changed = make_plan(
        toy_registry,
        SUITE.replace(
            "debiasers: [toy-sgd, toy-group-sgd]",
            "debiasers: [{name: toy-sgd, params: {steps: 31}}]",
        ),
    )
    assert not {j.key for j in base.jobs} & {j.key for j in changed.jobs}
    assert not {j.train_key for j in base.jobs} & {j.train_key for j in changed.jobs}
    seeds = make_plan(toy_registry, SUITE.replace("[0, 1, 2]", "[0]"))
    assert {j.key for j in seeds.jobs} < {j.key for j in base.jobs}


EXCLUDING = """\
name: plan-test
datasets: [toy-bars]
models: [toy-linear]
debiasers: [toy-sgd, {name: toy-sgd, label: sgd-long, params: {steps: 2}}]
explainers: [toy-gradient]
evaluators: [toy-accuracy, toy-mass]
seeds: [0, 1]
exclude:
  - {debiaser: sgd-long, evaluator: toy-mass}
leaderboard: {metric: accuracy}
"""


def test_excluded_combinations_are_skipped_with_the_rule_that_skipped_them(toy_registry):
    plan = make_plan(toy_registry, EXCLUDING)
    planned = {(j.debiaser.label, j.evaluator.label) for j in plan.jobs}
    assert planned == {
        ("toy-sgd", "toy-accuracy"),
        ("toy-sgd", "toy-mass"),
        ("sgd-long", "toy-accuracy"),
    }
    reasons = [s.reason for s in plan.skipped]
    assert reasons == [
        "excluded by the suite (exclude[0]: debiaser 'sgd-long', evaluator 'toy-mass')"
    ]


def test_an_exclusion_naming_an_unknown_label_is_a_clear_error(toy_registry):
    import pytest

    from benchmark.errors import BenchInputError

    text = EXCLUDING.replace("debiaser: sgd-long", "debiaser: sgd-lung")
    with pytest.raises(BenchInputError) as caught:
        make_plan(toy_registry, text)
    message = str(caught.value)
    assert "exclude[0].debiaser" in message and "did you mean 'sgd-long'" in message
    with pytest.raises(BenchInputError, match="must name at least one"):
        make_plan(
            toy_registry, EXCLUDING.replace("{debiaser: sgd-long, evaluator: toy-mass}", "{}")
        )
