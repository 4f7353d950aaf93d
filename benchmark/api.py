"""The researcher's API: a suite's results, and each job's trained model, attributions and
per-image arrays, from a script or a notebook.

Why. The leaderboard shows aggregates; a researcher wants the numbers behind them (every
seed's value, to test or to re-aggregate), the model a row was computed on (to probe it), the
maps its explainer drew, and the per-image scores and curves behind a mean. Before this module
the only way to the model was to rebuild the cache key by hand, which breaks silently as soon
as the key changes. Here every lookup goes through the code the runner uses:

* the suite is planned by ``benchmark.planner`` against the registry the CLI loads (the
  ``bench`` entry points), so a job and its key are the runner's own;
* results are read from the store (``benchmark.store``), one row per (job, metric);
* the trained model is the artifact ``Job.train_key`` addresses in the cache, loaded through
  ``Worker.context`` (the context an evaluator of that job receives: same architecture,
  same ``prepare`` of the debiaser, eval mode, the logits check);
* attributions go through that context's ``explain``: the runner's contract check and its
  attribution cache, so the maps a job's evaluator scored come back from the cache and new
  ones are computed once and cached (content-addressed, like every artifact);
* per-image arrays are the job's ``Evaluation.per_image``, which the worker keeps in the cache
  under kind ``per_image`` and the job's key (too large for the store, which keeps each
  per-image score's spread as the array ``per_image_spread``).

Nothing here trains or runs a job: a model or array that is not in the cache is a
``BenchInputError`` that names the ``bench run`` command that makes it. ``docs/api.md`` has
runnable examples (``tests/test_api.py`` runs them and holds the rest to the runner's
artifacts).
"""

from __future__ import annotations

import copy
import math
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.cache import ArtifactCache, ArtifactDamaged
from benchmark.errors import BenchInputError
from benchmark.executors.worker import (
    PER_IMAGE_KIND,
    PER_IMAGE_SPREAD,
    ContractError,
    Worker,
    WorkerSettings,
    resolve_device,
)
from benchmark.kinds import COMPONENT_KINDS as KINDS
from benchmark.records import Job, Plan
from benchmark.registry import Registry, suggest
from benchmark.selection import select as matches
from benchmark.specs import Dataset, EvaluationContext
from benchmark.store import Store
from benchmark.suite import Suite

__all__ = ["JobHandle", "Results", "open_suite"]

FRAME_COLUMNS = [
    *KINDS,
    "seed",
    "job_key",
    "status",
    "error",
    "metric",
    "column",
    "value",
    "direction",
]
"""Columns of ``Results.frame()``: one row per (job, metric); ``column`` is the metric's name in
the leaderboard (``evaluator.metric`` where two evaluators of the suite share the name)."""


def _home() -> Path:
    """Where ``bench`` keeps its store and cache by default (as the CLI: ``$BENCH_HOME``)."""
    return Path(os.environ.get("BENCH_HOME", ".bench"))


def open_suite(
    suite: str | Path | Suite,
    *,
    store: str | Path | Store | None = None,
    cache: str | Path | ArtifactCache | None = None,
    registry: Registry | None = None,
    device: str = "cpu",
) -> Results:
    """The results of ``suite`` (a built-in suite's name, a suite file, or a parsed ``Suite``)
    in ``store`` [default ``$BENCH_HOME/results.sqlite``, ``BENCH_HOME=.bench``], with the
    artifacts of ``cache`` [default ``$BENCH_HOME/cache``], the options ``bench run`` takes.

    ``registry`` defaults to the one the CLI loads (``Registry.load()``: the ``bench`` entry
    points); ``device`` is where models are loaded and explained (``cpu``, ``cuda``, ``auto``).
    """
    registry = registry or Registry.load()
    if not isinstance(suite, Suite):
        suite = suite_module.load(str(suite), registry)
    owns_store = not isinstance(store, Store)
    if not isinstance(store, Store):
        path = Path(store) if store is not None else _home() / "results.sqlite"
        if not path.is_file():
            raise BenchInputError(
                f"no results store here; run `bench run --suite {suite.ref or suite.name}` "
                "first, or pass store= the file it wrote",
                where=str(path),
            )
        store = Store(path)
    if not isinstance(cache, ArtifactCache):
        cache = ArtifactCache(Path(cache) if cache is not None else _home() / "cache")
    return Results(suite, planner.expand(suite), store, cache, registry, device, owns_store)


