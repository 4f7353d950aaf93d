"""The results store: stores of the first format are upgraded in place, killed runs are marked,
and the coordinator's writes keep good results."""

import sqlite3

import pytest

from benchmark.errors import BenchInputError
from benchmark.kinds import COMPONENT_KINDS as KINDS
from benchmark.records import ComponentRecord, Job, Outcome
from benchmark.store import Store

_COLUMNS = ",\n".join(f"{k} TEXT, {k}_name TEXT, {k}_version TEXT, {k}_params TEXT" for k in KINDS)
FIRST_FORMAT = f"""
CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, suite TEXT NOT NULL,
  suite_version TEXT, suite_source TEXT, config_hash TEXT NOT NULL, versions TEXT NOT NULL,
  machine TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
  status TEXT NOT NULL DEFAULT 'running',
  n_jobs INTEGER, n_ran INTEGER, n_cached INTEGER, n_failed INTEGER);
CREATE TABLE jobs (job_key TEXT PRIMARY KEY, run_id INTEGER REFERENCES runs(run_id),
  {_COLUMNS}, seed INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ok', 'failed')), error TEXT, duration_s REAL,
  model_cache TEXT, finished_at TEXT NOT NULL);
CREATE TABLE metrics (job_key TEXT NOT NULL REFERENCES jobs(job_key) ON DELETE CASCADE,
  metric TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (job_key, metric));
CREATE TABLE arrays (job_key TEXT NOT NULL REFERENCES jobs(job_key) ON DELETE CASCADE,
  name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (job_key, name));
CREATE VIEW results AS SELECT jobs.*, metrics.metric, metrics.value
  FROM jobs LEFT JOIN metrics USING (job_key);
INSERT INTO runs (suite, config_hash, versions, machine, started_at)
  VALUES ('old', 'h', '{{}}', '{{}}', '2026-01-01');
INSERT INTO jobs (job_key, run_id, seed, status, finished_at, evaluator)
  VALUES ('old-job', 1, 0, 'ok', '2026-01-01', 'classification');
INSERT INTO metrics VALUES ('old-job', 'accuracy', 0.5);
"""


def _job(seed=0):
    def rec(kind, name):
        return ComponentRecord(kind, name, "1", {}, name)

    return Job(
        rec("dataset", "d"), rec("model", "m"), rec("debiaser", "b"), rec("evaluator", "e"), seed
    )


def test_a_first_format_store_is_upgraded_and_keeps_its_results(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_FORMAT)
    store = Store(path)
    results = store.results()
    assert results.loc[0, "value"] == 0.5 and results.loc[0, "failed_attempts"] == 0
    assert {"direction", "device", "threads", "worker"} <= set(results.columns)
    assert store.mark_abandoned_runs() == [(1, "killed")]  # no pid recorded: it cannot be running
    run = store.start_run("s", "1", "src", "h", {}, {})
    job = _job()
    store.record(run, job, Outcome(job.key, "ok", {"m": 1.0}, {"m": "lower"}, device="cpu"))
    row = store.results(keys=[job.key]).iloc[0]
    assert (row["value"], row["direction"], row["device"]) == (1.0, "lower", "cpu")


def test_a_live_run_is_not_marked_but_a_dead_one_is(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run("s", "1", "src", "h", {}, {})
    assert store.mark_abandoned_runs() == []  # this very process: alive
    with store._conn:
        store._conn.execute("UPDATE runs SET pid=? WHERE run_id=?", (2**22 + 12345, run))
    assert store.mark_abandoned_runs() == [(run, "killed")]
    assert list(store.runs()["status"]) == ["killed"]


def test_a_failure_after_a_failure_replaces_it_but_never_a_good_result(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run("s", "1", "src", "h", {}, {})
    job = _job()
    assert store.record(run, job, Outcome(job.key, "failed", error="first")) == "written"
    assert store.record(run, job, Outcome(job.key, "failed", error="second")) == "written"
    assert store.jobs()["error"].tolist() == ["second"]
    assert store.record(run, job, Outcome(job.key, "ok", {"m": 2.0})) == "written"
    assert store.record(run, job, Outcome(job.key, "failed", error="third")) == "kept"
    jobs = store.jobs()
    assert jobs["status"].tolist() == ["ok"] and jobs["failed_attempts"].tolist() == [1]
    assert store.results()["value"].tolist() == [2.0]
    assert store.attempts()["error"].tolist() == ["first", "second", "third"]


@pytest.mark.parametrize("content", [b"garbage" * 50, b"SQLite format 3\x00" + b"\xff" * 300])
def test_an_unreadable_store_is_an_input_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    with pytest.raises(BenchInputError, match="not a readable results store") as error:
        Store(path)
    assert str(path) in str(error.value) and "--store" in str(error.value)
    assert path.read_bytes() == content
