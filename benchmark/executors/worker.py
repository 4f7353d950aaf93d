"""Run jobs: resolve records, load data, train or load the model once per group, evaluate.

The same code runs in the coordinator's process (``serial``), in a spawned process
(``process``), in a Ray actor (``ray``) or anywhere a third-party executor sends a group: a
worker gets job *records*, resolves them against its own registry, and returns outcomes. It
never writes the results store; it writes only content-addressed artifacts through the
cache (checksummed, per-key locked), so several workers can share one cache directory.

Whatever a job raises, ``SystemExit`` and ``KeyboardInterrupt`` from plugin code included,
becomes a failed outcome; a broken contract (wrong shape, a NaN metric) too. Hangs and
crashes are the executor's business: only a separate process can survive them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import random
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmark.cache import ArtifactCache, tensor_fingerprint
from benchmark.errors import BenchInputError
from benchmark.executors.contracts import (
    ContractError,
    check_logits,
    check_metrics,
    defined_at,
)
from benchmark.executors.explaining import explain_function
from benchmark.executors.set_job import evaluate_set
from benchmark.modalities import model_inputs, takes_text
from benchmark.model_sets import carve_validation
from benchmark.records import ComponentRecord, Job, Outcome, bounded, digest, jsonable, training_key
from benchmark.registry import Registry
from benchmark.specs import Dataset, Evaluation, EvaluationContext, SetMember, Split
from benchmark.suite import Component


def seed_everything(seed: int) -> None:
    """One seed drives Python, NumPy and torch, so the same job gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def short_error(exc: BaseException) -> str:
    """The exception and the innermost frame that raised it (for a broken contract: the
    plugin's factory): enough to find the bug."""
    if isinstance(exc, ContractError):
        where = f" (factory at {exc.where})" if exc.where else ""
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return bounded(f"{type(exc).__name__}: {exc}{where}")


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is checked."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchInputError(f"--device {name}: no CUDA device is visible to torch here")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise BenchInputError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return name
    if name != "cpu":
        raise BenchInputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    return name


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts, lists and tuples) moved to ``device``; the rest as is."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_device(v, device) for v in value)
    return value


def _split_on(split: Split, device: torch.device) -> Split:
    return Split(
        x=split.x.to(device),
        y=split.y.to(device),
        groups=None if split.groups is None else split.groups.to(device),
        extras=to_device(dict(split.extras), device),
    )


PER_IMAGE_KIND = "per_image"
"""Artifact kind of a job's per-image arrays (``Evaluation.per_image``), keyed by job key."""
PER_IMAGE_SPREAD = "per_image_spread"
"""Name of the stored array ``{score: {"mean", "std", "n"}}`` summing up a job's per-image
scores: the spread over images that ``benchmark.independence`` compares with the spread over
seeds."""


def per_image_tensors(per_image: dict[str, Any], evaluator: Component) -> dict[str, torch.Tensor]:
    """Each per-image array as a CPU tensor (what the cache reads back with ``weights_only``),
    checked: numeric, at least one axis, the same number of images (first axis) in all."""
    who = f"evaluator '{evaluator.label}'"
    where = defined_at(evaluator.spec.factory)
    out: dict[str, torch.Tensor] = {}
    for name, value in per_image.items():
        try:
            if isinstance(value, torch.Tensor):
                tensor = value.detach().cpu().clone()
            else:
                tensor = torch.from_numpy(np.array(value))
        except (TypeError, ValueError) as exc:
            raise ContractError(
                f"{who}: per_image[{name!r}] is not a numeric array ({exc})", where
            ) from None
        if tensor.ndim == 0:
            raise ContractError(
                f"{who}: per_image[{name!r}] is a scalar; per-image arrays have the image as "
                "their first axis (a score (N,), a curve (N, T)); put a scalar in metrics",
                where,
            )
        out[str(name)] = tensor
    sizes = {name: int(t.shape[0]) for name, t in out.items()}
    if len(set(sizes.values())) > 1:
        raise ContractError(
            f"{who}: per_image arrays disagree on the number of images: {sizes}", where
        )
    return out


