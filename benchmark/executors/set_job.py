"""Run one model-set job in a worker: train or load every candidate, keep its Rashomon set,
evaluate.

A model-set job names its candidates (``Job.members``: model, debiaser, seed); each is the
same content-addressed artifact a per-model job of the suite trains, so when the suite also
plans per-model jobs for them (the runner runs those first, in parallel) the set job only
loads them, and when it does not, the set job trains what is missing under the cache's
per-key lock. The candidates are scored on the dataset's held-out validation split and
filtered (``benchmark.model_sets.rashomon_filter``); the evaluator receives the kept ones as
``context.members``, best first, and ``context.model`` is the best. Which candidates were
kept, and each one's validation accuracy, is stored with the job (array ``model_set``), so
a reader can see the set every number was computed on.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from benchmark.model_sets import DEFAULT_EPS, accuracy, rashomon_filter
from benchmark.specs import Dataset, Evaluation, ModelSpec, SetMember

if TYPE_CHECKING:
    from benchmark.executors.worker import Worker
    from benchmark.records import Job
    from benchmark.suite import Component

MODEL_SET_ARRAY = "model_set"
"""Name of the stored array describing a set job's candidates and the ones it kept."""


def evaluate_set(
    worker: Worker, job: Job, comps: dict[str, Component], dataset: Dataset
) -> Evaluation:
    """The evaluation of a model-set job (``comps`` holds its dataset, evaluator and explainer;
    the members' models and debiasers are resolved here)."""
    from benchmark.executors.contracts import ContractError

    evaluator = comps["evaluator"]
    eps = evaluator.params.get("rashomon_eps", DEFAULT_EPS)
    if eps is not None and dataset.validation is None:
        raise ContractError(
            f"evaluator '{evaluator.label}' chooses a Rashomon set on a validation split, but "
            f"dataset '{comps['dataset'].label}' has none: give it `validation: N` in the suite "
            "(N training images held out), or set rashomon_eps: null to keep every candidate"
        )
    # the memo of loaded members is shared by every job of the same set: this job's own
    # dataset, evaluator and explainer go with each member's model and debiaser
    candidates = [
        (member_job, {**member_comps, **comps}, model)
        for member_job, member_comps, model in _load_members(worker, job, comps, dataset)
    ]
    split = dataset.validation if dataset.validation is not None else dataset.train
    scores = [accuracy(model, split) for _, _, model in candidates]
    kept = rashomon_filter(scores, eps)
    members = tuple(_member(worker, dataset, comps, candidates[i], scores[i]) for i in kept)
    best_job, best_comps, best_model = candidates[kept[0]]
    context_job = dataclasses.replace(
        job, model=best_job.model, debiaser=best_job.debiaser, members=()
    )
    evaluation = worker._evaluate(context_job, best_comps, dataset, best_model, members)
    evaluation.arrays[MODEL_SET_ARRAY] = {
        "candidates": [m.describe() for m in job.members],
        "validation_accuracy": scores,
        "kept": [job.members[i].describe() for i in kept],
        "rashomon_eps": eps,
        "validation_images": len(split) if dataset.validation is not None else 0,
    }
    return evaluation


def _load_members(
    worker: Worker, job: Job, comps: dict[str, Component], dataset: Dataset
) -> list[tuple[Job, dict[str, Component], Any]]:
    """``(member job, its model and debiaser, trained model)`` per candidate, kept between the
    jobs of a group (the next explainer's job of the same set loads nothing)."""
    memo = getattr(worker, "_set_memo", None)
    if memo is not None and memo[0] == job.group_key:
        return memo[1]
    loaded = []
    for member in job.members:
        member_comps = {
            "model": worker._resolve(member.model),
            "debiaser": worker._resolve(member.debiaser),
        }
        member_job = dataclasses.replace(
            job, model=member.model, debiaser=member.debiaser, seed=member.seed, members=()
        )
        model, _ = worker._trained_model(member_job, {**comps, **member_comps}, dataset)
        loaded.append((member_job, member_comps, model))
    worker._set_memo = (job.group_key, loaded)
    return loaded


def _member(
    worker: Worker,
    dataset: Dataset,
    comps: dict[str, Component],
    candidate: tuple[Job, dict[str, Component], Any],
    score: float,
) -> SetMember:
    member_job, member_comps, model = candidate
    spec = member_comps["model"].spec
    assert isinstance(spec, ModelSpec)
    return SetMember(
        label=f"{member_job.model.label} / {member_job.debiaser.label} / seed {member_job.seed}",
        model=model,
        model_spec=spec,
        seed=member_job.seed,
        validation_accuracy=score,
        explain=worker._explainer(member_comps, dataset) if "explainer" in comps else None,
    )
