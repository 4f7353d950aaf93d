"""SQLite results store: run metadata and tidy per-job results, committed one job at a time.

Jobs are content-addressed (``Job.key``), so a job's row is written with ``INSERT OR REPLACE``
and its metrics are replaced in the same transaction: a run killed at any moment leaves every
finished job complete and no job half-written, and running the suite again adds only what is
missing, never a duplicate (DomainBed marks done jobs on disk for the same reason; we use
transactions instead of marker files).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.planner import Job
from benchmark.specs import KINDS

DEFAULT_PATH = Path(".bench") / "results.sqlite"

_COMPONENT_COLUMNS = ",\n".join(
    f"  {kind} TEXT, {kind}_name TEXT, {kind}_version TEXT, {kind}_params TEXT" for kind in KINDS
)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
  run_id INTEGER PRIMARY KEY AUTOINCREMENT,
  suite TEXT NOT NULL,
  suite_version TEXT,
  suite_source TEXT,
  config_hash TEXT NOT NULL,
  versions TEXT NOT NULL,
  machine TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL DEFAULT 'running',
  n_jobs INTEGER, n_ran INTEGER, n_cached INTEGER, n_failed INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
  job_key TEXT PRIMARY KEY,
  run_id INTEGER REFERENCES runs(run_id),
{_COMPONENT_COLUMNS},
  seed INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
  error TEXT,
  duration_s REAL,
  model_cache TEXT,
  finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
  job_key TEXT NOT NULL REFERENCES jobs(job_key) ON DELETE CASCADE,
  metric TEXT NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (job_key, metric)
);
CREATE TABLE IF NOT EXISTS arrays (
  job_key TEXT NOT NULL REFERENCES jobs(job_key) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (job_key, name)
);
CREATE VIEW IF NOT EXISTS results AS
  SELECT jobs.*, metrics.metric, metrics.value
  FROM jobs LEFT JOIN metrics USING (job_key);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    """Arrays from numpy / torch as nested lists so they can be stored as JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class Store:
    """Results of every job ever run, queried as pandas DataFrames."""

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._conn:
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------

    def start_run(
        self,
        suite: str,
        suite_version: str,
        source: str,
        config_hash: str,
        versions: dict[str, str],
        machine: dict[str, Any],
    ) -> int:
        with self._conn:
            cursor = self._conn.execute(
                "INSERT INTO runs (suite, suite_version, suite_source, config_hash, versions,"
                " machine, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    suite,
                    suite_version,
                    source,
                    config_hash,
                    json.dumps(versions, sort_keys=True),
                    json.dumps(machine, sort_keys=True),
                    _now(),
                ),
            )
        return int(cursor.lastrowid)

    def finish_run(
        self, run_id: int, n_jobs: int, n_ran: int, n_cached: int, n_failed: int
    ) -> None:
        with self._conn:
            self._conn.execute(
                "UPDATE runs SET finished_at=?, status=?, n_jobs=?, n_ran=?, n_cached=?,"
                " n_failed=? WHERE run_id=?",
                (
                    _now(),
                    "failed" if n_failed else "finished",
                    n_jobs,
                    n_ran,
                    n_cached,
                    n_failed,
                    run_id,
                ),
            )

    # -- jobs ---------------------------------------------------------------------------------

    def record(
        self,
        run_id: int,
        job: Job,
        status: str,
        metrics: dict[str, float] | None = None,
        arrays: dict[str, Any] | None = None,
        error: str = "",
        duration_s: float = 0.0,
        model_cache: str = "",
    ) -> None:
        """Write one job's outcome atomically, replacing any earlier attempt of the same job."""
        row: dict[str, Any] = {
            "job_key": job.key,
            "run_id": run_id,
            "seed": job.seed,
            "status": status,
            "error": error or None,
            "duration_s": duration_s,
            "model_cache": model_cache or None,
            "finished_at": _now(),
        }
        for kind in KINDS:
            comp = getattr(job, kind)
            row[kind] = comp.label if comp else None
            row[f"{kind}_name"] = comp.spec.name if comp else None
            row[f"{kind}_version"] = comp.spec.version if comp else None
            row[f"{kind}_params"] = json.dumps(comp.params, sort_keys=True) if comp else None
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn:  # one transaction: all of the job or none of it
            self._conn.execute("DELETE FROM metrics WHERE job_key=?", (job.key,))
            self._conn.execute("DELETE FROM arrays WHERE job_key=?", (job.key,))
            self._conn.execute(
                f"INSERT OR REPLACE INTO jobs ({columns}) VALUES ({marks})", tuple(row.values())
            )
            self._conn.executemany(
                "INSERT INTO metrics (job_key, metric, value) VALUES (?, ?, ?)",
                [(job.key, name, float(value)) for name, value in (metrics or {}).items()],
            )
            self._conn.executemany(
                "INSERT INTO arrays (job_key, name, value) VALUES (?, ?, ?)",
                [
                    (job.key, name, json.dumps(_jsonable(value)))
                    for name, value in (arrays or {}).items()
                ],
            )

    def done_keys(self, keys: Iterable[str]) -> set[str]:
        """Keys among ``keys`` whose job finished successfully (failed jobs are retried)."""
        keys = list(keys)
        done: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            done.update(
                row[0]
                for row in self._conn.execute(
                    f"SELECT job_key FROM jobs WHERE status='ok' AND job_key IN ({marks})", chunk
                )
            )
        return done

    # -- queries ------------------------------------------------------------------------------

    def results(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Tidy results: one row per (job, metric); a failed job has one row with no metric."""
        frame = pd.read_sql_query("SELECT * FROM results ORDER BY job_key, metric", self._conn)
        if keys is not None:
            frame = frame[frame["job_key"].isin(set(keys))].reset_index(drop=True)
        return frame

    def jobs(self) -> pd.DataFrame:
        """One row per job (status, error, duration, components)."""
        return pd.read_sql_query("SELECT * FROM jobs ORDER BY job_key", self._conn)

    def runs(self) -> pd.DataFrame:
        """One row per ``bench run`` invocation, newest last."""
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self._conn)

    def arrays(self, job_key: str) -> dict[str, Any]:
        """Per-job arrays (confusion matrices, per-class values, curves) decoded from JSON."""
        rows = self._conn.execute("SELECT name, value FROM arrays WHERE job_key=?", (job_key,))
        return {name: json.loads(value) for name, value in rows}
