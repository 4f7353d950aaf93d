"""SQLite results store: run metadata and tidy per-job results, committed one job at a time.

Jobs are content-addressed (``Job.key``), so a job's row is written with ``INSERT OR REPLACE``
and its metrics are replaced in the same transaction: a run killed at any moment leaves every
finished job complete and no job half-written, and running the suite again adds only what is
missing, never a duplicate (DomainBed marks done jobs on disk for the same reason; we use
transactions instead of marker files).

A failed attempt never replaces a good result: it is kept in ``attempts`` and counted on the
job's row, and the good numbers stay what the leaderboard shows. Each metric is stored with
the direction its evaluator declared when it ran, and each job with its device, thread count,
worker and ``machine``: the fingerprint of the machine that computed it
(``benchmark.provenance``; the ``machines`` table holds what each fingerprint stands for), so a
leaderboard can be rebuilt from the store alone and says which numbers share their conditions.

Only the coordinator writes; a file that is not a readable store is a ``BenchInputError``
naming it and the way out, not a traceback.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import BenchInputError
from benchmark.kinds import COMPONENT_KINDS as KINDS
from benchmark.records import Job, Outcome, jsonable

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
  n_jobs INTEGER, n_ran INTEGER, n_cached INTEGER, n_failed INTEGER,
  pid INTEGER, host TEXT
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
  finished_at TEXT NOT NULL,
  device TEXT, threads INTEGER, worker TEXT,
  models_trained INTEGER, model_cache_hits INTEGER,
  failed_attempts INTEGER NOT NULL DEFAULT 0,
  machine TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
  job_key TEXT NOT NULL REFERENCES jobs(job_key) ON DELETE CASCADE,
  metric TEXT NOT NULL,
  value REAL NOT NULL,
  direction TEXT,
  PRIMARY KEY (job_key, metric)
);
CREATE TABLE IF NOT EXISTS attempts (
  attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_key TEXT NOT NULL,
  run_id INTEGER,
  error TEXT,
  duration_s REAL,
  device TEXT, threads INTEGER, worker TEXT,
  finished_at TEXT NOT NULL,
  machine TEXT
);
CREATE TABLE IF NOT EXISTS machines (
  fingerprint TEXT PRIMARY KEY,
  info TEXT NOT NULL,
  first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS arrays (
  job_key TEXT NOT NULL REFERENCES jobs(job_key) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (job_key, name)
);
"""
RESULTS_VIEW = """
DROP VIEW IF EXISTS results;
CREATE VIEW results AS
  SELECT jobs.*, metrics.metric, metrics.value, metrics.direction
  FROM jobs LEFT JOIN metrics USING (job_key);
"""


