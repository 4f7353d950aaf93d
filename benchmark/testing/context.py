"""``make_context``: the ``EvaluationContext`` a job would hand an evaluator, in one line.

Evaluator authors (and this project's own tests) used to build the context by hand: a dataset,
a trained model, a ``train`` callable, an ``explain`` callable, a model spec. Each hand-made
context differs from the real one in some way (no contract check on attributions, no cache, the
wrong device). This builds it with the worker's own code, so a test sees exactly what a run
would: a model trained by the named debiaser through the content-addressed cache, the explainer
wrapped with the contract check, everything on the requested device.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from benchmark.executors.worker import Worker, WorkerSettings
from benchmark.records import ComponentRecord, Job
from benchmark.registry import Registry
from benchmark.specs import EvaluationContext
from benchmark.suite import Component, checked_params

_PLACEHOLDER_EVALUATOR = ComponentRecord("evaluator", "(make_context)", "0", {}, "(make_context)")


def component(
    registry: Registry, kind: str, name: str, params: Mapping[str, Any] | None = None
) -> Component:
    """A registered component with checked parameter overrides, as a suite entry makes it."""
    spec = registry.get(kind, name)
    return Component(spec, checked_params(spec, dict(params or {})), name)


def make_context(
    *,
    dataset: str = "digits",
    model: str = "seed-cnn",
    debiaser: str = "none",
    explainer: str | None = None,
    seed: int = 0,
    dataset_params: Mapping[str, Any] | None = None,
    model_params: Mapping[str, Any] | None = None,
    debiaser_params: Mapping[str, Any] | None = None,
    explainer_params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
    cache_dir: str | None = None,
    device: str = "cpu",
) -> EvaluationContext:
    """An evaluation context for the named components, the model trained for ``seed``.

    ``registry`` defaults to every installed plugin plus ``extra_plugins``. ``cache_dir``
    defaults to a fresh temporary directory (pass pytest's ``tmp_path`` to keep tests tidy, or
    one directory for several contexts so a model trains once). Small by choice: pass
    ``dataset_params={"train_limit": 500}`` and ``debiaser_params={"epochs": 1}`` for speed.
    """
    registry = registry or Registry.load(extra_plugins=extra_plugins)
    parts = [
        component(registry, "dataset", dataset, dataset_params),
        component(registry, "model", model, model_params),
        component(registry, "debiaser", debiaser, debiaser_params),
    ]
    if explainer is not None:
        parts.append(component(registry, "explainer", explainer, explainer_params))
    records = {c.kind: ComponentRecord.of(c) for c in parts}
    job = Job(
        records["dataset"],
        records["model"],
        records["debiaser"],
        _PLACEHOLDER_EVALUATOR,
        seed,
        records.get("explainer"),
    )
    settings = WorkerSettings(
        cache_dir=cache_dir or tempfile.mkdtemp(prefix="bench-context-"), device=device
    )
    return Worker(settings, registry=registry).context(job)
