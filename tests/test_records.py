"""Job records travel: JSON round trips, keys, groups, -k selection, bounded errors, specs that
pickle."""

import json
import pickle
import textwrap

import pytest

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.errors import BenchInputError
from benchmark.records import MAX_ERROR_CHARS, Job, Outcome, bounded
from benchmark.selection import select
from benchmark.specs import FrozenDict

SUITE = """\
name: records
datasets: [toy-bars]
models: [toy-linear]
debiasers: [toy-sgd]
explainers: [toy-gradient]
evaluators: [toy-accuracy, toy-mass, {name: toy-curve, timeout_s: 99}]
seeds: [0, 1, 2]
job_timeout_s: 50
leaderboard: {metric: accuracy}
"""


def make_plan(registry, text=SUITE, **kwargs):
    return planner.expand(suite_module.parse(textwrap.dedent(text), "s.yaml", registry), **kwargs)


def test_a_job_record_is_json_and_rebuilds_the_same_job(toy_registry):
    for job in make_plan(toy_registry).jobs:
        text = json.dumps(job.record())
        again = Job.from_record(json.loads(text))
        assert again == job and again.key == job.key and again.train_key == job.train_key


def test_a_tampered_record_is_refused(toy_registry):
    record = make_plan(toy_registry).jobs[0].record()
    record["seed"] = 7
    with pytest.raises(ValueError, match="does not match its content"):
        Job.from_record(record)


def test_time_limits_come_from_the_command_line_the_component_or_the_suite(toy_registry):
    limits = {(j.evaluator.name, j.timeout_s) for j in make_plan(toy_registry).jobs}
    assert limits == {("toy-accuracy", 50), ("toy-mass", 50), ("toy-curve", 99)}
    overridden = make_plan(toy_registry, timeout_s=5).jobs
    assert {j.timeout_s for j in overridden} == {5}
    default = make_plan(toy_registry, SUITE.replace("job_timeout_s: 50\n", "")).jobs
    accuracy = [j for j in default if j.evaluator.name == "toy-accuracy"]
    assert {j.timeout_s for j in accuracy} == {planner.DEFAULT_JOB_TIMEOUT_S}
    # a time limit does not change what a job computes: same keys
    assert [j.key for j in overridden] == [j.key for j in make_plan(toy_registry).jobs]


def test_groups_share_a_trained_model_and_only_oversized_ones_are_split(toy_registry):
    plan = make_plan(toy_registry)
    groups = plan.groups()
    assert len(groups) == 3  # one trained model per seed
    for group in groups:
        assert len({j.train_key for j in group}) == 1 and len(group) == 3
    assert plan.groups(workers=2) == groups  # 3 jobs per group <= a fair share of 9 / 2
    one_model = planner.Plan(plan.suite, plan.jobs[:3] * 4)  # 12 jobs, one trained model
    pieces = one_model.groups(workers=2)  # fair share 6: cut into pieces of 12 / 8 -> 2
    assert [len(p) for p in pieces] == [2] * 6
    assert [j.key for p in pieces for j in p] == [j.key for j in one_model.jobs]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("mnist", True),
        ("MNIST", True),
        ("resnet18", False),
        ("mnist and seed-cnn", True),
        ("mnist and not seed-cnn", False),
        ("resnet18 or roar", True),
        ("not (resnet18 or roar)", False),
        ("(mnist or digits) and not kar", True),
        ("seed 0", True),
        ("seed 1", False),
        ("gradient / roar", True),
    ],
)
def test_k_matches_like_pytest(expr, expected):
    description = "colored-mnist / seed-cnn / erm / gradient / roar / seed 0"
    assert select(expr, description) is expected


@pytest.mark.parametrize("expr", ["", "mnist and", "(mnist", "and mnist", "mnist )", "not"])
def test_a_malformed_k_expression_is_an_input_error(expr):
    with pytest.raises(BenchInputError, match="-k"):
        select(expr, "mnist / seed-cnn")


def test_k_selects_jobs_and_counts_the_rest(toy_registry):
    plan = make_plan(toy_registry, select_expr="toy-mass and not seed 2")
    assert len(plan.jobs) == 2 and plan.deselected == 7
    assert {j.evaluator.name for j in plan.jobs} == {"toy-mass"}


def test_errors_are_bounded():
    huge = "y" * 10_000_000
    assert len(Outcome("k", "failed", error=huge).error) <= MAX_ERROR_CHARS
    assert bounded("short") == "short"


def test_spec_mappings_are_read_only_and_pickle(toy_registry):
    spec = toy_registry.get("evaluator", "toy-accuracy")
    assert isinstance(spec.params, FrozenDict)
    with pytest.raises(TypeError, match="read-only"):
        spec.params["scale"] = 2.0
    again = pickle.loads(pickle.dumps(spec))
    assert again.params == {"scale": 1.0} and isinstance(again.params, FrozenDict)
    assert again.directions == {"accuracy": "higher"}