class Results:
    """A suite's planned jobs and what the store and the cache hold of them.

    Use ``open_suite`` to make one; close it (or use ``with``) to close the store it opened.
    """

    def __init__(
        self,
        suite: Suite,
        plan: Plan,
        store: Store,
        cache: ArtifactCache,
        registry: Registry,
        device: str = "cpu",
        owns_store: bool = False,
    ) -> None:
        self.suite = suite
        self.plan = plan
        self.store = store
        self.cache = cache
        self.registry = registry
        self.device = resolve_device(device)
        self._owns_store = owns_store
        self._worker: Worker | None = None
        self._columns = suite_module.declared_metrics(suite)

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __repr__(self) -> str:
        return f"<Results of suite '{self.suite.name}': {len(self.plan.jobs)} planned jobs>"

    # -- tables -------------------------------------------------------------------------------

    def column(self, evaluator: str, metric: str) -> str:
        """The leaderboard's name for ``metric`` of evaluator ``evaluator`` (a label):
        ``evaluator.metric`` where two evaluators of the suite declare the name."""
        shared = f"{evaluator}.{metric}"
        return shared if shared in self._columns else metric

    def frame(self, wide: bool = False) -> pd.DataFrame:
        """Every planned job's stored values, every seed on its own row.

        Long (default): one row per (job, metric) with ``FRAME_COLUMNS``; a failed or missing
        job has one row with no metric (``status`` says which). ``wide=True``: one row per
        job, the labels, ``seed``, ``job_key``, ``status``, ``error`` and one column per
        metric (named as in the leaderboard), empty where a job does not return it.
        """
        stored = self.store.results(job.key for job in self.plan.jobs)
        by_key = {key: rows for key, rows in stored.groupby("job_key", sort=False)}
        rows: list[dict[str, Any]] = []
        for job in self.plan.jobs:
            base = {**job.labels(), "seed": job.seed, "job_key": job.key}
            found = by_key.get(job.key)
            if found is None:
                rows.append(_empty_row(base, "missing", None))
                continue
            first = found.iloc[0]
            error = None if pd.isna(first["error"]) else str(first["error"])
            metrics = found[found["metric"].notna()]
            if first["status"] != "ok" or not len(metrics):
                rows.append(_empty_row(base, str(first["status"]), error))
                continue
            for metric, value, direction in zip(
                metrics["metric"], metrics["value"], metrics["direction"], strict=True
            ):
                rows.append(
                    {
                        **base,
                        "status": "ok",
                        "error": error,
                        "metric": metric,
                        "column": self.column(job.evaluator.label, metric),
                        "value": float(value),
                        "direction": direction if isinstance(direction, str) else None,
                    }
                )
        long = pd.DataFrame(rows, columns=FRAME_COLUMNS).astype({"seed": int, "value": float})
        if not wide:
            return long
        return _widen(long, list(self._columns))

    # -- jobs ---------------------------------------------------------------------------------

    def jobs(
        self,
        select: str = "",
        *,
        key: str | None = None,
        dataset: str | None = None,
        model: str | None = None,
        debiaser: str | None = None,
        explainer: str | None = None,
        evaluator: str | None = None,
        seed: int | None = None,
    ) -> list[JobHandle]:
        """The planned jobs that match every filter given, in plan order.

        ``select`` is a ``bench run -k`` expression over the job's description
        (``"deletion and not random"``); the labels are the suite's (what its leaderboard
        shows); ``key`` is a job key or a unique prefix of one. A label, seed or key the
        suite does not have is a ``BenchInputError`` (with the closest name).
        """
        labels = {
            "dataset": dataset,
            "model": model,
            "debiaser": debiaser,
            "explainer": explainer,
            "evaluator": evaluator,
        }
        for kind, label in labels.items():
            if label is None:
                continue
            known = [c.label for c in self.suite.components.get(kind, [])]
            if label not in known:
                raise BenchInputError(
                    f"suite '{self.suite.name}' has no {kind} labelled {label!r}"
                    + suggest(label, known)
                )
        if seed is not None and seed not in self.suite.seeds:
            raise BenchInputError(
                f"suite '{self.suite.name}' has no seed {seed!r} (its seeds: "
                f"{', '.join(map(str, self.suite.seeds))})"
            )
        chosen = self.plan.jobs if key is None else [self._by_key(key)]
        wanted = {kind: label for kind, label in labels.items() if label is not None}
        out = []
        for job in chosen:
            have = job.labels()
            if any(have[kind] != label for kind, label in wanted.items()):
                continue
            if seed is not None and job.seed != seed:
                continue
            if select and not matches(select, job.describe()):
                continue
            out.append(JobHandle(self, job))
        return out

    def job(self, select: str = "", **filters: Any) -> JobHandle:
        """The one planned job that matches (``jobs``'s filters); none or several is a
        ``BenchInputError`` that says which filters to add."""
        found = self.jobs(select, **filters)
        given = ", ".join(
            [f"select={select!r}"] * bool(select) + [f"{k}={v!r}" for k, v in filters.items()]
        )
        if not found:
            raise BenchInputError(
                f"no planned job of suite '{self.suite.name}' matches {given or 'nothing'}; "
                "`bench plan` lists its jobs (a skipped combination has none)"
            )
        if len(found) > 1:
            shown = "; ".join(job.describe() for job in found[:4])
            more = f" and {len(found) - 4} more" if len(found) > 4 else ""
            raise BenchInputError(
                f"{len(found)} jobs of suite '{self.suite.name}' match {given or 'no filter'}: "
                f"{shown}{more}; narrow it down (dataset=, model=, debiaser=, explainer=, "
                "evaluator=, seed=, key=) or use jobs()"
            )
        return found[0]

    def _by_key(self, key: str) -> Job:
        found = [job for job in self.plan.jobs if job.key.startswith(key)] if key else []
        if len(found) == 1:
            return found[0]
        if not found:
            raise BenchInputError(
                f"no planned job of suite '{self.suite.name}' has key {key!r}; "
                "`frame()` lists every planned job's key"
            )
        raise BenchInputError(
            f"key prefix {key!r} matches {len(found)} jobs of suite '{self.suite.name}'; "
            "give more of it"
        )

    def worker(self) -> Worker:
        """The worker that loads this suite's models and explains with them (the runner's
        code, on ``device``, against ``registry``); made on first use."""
        if self._worker is None:
            settings = WorkerSettings(cache_dir=str(self.cache.root), device=self.device)
            self._worker = Worker(settings, registry=self.registry)
        return self._worker

    def command(self, job: Job, rerun: bool) -> str:
        """The ``bench run`` that runs ``job`` (and whatever else its description matches)
        into this store and cache."""
        parts = ["bench", "run", "--suite", self.suite.ref or self.suite.name]
        parts += ["-k", job.describe(), "--store", str(self.store.path)]
        parts += ["--cache", str(self.cache.root)] + ["--rerun"] * rerun
        return shlex.join(parts)


