"""The hookspec module is the one page a plugin author reads: every hook must be documented."""

import inspect
import typing

from benchmark import hookspecs

HOOKS = [
    (name, func)
    for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(func, "bench_spec")
]


def test_all_expected_hooks_exist():
    names = {name for name, _ in HOOKS}
    for kind in ("datasets", "models", "debiasers", "explainers", "evaluators", "suites"):
        assert f"bench_register_{kind}" in names
    assert {"bench_run_started", "bench_job_finished", "bench_run_finished"} <= names
    assert "bench_register_executors" in names


def test_every_hook_is_prefixed_documented_and_typed():
    assert HOOKS, "no hookspecs found"
    for name, func in HOOKS:
        assert name.startswith("bench_"), name
        doc = inspect.getdoc(func)
        assert doc and len(doc.split()) >= 10, f"{name} needs a real docstring"
        hints = typing.get_type_hints(func, globalns=vars(hookspecs) | _type_namespace())
        params = inspect.signature(func).parameters
        assert set(params) <= set(hints), f"{name}: every argument needs a type"
        assert "return" in hints, f"{name}: return type missing"


def _type_namespace():
    from benchmark import records, specs

    return {
        **vars(specs),
        "Job": records.Job,
        "Plan": records.Plan,
        "Outcome": records.Outcome,
        "RunSummary": records.RunSummary,
    }


def test_every_kind_of_the_kind_table_has_its_registration_hook():
    from benchmark import hookspecs
    from benchmark.kinds import KIND_TABLE
    from benchmark.registry import KNOWN_HOOKS

    for kind in KIND_TABLE:
        assert callable(getattr(hookspecs, kind.hook)), kind
        assert kind.hook in KNOWN_HOOKS
        assert kind.spec_type.kind == kind.name
