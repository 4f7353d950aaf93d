"""What an executor is: something that takes groups of job records and yields their outcomes.

The coordinator (``benchmark.runner``) plans, skips what the store holds, hands the rest to an
executor as groups (jobs that share one trained model, in plan order) and commits each outcome
as it arrives. An executor decides *where* the jobs run; it must guarantee three things:

* every job it is given comes back as exactly one ``Outcome`` (a job past its ``timeout_s``,
  or whose worker died, as a failed one that says so), in any order;
* workers get records and the cache directory, never large tensors, and write only the
  artifact cache;
* ``close()`` stops every worker it started, also when the coordinator is interrupted.

HELM dispatches one serialisable run spec through serial, multi-GPU and Slurm runners the same
way; DomainBed's ``command_launchers`` table is the same idea for shell commands.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from benchmark.executors.worker import WorkerSettings
from benchmark.records import Job, Outcome


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ExecutorSettings:
    """How to run: parallelism, threads, devices, and what each worker needs."""

    worker: WorkerSettings
    """Settings shared by every worker (cache, registry recipe, default device, threads)."""
    jobs: int = 1
    """Workers running at once (``-j``)."""
    devices: tuple[str, ...] = ("cpu",)
    """Devices to place workers on, round-robin: one worker per GPU when there are several."""
    ray_address: str | None = None
    """``None`` starts a local Ray; ``auto`` or ``ray://host:port`` joins a cluster."""

    def worker_settings(self, slot: int) -> WorkerSettings:
        """Settings of worker number ``slot`` (its device in the round-robin)."""
        return replace(self.worker, device=self.devices[slot % len(self.devices)])


def default_jobs(device: str) -> int:
    """Workers when ``-j`` is not given: one per core on the CPU (one torch thread each: on
    small models two processes beat one process with two threads), one per GPU on CUDA."""
    if device.startswith("cuda"):
        import torch

        return 1 if ":" in device else max(1, torch.cuda.device_count())
    return available_cores()


def default_threads(jobs: int) -> int:
    """Threads per worker when ``--threads`` is not given: the cores shared by the workers."""
    return max(1, available_cores() // max(1, jobs))


class Executor(ABC):
    """Runs groups of jobs somewhere and yields one outcome per job."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings

    @abstractmethod
    def run(self, groups: Sequence[Sequence[Job]]) -> Iterator[Outcome]:
        """Yield each job's outcome as soon as it is known."""

    def close(self) -> None:  # noqa: B027 - executors without workers have nothing to stop
        """Stop every worker; called once, also after an interrupt."""

    def describe(self) -> str:
        """One line for the run's provenance (``process -j 2, 1 thread each, cpu``)."""
        s = self.settings
        return (
            f"{type(self).__name__.removesuffix('Executor').lower()} -j {s.jobs}, "
            f"{s.worker.threads} thread(s) per worker, {', '.join(s.devices)}"
        )


def failed(job: Job, error: str, settings: WorkerSettings, duration_s: float = 0.0) -> Outcome:
    """The outcome of a job that never returned (time limit, dead worker)."""
    return Outcome(
        job.key,
        "failed",
        error=error,
        duration_s=duration_s,
        device=settings.device,
        threads=settings.threads,
    )
