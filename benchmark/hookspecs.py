"""Every hook a ``bench`` plugin can implement: the one page a plugin author reads.

A plugin is a module (or object) exposed through an entry point in the ``bench`` group::

    [project.entry-points.bench]
    my_plugin = "my_package.bench_plugin"

and implements any of the hooks below with ``@benchmark.hookimpl``. Registration hooks receive a
``register`` callback rather than returning values (the pattern of ``llm``), so the core can
validate each spec on the spot and name the offending plugin in any error. Run-lifecycle hooks
let reporters (loggers, dashboards, notifiers) follow a run without touching the core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from benchmark.records import Job, Outcome, Plan, RunSummary
    from benchmark.specs import (
        DatasetSpec,
        DebiaserSpec,
        EvaluatorSpec,
        ExecutorSpec,
        ExplainerSpec,
        ModelSpec,
        SuiteSpec,
    )

PROJECT = "bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets by calling ``register(DatasetSpec(...))`` once per dataset.

    The factory is called as ``factory(**params)`` and returns a ``benchmark.specs.Dataset``
    with float32 images in [0, 1] of shape ``(N, C, H, W)`` and int64 labels. Nothing may be
    downloaded: ship the data with a dependency, generate it deterministically, or read it
    from a local folder named by a parameter. Declare metadata you provide as tags
    (``groups``, ``object_mask``, ``bam``).
    """


@hookspec
def bench_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model architectures by calling ``register(ModelSpec(...))``.

    The factory is called as ``factory(num_classes, input_shape, **params)`` and returns an
    untrained ``torch.nn.Module`` that maps ``(N, C, H, W)`` to logits ``(N, num_classes)``;
    it must adapt to the input shape. Provide ``differentiable`` and, for CAM methods,
    ``conv`` together with ``target_layer``.
    """


@hookspec
def bench_register_debiasers(register: Callable[[DebiaserSpec], None]) -> None:
    """Register training procedures by calling ``register(DebiaserSpec(...))``.

    The factory is called as ``factory(model, data, *, seed, **params)`` with the training
    ``Split`` and returns the trained model. It must be deterministic given the seed. A
    debiaser that reads ``data.groups`` must require ``groups``; one that does not declare it
    must never read them. The model and the split's tensors are already on the job's device
    (``bench run --device``): put any module or tensor you create there too (``x.device``).
    """


@hookspec
def bench_register_explainers(register: Callable[[ExplainerSpec], None]) -> None:
    """Register attribution methods by calling ``register(ExplainerSpec(...))``.

    The factory is called as ``factory(model, x, target, **params)`` with a model in eval
    mode, a batch ``x`` and int64 ``target`` classes, and returns finite float32 attributions
    of shape ``(N, 1 or C, H, W)``. The runner checks both and fails the job otherwise. Model,
    ``x`` and ``target`` share the job's device; return the attributions on it.
    """


@hookspec
def bench_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    """Register evaluators by calling ``register(EvaluatorSpec(...))``.

    The factory is called as ``factory(context, **params)`` with a
    ``benchmark.specs.EvaluationContext`` and returns a ``benchmark.specs.Evaluation`` of
    finite scalar metrics (plus optional arrays). Declare each metric's
    direction in ``directions`` and what you need in ``requires`` (``explainer``,
    ``groups``, ``retrain``, ...). ``context.model`` and ``context.dataset`` are on
    ``context.device``; bring numbers back with ``.cpu()``. An evaluator that trains models
    through ``context.train`` declares how many in ``retrains`` so ``bench plan`` shows it.
    A model-set evaluator (``model_set=True``) receives ``context.members``, the Rashomon set
    of the suite's models that the core chose on the dataset's validation split.
    """


@hookspec
def bench_register_suites(register: Callable[[SuiteSpec], None]) -> None:
    """Register built-in suites by calling ``register(SuiteSpec(name, yaml_text, source))``.

    The YAML is validated like a user's suite file when it is used, so a broken built-in
    suite names its ``source`` in the error.
    """


@hookspec
def bench_register_executors(register: Callable[[ExecutorSpec], None]) -> None:
    """Register ways to run jobs by calling ``register(ExecutorSpec(name, factory))``.

    ``bench run --executor NAME`` calls ``factory(settings, registry)`` with an
    ``benchmark.executors.ExecutorSettings`` and the coordinator's registry, and iterates
    ``executor.run(groups)`` of the ``benchmark.executors.Executor`` it returns: it receives
    groups of JSON-able job records that share a trained model and yields one
    ``benchmark.records.Outcome`` per job, as each finishes. A job past its ``timeout_s`` or
    whose worker died must come back as a failed outcome, never end the run. The built-in
    ``serial``, ``process`` and ``ray`` executors (``benchmark/executors/``) are the models
    to follow; a Slurm executor would submit each group with ``run_group`` of
    ``benchmark.executors.worker`` as its payload.
    """


@hookspec
def bench_run_started(suite_name: str, plan: Plan, run_id: int) -> None:
    """Called once before the first job of a run, after the plan is known.

    ``plan.jobs`` lists every planned job, including those the store already holds.
    Exceptions raised here are reported and ignored: a reporter never breaks a run.
    """


@hookspec
def bench_job_finished(job: Job, outcome: Outcome) -> None:
    """Called after each job has been committed to the store, whether it passed or failed.

    ``outcome.status`` is ``"ok"``, ``"failed"`` or ``"cached"`` (result already stored).
    """


@hookspec
def bench_run_finished(suite_name: str, summary: RunSummary) -> None:
    """Called once after the last job, with counts of jobs run, cached and failed."""
