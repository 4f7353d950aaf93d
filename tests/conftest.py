"""Shared test helpers: a registry with the toy plugin, fake distributions, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmark.registry import Registry
from benchmark.testing.pytest_plugin import run_bench
from tests import toy_plugin

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def toy_registry() -> Registry:
    """Real entry points plus the toy plugin registered in-process for this test only."""
    return Registry.load(extra_plugins=[("toy", toy_plugin)])


def write_distribution(
    root: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """A fake installed distribution on ``root``: a dist-info with entry points, plus modules.

    This is what pip leaves behind, so ``importlib.metadata`` finds it exactly like an
    installed third-party plugin once ``root`` is on ``sys.path`` / ``PYTHONPATH``.
    """
    root.mkdir(parents=True, exist_ok=True)
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = ["[bench]", *(f"{ep} = {target}" for ep, target in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        path = root / f"{module.replace('.', '/')}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def processes_with_env(name, value):
    """PIDs of live processes whose environment has ``name=value`` (workers inherit it)."""
    needle = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours
            continue
    return found


def bench(
    *args: str,
    cwd: Path,
    extra_path: list[Path] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``bench`` CLI in a subprocess (fresh interpreter, real entry points)."""
    full_env = {**os.environ, "CI": "true", "COLUMNS": "200", **(env or {})}
    paths = [str(p) for p in (extra_path or [])] + [str(REPO)]
    if full_env.get("PYTHONPATH"):
        paths.append(full_env["PYTHONPATH"])
    full_env["PYTHONPATH"] = os.pathsep.join(paths)
    full_env.setdefault("BENCH_HOME", str(cwd / ".bench"))
    return run_bench(list(args), cwd, full_env, timeout)


def plugins_json(cwd: Path, site: Path, env: dict[str, str] | None = None) -> dict:
    """``bench plugins --json`` with the distributions installed under ``site``."""
    import json

    result = bench("plugins", "--json", cwd=cwd, extra_path=[site], env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_pytest(tests: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A separate pytest session over a plugin distribution's own tests, as its author runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            str(tests),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        stdin=subprocess.DEVNULL,
    )


def pip_install(target: Path, *sources: Path) -> None:
    """A real ``pip install`` of local distributions into ``target`` (not editable, no
    dependencies): real dist-info and entry points, the test environment left untouched."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip, "--target", str(target), *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr


def run_plan(registry, tmp_path, plan, executor="serial", **kwargs):
    """Run ``plan`` through the real Runner into a store and cache under ``tmp_path``: one
    worker for ``serial``, two otherwise, one torch thread each unless told."""
    from rich.console import Console

    from benchmark.cache import ArtifactCache
    from benchmark.runner import Runner
    from benchmark.store import Store

    store = Store(tmp_path / "results.sqlite")
    kwargs.setdefault("jobs", 1 if executor == "serial" else 2)
    kwargs.setdefault("threads", 1)
    runner = Runner(
        registry,
        store,
        ArtifactCache(tmp_path / "cache"),
        console=Console(quiet=True),
        show_progress=False,
        executor=executor,
        **kwargs,
    )
    return runner.run(plan), store


EXECUTORS = ("serial", "process", "ray")
"""Every built-in executor: the runner's contract tests run under each."""


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting Ray costs seconds), two CPUs like
    this machine; its workers find the tests' plugin modules through PYTHONPATH."""
    ray = pytest.importorskip("ray", reason="Ray is installed by the test extra")
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
    )
    yield ray
    ray.shutdown()
