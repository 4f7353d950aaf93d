"""Run one suite cold under several executors and compare numbers and wall time.

    .venv/bin/python tests/benchmarks/compare_executors.py --suite smoke

Each configuration runs ``bench run`` in a fresh ``BENCH_HOME`` (nothing cached), so the wall
time is a cold run's. Then every stored metric of every job is compared with the first
configuration's, value for value: the executors must give bit-identical numbers at the same
thread count. Also measured: Ray's start-up (``ray.init`` of a local instance), the start-up of
one worker (spawn + imports + plugin registry) and the round trip of a no-op call to a Ray
actor and through a worker pipe, i.e. the per-job overhead each executor adds.

Not a pytest test: a cold smoke run takes minutes, and wall times depend on the load of the
machine. The README publishes this script's output.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]

CONFIGS = {
    "serial --threads 1": ["--executor", "serial", "--threads", "1"],
    "process -j 2 --threads 1": ["-j", "2", "--threads", "1"],
    "ray -j 2 --threads 1": ["--executor", "ray", "-j", "2", "--threads", "1"],
    "process -j 1 (default: 2 threads)": [],
}


def cold_run(suite: str, args: list[str], home: Path) -> tuple[float, pd.DataFrame]:
    env = {**os.environ, "BENCH_HOME": str(home), "CI": "true"}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            "--suite",
            suite,
            "--no-progress",
            *args,
            "--out",
            str(home / "leaderboards"),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{args}: exit {result.returncode}\n{result.stderr[-3000:]}")
    with sqlite3.connect(home / "results.sqlite") as conn:
        values = pd.read_sql_query("SELECT job_key, metric, value FROM metrics", conn)
    return wall, values.set_index(["job_key", "metric"])["value"].sort_index()


def worker_overheads() -> dict[str, float]:
    """Start-up and per-call overheads, each measured in isolation."""
    import multiprocessing as mp

    import ray

    from benchmark.executors.worker import WorkerSettings

    out: dict[str, float] = {}
    settings = WorkerSettings(cache_dir=tempfile.mkdtemp(), threads=1)

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out["ray.init (local, 2 CPUs)"] = time.perf_counter() - started

    actor_class = ray.remote(_Echo)
    started = time.perf_counter()
    actor = actor_class.options(num_cpus=1).remote(settings)
    ray.get(actor.ping.remote())
    out["Ray actor start (imports + registry)"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(100):
        ray.get(actor.ping.remote())
    out["Ray actor round trip (per job)"] = (time.perf_counter() - started) / 100
    ray.shutdown()

    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    started = time.perf_counter()
    process = context.Process(target=_pipe_echo, args=(child, settings))
    process.start()
    parent.recv()
    out["process worker start (spawn + imports + registry)"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(100):
        parent.send("ping")
        parent.recv()
    out["process pipe round trip (per job)"] = (time.perf_counter() - started) / 100
    parent.send(None)
    process.join()
    return out


class _Echo:
    def __init__(self, settings):
        from benchmark.executors.worker import Worker

        self.worker = Worker(settings)

    def ping(self):
        return "pong"


def _pipe_echo(conn, settings):
    from benchmark.executors.worker import Worker

    Worker(settings)
    conn.send("ready")
    while conn.recv() is not None:
        conn.send("pong")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--only", nargs="*", default=None, help="config names to run")
    args = parser.parse_args()
    print(
        f"# {args.suite} cold, {platform.node()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}"
    )
    rows, reference = [], None
    for name, extra in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as home:
            wall, values = cold_run(args.suite, extra, Path(home))
        same = (
            "reference"
            if reference is None
            else (
                "bit-identical"
                if values.equals(reference)
                else f"DIFFERENT ({int((values != reference).sum())} of {len(values)} values)"
            )
        )
        reference = values if reference is None else reference
        rows.append((name, wall, len(values), same))
        print(f"| {name} | {wall:.1f} s | {len(values)} values | {same} |", flush=True)
    if rows and rows[0][0].startswith("serial"):
        base = rows[0][1]
        for name, wall, _, _ in rows[1:]:
            print(f"serial / {name}: {base / wall:.2f}x")
    for name, seconds in worker_overheads().items():
        print(f"| {name} | {seconds * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
