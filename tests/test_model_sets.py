"""Model-set jobs: the held-out validation split, the Rashomon filter, planning sets, records."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.errors import BenchInputError
from benchmark.model_sets import carve_validation, rashomon_filter, validation_rows
from benchmark.records import Job
from benchmark.registry import Registry
from benchmark.specs import Dataset, Split

SUITE = """\
name: sets
datasets:
  - {name: digits, validation: 100}
models: [seed-cnn, simple-conv]
debiasers:
  - {name: none, label: erm, params: {epochs: 1}}
explainers: [gradient, grad-cam]
evaluators:
  - classification
  - prediction-multiplicity
  - {name: prediction-multiplicity, label: across-models, params: {across: models}}
  - explanation-disagreement
seeds: [0, 1, 2]
leaderboard: {metric: accuracy}
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


def _plan(registry, text=SUITE, **kwargs):
    return planner.expand(suite_module.parse(text, "sets.yaml", registry), **kwargs)


def test_a_set_job_per_model_and_debiaser_holds_every_seed(registry):
    plan = _plan(registry)
    sets = [j for j in plan.jobs if j.members]
    per_model = [j for j in plan.jobs if not j.members]
    assert len(per_model) == 2 * 3  # classification: two models x three seeds
    assert plan.jobs[: len(per_model)] == per_model  # sets come after what they need
    seeds_sets = [j for j in sets if j.evaluator.label == "prediction-multiplicity"]
    assert {j.model.label for j in seeds_sets} == {"seed-cnn", "simple-conv"}
    for job in seeds_sets:
        assert [m.seed for m in job.members] == [0, 1, 2]
        assert {m.model.label for m in job.members} == {job.model.label}
        assert "set of 3: seeds 0-2" in job.describe()
    # explanation-disagreement: one set per model and explainer
    explained = [j for j in sets if j.evaluator.label == "explanation-disagreement"]
    assert len(explained) == 2 * 2
    # the members are the very models the per-model jobs train
    trained = {j.train_key for j in per_model}
    assert {k for j in sets for k in j.member_keys()} == trained
    assert plan.trainings() == (6, 0)


def test_across_models_makes_one_set_named_after_all_its_models(registry):
    plan = _plan(registry)
    (job,) = [j for j in plan.jobs if j.evaluator.label == "across-models"]
    assert job.model.label == "seed-cnn + simple-conv"
    assert len(job.members) == 6
    assert "seed-cnn / erm seeds 0-2; simple-conv / erm seeds 0-2" in job.describe()


def test_set_jobs_travel_as_records_and_keep_their_key(registry):
    plan = _plan(registry)
    for job in plan.jobs:
        again = Job.from_record(job.record())
        assert again == job and again.key == job.key
    # a job without members has the key it had before sets existed (its record has none)
    plain = next(j for j in plan.jobs if not j.members)
    assert "members" not in plain.record()


def test_validation_is_part_of_the_dataset_identity(registry):
    with_validation = _plan(registry)
    without = _plan(registry, SUITE.replace(", validation: 100", ""))
    keys = {j.train_key for j in with_validation.jobs if not j.members}
    assert keys.isdisjoint({j.train_key for j in without.jobs if not j.members})
    # and a dataset without validation keeps the identity (and keys) it always had
    assert "validation" not in without.jobs[0].dataset.identity()


def test_validation_on_anything_but_a_dataset_is_refused(registry):
    bad = SUITE.replace(
        "models: [seed-cnn, simple-conv]", "models: [{name: seed-cnn, validation: 5}]"
    )
    with pytest.raises(BenchInputError, match="only a dataset holds out"):
        _plan(registry, bad)


def test_a_set_of_one_model_is_not_planned_and_says_why(registry):
    plan = _plan(registry, SUITE.replace("seeds: [0, 1, 2]", "seeds: [0]"))
    assert not [j for j in plan.jobs if j.members and j.evaluator.label != "across-models"]
    assert any("a model set of one model" in s.reason for s in plan.skipped)


def _toy_dataset(n=200, classes=4) -> Dataset:
    y = torch.arange(n) % classes
    x = torch.rand(n, 1, 4, 4)
    extras = {"marker": torch.arange(n), "constant": "kept"}
    train = Split(x=x, y=y, groups=y.clone(), extras=extras)
    test = Split(x=x[:10], y=y[:10])
    return Dataset(train=train, test=test, num_classes=classes)


def test_carving_is_stratified_disjoint_deterministic_and_leaves_test_alone():
    data = _toy_dataset()
    carved = carve_validation(data, 40, "toy")
    assert len(carved.train) == 160 and len(carved.validation) == 40
    assert torch.bincount(carved.validation.y).tolist() == [10, 10, 10, 10]
    held = set(carved.validation.extras["marker"].tolist())
    assert held.isdisjoint(carved.train.extras["marker"].tolist())
    assert carved.train.extras["constant"] == "kept"
    assert torch.equal(carved.validation.groups, carved.validation.y)
    assert carved.test is data.test
    again = carve_validation(data, 40, "toy")
    assert torch.equal(again.validation.x, carved.validation.x)
    assert (
        validation_rows(data.train.y, 40, "toy") == validation_rows(data.train.y, 40, "t")
    ).all()


@pytest.mark.parametrize("size", [3, 200, 500])
def test_impossible_validation_sizes_are_refused_with_the_dataset_named(size):
    with pytest.raises(ValueError, match="toy: validation"):
        carve_validation(_toy_dataset(), size, "toy")


def test_rashomon_filter_keeps_the_models_within_eps_of_the_best_best_first():
    accuracies = [0.90, 0.95, 0.94, 0.80, 0.95]
    assert rashomon_filter(accuracies, 0.01) == [1, 4, 2]
    assert rashomon_filter(accuracies, 0.0) == [1, 4]
    assert rashomon_filter(accuracies, None) == [1, 4, 2, 0, 3]
    assert rashomon_filter(accuracies, 0.15) == [1, 4, 2, 0, 3]


def test_model_set_evaluators_declare_the_parameters_the_core_reads(registry):
    for name in ("prediction-multiplicity", "explanation-disagreement"):
        spec = registry.get("evaluator", name)
        assert spec.model_set
        assert spec.params["across"] == "seeds" and spec.params["rashomon_eps"] == 0.01
    bad = SUITE.replace("params: {across: models}", "params: {across: everything}")
    with pytest.raises(BenchInputError, match="across"):
        _plan(registry, bad)


def test_a_replaced_member_changes_the_set_key(registry):
    job = next(j for j in _plan(registry).jobs if j.members)
    other = dataclasses.replace(job.members[0], seed=99)
    changed = dataclasses.replace(job, members=(other, *job.members[1:]))
    assert changed.key != job.key and changed.group_key != job.group_key
