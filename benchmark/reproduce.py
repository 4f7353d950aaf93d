"""``bench reproduce``: rerun published rows on a fresh store and say how far the numbers moved.

A published leaderboard (``leaderboards/<suite>/data.json``, ``benchmark.render.site_data``)
holds every seed's value of every row and the conditions that made it. This module picks rows
(all, the jobs a ``-k`` expression selects, or a seeded random sample of ``--sample N`` rows),
reruns exactly those jobs into a temporary store and artifact cache (so everything trains
again, and the user's store and cache are never read or written) and compares, per metric:

* how many values are **bit-identical** (the same IEEE double, compared as bytes);
* for the others, the difference in units of the row's **seed std** (the published sample std
  over seeds, ddof=1): per seed ``|rerun - published| / std``, and per row
  ``|rerun mean - published mean| / std`` over the seeds both have. Where the row has one seed
  (no std) or a std of 0, the unit does not exist: the absolute difference is reported and the
  value is counted apart;
* whether the rerun's conditions equal the published ones: CPU model, vendor and instruction
  sets, torch / NumPy builds, libraries' versions, threads, device and the machine
  ``fingerprint`` (``benchmark.provenance``).

A difference is a finding, not an error: the command exits 0 whenever it ran, and 2 only for
bad input (unknown suite, no or malformed ``data.json``, a ``-k`` that selects nothing). By
default the rerun uses the published rows' thread count and device, so that a difference
points at the machine rather than at the settings. DomainBed and HELM leave reproduction to a
rerun by hand and a diff of tables; nothing compares a rerun with its own seed spread, hence
this module. It chooses, reruns and compares the values; the conditions are compared by
``benchmark.provenance`` (``compare_conditions``, next to what it compares) and the report
is drawn on the console by ``benchmark.render.reproduction``.
"""

from __future__ import annotations

import json
import random
import statistics
import struct
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError
from rich.console import Console

from benchmark.errors import BenchInputError
from benchmark.provenance import Condition, compare_conditions
from benchmark.records import Job, Plan
from benchmark.registry import Registry
from benchmark.render.reproduction import show
from benchmark.render.site_data import Document, Row, SeedJob
from benchmark.selection import select
from benchmark.suite import Suite

__all__ = [
    "Condition",
    "MetricRow",
    "Report",
    "SeedValue",
    "choose",
    "command",
    "describe",
    "load_published",
    "reproduce",
    "show",
]


@dataclass
class SeedValue:
    """One published value of one job and what the rerun gave."""

    evaluator: str
    seed: int
    job_key: str
    published: float
    rerun: float | None
    """``None``: the rerun failed, was not planned, or did not return this metric."""
    identical: bool
    abs_diff: float | None
    diff_std: float | None
    """``abs_diff`` in units of the row's seed std; ``None`` without a std (n=1 or std 0)."""


@dataclass
class MetricRow:
    """One metric of one published row: its seeds, their differences and the row's std."""

    row: str
    metric: str
    std: float | None
    n_published: int
    published_mean: float | None
    """Over the seeds the rerun has too (the cell's mean when every seed reran)."""
    rerun_mean: float | None
    mean_diff_std: float | None
    note: str
    seeds: list[SeedValue]


@dataclass
class Report:
    suite: str
    published: str
    selection: dict[str, Any]
    rows: list[MetricRow] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    """Rerun jobs that failed: description and error."""
    interrupted: str = ""

    def values(self) -> list[SeedValue]:
        return [v for r in self.rows for v in r.seeds]

    def metrics(self) -> list[dict[str, Any]]:
        """Per metric: values compared, identical, differing, and their size."""
        by_metric: dict[str, list[MetricRow]] = defaultdict(list)
        for row in self.rows:
            by_metric[row.metric].append(row)
        return [
            {"metric": metric, **_summarise(rows)} for metric, rows in sorted(by_metric.items())
        ]

    def summary(self) -> dict[str, Any]:
        out = _summarise(self.rows)
        out["conditions"] = _verdict(self.conditions)
        out["text"] = _summary_text(out)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "published": self.published,
            "selection": self.selection,
            "summary": self.summary(),
            "metrics": self.metrics(),
            "conditions": [asdict(c) for c in self.conditions],
            "notes": self.notes,
            "failed": self.failed,
            "interrupted": self.interrupted,
            "rows": [asdict(r) for r in self.rows],
        }


