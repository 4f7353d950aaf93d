"""Suite x registry -> the list of jobs to run, with a reason for every combination skipped.

Compatibility is set arithmetic over capability tags (HELM's model tags, MTEB's modalities):
a combination runs when every component's ``requires`` is covered by what the combination's
components ``provide``. An explainer is paired only with evaluators that require
``explainer``; other evaluators run once per trained model, not once per explainer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from benchmark.specs import KINDS, all_provides
from benchmark.suite import Component, Suite, digest


@dataclass(frozen=True)
class Job:
    """One unit of work: components (explainer may be ``None``) and a seed."""

    dataset: Component
    model: Component
    debiaser: Component
    evaluator: Component
    seed: int
    explainer: Component | None = None

    def components(self) -> list[Component]:
        """Present components in pipeline order."""
        parts = [self.dataset, self.model, self.debiaser, self.explainer, self.evaluator]
        return [c for c in parts if c is not None]

    @property
    def key(self) -> str:
        """Content address of the job: same components, versions, params and seed -> same key."""
        return digest(
            {
                "components": [c.identity() for c in self.components()],
                "kinds": [c.kind for c in self.components()],
                "seed": self.seed,
            }
        )

    @property
    def train_key(self) -> str:
        """Content address of the trained model this job needs (shared across evaluators)."""
        return training_key(self.dataset, self.model, self.debiaser, self.seed)

    def labels(self) -> dict[str, str | None]:
        """Display label per kind (``None`` for an absent explainer)."""
        return {kind: (c.label if c is not None else None) for kind, c in self._by_kind().items()}

    def _by_kind(self) -> dict[str, Component | None]:
        return {kind: getattr(self, kind) for kind in KINDS}

    def describe(self) -> str:
        parts = [c.label for c in self.components()]
        return " / ".join(parts) + f" / seed {self.seed}"

    def record(self) -> dict[str, Any]:
        """JSON-able description of the job, for ``bench plan --json`` and the store."""
        out: dict[str, Any] = {"key": self.key, "seed": self.seed}
        for kind, comp in self._by_kind().items():
            out[kind] = (
                None
                if comp is None
                else {
                    "label": comp.label,
                    **comp.identity(),
                    "plugin": comp.spec.plugin,
                }
            )
        return out


def training_key(
    dataset: Component, model: Component, debiaser: Component, seed: int, data_fingerprint: str = ""
) -> str:
    """Content address of a trained model; ``data_fingerprint`` marks modified training data."""
    return digest(
        {
            "dataset": dataset.identity(),
            "model": model.identity(),
            "debiaser": debiaser.identity(),
            "seed": seed,
            "data": data_fingerprint,
        }
    )


@dataclass(frozen=True)
class Skip:
    """A combination that will not run, and why (one per combination, not per seed)."""

    components: tuple[Component, ...]
    reason: str

    def describe(self) -> str:
        return " / ".join(c.label for c in self.components)


@dataclass
class Plan:
    """Every job of a suite plus every skipped combination."""

    suite: Suite
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


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
    return reasons


def expand(suite: Suite) -> Plan:
    """All compatible combinations of the suite, in a stable order that groups by trained model."""
    plan = Plan(suite=suite)
    comps = suite.components
    explainers: list[Component | None] = list(comps["explainer"])
    for dataset, model, debiaser, evaluator in itertools.product(
        comps["dataset"], comps["model"], comps["debiaser"], comps["evaluator"]
    ):
        wants_explainer = "explainer" in evaluator.spec.requires
        if wants_explainer and not explainers:
            plan.skipped.append(
                Skip(
                    (dataset, model, debiaser, evaluator),
                    f"evaluator '{evaluator.label}' requires 'explainer', but the suite lists none",
                )
            )
            continue
        for explainer in explainers if wants_explainer else [None]:
            combo = [c for c in (dataset, model, debiaser, explainer, evaluator) if c is not None]
            reasons = unmet_requirements(combo)
            if reasons:
                plan.skipped.append(Skip(tuple(combo), "; ".join(reasons)))
                continue
            for seed in suite.seeds:
                plan.jobs.append(Job(dataset, model, debiaser, evaluator, seed, explainer))
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
    return plan
