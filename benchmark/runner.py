"""Run a plan: load data -> train (model, debiaser, seed) -> explain -> evaluate, job by job.

Each job is isolated: whatever it raises, and any metric that is not a finite number or any
attribution of the wrong shape, becomes a failed row with its error, and the run goes on
(HELM and MTEB keep failures as records, never as silent blanks). Each job's outcome is
committed to the store before the next starts, so a killed run resumes where it stopped.
Trained models are cached by content address, so a rerun of an unchanged suite trains nothing.
"""

from __future__ import annotations

import platform
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as md
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmark.cache import ArtifactCache, tensor_fingerprint
from benchmark.planner import Job, Plan, training_key
from benchmark.registry import Registry
from benchmark.specs import Dataset, Evaluation, EvaluationContext, Split
from benchmark.store import Store
from benchmark.suite import Component, digest


def seed_everything(seed: int) -> None:
    """One seed drives Python, NumPy and torch, so the same job gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ContractError(ValueError):
    """A plugin returned something that breaks its contract (shape, dtype, finiteness)."""


@dataclass
class JobOutcome:
    """What happened to one job; passed to ``bench_job_finished``."""

    job_key: str
    status: str
    """``ok``, ``failed`` or ``cached`` (already in the store)."""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    duration_s: float = 0.0
    model_cache: str = ""
    """``trained``, ``hit`` (loaded from the artifact cache) or empty when not reached."""


@dataclass
class RunSummary:
    """Counts for the end-of-run report and ``bench_run_finished``."""

    run_id: int
    total: int = 0
    ran: int = 0
    cached: int = 0
    failed: int = 0
    models_trained: int = 0
    model_cache_hits: int = 0
    duration_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    """``(job description, error)`` for each failed job."""


def environment_versions(registry: Registry) -> dict[str, str]:
    """Versions that can change numbers: core libraries and every loaded plugin distribution."""
    versions = {"python": platform.python_version()}
    for dist in ("dependable-bench", "torch", "torchvision", "numpy", "scikit-learn"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "not installed"
    for record in registry.plugins.values():
        if record.status == "loaded" and record.version:
            versions[record.distribution] = record.version
    return versions


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "node": platform.node(),
        "torch_threads": torch.get_num_threads(),
    }


def _short_error(exc: BaseException) -> str:
    """The exception and the innermost frame that raised it: enough to find the bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def check_attributions(attributions: Any, x: torch.Tensor, explainer: str) -> torch.Tensor:
    """Enforce the explainer contract: ``(N, 1 or C, H, W)``, finite, float32."""
    if not isinstance(attributions, torch.Tensor):
        raise ContractError(
            f"explainer '{explainer}' returned {type(attributions).__name__}, not a torch.Tensor"
        )
    n, c, h, w = x.shape
    shape = tuple(attributions.shape)
    if len(shape) != 4 or shape[0] != n or shape[1] not in (1, c) or shape[2:] != (h, w):
        raise ContractError(
            f"explainer '{explainer}' returned shape {shape}; expected ({n}, 1 or {c}, {h}, {w})"
        )
    attributions = attributions.detach().float()
    if not torch.isfinite(attributions).all():
        raise ContractError(f"explainer '{explainer}' returned non-finite attributions")
    return attributions


