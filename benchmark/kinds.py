"""The one table of component kinds: hook names, suite fields, store columns and spec types all
derive from it, so a new kind (or a renamed one) is one line here instead of six hand-kept lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark import specs


@dataclass(frozen=True)
class Kind:
    """One kind of thing a plugin registers."""

    name: str
    """Singular, as in error messages and store columns (``dataset``)."""
    plural: str
    """The suite field and the hook suffix (``datasets``, ``bench_register_datasets``)."""
    spec_type: type
    in_jobs: bool
    """Whether a job holds one (a store column, a suite field); suites and executors do not."""

    @property
    def hook(self) -> str:
        return f"bench_register_{self.plural}"


KIND_TABLE: tuple[Kind, ...] = (
    Kind("dataset", "datasets", specs.DatasetSpec, True),
    Kind("model", "models", specs.ModelSpec, True),
    Kind("debiaser", "debiasers", specs.DebiaserSpec, True),
    Kind("explainer", "explainers", specs.ExplainerSpec, True),
    Kind("evaluator", "evaluators", specs.EvaluatorSpec, True),
    Kind("suite", "suites", specs.SuiteSpec, False),
    Kind("executor", "executors", specs.ExecutorSpec, False),
)
"""Components first, in pipeline order (a job holds at most one of each)."""

BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KIND_TABLE}
COMPONENT_KINDS: tuple[str, ...] = tuple(k.name for k in KIND_TABLE if k.in_jobs)
SUITE_FIELDS: dict[str, str] = {k.plural: k.name for k in KIND_TABLE if k.in_jobs}
REGISTER_HOOKS: dict[str, str] = {k.name: k.hook for k in KIND_TABLE}
