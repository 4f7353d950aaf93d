"""``serial``: every job in the coordinator's own process, one after another.

The executor of the published numbers before workers existed, and the easiest to debug (a
breakpoint in a plugin just works). It cannot enforce a time limit or survive a plugin that
segfaults or calls ``os._exit``: nothing in one process can. That is why it is not the
default; ``bench run --executor serial`` asks for it explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from benchmark.executors.base import Executor, ExecutorSettings
from benchmark.executors.worker import Worker
from benchmark.records import Job, Outcome
from benchmark.registry import Registry


class SerialExecutor(Executor):
    """In-process; reuses the coordinator's registry (in-process plugins included)."""

    def __init__(self, settings: ExecutorSettings, registry: Registry | None = None) -> None:
        super().__init__(settings)
        self.registry = registry
        self._threads = torch.get_num_threads()

    def run(self, groups: Sequence[Sequence[Job]]) -> Iterator[Outcome]:
        worker = Worker(self.settings.worker_settings(0), registry=self.registry)
        for group in groups:
            yield from worker.run_group(group)

    def close(self) -> None:
        torch.set_num_threads(self._threads)  # the worker set ours; give the process back