def _summarise(rows: list[MetricRow]) -> dict[str, Any]:
    values = [v for r in rows for v in r.seeds]
    compared = [v for v in values if v.rerun is not None]
    differing = [v for v in compared if not v.identical]
    in_std = [v.diff_std for v in differing if v.diff_std is not None]
    shifts = [r.mean_diff_std for r in rows if r.mean_diff_std is not None]
    return {
        "values": len(compared),
        "identical": sum(v.identical for v in compared),
        "differing": len(differing),
        "not_rerun": len(values) - len(compared),
        "largest_std": max(in_std, default=None),
        "median_std": statistics.median(in_std) if in_std else None,
        "differing_without_std": len(differing) - len(in_std),
        "largest_abs": max((v.abs_diff or 0.0 for v in differing), default=None),
        "largest_mean_shift_std": max(shifts, default=None),
    }


def _summary_text(s: dict[str, Any]) -> str:
    text = f"{s['identical']} of {s['values']} values identical"
    if s["largest_std"] is not None:
        text += (
            f"; largest difference {s['largest_std']:.3g} std, median {s['median_std']:.3g} std"
            f" (over the {s['differing'] - s['differing_without_std']} differing values of rows"
            " with a seed std)"
        )
    if s["differing_without_std"]:
        text += (
            f"; {s['differing_without_std']} differing value(s) in rows without a seed std "
            f"(n=1 or std 0), largest absolute difference {s['largest_abs']:.3g}"
        )
    if s["not_rerun"]:
        text += f"; {s['not_rerun']} published value(s) not rerun (failed or not planned)"
    return text + f"; conditions {s['conditions']}"


def _verdict(conditions: list[Condition]) -> str:
    verdicts = {c.verdict for c in conditions}
    if verdicts <= {"equal"}:
        return "equal"
    if verdicts & {"differ", "mixed"}:
        names = [c.field for c in conditions if c.verdict in ("differ", "mixed")]
        return "differ (" + ", ".join(names) + ")"
    return (
        "unknown (not recorded: "
        + ", ".join(c.field for c in conditions if c.verdict == "not recorded")
        + ")"
    )


# -- input ------------------------------------------------------------------------------------


def load_published(path: Path) -> Document:
    """The published document, or a ``BenchInputError`` naming the file and the field.

    Parsed with ``json`` first (its floats are exact: the published values must come back as
    the very doubles that were written), then validated by the site's own models."""
    if not path.is_file():
        raise BenchInputError(
            "no published leaderboard data here; `bench publish --suite S` (or `bench run`) "
            "writes it, --published names another folder",
            where=str(path),
        )
    try:
        return Document.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            message = f"field '{where}': {error['msg']}"
        else:
            message = f"not valid JSON ({exc})"
        raise BenchInputError(f"not a leaderboard document: {message}", where=str(path)) from None


def describe(row: Row, job: SeedJob) -> str:
    """The job's description as ``bench run -k`` matches it (``Job.describe``)."""
    labels = [row.dataset, row.model, row.debiaser, row.explainer, job.evaluator]
    return " / ".join(label for label in labels if label) + f" / seed {job.seed}"


def choose(
    document: Document, select_expr: str = "", sample: int | None = None, sample_seed: int = 0
) -> list[tuple[Row, list[SeedJob]]]:
    """The rows to rerun with the published jobs of each that have values, in board order:
    every row, the jobs ``-k`` selects, then ``sample`` rows drawn by a ``Random(sample_seed)``
    from the sorted row ids (the same draw for the same published rows)."""
    chosen = []
    for row in document.rows:
        jobs = [
            j
            for j in row.jobs
            if j.status == "ok" and (not select_expr or select(select_expr, describe(row, j)))
        ]
        if jobs:
            chosen.append((row, jobs))
    if not chosen:
        what = f"-k {select_expr!r} selects no published value" if select_expr else "no values"
        raise BenchInputError(
            f"{what} among the {len(document.rows)} rows of suite '{document.suite}' "
            "(only jobs with status ok have values)",
        )
    if sample is not None and sample < len(chosen):
        ids = set(random.Random(sample_seed).sample(sorted(r.id for r, _ in chosen), sample))
        chosen = [(row, jobs) for row, jobs in chosen if row.id in ids]
    return chosen