class JobHandle:
    """One planned job: its stored result, and its artifacts in the cache."""

    def __init__(self, results: Results, job: Job) -> None:
        self.results = results
        self.job = job
        """The job record the runner ran (components, versions, params, seed)."""

    def __repr__(self) -> str:
        return f"<JobHandle {self.describe()} [{self.key[:8]}]>"

    @property
    def key(self) -> str:
        return self.job.key

    @property
    def seed(self) -> int:
        return self.job.seed

    @property
    def labels(self) -> dict[str, str | None]:
        """``kind -> label`` (``None`` for an absent explainer)."""
        return self.job.labels()

    def describe(self) -> str:
        """``dataset / model / debiaser / [explainer /] evaluator / seed N`` (what ``-k``
        matches)."""
        return self.job.describe()

    # -- stored results -----------------------------------------------------------------------

    def _stored(self) -> pd.DataFrame:
        return self.results.store.results([self.key])

    @property
    def status(self) -> str:
        """``ok``, ``failed`` or ``missing`` (never run into this store)."""
        stored = self._stored()
        return str(stored["status"].iloc[0]) if len(stored) else "missing"

    @property
    def error(self) -> str | None:
        stored = self._stored()
        if not len(stored) or pd.isna(stored["error"].iloc[0]):
            return None
        return str(stored["error"].iloc[0])

    @property
    def metrics(self) -> dict[str, float]:
        """The metric values the store holds for this job (empty unless ``status`` is ok)."""
        stored = self._stored()
        stored = stored[(stored["status"] == "ok") & stored["metric"].notna()]
        return {str(m): float(v) for m, v in zip(stored["metric"], stored["value"], strict=True)}

    @property
    def arrays(self) -> dict[str, Any]:
        """The stored arrays (curves, confusion matrices, ``per_image_spread``), from JSON."""
        return self.results.store.arrays(self.key)

    # -- artifacts ----------------------------------------------------------------------------

    def context(self) -> EvaluationContext:
        """The ``EvaluationContext`` this job's evaluator received: dataset, trained model
        (loaded from the cache, never trained here), ``explain``, seed, device."""
        cache = self.results.cache
        try:
            cache.load("models", self.job.train_key)
        except FileNotFoundError:
            raise BenchInputError(
                f"the trained model of job {self.describe()} is not in the cache "
                f"{cache.root} (the run that made it used another cache, or it was removed); "
                f"train it with: {self.results.command(self.job, self.status == 'ok')}"
            ) from None
        except ArtifactDamaged as exc:
            raise BenchInputError(
                f"{exc}; rebuild it with: {self.results.command(self.job, self.status == 'ok')}"
            ) from None
        try:
            return self.results.worker().context(self.job)
        except ContractError as exc:
            raise BenchInputError(f"job {self.describe()}: {exc}") from None

    def model(self) -> torch.nn.Module:
        """The job's trained model, as the runner cached it (``Job.train_key``), in eval mode;
        a copy, so changing it changes neither the cache nor later calls."""
        return copy.deepcopy(self.context().model)

    def dataset(self) -> Dataset:
        """The job's dataset as the worker loaded it (``dataset().test.x`` are the images the
        evaluators scored, the first ``n_images`` of them)."""
        return self.context().dataset

    def attributions(
        self, x: torch.Tensor, target: torch.Tensor | int | list[int] | None = None
    ) -> torch.Tensor:
        """The job's explainer's maps ``(N, 1 or C, H, W)`` of images ``x`` ``(N, C, H, W)``
        for classes ``target`` [default: the model's predictions], on the job's model.

        Through the runner's attribution cache: the maps an evaluator of the job computed
        (the same images and targets, e.g. the first ``n_images`` test images and their
        predictions) are returned from it, others are computed, checked and cached.
        """
        context = self.context()
        if context.explain is None:
            raise BenchInputError(f"job {self.describe()} has no explainer")
        x = torch.as_tensor(x)
        if x.ndim != 4 or not x.is_floating_point():
            raise BenchInputError(
                f"x must be float images (N, C, H, W), got {x.dtype} {tuple(x.shape)}"
            )
        x = x.to(device=context.device, dtype=torch.float32)
        if target is None:
            with torch.no_grad():
                target = context.model(x).argmax(1)
        elif isinstance(target, int):
            target = torch.full((len(x),), target, dtype=torch.long)
        target = torch.as_tensor(target, dtype=torch.long).to(context.device)
        if target.shape != (len(x),):
            raise BenchInputError(
                f"target must be one class per image, shape ({len(x)},), got {tuple(target.shape)}"
            )
        return context.explain(context.model, x, target).detach().cpu()

    def per_image(self) -> dict[str, np.ndarray]:
        """The job's per-image arrays (``Evaluation.per_image``): per-image scores ``(N,)``
        and curves ``(N, T)``, row ``i`` being the ``i``-th image the evaluator scored."""
        cache = self.results.cache
        try:
            stored = cache.load(PER_IMAGE_KIND, self.key)
        except FileNotFoundError:
            status = self.status
            if status != "ok":
                raise BenchInputError(
                    f"job {self.describe()} has no result in the store ({status}); run it "
                    f"with: {self.results.command(self.job, False)}"
                ) from None
            if PER_IMAGE_SPREAD not in self.arrays:
                raise BenchInputError(
                    f"job {self.describe()} stored no per-image arrays: evaluator "
                    f"'{self.job.evaluator.label}' returns none, or the job ran before they "
                    f"were kept (then: {self.results.command(self.job, True)})"
                ) from None
            raise BenchInputError(
                f"the per-image arrays of job {self.describe()} are not in the cache "
                f"{cache.root}; make them again with: {self.results.command(self.job, True)}"
            ) from None
        except ArtifactDamaged as exc:
            raise BenchInputError(
                f"{exc}; make them again with: {self.results.command(self.job, True)}"
            ) from None
        return {name: tensor.numpy() for name, tensor in stored.items()}


def _empty_row(base: dict[str, Any], status: str, error: str | None) -> dict[str, Any]:
    return {
        **base,
        "status": status,
        "error": error,
        "metric": None,
        "column": None,
        "value": math.nan,
        "direction": None,
    }


def _widen(long: pd.DataFrame, declared: list[str]) -> pd.DataFrame:
    """One row per job from ``Results.frame()``'s long rows; metric columns in the suite's
    declared order, then any other stored ones."""
    ids = [*KINDS, "seed", "job_key", "status", "error"]
    jobs = long.drop_duplicates("job_key")[ids].set_index("job_key", drop=False)
    scored = long[long["column"].notna()]
    values = scored.pivot(index="job_key", columns="column", values="value")
    order = [c for c in declared if c in values.columns]
    order += sorted(set(values.columns) - set(order))
    wide = jobs.join(values[order]) if len(values.columns) else jobs
    wide.columns.name = None
    return wide.reset_index(drop=True)
