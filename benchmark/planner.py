"""Suite x registry -> the list of jobs to run, with a reason for every combination skipped.

Compatibility is set arithmetic over capability tags (HELM's model tags, MTEB's modalities):
a combination runs when every component's ``requires`` is covered by what the combination's
components ``provide``. An explainer is paired only with evaluators that require what it
implicitly provides (``explainer`` for an attribution method, ``counterfactual`` for a
counterfactual one: ``benchmark.specs.EXPLAINER_TAGS``); other evaluators run once per trained
model, not once per explainer. A combination also needs a dataset and components that handle
every input modality its model takes (``benchmark.modalities``).
"""

from __future__ import annotations

import dataclasses
import itertools

from benchmark.exclusions import excluded_by
from benchmark.modalities import unmet_modalities
from benchmark.model_sets import plan_sets
from benchmark.records import ComponentRecord, Job, Plan, Skip, training_key
from benchmark.selection import select
from benchmark.specs import EXPLAINER_TAGS, all_provides
from benchmark.suite import Component, Suite

__all__ = ["Job", "Plan", "Skip", "expand", "training_key", "unmet_requirements"]

DEFAULT_JOB_TIMEOUT_S = 7200.0
"""A job's time limit when neither the command line, the suite nor a component sets one:
long enough for the slowest built-in job on two CPU cores, short enough that a hung plugin
does not hold a run for a night."""


def unmet_requirements(components: list[Component]) -> list[str]:
    """Why a combination cannot run, one sentence per unmet requirement (empty if it can)."""
    provided = frozenset().union(*(all_provides(c.spec) for c in components))
    reasons = []
    for comp in components:
        for tag in sorted(comp.spec.requires - provided):
            reasons.append(
                f"{comp.kind} '{comp.label}' requires '{tag}', which no component "
                "of this combination provides"
            )
    return reasons + unmet_modalities(components)


def job_timeout(suite: Suite, combo: list[Component], override: float | None = None) -> float:
    """The command line's limit, else the longest a component of the combination asks for,
    else the suite's, else ``DEFAULT_JOB_TIMEOUT_S``."""
    if override is not None:
        return float(override)
    asked = [c.timeout_s for c in combo if c.timeout_s is not None]
    if asked:
        return float(max(asked))
    if suite.model.job_timeout_s is not None:
        return float(suite.model.job_timeout_s)
    return DEFAULT_JOB_TIMEOUT_S


def declared_retrains(evaluator: Component) -> int:
    """How many models the evaluator says it trains inside one job (``EvaluatorSpec.retrains``)."""
    count = getattr(evaluator.spec, "retrains", None)
    return int(count(evaluator.params)) if callable(count) else 0


def explainers_for(evaluator: Component, explainers: list[Component]) -> list[Component] | None:
    """The explainers an evaluator is paired with: those whose output it requires (``None``
    when it requires no explainer at all, so it runs once per model)."""
    wanted = evaluator.spec.requires & frozenset(EXPLAINER_TAGS.values())
    if not wanted:
        return None
    return [e for e in explainers if all_provides(e.spec) & wanted]


def _no_explainer(evaluator: Component) -> str:
    tag = sorted(evaluator.spec.requires & frozenset(EXPLAINER_TAGS.values()))[0]
    output = next(o for o, t in EXPLAINER_TAGS.items() if t == tag)
    return (
        f"evaluator '{evaluator.label}' requires '{tag}', but the suite lists no {output} explainer"
    )


def _admissible(suite: Suite, combo: list[Component]) -> str:
    """Why a combination cannot run (an exclusion, unmet requirements), empty if it can."""
    return excluded_by(suite.model.exclude, {c.kind: c.label for c in combo}) or "; ".join(
        unmet_requirements(combo)
    )


def _set_jobs(
    suite: Suite, explainers: list[Component], timeout_s: float | None, plan: Plan
) -> list[Job]:
    """Model-set jobs (``EvaluatorSpec.model_set``), after every per-model job: one per set
    of candidate models (``benchmark.model_sets.plan_sets``), per explainer if it needs one."""
    comps = suite.components
    jobs: list[Job] = []
    for dataset in comps["dataset"]:
        for evaluator in comps["evaluator"]:
            if not getattr(evaluator.spec, "model_set", False):
                continue
            paired = explainers_for(evaluator, explainers)
            if paired == []:
                plan.skipped.append(Skip((dataset, evaluator), _no_explainer(evaluator)))
                continue
            for explainer in paired if paired is not None else [None]:
                found, skipped = plan_sets(
                    dataset,
                    comps["model"],
                    comps["debiaser"],
                    evaluator,
                    explainer,
                    suite.seeds,
                    lambda combo: _admissible(suite, combo),
                )
                plan.skipped += [Skip(shown, reason) for shown, reason in skipped]
                combo = [c for c in (dataset, explainer, evaluator) if c is not None]
                combo += comps["model"] + comps["debiaser"]
                limit = job_timeout(suite, combo, timeout_s)
                jobs += [dataclasses.replace(job, timeout_s=limit) for job in found]
    return jobs


def expand(suite: Suite, select_expr: str = "", timeout_s: float | None = None) -> Plan:
    """All compatible combinations of the suite, in a stable order that groups by trained model.

    ``select_expr`` keeps only the jobs whose description matches (``-k``, pytest-style);
    ``timeout_s`` overrides every job's time limit.
    """
    plan = Plan(suite=suite)
    comps = suite.components
    explainers: list[Component] = list(comps["explainer"])
    per_model = [e for e in comps["evaluator"] if not getattr(e.spec, "model_set", False)]
    for dataset, model, debiaser, evaluator in itertools.product(
        comps["dataset"], comps["model"], comps["debiaser"], per_model
    ):
        paired = explainers_for(evaluator, explainers)
        if paired == []:
            plan.skipped.append(
                Skip((dataset, model, debiaser, evaluator), _no_explainer(evaluator))
            )
            continue
        for explainer in paired if paired is not None else [None]:
            combo = [c for c in (dataset, model, debiaser, explainer, evaluator) if c is not None]
            excluded = excluded_by(suite.model.exclude, {c.kind: c.label for c in combo})
            if excluded:
                plan.skipped.append(Skip(tuple(combo), excluded))
                continue
            reasons = unmet_requirements(combo)
            if reasons:
                plan.skipped.append(Skip(tuple(combo), "; ".join(reasons)))
                continue
            records = {c.kind: ComponentRecord.of(c) for c in combo}
            limit = job_timeout(suite, combo, timeout_s)
            retrains = declared_retrains(evaluator)
            for seed in suite.seeds:
                plan.jobs.append(
                    Job(
                        records["dataset"],
                        records["model"],
                        records["debiaser"],
                        records["evaluator"],
                        seed,
                        records.get("explainer"),
                        timeout_s=limit,
                        retrains=retrains,
                    )
                )
    # Jobs that share a trained model run back to back, so it is loaded once.
    order = {kind: {c.label: i for i, c in enumerate(cs)} for kind, cs in comps.items()}
    seed_order = {s: i for i, s in enumerate(suite.seeds)}
    plan.jobs.sort(
        key=lambda j: (
            order["dataset"][j.dataset.label],
            order["model"][j.model.label],
            order["debiaser"][j.debiaser.label],
            seed_order[j.seed],
        )
    )
    plan.jobs += _set_jobs(suite, explainers, timeout_s, plan)
    if select_expr:
        kept = [job for job in plan.jobs if select(select_expr, job.describe())]
        plan.deselected = len(plan.jobs) - len(kept)
        plan.jobs = kept
    return plan