def _defaults(
    chosen: list[tuple[Row, list[SeedJob]]], threads: int | None, device: str | None
) -> tuple[int | None, str, list[str]]:
    """Threads and device for the rerun: the published rows' where they agree (and the
    device exists here), else the runner's defaults; with notes saying which."""
    from benchmark.executors.worker import resolve_device

    notes = []
    jobs = [j for _, js in chosen for j in js]
    if threads is None:
        published = {j.threads for j in jobs if j.threads is not None}
        if len(published) == 1:
            threads = published.pop()
        elif published:
            notes.append(f"the published rows ran with {sorted(published)} threads: default used")
    if device is None:
        published_devices = {j.device for j in jobs if j.device}
        device = published_devices.pop() if len(published_devices) == 1 else "cpu"
        try:
            resolve_device(device)
        except BenchInputError:
            notes.append(f"published device {device} is not available here: rerun on cpu")
            device = "cpu"
    return threads, device, notes


# -- the rerun --------------------------------------------------------------------------------


def reproduce(
    registry: Registry,
    suite: Suite,
    published: Path = Path("leaderboards"),
    select_expr: str = "",
    sample: int | None = None,
    sample_seed: int = 0,
    executor: str = "process",
    jobs: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> Report:
    """Rerun the chosen published rows of ``suite`` on a fresh temporary store and cache and
    compare (see the module docstring)."""
    from benchmark import planner
    from benchmark.cache import ArtifactCache
    from benchmark.executors.base import available_cores
    from benchmark.runner import Runner
    from benchmark.store import Store

    path = Path(published) / suite.name / "data.json"
    document = load_published(path)
    if document.suite != suite.name:
        raise BenchInputError(
            f"field 'suite' is '{document.suite}', not '{suite.name}'", where=str(path)
        )
    chosen = choose(document, select_expr, sample, sample_seed)
    planned = {job.key: job for job in planner.expand(suite).jobs}
    wanted = [j for _, js in chosen for j in js]
    todo: list[Job] = [planned[j.job_key] for j in wanted if j.job_key in planned]
    report = Report(
        suite.name,
        str(path),
        {
            "k": select_expr,
            "sample": sample,
            "sample_seed": sample_seed,
            "rows": [row.id for row, _ in chosen],
            "jobs": len(wanted),
        },
    )
    unplanned = len(wanted) - len(todo)
    if not todo:
        raise BenchInputError(
            f"none of the {len(wanted)} selected published jobs is planned by suite "
            f"'{suite.name}' as it is now: their keys (names, versions, parameters, seed) "
            "changed since data.json was written",
            where=str(path),
        )
    if unplanned:
        report.notes.append(
            f"{unplanned} published job(s) are not planned by the suite as it is now (a "
            "component's version or parameters changed): not rerun"
        )
    if document.provenance.suite_config_hash != suite.config_hash():
        report.notes.append("the suite's configuration changed since publication")
    threads, device, notes = _defaults(chosen, threads, device)
    report.notes += notes
    if jobs is None and threads is not None and executor != "serial":
        jobs = max(1, available_cores() // threads)
    with tempfile.TemporaryDirectory(prefix="bench-reproduce-") as tmp:
        fresh = Path(tmp)
        with Store(fresh / "results.sqlite") as store:
            runner = Runner(
                registry,
                store,
                ArtifactCache(fresh / "cache"),
                console=console,
                show_progress=show_progress,
                executor=executor,
                jobs=jobs,
                threads=threads,
                device=device,
            )
            summary = runner.run(Plan(suite, todo))
            report.interrupted = summary.interrupted
            report.failed = [{"job": d, "error": e} for d, e in summary.failures]
            rerun = _rerun_values(store)
            report.rows = _compare(chosen, rerun)
            report.conditions = compare_conditions(document, wanted, store, rerun)
    return report


def _rerun_values(store: Any) -> dict[str, dict[str, Any]]:
    """``job_key -> {values, device, threads, machine}`` of the rerun's successful jobs."""
    out: dict[str, dict[str, Any]] = {}
    for row in store.results().to_dict("records"):
        if row["status"] != "ok":
            continue
        entry = out.setdefault(
            row["job_key"],
            {
                "values": {},
                "device": None if pd.isna(row["device"]) else str(row["device"]),
                "threads": None if pd.isna(row["threads"]) else int(row["threads"]),
                "machine": None if pd.isna(row["machine"]) else str(row["machine"]),
            },
        )
        if isinstance(row["metric"], str):
            entry["values"][row["metric"]] = float(row["value"])
    return out


def _same_bits(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


def _column(row: Row, evaluator: str, metric: str) -> str:
    """The row's cell name of a job's metric (``evaluator.metric`` when evaluators share it)."""
    return f"{evaluator}.{metric}" if f"{evaluator}.{metric}" in row.cells else metric


def _compare(
    chosen: list[tuple[Row, list[SeedJob]]], rerun: dict[str, dict[str, Any]]
) -> list[MetricRow]:
    out = []
    for row, jobs in chosen:
        by_column: dict[str, list[tuple[SeedJob, str]]] = defaultdict(list)
        for job in jobs:
            for metric in job.values:
                by_column[_column(row, job.evaluator, metric)].append((job, metric))
        for column, pairs in by_column.items():
            cell = row.cells.get(column)
            std = cell.std if cell is not None else None
            unit = std if std is not None and std > 0 else None
            seeds = []
            for job, metric in pairs:
                published = job.values[metric]
                value = rerun.get(job.job_key, {}).get("values", {}).get(metric)
                diff = None if value is None else abs(value - published)
                seeds.append(
                    SeedValue(
                        evaluator=job.evaluator,
                        seed=job.seed,
                        job_key=job.job_key,
                        published=published,
                        rerun=value,
                        identical=value is not None and _same_bits(value, published),
                        abs_diff=diff,
                        diff_std=None if diff is None or unit is None else diff / unit,
                    )
                )
            both = [(s.published, s.rerun) for s in seeds if s.rerun is not None]
            published_mean = statistics.fmean(p for p, _ in both) if both else None
            rerun_mean = statistics.fmean(r for _, r in both) if both else None
            shift = (
                abs(rerun_mean - published_mean) / unit
                if unit is not None and rerun_mean is not None and published_mean is not None
                else None
            )
            n = cell.n if cell is not None else len(seeds)
            note = ""
            if unit is None:
                note = "n=1: no seed std" if n < 2 else "seed std is 0"
                note += "; differences are absolute"
            out.append(
                MetricRow(row.id, column, std, n, published_mean, rerun_mean, shift, note, seeds)
            )
    return out


def command(
    registry: Registry,
    err_console: Console,
    suite_ref: str,
    param_items: tuple[str, ...],
    select_expr: str,
    sample: int | None,
    sample_seed: int,
    published: Path,
    executor: str,
    n_jobs: int | None,
    threads: int | None,
    device: str | None,
    json_out: Path | None,
    no_progress: bool,
) -> None:
    """The body of ``bench reproduce`` (``benchmark.cli``)."""
    import signal

    from benchmark import suite as suite_module
    from benchmark.suite_parameters import from_command_line

    report = reproduce(
        registry,
        suite_module.load(suite_ref, registry, parameters=from_command_line(param_items)),
        published,
        select_expr,
        sample,
        sample_seed,
        executor,
        n_jobs,
        threads,
        device,
        console=err_console,
        show_progress=not no_progress,
    )
    show(report, Console(highlight=False))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
        err_console.print(f"report: {json_out}")
    if report.interrupted:
        err_console.print(f"[bold yellow]interrupted by {report.interrupted}[/]: partial report")
        sys.exit(128 + int(getattr(signal, report.interrupted)))
