"""``ray``: jobs on Ray actors, on this machine or on a cluster (``--ray-address``).

Each slot is one Ray actor holding a ``Worker`` (registry, datasets, the group's trained
model); the coordinator sends it one job record at a time and watches it with ``ray.wait``.
A job past its limit gets its actor killed (``ray.kill``), and an actor that dies (segfault,
``os._exit``, the OOM killer) surfaces as ``RayActorError``: both become failed rows and a
fresh actor takes the rest of the group, exactly as with the ``process`` executor.

Only records and the cache directory travel; trained models stay in the artifact cache, which
on a cluster must be a directory every node sees (NFS or similar). Actors ask Ray for
``threads`` CPUs each (and one GPU when the device is CUDA), so Ray never packs more workers
on a node than it has cores; ``torch.set_num_threads`` is set to the same number, because
Ray's default of one OpenMP thread per worker would silently change the numbers.

Ray is an optional dependency: ``pip install 'dependable-bench[ray]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from benchmark.errors import BenchInputError
from benchmark.executors.base import ExecutorSettings
from benchmark.executors.supervised import Slot, SupervisedExecutor
from benchmark.executors.worker import Worker, WorkerSettings
from benchmark.records import Job, Outcome, bounded

try:
    import ray
except ImportError:  # pragma: no cover - exercised where ray is not installed
    ray = None


class _ActorWorker:
    """The actor's body: a ``Worker`` that lives as long as the actor."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.worker = Worker(settings)

    def ready(self) -> str:
        return self.worker.name

    def run(self, record: dict[str, Any]) -> Outcome:
        return self.worker.run_job(Job.from_record(record))


def _module_roots(extra_modules: Sequence[tuple[str, str]]) -> list[str]:
    """sys.path entries that hold the coordinator's in-process plugin modules."""
    roots = []
    for _, name in extra_modules:
        top = import_module(name.split(".")[0])
        file = getattr(top, "__file__", None)
        if file:
            path = Path(file).resolve().parent
            roots.append(str(path.parent if path.name == name.split(".")[0] else path))
    return roots


class RaySlot(Slot):
    """One actor, fed one job at a time."""

    def __init__(self, index: int, settings: WorkerSettings, actor_class: Any) -> None:
        super().__init__(index, settings)
        gpus = 1 if settings.device.startswith("cuda") else 0
        # Ray sets CUDA_VISIBLE_DEVICES per actor: inside it the one GPU is cuda:0
        device = "cuda" if gpus else settings.device
        self.actor = actor_class.options(
            num_cpus=max(1, settings.threads), num_gpus=gpus, max_restarts=0
        ).remote(dataclasses.replace(settings, device=device))
        self.queue: list[Job] = []
        self.ref: Any = None
        # a job's clock starts once the actor is up (imports, registry), not at submission
        self.ready_ref: Any = self.actor.ready.remote()
        self.events: list[tuple[str, Any]] = []
        self.dead_reason: str | None = None

    def submit(self, jobs: Sequence[Job]) -> None:
        self.queue = list(jobs)
        if self.ready_ref is None:
            self._next()

    def pending_ref(self) -> Any:
        """What the executor waits on: the actor's start-up, then its running job."""
        return self.ready_ref if self.ready_ref is not None else self.ref

    def _next(self) -> None:
        if self.queue:
            job = self.queue.pop(0)
            self.ref = self.actor.run.remote(job.record())
            self.events.append(("started", job.key))
        else:
            self.ref = None

    def poll(self) -> list[tuple[str, Any]]:
        if self.ready_ref is not None and self.dead_reason is None:
            ready, _ = ray.wait([self.ready_ref], timeout=0)
            if ready:
                try:
                    ray.get(self.ready_ref)
                    self.ready_ref = None
                    self._next()
                except ray.exceptions.RayError as exc:
                    self.dead_reason = _actor_death(exc)
        if self.ref is not None and self.dead_reason is None:
            ready, _ = ray.wait([self.ref], timeout=0)
            if ready:
                try:
                    self.events.append(("done", ray.get(self.ref)))
                    self._next()
                except ray.exceptions.RayActorError as exc:
                    self.dead_reason = _actor_death(exc)
                except ray.exceptions.RayError as exc:
                    self.dead_reason = bounded(f"Ray lost the task: {exc}", 600)
        events, self.events = self.events, []
        return events

    def death(self) -> str | None:
        return self.dead_reason

    def kill(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actor, no_restart=True)


def _actor_death(exc: BaseException) -> str:
    """Ray's long actor-death message, cut to what says why (exit code, signal, OOM)."""
    text = " ".join(str(exc).split())
    for needle in ("SIGSEGV", "SIGKILL", "SIGABRT", "out of memory", "OOM"):
        if needle in text:
            return f"the Ray actor died ({needle}): {bounded(text, 400)}"
    return f"the Ray actor died: {bounded(text, 400)}"


class RayExecutor(SupervisedExecutor):
    """Local Ray by default (as many CPUs as the workers need); a cluster with an address."""

    def __init__(self, settings: ExecutorSettings) -> None:
        super().__init__(settings)
        if ray is None:
            raise BenchInputError("--executor ray needs Ray: pip install 'dependable-bench[ray]'")
        started = time.perf_counter()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            self._init(settings)
        self.startup_s = time.perf_counter() - started
        self._actor_class = ray.remote(_ActorWorker)

    @staticmethod
    def _init(settings: ExecutorSettings) -> None:
        env = {"PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
        if settings.ray_address is None:
            paths = [os.getcwd(), *_module_roots(settings.worker.extra_modules)]
            if os.environ.get("PYTHONPATH"):
                paths.append(os.environ["PYTHONPATH"])
            env["PYTHONPATH"] = os.pathsep.join(paths)
            cpus = settings.jobs * max(1, settings.worker.threads)
            gpus = sum(1 for d in settings.devices if d.startswith("cuda"))
            ray.init(
                address="local",  # a new instance, never a cluster RAY_ADDRESS points at
                num_cpus=cpus,
                num_gpus=gpus or None,
                include_dashboard=False,
                log_to_driver=True,
                runtime_env={"env_vars": env},
            )
        else:
            try:
                ray.init(address=settings.ray_address, runtime_env={"env_vars": env})
            except ConnectionError as exc:
                raise BenchInputError(
                    f"--ray-address {settings.ray_address}: no Ray cluster there ({exc}); "
                    "start one with `ray start --head`"
                ) from None

    def new_slot(self, index: int) -> Slot:
        return RaySlot(index, self.settings.worker_settings(index), self._actor_class)

    def wait(self, slots: Sequence[Slot], timeout: float) -> None:
        refs = [r for s in slots if isinstance(s, RaySlot) and (r := s.pending_ref()) is not None]
        if any(isinstance(s, RaySlot) and s.events for s in slots):
            return
        if refs:
            ray.wait(refs, num_returns=1, timeout=timeout)
        else:
            time.sleep(min(timeout, 0.05))

    def close(self) -> None:
        super().close()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    def describe(self) -> str:
        where = self.settings.ray_address or "local"
        return f"{super().describe()}, Ray {ray.__version__} ({where})"
