"""The coordinator: skip what the store holds, hand the rest to an executor, commit outcomes.

The coordinator is the only writer of the results store: it commits each outcome in its own
transaction as it arrives (so ``kill -9`` at any moment loses at most the jobs in flight, and
a rerun counts nothing twice), drives the lifecycle hooks, the progress bar and the summary.
No job code runs here unless the executor is ``serial``, and no job code touches run state.

Ctrl-C and SIGTERM stop the workers, mark the run ``interrupted`` in the store and end with
exit status 130 / 143; a run that was killed outright (``kill -9``) is marked ``killed`` when
the next run on the same store starts.
"""

from __future__ import annotations

import platform
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata as md
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmark.cache import ArtifactCache
from benchmark.errors import BenchInputError
from benchmark.executors.base import (
    ExecutorSettings,
    available_cores,
    default_jobs,
    default_threads,
)
from benchmark.executors.contracts import (  # re-exported: the names plugins' tests import
    ContractError,
    check_attributions,
    check_counterfactuals,
    check_logits,
)
from benchmark.executors.worker import WorkerSettings, resolve_device, seed_everything
from benchmark.records import Job, JobOutcome, Outcome, Plan, RunSummary, bounded
from benchmark.registry import Registry
from benchmark.store import Store

__all__ = [
    "ContractError",
    "JobOutcome",
    "RunInterrupted",
    "RunSummary",
    "Runner",
    "check_attributions",
    "check_counterfactuals",
    "check_logits",
    "seed_everything",
]

SHOWN_ERROR_CHARS = 600
"""Longest error printed per failed job (the store keeps up to ``MAX_ERROR_CHARS``)."""


class RunInterrupted(BaseException):
    """Raised in the coordinator by SIGINT / SIGTERM; not an ``Exception``, so no job catches it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def environment_versions(registry: Registry) -> dict[str, str]:
    """Versions that can change numbers: core libraries and every loaded plugin distribution."""
    versions = {"python": platform.python_version()}
    for dist in ("dependable-bench", "torch", "torchvision", "numpy", "scikit-learn", "ray"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "not installed"
    for record in registry.plugins.values():
        if record.contributes and record.version:
            versions[record.distribution] = record.version
    return versions


def cpu_model() -> str:
    """The CPU's model name (``benchmark.provenance.cpu_model``)."""
    from benchmark import provenance

    return provenance.cpu_model()