def check_logits(model: torch.nn.Module, dataset: Dataset, label: str) -> None:
    """Enforce the model contract on two test images: logits ``(N, num_classes)``, finite."""
    with torch.no_grad():
        out = model(dataset.test.x[:2])
    expected = (min(2, len(dataset.test)), dataset.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ContractError(
            f"model '{label}' returned {shape} for a batch of test images; "
            f"expected logits of shape {expected}"
        )
    if not torch.isfinite(out).all():
        raise ContractError(f"model '{label}' returned non-finite logits after training")


class Runner:
    """Executes a plan serially on this machine, with caching, isolation and resume."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        cache: ArtifactCache,
        console: Console | None = None,
        rerun: bool = False,
        show_progress: bool = True,
    ) -> None:
        self.registry = registry
        self.store = store
        self.cache = cache
        self.console = console or Console(stderr=True)
        self.rerun = rerun
        self.show_progress = show_progress
        self._datasets: dict[str, Dataset] = {}
        self._model_memo: tuple[str, torch.nn.Module] | None = None
        self._summary = RunSummary(run_id=0)

    # -- the run ------------------------------------------------------------------------------

    def run(self, plan: Plan) -> RunSummary:
        suite = plan.suite
        started = time.perf_counter()
        run_id = self.store.start_run(
            suite.name,
            suite.model.version,
            suite.source,
            suite.config_hash(),
            environment_versions(self.registry),
            machine_info(),
        )
        summary = self._summary = RunSummary(run_id=run_id, total=len(plan.jobs))
        self._notify("bench_run_started", suite_name=suite.name, plan=plan, run_id=run_id)
        done = set() if self.rerun else self.store.done_keys(j.key for j in plan.jobs)
        with self._progress() as progress:
            task = progress.add_task("", total=len(plan.jobs))
            for job in plan.jobs:
                progress.update(task, description=job.describe())
                if job.key in done:
                    outcome = JobOutcome(job.key, "cached")
                    summary.cached += 1
                else:
                    outcome = self._run_job(job, run_id)
                    summary.ran += 1
                    if outcome.status == "failed":
                        summary.failed += 1
                        summary.failures.append((job.describe(), outcome.error))
                    self._report(progress, job, outcome)
                self._notify("bench_job_finished", job=job, outcome=outcome)
                progress.advance(task)
        summary.duration_s = time.perf_counter() - started
        self.store.finish_run(run_id, summary.total, summary.ran, summary.cached, summary.failed)
        self._notify("bench_run_finished", suite_name=suite.name, summary=summary)
        return summary

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.show_progress,
            transient=True,
        )

    def _report(self, progress: Progress, job: Job, outcome: JobOutcome) -> None:
        if outcome.status == "ok":
            shown = ", ".join(f"{k}={v:.4f}" for k, v in list(outcome.metrics.items())[:3])
            progress.console.print(
                f"[green]ok[/] {job.describe()} ({outcome.duration_s:.1f} s,"
                f" model {outcome.model_cache}) {shown}",
                highlight=False,
            )
        else:
            progress.console.print(
                f"[red]FAILED[/] {job.describe()}: {outcome.error}", highlight=False
            )

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook; a reporter that raises is reported, never fatal."""
        for impl in getattr(self.registry.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:
                self.console.print(
                    f"[yellow]warning:[/] plugin '{impl.plugin_name}' "
                    f"{hook_name} raised {_short_error(exc)}",
                    highlight=False,
                )

    # -- one job ------------------------------------------------------------------------------

    def _run_job(self, job: Job, run_id: int) -> JobOutcome:
        started = time.perf_counter()
        outcome = JobOutcome(job.key, "ok")
        evaluation: Evaluation | None = None
        try:
            dataset = self._dataset(job.dataset)
            model, outcome.model_cache = self._trained_model(job, dataset)
            evaluation = self._evaluate(job, dataset, model)
            outcome.metrics = dict(evaluation.metrics)
        except Exception as exc:
            outcome.status, outcome.error = "failed", _short_error(exc)
        outcome.duration_s = time.perf_counter() - started
        self.store.record(
            run_id,
            job,
            outcome.status,
            outcome.metrics,
            evaluation.arrays if evaluation else None,
            outcome.error,
            outcome.duration_s,
            outcome.model_cache,
        )
        return outcome

    def _dataset(self, component: Component) -> Dataset:
        key = digest(component.identity())
        if key not in self._datasets:
            data = component.spec.factory(**component.params)
            if not isinstance(data, Dataset):
                raise ContractError(
                    f"dataset '{component.label}' returned "
                    f"{type(data).__name__}, not benchmark.specs.Dataset"
                )
            for split_name in ("train", "test"):
                split: Split = getattr(data, split_name)
                if split.x.dtype != torch.float32 or split.x.ndim != 4:
                    raise ContractError(
                        f"dataset '{component.label}' {split_name}.x must be "
                        f"float32 (N, C, H, W), got {split.x.dtype} "
                        f"{tuple(split.x.shape)}"
                    )
            self._datasets[key] = data
        return self._datasets[key]

    def _trained_model(
        self, job: Job, dataset: Dataset, data: Split | None = None, seed: int | None = None
    ) -> tuple[torch.nn.Module, str]:
        """The job's model trained by its debiaser: from memory, from the cache, or trained."""
        seed = job.seed if seed is None else seed
        fingerprint = "" if data is None else tensor_fingerprint(data.x, data.y, data.groups)
        key = training_key(job.dataset, job.model, job.debiaser, seed, fingerprint)
        if self._model_memo is not None and self._model_memo[0] == key:
            return self._model_memo[1], "hit"
        seed_everything(seed)
        model = self._build_model(job, dataset)
        if self.cache.has("models", key):
            model.load_state_dict(self.cache.load("models", key))
            status = "hit"
            self._summary.model_cache_hits += 1
        else:
            debiaser = job.debiaser
            trained = debiaser.spec.factory(
                model, data if data is not None else dataset.train, seed=seed, **debiaser.params
            )
            if not isinstance(trained, torch.nn.Module):
                raise ContractError(
                    f"debiaser '{debiaser.label}' returned "
                    f"{type(trained).__name__}, not a torch.nn.Module"
                )
            model = trained
            self.cache.save(
                "models",
                key,
                model.state_dict(),
                meta={
                    "dataset": job.dataset.identity(),
                    "model": job.model.identity(),
                    "debiaser": debiaser.identity(),
                    "seed": seed,
                    "data": fingerprint,
                },
            )
            status = "trained"
            self._summary.models_trained += 1
        model.eval()
        check_logits(model, dataset, job.model.label)
        if data is None:
            self._model_memo = (key, model)
        return model, status

    def _build_model(self, job: Job, dataset: Dataset) -> torch.nn.Module:
        model = job.model.spec.factory(dataset.num_classes, dataset.input_shape, **job.model.params)
        if not isinstance(model, torch.nn.Module):
            raise ContractError(
                f"model '{job.model.label}' returned {type(model).__name__}, not a torch.nn.Module"
            )
        prepare = job.debiaser.spec.prepare
        if prepare is not None:
            model = prepare(model, dataset.num_classes, **job.debiaser.params)
        return model

    def _evaluate(self, job: Job, dataset: Dataset, model: torch.nn.Module) -> Evaluation:
        def retrain(split: Split, *, seed: int | None = None) -> torch.nn.Module:
            return self._trained_model(job, dataset, data=split, seed=seed)[0]

        explain: Callable[..., torch.Tensor] | None = None
        if job.explainer is not None:
            explain = self._explainer(job)
        context = EvaluationContext(
            dataset=dataset,
            model=model,
            model_spec=job.model.spec,
            seed=job.seed,
            train=retrain,
            explain=explain,
            explainer_spec=job.explainer.spec if job.explainer else None,
            cache_dir=str(self.cache.root),
        )
        seed_everything(job.seed)
        evaluation = job.evaluator.spec.factory(context, **job.evaluator.params)
        if not isinstance(evaluation, Evaluation):
            raise ContractError(
                f"evaluator '{job.evaluator.label}' returned "
                f"{type(evaluation).__name__}, not benchmark.specs.Evaluation"
            )
        try:
            evaluation.check()
        except ValueError as exc:
            raise ContractError(f"evaluator '{job.evaluator.label}': {exc}") from None
        return evaluation

    def _explainer(self, job: Job) -> Callable[..., torch.Tensor]:
        """The job's explainer, contract-checked and cached per (model, explainer, inputs)."""
        explainer = job.explainer
        assert explainer is not None

        layer = job.model.spec.target_layer if explainer.spec.uses_target_layer else ""

        def explain(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            key = digest(
                {
                    "model": tensor_fingerprint(*model.state_dict().values()),
                    "explainer": explainer.identity(),
                    "layer": layer,
                    "inputs": tensor_fingerprint(x, target),
                }
            )
            if self.cache.has("attributions", key):
                return self.cache.load("attributions", key)
            model.eval()
            params = dict(explainer.params)
            if explainer.spec.uses_target_layer and "target_layer" not in params:
                if not job.model.spec.target_layer:
                    raise ContractError(
                        f"explainer '{explainer.label}' needs a target layer, but model "
                        f"'{job.model.label}' declares none (ModelSpec.target_layer)"
                    )
                params["target_layer"] = job.model.spec.target_layer
            out = check_attributions(
                explainer.spec.factory(model, x, target, **params), x, explainer.label
            )
            self.cache.save("attributions", key, out)
            return out

        return explain
