"""The supervision loop shared by executors whose workers live outside the coordinator.

Each *slot* is one worker (a spawned process, a Ray actor) that runs one group of jobs at a
time and reports when each job starts and ends. The loop gives free slots the next group,
and watches the running job of every slot: past its ``timeout_s`` the worker is killed and
the job becomes a failed row "timed out after N s"; a worker that dies (segfault,
``os._exit``, the OOM killer) turns its job into a failed row naming the signal or exit
status. Either way a fresh worker takes the rest of the group and the run goes on.

A job's clock starts when its worker says it started (training included), not when it was
queued, so a group's later jobs are not charged for the earlier ones.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from benchmark.executors.base import Executor, failed
from benchmark.executors.worker import WorkerSettings
from benchmark.records import Job, Outcome

POLL_S = 1.0
"""Longest wait between two looks at the slots when no job is near its time limit."""


class Slot(ABC):
    """One worker running one group at a time."""

    def __init__(self, index: int, settings: WorkerSettings) -> None:
        self.index = index
        self.settings = settings

    @abstractmethod
    def submit(self, jobs: Sequence[Job]) -> None:
        """Start running ``jobs`` in order."""

    @abstractmethod
    def poll(self) -> list[tuple[str, Outcome | str]]:
        """Events since the last call, without blocking: ``("started", key)``,
        ``("done", outcome)``."""

    @abstractmethod
    def death(self) -> str | None:
        """Why the worker is gone (``killed by signal SIGSEGV``), or ``None`` while it lives."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the worker now, whatever it is doing."""


@dataclass
class _Running:
    group: list[Job]
    position: int = 0
    started: float | None = None
    """When the job at ``position`` started, by the coordinator's clock."""

    @property
    def job(self) -> Job:
        return self.group[self.position]


class SupervisedExecutor(Executor):
    """Runs groups on ``settings.jobs`` slots with time limits and crash recovery."""

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.slots: list[Slot | None] = []

    @abstractmethod
    def new_slot(self, index: int) -> Slot:
        """A fresh worker for slot ``index``."""

    @abstractmethod
    def wait(self, slots: Sequence[Slot], timeout: float) -> None:
        """Block until one of ``slots`` may have an event, or ``timeout`` seconds pass."""

    def run(self, groups: Sequence[Sequence[Job]]) -> Iterator[Outcome]:
        pending: deque[list[Job]] = deque(list(g) for g in groups if g)
        width = min(self.settings.jobs, len(pending))
        while len(self.slots) < width:
            self.slots.append(None)
        running: dict[int, _Running] = {}
        while pending or running:
            for index in range(len(self.slots)):
                if index not in running and pending:
                    slot = self.slots[index]
                    if slot is None:  # started lazily, and again after a death
                        slot = self.slots[index] = self.new_slot(index)
                    group = pending.popleft()
                    slot.submit(group)
                    running[index] = _Running(group)
            busy = [s for i, s in enumerate(self.slots) if i in running and s is not None]
            self.wait(busy, self._wait_time(running))
            for index in list(running):
                yield from self._watch(index, running, pending)

    def _wait_time(self, running: dict[int, _Running]) -> float:
        now = time.monotonic()
        wait = POLL_S
        for state in running.values():
            if state.started is not None and state.job.timeout_s is not None:
                wait = min(wait, state.started + state.job.timeout_s - now)
        return max(0.0, wait)

    def _watch(
        self, index: int, running: dict[int, _Running], pending: deque[list[Job]]
    ) -> Iterator[Outcome]:
        slot, state = self.slots[index], running[index]
        assert slot is not None
        for event, payload in slot.poll():
            if event == "started":
                state.started = time.monotonic()
            elif event == "done":
                assert isinstance(payload, Outcome)
                yield payload
                state.position += 1
                state.started = None
                if state.position == len(state.group):
                    del running[index]
                    return
        reason = slot.death()
        job = state.job
        elapsed = 0.0 if state.started is None else time.monotonic() - state.started
        if reason is None and job.timeout_s is not None and elapsed > job.timeout_s:
            slot.kill()
            reason = f"timed out after {job.timeout_s:g} s (the worker was stopped)"
        if reason is None:
            return
        if not reason.startswith("timed out"):
            reason = f"the worker died during this job: {reason}"
        yield failed(job, reason, slot.settings, elapsed)
        rest = state.group[state.position + 1 :]
        if rest:
            pending.appendleft(rest)  # a fresh worker takes the rest of the group
        del running[index]
        slot.kill()
        self.slots[index] = None

    def close(self) -> None:
        for slot in self.slots:
            if slot is not None:
                slot.kill()
        self.slots = []
