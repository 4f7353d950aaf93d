"""The real ``bench`` CLI under faults: time limits, SIGINT / SIGTERM, a corrupt store, damaged
or swapped cached models, ``-k`` subsets, and workers whose plugin version differs."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.executors.worker import Worker, WorkerSettings
from benchmark.records import Job
from tests.conftest import REPO, bench, processes_with_env, write_distribution

TOY_SUITE = """\
name: toy-cli
datasets: [toy-bars]
models: [toy-linear]
debiasers: [toy-sgd]
evaluators: [{evaluators}]
seeds: [0, 1]
leaderboard: {{metric: accuracy}}
"""


@pytest.fixture
def toy_dist(tmp_path):
    """The toy plugin installed as a distribution (an entry point a worker process finds)."""
    return write_distribution(
        tmp_path / "site", "bench-toy", "1.0", {"toy": "tests.toy_plugin"}, modules={}
    )


def write_suite(tmp_path, evaluators):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_SUITE.format(evaluators=", ".join(evaluators)))
    return path


def run_cli(tmp_path, toy_dist, *args, timeout=600):
    quiet = ["--no-progress"] if args[0] == "run" else []
    return bench(*args, *quiet, cwd=tmp_path, extra_path=[toy_dist], timeout=timeout)


def stored_jobs(tmp_path):
    with sqlite3.connect(tmp_path / ".bench" / "results.sqlite") as conn:
        return pd.read_sql_query("SELECT * FROM jobs", conn)


def stored_runs(tmp_path):
    with sqlite3.connect(tmp_path / ".bench" / "results.sqlite") as conn:
        return pd.read_sql_query("SELECT * FROM runs", conn)


def test_job_timeout_from_the_command_line_fails_the_job_and_the_run_goes_on(tmp_path, toy_dist):
    suite = write_suite(tmp_path, ["toy-sleep", "toy-accuracy"])
    started = time.monotonic()
    result = run_cli(tmp_path, toy_dist, "run", "--suite", str(suite), "--job-timeout", "3")
    assert time.monotonic() - started < 300
    assert result.returncode == 1, result.stderr
    assert "timed out after 3 s" in result.stderr
    jobs = stored_jobs(tmp_path).set_index(["evaluator", "seed"])
    assert set(jobs.loc["toy-accuracy", "status"]) == {"ok"}
    assert set(jobs.loc["toy-sleep", "status"]) == {"failed"}
    board = (tmp_path / "leaderboards" / "toy-cli" / "README.md").read_text()
    assert "timed out after 3 s" in board


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_is_marked_says_so_and_exits_128_plus_the_signal(
    tmp_path, toy_dist, sig, code
):
    suite = write_suite(tmp_path, ["toy-accuracy", "toy-sleep"])
    env = {
        **os.environ,
        "CI": "true",
        "PYTHONPATH": os.pathsep.join([str(toy_dist), str(REPO)]),
        "BENCH_HOME": str(tmp_path / ".bench"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmark", "run", "--suite", str(suite), "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    db = tmp_path / ".bench" / "results.sqlite"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists():
            try:
                if len(stored_jobs(tmp_path)) >= 1:  # accuracy stored; the sleeper is running
                    break
            except Exception:  # tables not created yet
                pass
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert f"interrupted by {sig.name}" in stderr
    assert "run the same command to resume" in stderr
    assert list(stored_runs(tmp_path)["status"]) == ["interrupted"]
    time.sleep(1.0)
    assert processes_with_env("BENCH_HOME", str(tmp_path / ".bench")) == []  # no worker left


def test_a_corrupt_store_is_a_clear_error_with_exit_2(tmp_path, toy_dist):
    store = tmp_path / ".bench" / "results.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"this is not a database" * 100)
    suite = write_suite(tmp_path, ["toy-accuracy"])
    for command in (["run", "--suite", str(suite)], ["leaderboard", "--suite", str(suite)]):
        result = run_cli(tmp_path, toy_dist, *command)
        assert result.returncode == 2, result.stderr
        assert str(store) in result.stderr and "not a readable results store" in result.stderr
        assert "Traceback" not in result.stderr
    assert store.read_bytes().startswith(b"this is not a database")  # nothing overwritten


def _model_files(tmp_path):
    return sorted((tmp_path / ".bench" / "cache" / "models").glob("*.pt"))


def test_damaged_and_swapped_cached_models_are_detected_and_rebuilt(tmp_path, toy_dist):
    suite = write_suite(tmp_path, ["toy-accuracy"])
    first = run_cli(tmp_path, toy_dist, "run", "--suite", str(suite))
    assert first.returncode == 0, first.stderr
    good = (tmp_path / "leaderboards" / "toy-cli" / "results.csv").read_text()
    a, b = _model_files(tmp_path)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()

    a.write_bytes(a_bytes[: len(a_bytes) // 2])  # truncated
    result = run_cli(tmp_path, toy_dist, "run", "--suite", str(suite), "--rerun")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("is damaged") == 1 and "model rebuilt" in result.stderr
    assert "weights_only" not in result.stderr
    assert "1 trained, 1 cache hits" in result.stderr

    a.write_bytes(b_bytes)  # swapped on disk
    b.write_bytes(a_bytes)
    result = run_cli(tmp_path, toy_dist, "run", "--suite", str(suite), "--rerun")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("is damaged (key mismatch") == 2 and "2 trained" in result.stderr
    assert (tmp_path / "leaderboards" / "toy-cli" / "results.csv").read_text() == good


def test_k_runs_a_subset_into_the_same_store_and_the_leaderboard_shows_the_rest_missing(
    tmp_path, toy_dist
):
    suite = write_suite(tmp_path, ["toy-accuracy", "toy-curve"])
    plan = run_cli(tmp_path, toy_dist, "plan", "--suite", str(suite), "-k", "accuracy")
    assert "2 jobs, 2 deselected by -k" in plan.stdout
    result = run_cli(tmp_path, toy_dist, "run", "--suite", str(suite), "-k", "accuracy")
    assert result.returncode == 0, result.stderr
    assert set(stored_jobs(tmp_path)["evaluator"]) == {"toy-accuracy"}
    board = (tmp_path / "leaderboards" / "toy-cli" / "README.md").read_text()
    assert "*missing 2/2*" in board
    bad = run_cli(tmp_path, toy_dist, "plan", "--suite", str(suite), "-k", "accuracy and (")
    assert bad.returncode == 2 and "-k" in bad.stderr


def test_a_worker_with_another_plugin_version_fails_the_job_naming_the_component(
    toy_registry, tmp_path
):
    from benchmark import planner
    from benchmark import suite as suite_module

    text = TOY_SUITE.format(evaluators="toy-accuracy")
    job = planner.expand(suite_module.parse(text, "s.yaml", toy_registry)).jobs[0]
    record = job.record()
    record["evaluator"]["version"] = "2"
    del record["key"]
    worker = Worker(WorkerSettings(cache_dir=str(tmp_path)), registry=toy_registry)
    outcome = worker.run_job(Job.from_record(record))
    assert outcome.status == "failed"
    assert "version mismatch for evaluator 'toy-accuracy'" in outcome.error
    assert "'2'" in outcome.error and "'1'" in outcome.error


def test_bad_executor_options_are_input_errors(tmp_path, toy_dist):
    suite = write_suite(tmp_path, ["toy-accuracy"])
    for args, needle in [
        (["--executor", "slurm"], "unknown executor 'slurm'"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--ray-address", "auto"], "--ray-address is for --executor ray"),
    ]:
        result = run_cli(tmp_path, toy_dist, "run", "--suite", str(suite), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr
    assert not Path(tmp_path / ".bench" / "cache").exists()