def machine_info(settings: ExecutorSettings | None = None, executor: str = "") -> dict[str, Any]:
    """The coordinator's machine for ``runs.machine``: where and how, plus the numeric
    identity and ``fingerprint`` of ``benchmark.provenance.host`` (CPU model and instruction
    sets, torch / NumPy builds, GPUs)."""
    from benchmark import provenance

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cores": available_cores(),
        "node": platform.node(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
        **provenance.host(),
    }
    if settings is not None:
        info.update(
            executor=executor,
            workers=settings.jobs,
            torch_threads=settings.worker.threads,
            devices=list(settings.devices),
        )
    return info


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``RunInterrupted`` in the coordinator while a run is going."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Runner:
    """Runs a plan through an executor, with caching, isolation, resume and provenance."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        cache: ArtifactCache,
        console: Console | None = None,
        rerun: bool = False,
        show_progress: bool = True,
        executor: str = "process",
        jobs: int | None = 1,
        threads: int | None = None,
        device: str = "cpu",
        ray_address: str | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.cache = cache
        self.console = console or Console(stderr=True)
        self.rerun = rerun
        self.show_progress = show_progress
        self.executor_spec = registry.get("executor", executor, where="--executor")
        if jobs is None:  # one worker per core (one thread each), or one per GPU
            jobs = default_jobs(resolve_device(device)) if self.executor_spec.isolated else 1
        if jobs < 1:
            raise BenchInputError(f"-j {jobs}: the number of workers must be at least 1")
        self.settings = self._settings(jobs, threads, device, ray_address)

    def _settings(
        self, jobs: int, threads: int | None, device: str, ray_address: str | None
    ) -> ExecutorSettings:
        if threads is not None and threads < 1:
            raise BenchInputError(f"--threads {threads}: must be at least 1")
        resolved = resolve_device(device)
        if resolved == "cuda" and torch.cuda.device_count() > 1:
            devices = tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
        else:
            devices = (resolved,)
        entry_points, extra_modules = self.registry.recipe()
        worker = WorkerSettings(
            cache_dir=str(self.cache.root.resolve()),
            device=devices[0],
            threads=threads if threads is not None else default_threads(jobs),
            entry_points=entry_points,
            extra_modules=extra_modules,
        )
        return ExecutorSettings(worker, jobs=jobs, devices=devices, ray_address=ray_address)

    # -- the run ------------------------------------------------------------------------------

    def run(self, plan: Plan) -> RunSummary:
        suite = plan.suite
        started = time.perf_counter()
        for run_id, status in self.store.mark_abandoned_runs():
            self.console.print(
                f"[yellow]note:[/] run {run_id} on this store never finished; marked {status}",
                highlight=False,
            )
        executor = self.executor_spec.factory(self.settings, self.registry)
        description = executor.describe()
        run_id = self.store.start_run(
            suite.name,
            suite.model.version,
            suite.source,
            suite.config_hash(),
            environment_versions(self.registry),
            machine_info(self.settings, description),
        )
        summary = RunSummary(run_id=run_id, total=len(plan.jobs), executor=description)
        self._notify("bench_run_started", suite_name=suite.name, plan=plan, run_id=run_id)
        done = set() if self.rerun else self.store.done_keys(j.key for j in plan.jobs)
        by_key = {job.key: job for job in plan.jobs}
        try:
            with _signals_interrupt(), self._progress() as progress:
                task = progress.add_task("", total=len(plan.jobs))
                for job in plan.jobs:
                    if job.key in done:
                        summary.cached += 1
                        self._notify(
                            "bench_job_finished", job=job, outcome=Outcome(job.key, "cached")
                        )
                        progress.advance(task)
                todo = [j for j in plan.jobs if j.key not in done]
                progress.update(task, description=f"{description}")
                # model-set jobs load the models the per-model jobs train: those run first
                for phase in (
                    [j for j in todo if not j.members],
                    [j for j in todo if j.members],
                ):
                    groups = Plan(suite, phase).groups(self.settings.jobs)
                    for outcome in executor.run(groups) if phase else ():
                        job = by_key[outcome.job_key]
                        self.store.record(run_id, job, outcome)
                        self._count(summary, job, outcome)
                        self._report(progress, job, outcome)
                        self._notify("bench_job_finished", job=job, outcome=outcome)
                        progress.advance(task)
        except RunInterrupted as interrupt:
            summary.interrupted = str(interrupt)
        finally:
            with _ignore_signals():
                executor.close()
        summary.duration_s = time.perf_counter() - started
        self.store.finish_run(
            run_id,
            summary.total,
            summary.ran,
            summary.cached,
            summary.failed,
            status="interrupted" if summary.interrupted else None,
        )
        if not summary.interrupted:
            self._notify("bench_run_finished", suite_name=suite.name, summary=summary)
        return summary

    @staticmethod
    def _count(summary: RunSummary, job: Job, outcome: Outcome) -> None:
        summary.ran += 1
        summary.models_trained += outcome.models_trained
        summary.model_cache_hits += outcome.model_cache_hits
        if outcome.status == "failed":
            summary.failed += 1
            summary.failures.append((job.describe(), outcome.error))

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

    def _report(self, progress: Progress, job: Job, outcome: Outcome) -> None:
        where = f"{outcome.device}, {outcome.threads} thr"
        if outcome.status == "ok":
            shown = ", ".join(f"{k}={v:.4f}" for k, v in list(outcome.metrics.items())[:3])
            progress.console.print(
                f"[green]ok[/] {escape(job.describe())} ({outcome.duration_s:.1f} s, {where},"
                f" model {outcome.model_cache}) {escape(shown)}",
                highlight=False,
            )
        else:
            error = escape(bounded(outcome.error, SHOWN_ERROR_CHARS))
            progress.console.print(
                f"[red]FAILED[/] {escape(job.describe())}: {error}", highlight=False
            )
        for note in outcome.notes:
            progress.console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook; a reporter that raises is reported, never fatal."""
        for impl in getattr(self.registry.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:
                self.console.print(
                    f"[yellow]warning:[/] plugin '{impl.plugin_name}' "
                    f"{hook_name} raised {type(exc).__name__}: {escape(bounded(str(exc), 300))}",
                    highlight=False,
                )


@contextmanager
def _ignore_signals() -> Iterator[None]:
    """A second Ctrl-C while workers are being stopped must not leave them running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