ADDED_COLUMNS = {
    "runs": ["pid INTEGER", "host TEXT"],
    "jobs": [
        "device TEXT",
        "threads INTEGER",
        "worker TEXT",
        "models_trained INTEGER",
        "model_cache_hits INTEGER",
        "failed_attempts INTEGER NOT NULL DEFAULT 0",
        "machine TEXT",
    ],
    "attempts": ["machine TEXT"],
    "metrics": ["direction TEXT"],
}
"""Columns added since the first store format: added in place to an older store."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """Results of every job ever run, queried as pandas DataFrames."""

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._run_hosts: dict[int, tuple[str, str | None]] = {}
        try:
            self._conn = sqlite3.connect(self.path, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            with self._conn:
                self._conn.executescript(SCHEMA)
                self._migrate()
        except sqlite3.DatabaseError as exc:
            raise BenchInputError(
                f"not a readable results store ({exc}); move it aside to start a new store, "
                "or pass --store to use another file",
                where=str(self.path),
            ) from None

    def _migrate(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        self._conn.executescript(RESULTS_VIEW)

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
                " machine, started_at, pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    suite,
                    suite_version,
                    source,
                    config_hash,
                    json.dumps(versions, sort_keys=True),
                    json.dumps(machine, sort_keys=True),
                    _now(),
                    os.getpid(),
                    platform.node(),
                ),
            )
            if machine.get("fingerprint"):
                from benchmark.provenance import identity

                self._conn.execute(
                    "INSERT OR IGNORE INTO machines (fingerprint, info, first_seen)"
                    " VALUES (?, ?, ?)",
                    (
                        machine["fingerprint"],
                        json.dumps(identity(machine), sort_keys=True),
                        _now(),
                    ),
                )
        return int(cursor.lastrowid)

    def _machine_of(self, run_id: int, outcome: Outcome) -> str | None:
        """The fingerprint of the machine that computed ``outcome``: its run's (the
        coordinator's) when the worker ran on the coordinator's host; ``None`` for a worker
        elsewhere (a Ray node) or an outcome no worker returned (a time limit)."""
        if run_id not in self._run_hosts:
            row = self._conn.execute(
                "SELECT host, machine FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
            machine = json.loads(row[1]) if row else {}
            self._run_hosts[run_id] = (row[0] if row else "", machine.get("fingerprint"))
        host, fingerprint = self._run_hosts[run_id]
        worker_host = outcome.worker.rpartition(":")[0]
        return fingerprint if worker_host and worker_host == host else None

    def mark_abandoned_runs(self) -> list[tuple[int, str]]:
        """Runs left ``running`` by a coordinator of this host that no longer exists (``kill
        -9``, a power cut) become ``killed``; returns ``(run_id, status)`` of those marked.
        Runs of other hosts, or of a live process, are left alone: they may still be going."""
        rows = self._conn.execute(
            "SELECT run_id, pid, host FROM runs WHERE status='running'"
        ).fetchall()
        here = platform.node()
        marked = [
            (run_id, "killed")
            for run_id, pid, host in rows
            if pid is None or (host == here and not _pid_alive(int(pid)))
        ]
        with self._conn:
            self._conn.executemany(
                "UPDATE runs SET status='killed' WHERE run_id=?", [(r,) for r, _ in marked]
            )
        return marked

    def finish_run(
        self,
        run_id: int,
        n_jobs: int,
        n_ran: int,
        n_cached: int,
        n_failed: int,
        status: str | None = None,
    ) -> None:
        """Close a run: ``finished``, ``failed`` (some jobs failed) or the given status."""
        with self._conn:
            self._conn.execute(
                "UPDATE runs SET finished_at=?, status=?, n_jobs=?, n_ran=?, n_cached=?,"
                " n_failed=? WHERE run_id=?",
                (
                    _now(),
                    status or ("failed" if n_failed else "finished"),
                    n_jobs,
                    n_ran,
                    n_cached,
                    n_failed,
                    run_id,
                ),
            )

    # -- jobs ---------------------------------------------------------------------------------

    def record(self, run_id: int, job: Job, outcome: Outcome) -> str:
        """Write one job's outcome atomically; returns what happened to the stored row:
        ``written``, or ``kept`` when a failed attempt met a good stored result (the failure
        is kept in ``attempts`` and counted, the good numbers stay)."""
        with self._conn:  # one transaction: all of the job or none of it
            if outcome.status == "failed":
                self._conn.execute(
                    "INSERT INTO attempts (job_key, run_id, error, duration_s, device, threads,"
                    " worker, finished_at, machine) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.key,
                        run_id,
                        outcome.error,
                        outcome.duration_s,
                        outcome.device,
                        outcome.threads,
                        outcome.worker,
                        _now(),
                        self._machine_of(run_id, outcome),
                    ),
                )
                stored = self._conn.execute(
                    "SELECT status FROM jobs WHERE job_key=?", (job.key,)
                ).fetchone()
                if stored is not None and stored[0] == "ok":
                    self._conn.execute(
                        "UPDATE jobs SET failed_attempts = failed_attempts + 1 WHERE job_key=?",
                        (job.key,),
                    )
                    return "kept"
            self._write_job(run_id, job, outcome)
        return "written"

    def _write_job(self, run_id: int, job: Job, outcome: Outcome) -> None:
        previous = self._conn.execute(
            "SELECT failed_attempts FROM jobs WHERE job_key=?", (job.key,)
        ).fetchone()
        row: dict[str, Any] = {
            "job_key": job.key,
            "run_id": run_id,
            "seed": job.seed,
            "status": outcome.status,
            "error": outcome.error or None,
            "duration_s": outcome.duration_s,
            "model_cache": outcome.model_cache or None,
            "finished_at": _now(),
            "device": outcome.device or None,
            "threads": outcome.threads or None,
            "worker": outcome.worker or None,
            "models_trained": outcome.models_trained,
            "model_cache_hits": outcome.model_cache_hits,
            "failed_attempts": (previous[0] or 0) if previous else 0,
            "machine": self._machine_of(run_id, outcome),
        }
        for kind in KINDS:
            comp = getattr(job, kind)
            row[kind] = comp.label if comp else None
            row[f"{kind}_name"] = comp.name if comp else None
            row[f"{kind}_version"] = comp.version if comp else None
            row[f"{kind}_params"] = json.dumps(comp.params, sort_keys=True) if comp else None
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._conn.execute("DELETE FROM metrics WHERE job_key=?", (job.key,))
        self._conn.execute("DELETE FROM arrays WHERE job_key=?", (job.key,))
        self._conn.execute(
            f"INSERT OR REPLACE INTO jobs ({columns}) VALUES ({marks})", tuple(row.values())
        )
        self._conn.executemany(
            "INSERT INTO metrics (job_key, metric, value, direction) VALUES (?, ?, ?, ?)",
            [
                (job.key, name, float(value), outcome.directions.get(name))
                for name, value in outcome.metrics.items()
            ],
        )
        self._conn.executemany(
            "INSERT INTO arrays (job_key, name, value) VALUES (?, ?, ?)",
            [
                (job.key, name, json.dumps(jsonable(value)))
                for name, value in outcome.arrays.items()
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

    def attempts(self) -> pd.DataFrame:
        """Every failed attempt, including those that did not replace a good result."""
        return pd.read_sql_query("SELECT * FROM attempts ORDER BY attempt_id", self._conn)

    def snapshot(self, target: str | Path) -> Path:
        """Write a consistent, compacted copy of the whole store to ``target`` (SQLite's
        ``VACUUM INTO``: one file, no WAL, readable while this store is open), replacing an
        older copy: what ``bench publish --with-store`` puts beside a leaderboard."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.unlink(missing_ok=True)
        self._conn.execute("VACUUM INTO ?", (str(partial),))
        partial.replace(target)
        return target

    def runs(self) -> pd.DataFrame:
        """One row per ``bench run`` invocation, newest last."""
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self._conn)

    def machines(self) -> dict[str, dict[str, Any]]:
        """``fingerprint -> what it stands for`` (``benchmark.provenance.identity``) of every
        machine a run of this store was coordinated from."""
        rows = self._conn.execute("SELECT fingerprint, info FROM machines ORDER BY fingerprint")
        return {fingerprint: json.loads(info) for fingerprint, info in rows}

    def arrays(self, job_key: str) -> dict[str, Any]:
        """Per-job arrays (confusion matrices, per-class values, curves) decoded from JSON."""
        rows = self._conn.execute("SELECT name, value FROM arrays WHERE job_key=?", (job_key,))
        return {name: json.loads(value) for name, value in rows}