def per_image_spread(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """``{name: {"mean", "std", "n"}}`` over the finite values of every one-axis per-image
    score (``std`` with ddof=1, as the leaderboard's spread over seeds; ``None`` below two)."""
    spread: dict[str, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if tensor.ndim != 1 or tensor.is_complex():
            continue
        values = tensor.double().numpy()
        values = values[np.isfinite(values)]
        n = int(values.size)
        spread[name] = {
            "mean": float(values.mean()) if n else None,
            "std": float(values.std(ddof=1)) if n > 1 else None,
            "n": n,
        }
    return spread


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs besides the jobs: everything here is plain data, so it travels."""

    cache_dir: str
    device: str = "cpu"
    threads: int = 0
    """torch intra-op threads; 0 leaves torch's default."""
    entry_points: bool = True
    extra_modules: tuple[tuple[str, str], ...] = ()
    """In-process plugin modules of the coordinator's registry, re-imported by name."""
    env: dict[str, str] = field(default_factory=dict)


class Worker:
    """Holds a registry, loaded datasets and the last trained model between jobs of a group."""

    def __init__(self, settings: WorkerSettings, registry: Registry | None = None) -> None:
        self.settings = settings
        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        # torch imports its compiler stack (seconds) on the first optimiser step; pay it while
        # the worker starts, not on the clock of its first job's time limit
        importlib.import_module("torch._dynamo")
        self.registry = registry or Registry.rebuild(settings.entry_points, settings.extra_modules)
        self.cache = ArtifactCache(settings.cache_dir)
        self.device = torch.device(settings.device)
        self.name = f"{platform.node()}:{os.getpid()}"
        self._datasets: dict[str, Dataset] = {}
        self._model_memo: tuple[str, torch.nn.Module] | None = None
        self._set_memo: tuple[str, list[Any]] | None = None
        """A model-set group's loaded members (``benchmark.executors.set_job``)."""
        self._outcome = Outcome("", "ok")

    def run_group(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Each job's outcome as it finishes; jobs of a group share one trained model."""
        for job in jobs:
            yield self.run_job(job)

    def run_job(self, job: Job) -> Outcome:
        started = time.perf_counter()
        outcome = self._outcome = Outcome(
            job.key,
            "ok",
            device=str(self.device),
            threads=torch.get_num_threads(),
            worker=self.name,
        )
        try:
            if job.members:
                comps = {
                    c.kind: self._resolve(c)
                    for c in job.components()
                    if c.kind not in ("model", "debiaser")
                }
                dataset = self._dataset(comps["dataset"])
                evaluation = evaluate_set(self, job, comps, dataset)
                outcome.model_cache = "set"
            else:
                comps = {c.kind: self._resolve(c) for c in job.components()}
                dataset = self._dataset(comps["dataset"])
                model, outcome.model_cache = self._trained_model(job, comps, dataset)
                evaluation = self._evaluate(job, comps, dataset, model)
            outcome.metrics = {k: float(v) for k, v in evaluation.metrics.items()}
            spec = comps["evaluator"].spec
            check_metrics(outcome.metrics, comps["evaluator"].label, spec)
            outcome.directions = {m: spec.directions[m] for m in outcome.metrics}
            outcome.arrays = jsonable(evaluation.arrays)
            if evaluation.per_image:
                outcome.arrays[PER_IMAGE_SPREAD] = self._keep_per_image(
                    job, evaluation.per_image, comps["evaluator"]
                )
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # the user's Ctrl-C reaches a serial run as RunInterrupted, which is not caught here
            outcome.status, outcome.error = "failed", short_error(exc)
            outcome.metrics, outcome.directions, outcome.arrays = {}, {}, {}
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                outcome.error = f"plugin code raised {type(exc).__name__}({exc}); " + outcome.error
        outcome.duration_s = time.perf_counter() - started
        return outcome

    # -- resolving records --------------------------------------------------------------------

    def _resolve(self, record: ComponentRecord) -> Component:
        try:
            spec = self.registry.get(record.kind, record.name)
        except BenchInputError as exc:
            raise ContractError(
                f"this worker cannot run {record.kind} '{record.name}': {exc.message}; install "
                f"{record.distribution or 'its plugin'} where the workers run"
            ) from None
        if spec.version != record.version:
            raise ContractError(
                f"version mismatch for {record.kind} '{record.name}': the coordinator planned "
                f"version {record.version!r}, this worker has {spec.version!r} "
                f"({spec.distribution or spec.plugin}); install the same version everywhere"
            )
        return Component(spec, dict(record.params), record.label, validation=record.validation)

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
            if component.validation:
                try:
                    data = carve_validation(
                        data, component.validation, f"dataset '{component.label}'"
                    )
                except ValueError as exc:
                    raise BenchInputError(str(exc)) from None
            if self.device.type != "cpu":
                data = dataclasses.replace(
                    data,
                    train=_split_on(data.train, self.device),
                    test=_split_on(data.test, self.device),
                    validation=None
                    if data.validation is None
                    else _split_on(data.validation, self.device),
                )
            self._datasets[key] = data
        return self._datasets[key]

    # -- training -----------------------------------------------------------------------------

    def _trained_model(
        self,
        job: Job,
        comps: dict[str, Component],
        dataset: Dataset,
        data: Split | None = None,
        seed: int | None = None,
    ) -> tuple[torch.nn.Module, str]:
        """The job's model trained by its debiaser: from memory, from the cache, or trained."""
        seed = job.seed if seed is None else seed
        fingerprint = ""
        if data is not None:  # a caption is training data too (benchmark.modalities)
            text = model_inputs(comps["model"].spec, data)
            fingerprint = tensor_fingerprint(data.x, data.y, data.groups, *text)
        key = training_key(job.dataset, job.model, job.debiaser, seed, fingerprint)
        if self._model_memo is not None and self._model_memo[0] == key:
            return self._model_memo[1], "hit"
        seed_everything(seed)
        model = self._build_model(comps, dataset).to(self.device)
        debiaser = comps["debiaser"]
        trained: list[torch.nn.Module] = []

        def train() -> dict[str, torch.Tensor]:
            result = debiaser.spec.factory(
                model, data if data is not None else dataset.train, seed=seed, **debiaser.params
            )
            if not isinstance(result, torch.nn.Module):
                raise ContractError(
                    f"debiaser '{debiaser.label}' returned "
                    f"{type(result).__name__}, not a torch.nn.Module"
                )
            trained.append(result)
            return result.state_dict()

        meta = {
            "dataset": job.dataset.identity(),
            "model": job.model.identity(),
            "debiaser": job.debiaser.identity(),
            "seed": seed,
            "data": fingerprint,
        }
        state, status = self.cache.load_or_build("models", key, train, meta=meta)
        if trained:
            model = trained[0]
            self._outcome.models_trained += 1
            if status == "rebuilt":
                self._outcome.notes.append(str(self.cache.last_damage))
        else:
            model.load_state_dict(state)
            self._outcome.model_cache_hits += 1
        model.eval()
        check_logits(model, dataset, job.model.label, comps["model"].spec)
        if data is None:
            self._model_memo = (key, model)
        return model, status

    def _build_model(self, comps: dict[str, Component], dataset: Dataset) -> torch.nn.Module:
        model_comp, debiaser = comps["model"], comps["debiaser"]
        runtime = {}
        if takes_text(model_comp.spec):
            runtime["vocabulary_size"] = len(dataset.vocabulary)
        model = model_comp.spec.factory(
            dataset.num_classes, dataset.input_shape, **runtime, **model_comp.params
        )
        if not isinstance(model, torch.nn.Module):
            raise ContractError(
                f"model '{model_comp.label}' returned {type(model).__name__}, not a torch.nn.Module"
            )
        prepare = debiaser.spec.prepare
        if prepare is not None:
            model = prepare(model, dataset.num_classes, **debiaser.params)
        return model

    # -- evaluation ---------------------------------------------------------------------------

    def context(self, job: Job) -> EvaluationContext:
        """The ``EvaluationContext`` the job's evaluator would receive, its model trained (or
        loaded from the cache): what ``benchmark.testing.make_context`` hands a plugin's tests."""
        comps = {c.kind: self._resolve(c) for c in job.components() if c.kind != "evaluator"}
        dataset = self._dataset(comps["dataset"])
        model, _ = self._trained_model(job, comps, dataset)
        return self._context(job, comps, dataset, model)

    def _context(
        self, job: Job, comps: dict[str, Component], dataset: Dataset, model: torch.nn.Module
    ) -> EvaluationContext:
        def retrain(split: Split, *, seed: int | None = None) -> torch.nn.Module:
            return self._trained_model(job, comps, dataset, data=split, seed=seed)[0]

        explainer = comps.get("explainer")
        return EvaluationContext(
            dataset=dataset,
            model=model,
            model_spec=comps["model"].spec,
            seed=job.seed,
            train=retrain,
            explain=self._explainer(comps, dataset) if explainer is not None else None,
            explainer_spec=explainer.spec if explainer else None,
            cache_dir=str(self.cache.root),
            device=self.device,
        )

    def _evaluate(
        self,
        job: Job,
        comps: dict[str, Component],
        dataset: Dataset,
        model: torch.nn.Module,
        members: tuple[SetMember, ...] = (),
    ) -> Evaluation:
        context = self._context(job, comps, dataset, model)
        if members:
            context = dataclasses.replace(context, members=members)
        evaluator = comps["evaluator"]
        seed_everything(job.seed)
        evaluation = evaluator.spec.factory(context, **evaluator.params)
        if not isinstance(evaluation, Evaluation):
            raise ContractError(
                f"evaluator '{evaluator.label}' returned "
                f"{type(evaluation).__name__}, not benchmark.specs.Evaluation"
            )
        try:
            evaluation.check()
        except ValueError as exc:
            raise ContractError(f"evaluator '{evaluator.label}': {exc}") from None
        return evaluation

    def _keep_per_image(
        self, job: Job, per_image: dict[str, Any], evaluator: Component
    ) -> dict[str, dict[str, Any]]:
        """Save an evaluation's per-image arrays in the artifact cache (kind ``per_image``,
        keyed by the job's key: curves of every image are too large for the results store)
        and return what the store keeps of them, each per-image score's spread."""
        tensors = per_image_tensors(per_image, evaluator)
        self.cache.save(PER_IMAGE_KIND, job.key, tensors, meta={"job": job.record()})
        return per_image_spread(tensors)

    def _explainer(
        self, comps: dict[str, Component], dataset: Dataset | None = None
    ) -> Callable[..., Any]:
        """The job's explainer, contract-checked and cached (``benchmark.executors.explaining``)."""
        train = dataset.train if dataset is not None else None
        return explain_function(self.cache, comps["explainer"], comps["model"], train)


def run_group(settings: WorkerSettings, records: list[dict[str, Any]]) -> list[Outcome]:
    """One group of job records in a fresh worker: the payload a batch scheduler (Slurm) runs."""
    worker = Worker(settings)
    return list(worker.run_group(Job.from_record(r) for r in records))
