"""Where jobs run: the worker that runs them, and the executors that place workers.

``worker`` runs job records (any process); ``serial``, ``process`` and ``ray`` place workers;
``supervised`` is the time-limit and crash-recovery loop the last two share; third parties add
executors through ``bench_register_executors``.
"""

from benchmark.executors.base import Executor, ExecutorSettings, available_cores, default_threads
from benchmark.executors.worker import Worker, WorkerSettings

__all__ = [
    "Executor",
    "ExecutorSettings",
    "Worker",
    "WorkerSettings",
    "available_cores",
    "default_threads",
]
