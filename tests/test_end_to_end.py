"""End to end with real training on real data: the smoke suite, caching, and kill -9 resume."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import REPO, bench, processes_with_env

RESUME_SUITE = """\
name: resume
datasets:
  - {name: mnist, params: {train_limit: 800, test_limit: 200}}
models: [seed-cnn, mlp]
debiasers:
  - {name: none, params: {epochs: 3}}
evaluators: [classification]
seeds: [0, 1, 2, 3]
leaderboard: {metric: accuracy}
"""


def _count_jobs(db):
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "executor", [["--executor", "serial"], ["-j", "2"], ["--executor", "ray", "-j", "2"]]
)
def test_kill_9_halfway_then_rerun_completes_without_duplicates(tmp_path, executor):
    suite = tmp_path / "resume.yaml"
    suite.write_text(RESUME_SUITE)
    db = tmp_path / ".bench" / "results.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_HOME": str(tmp_path / ".bench")}
    command = ["run", "--suite", str(suite), "--no-progress", "--threads", "1", *executor]
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while _count_jobs(db) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = _count_jobs(db)
    assert 3 <= done_before < 8

    result = bench(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{8 - done_before} run, {done_before} cache hits" in result.stderr
    assert "never finished; marked killed" in result.stderr
    with sqlite3.connect(db) as conn:
        jobs = pd.read_sql_query("SELECT * FROM jobs", conn)
        results = pd.read_sql_query("SELECT * FROM results", conn)
        runs = pd.read_sql_query("SELECT * FROM runs", conn)
    assert len(jobs) == 8 and set(jobs["status"]) == {"ok"}
    assert len(results) == 8 * 5 and not results.duplicated(["job_key", "metric"]).any()
    assert list(runs["status"]) == ["killed", "finished"]  # marked when the next run started
    board = (tmp_path / "leaderboards" / "resume" / "README.md").read_text()
    ranked = board.split("\n## ", 1)[0]  # the ranked tables, before the spread and figures
    assert ranked.count("(n=4)") == 2 * 5
    assert "## Rashomon spread" in board  # four seeds per row: their spread is shown
    assert not re.search(r"\*missing \d|\*\*FAILED \d", board)
    # the killed coordinator's workers died with it; a killed local Ray leaves two agent
    # processes behind (raylet and workers die with their driver), stopped here
    leftovers = processes_with_env("BENCH_HOME", str(tmp_path / ".bench"))
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    if "ray" not in executor:
        assert leftovers == []


@pytest.mark.slow
def test_smoke_suite_real_accuracy_then_cached_rerun(tmp_path):
    # generous limit: 12 real trainings take ~80 s alone on 2 cores, far more on a busy machine
    first = bench("run", "--suite", "smoke", "--no-progress", cwd=tmp_path, timeout=2400)
    assert first.returncode == 0, first.stderr
    assert "12 run, 0 cache hits" in first.stderr and "12 trained" in first.stderr

    cells = pd.read_csv(tmp_path / "leaderboards" / "smoke" / "results.csv")
    cnn = cells.query("dataset == 'mnist' and model == 'seed-cnn' and metric == 'accuracy'")
    assert len(cnn) == 1 and cnn["n"].iloc[0] == 3
    assert cnn["mean"].iloc[0] >= 0.95
    assert (cells.query("metric == 'accuracy'")["mean"] > 0.9).all()

    # the cached rerun neither trains nor evaluates (no wall-clock check: it varies with load)
    second = bench("run", "--suite", "smoke", "--no-progress", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 run, 12 cache hits" in second.stderr and "0 trained" in second.stderr

    forced = bench("run", "--suite", "smoke", "--rerun", "--no-progress", cwd=tmp_path)
    assert "0 trained, 12 cache hits" in forced.stderr  # re-evaluated from cached weights
    again = pd.read_csv(tmp_path / "leaderboards" / "smoke" / "results.csv")
    pd.testing.assert_frame_equal(cells, again)  # identical numbers from cached models
