"""The core's executors, registered through ``bench_register_executors`` like a third party's."""

from __future__ import annotations

from typing import Any

from benchmark.executors.base import ExecutorSettings
from benchmark.hookspecs import hookimpl
from benchmark.specs import ExecutorSpec


def make_serial(settings: ExecutorSettings, registry: Any = None) -> Any:
    from benchmark.executors.serial import SerialExecutor

    return SerialExecutor(settings, registry)


def make_process(settings: ExecutorSettings, registry: Any = None) -> Any:
    from benchmark.executors.process import ProcessExecutor

    return ProcessExecutor(settings)


def make_ray(settings: ExecutorSettings, registry: Any = None) -> Any:
    from benchmark.executors.ray import RayExecutor

    return RayExecutor(settings)


@hookimpl
def bench_register_executors(register):
    register(
        ExecutorSpec(
            "process",
            make_process,
            "spawned worker processes on this machine (-j N); time limits, crash isolation",
        )
    )
    register(
        ExecutorSpec(
            "serial",
            make_serial,
            "in the coordinator's process; no time limit, no crash isolation (debugging)",
            isolated=False,
        )
    )
    register(
        ExecutorSpec(
            "ray",
            make_ray,
            "Ray actors, local or on a cluster (--ray-address); needs dependable-bench[ray]",
        )
    )
