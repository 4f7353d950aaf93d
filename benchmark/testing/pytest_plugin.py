"""The ``bench_run`` pytest fixture: a real tiny suite through the real CLI, results returned.

Installed with dependable-bench as a ``pytest11`` entry point, so a plugin's tests can use it
without a conftest (as pytest's own ``pytester`` or datasette's test client). It runs
``python -m benchmark run`` in a subprocess, in a fresh folder, with the plugins installed in the
environment: the road a user takes, entry points included. Nothing heavy is imported until the
fixture is used, so loading the plugin costs pytest nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class BenchResult:
    """What a ``bench run`` left behind."""

    returncode: int
    stdout: str
    stderr: str
    folder: Path
    """The run's working folder: ``leaderboards/``, ``.bench/results.sqlite``."""

    def results(self) -> Any:
        """Every stored (job, metric) row as a pandas DataFrame (the store's ``results`` view)."""
        from benchmark.store import Store

        store = Store(self.folder / ".bench" / "results.sqlite")
        try:
            return store.results()
        finally:
            store.close()

    def leaderboard(self, suite_name: str) -> Any:
        """The suite's published ``results.csv`` as a DataFrame."""
        import pandas as pd

        return pd.read_csv(self.folder / "leaderboards" / suite_name / "results.csv")


def run_bench(
    args: list[str], cwd: Path, env: Mapping[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``python -m benchmark ARGS`` in a fresh interpreter: real entry points, no stdin."""
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_suite(
    suite: str | Mapping[str, Any],
    folder: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> BenchResult:
    """``bench run`` a suite in ``folder``: a registered suite's name, or YAML text or a mapping
    (written to ``folder/suite.yaml`` first)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(suite, str) and "\n" not in suite and ":" not in suite:
        ref = suite
    else:
        text = suite if isinstance(suite, str) else yaml.safe_dump(dict(suite), sort_keys=False)
        (folder / "suite.yaml").write_text(text, encoding="utf-8")
        ref = "suite.yaml"
    full_env = {**os.environ, "CI": "true", "COLUMNS": "200", "BENCH_HOME": str(folder / ".bench")}
    full_env.update(env or {})
    done = run_bench(["run", "--suite", ref, "--no-progress", *args], folder, full_env, timeout)
    return BenchResult(done.returncode, done.stdout, done.stderr, folder)


@pytest.fixture
def bench_run(tmp_path: Path) -> Callable[..., BenchResult]:
    """``bench_run(suite, *cli_args) -> BenchResult`` in a fresh folder under ``tmp_path``."""
    counter = iter(range(1_000_000))

    def run(suite: str | Mapping[str, Any], *args: str, **kwargs: Any) -> BenchResult:
        return run_suite(suite, tmp_path / f"run{next(counter)}", *args, **kwargs)

    return run
