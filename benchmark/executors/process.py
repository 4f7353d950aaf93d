"""``process``: jobs in spawned worker processes on this machine (``bench run -j N``).

Each worker is a ``multiprocessing`` process of the *spawn* context (a fork of a process that
already holds torch's thread pools and, with CUDA, a GPU context is unsafe) talking to the
coordinator over a pipe. ``concurrent.futures.ProcessPoolExecutor`` is not used because it
can neither stop one running task (a time limit needs that) nor survive one dead worker (it
marks the whole pool broken); here a worker is killed or lost alone and replaced.

A worker ignores SIGINT: Ctrl-C belongs to the coordinator, which stops the workers itself. A
``KeyboardInterrupt`` inside a worker can therefore only come from plugin code, and fails
its job like any exception.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from benchmark.executors.supervised import Slot, SupervisedExecutor
from benchmark.executors.worker import Worker, WorkerSettings, short_error
from benchmark.records import Job, Outcome

_CONTEXT = mp.get_context("spawn")


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when the coordinator dies, even by ``kill -9``, so
    no orphan keeps computing a job nobody will store."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG
    if os.getppid() != parent:  # the coordinator died before prctl took effect
        os._exit(1)


def _serve(conn: Connection, settings: WorkerSettings, parent: int) -> None:
    """The worker process: build a Worker, then run the groups the coordinator sends."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker: Worker | None = Worker(settings)
        broken = ""
    except Exception as exc:  # a plugin that breaks the registry here fails every job, clearly
        worker, broken = None, f"the worker could not start: {short_error(exc)}"
    while True:
        try:
            records = conn.recv()
        except EOFError:
            return
        if records is None:
            return
        for record in records:
            job = Job.from_record(record)
            conn.send(("started", job.key))
            if worker is None:
                outcome = Outcome(job.key, "failed", error=broken, device=settings.device)
            else:
                outcome = worker.run_job(job)
            conn.send(("done", outcome))


def describe_exit(exitcode: int | None) -> str:
    """A dead process's exit code in words (negative codes are signals)."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {
            "SIGSEGV": " (a crash in native code)",
            "SIGKILL": " (the out-of-memory killer, or another process)",
            "SIGABRT": " (an abort in native code)",
        }.get(name, "")
        return f"killed by {name}{hint}"
    return f"exited with status {exitcode} (os._exit or a fatal error outside Python's reach)"


class ProcessSlot(Slot):
    """One spawned worker process and its end of the pipe."""

    def __init__(self, index: int, settings: WorkerSettings) -> None:
        super().__init__(index, settings)
        self.conn, child = _CONTEXT.Pipe(duplex=True)
        self.process = _CONTEXT.Process(
            target=_serve,
            args=(child, settings, os.getpid()),
            name=f"bench-worker-{index}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self._lost = False

    def submit(self, jobs: Sequence[Job]) -> None:
        try:
            self.conn.send([job.record() for job in jobs])
        except (BrokenPipeError, EOFError, OSError):
            self._lost = True

    def poll(self) -> list[tuple[str, Any]]:
        events = []
        try:
            while self.conn.poll():
                events.append(self.conn.recv())
        except (EOFError, OSError):
            self._lost = True
        return events

    def death(self) -> str | None:
        if self.process.is_alive() and not self._lost:
            return None
        self.process.join(timeout=5)
        return describe_exit(self.process.exitcode)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class ProcessExecutor(SupervisedExecutor):
    """``-j N`` spawned workers, each on its device and with its thread count."""

    def new_slot(self, index: int) -> Slot:
        return ProcessSlot(index, self.settings.worker_settings(index))

    def wait(self, slots: Sequence[Slot], timeout: float) -> None:
        handles: list[Any] = []
        for slot in slots:
            assert isinstance(slot, ProcessSlot)
            handles += [slot.conn, slot.process.sentinel]
        if handles:
            wait(handles, timeout=timeout)
