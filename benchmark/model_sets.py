"""Model sets: a validation split held out of training, and the eps-Rashomon filter on it.

A model-set job asks how much *equally good* models disagree (Marx et al. 2020; Hsu et al.
2024; Watson et al. 2022). "Equally good" must be decided on data the models did not train on
and that the evaluation does not score, or the set is chosen by the very numbers it is then
used to measure: so a suite gives a dataset ``validation: N``, the core holds those ``N``
training images out of ``train`` (the same images for every seed, model and debiaser,
stratified by label), and a set keeps the candidates whose validation accuracy is within
``rashomon_eps`` of the best (Semenova et al.'s eps-Rashomon set, with the empirical risk on
the held-out split). The test split is never looked at here.

The planner builds a set job's candidates (``plan_sets``); the worker trains or loads them,
filters them (``rashomon_filter``) and hands the kept ones to the evaluator as
``EvaluationContext.members``, the best first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field

from benchmark.records import SET_KINDS, ComponentRecord, Job, Member, set_record
from benchmark.specs import Dataset, Split

Across = Literal["seeds", "models", "debiasers", "models+debiasers"]
"""The type of a model-set evaluator's ``across`` parameter (``benchmark.records.SET_KINDS``)."""
RashomonEps = Annotated[float, Field(ge=0, le=1)] | None
"""The type of ``rashomon_eps``: an accuracy gap in [0, 1], or ``None`` to keep every model."""
DEFAULT_EPS = 0.01
"""One point of validation accuracy: the issue's, and Marx et al.'s smallest eps."""

VALIDATION_SEED = 0
"""The random state that chooses every held-out validation image (a split is part of a
dataset's identity, not of a job's randomness)."""


def validation_rows(labels: torch.Tensor, size: int, where: str) -> np.ndarray:
    """Rows of the training split held out for validation: ``size`` rows, stratified by label
    (every class in proportion, at least one per class), identical on every call."""
    y = labels.detach().cpu().numpy()
    classes = np.unique(y)
    if size < len(classes) or size >= len(y):
        raise ValueError(
            f"{where}: validation {size} must be at least the {len(classes)} classes and "
            f"below the {len(y)} training images"
        )
    from sklearn.model_selection import train_test_split  # lazy: keeps start-up fast

    _, held = train_test_split(
        np.arange(len(y)), test_size=size, stratify=y, random_state=VALIDATION_SEED
    )
    return np.sort(held)


def _rows(split: Split, rows: torch.Tensor) -> Split:
    """The split's ``rows`` (per-sample extras cut alike; other extras kept as they are)."""
    n = len(split)
    rows = rows.to(split.y.device)

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
            return value[rows.to(value.device)]
        return value

    return Split(
        x=split.x[rows],
        y=split.y[rows],
        groups=None if split.groups is None else split.groups[rows],
        extras={k: cut(v) for k, v in split.extras.items()},
    )


def carve_validation(dataset: Dataset, size: int, where: str) -> Dataset:
    """``dataset`` with ``size`` training images moved to ``validation``."""
    held = validation_rows(dataset.train.y, size, where)
    keep = np.setdiff1d(np.arange(len(dataset.train)), held)
    return replace(
        dataset,
        train=_rows(dataset.train, torch.from_numpy(keep)),
        validation=_rows(dataset.train, torch.from_numpy(held)),
    )


def accuracy(model: torch.nn.Module, split: Split, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``split``, batched, without gradients."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            logits = model(split.x[start : start + batch_size])
            correct += int((logits.argmax(1) == split.y[start : start + batch_size]).sum())
    return correct / max(1, len(split))


def rashomon_filter(accuracies: list[float], eps: float | None) -> list[int]:
    """Indices of the candidates within ``eps`` of the best accuracy, best first (ties in
    candidate order); all of them when ``eps`` is ``None``."""
    order = sorted(range(len(accuracies)), key=lambda i: (-accuracies[i], i))
    if eps is None:
        return order
    best = accuracies[order[0]]
    # a small slack so that "within 0.01 of 0.95" keeps 0.94 despite binary floats
    return [i for i in order if accuracies[i] >= best - eps - 1e-12]


def plan_sets(
    dataset: Any,
    models: list[Any],
    debiasers: list[Any],
    evaluator: Any,
    explainer: Any,
    seeds: list[int],
    admissible: Callable[[list[Any]], str],
) -> tuple[list[Job], list[tuple[tuple[Any, ...], str]]]:
    """The set jobs of one (dataset, evaluator, explainer) and the sets that cannot run.

    ``across`` (an evaluator parameter) says which kinds a set spans: ``seeds`` gives one set
    per (model, debiaser), ``models`` one per debiaser with every model, and so on.
    ``admissible(components)`` is the planner's reason a member combination cannot run (an
    unmet requirement, an exclusion), empty when it can; members that cannot run are left
    out, and a set of fewer than two members is not planned."""
    across = evaluator.params.get("across", "seeds")
    spans = SET_KINDS[across]
    outer_models = [None] if "model" in spans else models
    outer_debiasers = [None] if "debiaser" in spans else debiasers
    jobs: list[Job] = []
    skipped: list[tuple[tuple[Any, ...], str]] = []
    for model in outer_models:
        for debiaser in outer_debiasers:
            combos = [
                (m, d)
                for m in ([model] if model is not None else models)
                for d in ([debiaser] if debiaser is not None else debiasers)
            ]
            shown = tuple(c for c in (dataset, model, debiaser, explainer, evaluator) if c)
            reasons = []
            members: list[Member] = []
            for m, d in combos:
                combo = [c for c in (dataset, m, d, explainer, evaluator) if c is not None]
                reason = admissible(combo)
                if reason:
                    reasons.append(reason)
                    continue
                members += [Member(ComponentRecord.of(m), ComponentRecord.of(d), s) for s in seeds]
            if len(members) < 2:
                why = "; ".join(dict.fromkeys(reasons))
                if members:
                    why = f"a model set of one model{': the others ' + why if why else ''}"
                skipped.append((shown, why or "a model set needs at least two seeds"))
                continue
            model_record = (
                ComponentRecord.of(model)
                if model is not None
                else set_record("model", [m.model for m in members])
            )
            debiaser_record = (
                ComponentRecord.of(debiaser)
                if debiaser is not None
                else set_record("debiaser", [m.debiaser for m in members])
            )
            jobs.append(
                Job(
                    ComponentRecord.of(dataset),
                    model_record,
                    debiaser_record,
                    ComponentRecord.of(evaluator),
                    seeds[0],
                    ComponentRecord.of(explainer) if explainer is not None else None,
                    members=tuple(members),
                )
            )
    return jobs, skipped
