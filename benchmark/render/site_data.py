"""Leaderboard -> the versioned JSON document the site reads and anyone can download.

One document per suite (``leaderboards/<suite>/data.json``, schema
``leaderboards/schema/leaderboard-v1.schema.json``). Numbers stay numbers (``null`` where
there is none: JSON has no NaN); each cell also carries its ``text``, written by the same
formatter as the Markdown page (``benchmark.render.cells``), so the two outputs cannot show
different strings for one cell. Every row holds every seed's job: key, status, error, values,
duration, device, threads and machine fingerprint, the components' names, versions and
parameters, and the
``bench run`` command whose ``-k`` selects exactly that row's jobs. The schema is generated from
the pydantic models below, so code and schema cannot drift (``tests/test_site_data.py``
validates published documents with ``jsonschema``, an independent validator).

RobustBench keeps one JSON per entry with numbers as strings; HELM publishes versioned JSON
under a static front end. This keeps HELM's layout with RobustBench's promise that the data
lives with the page, and numbers as numbers.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from benchmark.leaderboard import ROW_KINDS, Leaderboard
from benchmark.render.cells import badges, cell_text
from benchmark.render.paths import slug
from benchmark.statistics import INTERVAL_METHOD, RANK_METHOD

SCHEMA_ID = "dependable-bench/leaderboard"
SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Cell(_Strict):
    """One metric of one row, aggregated over seeds."""

    direction: Literal["higher", "lower", "neither"]
    mean: float | None
    std: float | None = Field(description="sample standard deviation over seeds (ddof=1)")
    ci_low: float | None = Field(description="95 % t interval over seeds, low end")
    ci_high: float | None
    n: int = Field(description="seeds that produced a value")
    n_expected: int
    n_failed: int
    n_missing: int
    text: str = Field(description="the cell as the Markdown page shows it")
    badges: list[str] = Field(description="FAILED k/n and missing k/n, the end of text")


class Component(_Strict):
    name: str
    version: str
    params: dict[str, Any]


class SeedJob(_Strict):
    """One job of a row: one evaluator, one seed."""

    evaluator: str
    seed: int
    job_key: str
    status: Literal["ok", "failed", "missing"]
    error: str | None
    duration_s: float | None
    device: str | None
    threads: int | None
    machine: str | None = Field(
        None,
        description="fingerprint of the machine that computed it (provenance.machines); "
        "null where not recorded",
    )
    finished_at: str | None
    values: dict[str, float]


class Row(_Strict):
    id: str
    dataset: str
    model: str
    debiaser: str
    explainer: str | None
    rank: int | None
    tied: bool
    cells: dict[str, Cell]
    components: dict[str, Component] = Field(
        description="dataset, model, debiaser, explainer and each evaluator (by label)"
    )
    jobs: list[SeedJob]
    command: str = Field(description="the bench run command that reproduces exactly this row")


class Metric(_Strict):
    column: str
    label: str
    evaluator: str
    metric: str
    direction: Literal["higher", "lower", "neither"]
    description: str
    reference: str


class Dataset(_Strict):
    name: str
    primary_metric: str
    direction: str
    columns: list[str] = Field(description="metric columns shown by default, primary first")


class Figure(_Strict):
    path: str
    alt: str
    evaluator: str


class Run(_Strict):
    run_id: int
    started_at: str
    finished_at: str | None
    status: str
    config_hash: str
    machine: dict[str, Any]
    versions: dict[str, str]


class Condition(_Strict):
    device: str
    threads: int | None
    machine: str | None = Field(None, description="machine fingerprint, where recorded")
    jobs: int


class Provenance(_Strict):
    suite_config_hash: str
    git_revision: str | None = Field(description="HEAD of the checkout that published this")
    git_dirty: bool | None = Field(description="whether code outside leaderboards/ differed")
    runs: list[Run]
    machines: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="machine fingerprint -> CPU model, instruction sets, torch / NumPy builds "
        "and GPUs it stands for (benchmark.provenance), of every run shown",
    )
    conditions: list[Condition]
    kept_after_failure: int


class Document(_Strict):
    schema_id: Literal["dependable-bench/leaderboard"] = SCHEMA_ID
    schema_version: Literal[1] = SCHEMA_VERSION
    suite: str
    suite_ref: str
    description: str
    methods: dict[str, str]
    datasets: list[Dataset]
    metrics: list[Metric]
    rows: list[Row]
    figures: list[Figure]
    figure_errors: list[str]
    provenance: Provenance


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    return float(value)


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _phrase(labels: list[str | None]) -> str:
    """The start of every job description of a row (``dataset / model / debiaser /``)."""
    return " / ".join(label for label in labels if label) + " /"


def row_commands(
    suite_ref: str, phrases: dict[str, str], descriptions: dict[str, list[str]]
) -> dict[str, str]:
    """``row id -> bench run command`` whose ``-k`` selects that row's jobs and no other: the
    row's phrase, minus every other row whose phrase contains it (``mnist / ...`` is inside
    ``colored-mnist / ...``, since ``-k`` matches substrings). Each expression is checked
    against every job description (``descriptions``: per row, its jobs'); a row whose labels
    hold ``-k`` syntax (parentheses, ``and``/``or``/``not`` as words) gets the whole suite's
    command and says why."""
    from benchmark.errors import BenchInputError
    from benchmark.selection import select

    suite = f"bench run --suite {shlex.quote(suite_ref)}"
    out = {}
    for row_id, phrase in phrases.items():
        others = sorted(p for r, p in phrases.items() if r != row_id and phrase in p)
        expr = " and ".join([phrase, *(f"not {p}" for p in others)])
        try:
            exact = all(
                select(expr, d) == (r == row_id) for r, ds in descriptions.items() for d in ds
            )
        except BenchInputError:
            exact = False
        out[row_id] = (
            f"{suite} -k {shlex.quote(expr)}"
            if exact
            else f"{suite}  # no -k expression can name this row: its labels hold -k syntax"
        )
    return out


def _git() -> tuple[str | None, bool | None]:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)leaderboards"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(status.strip())


def _figure(path: str, evaluators: list[str]) -> Figure:
    """A figure with its evaluator and alt text, from its file name ``<evaluator>-<stem>.png``
    (the longest evaluator label that prefixes it: labels may contain ``-``)."""
    stem = Path(path).stem
    owners = [e for e in evaluators if stem.startswith(f"{slug(e)}-")]
    evaluator = max(owners, key=len) if owners else ""
    rest = stem[len(slug(evaluator)) + 1 :] if evaluator else stem
    what = rest.replace("-", " ")
    return Figure(path=path, alt=f"{evaluator or 'figure'}: {what}", evaluator=evaluator)


def build(
    lb: Leaderboard,
    columns: list[str] | None = None,
    figures: list[str] | None = None,
    figure_errors: list[str] | None = None,
) -> Document:
    """The document of one suite's leaderboard (``columns``: the suite's shown metrics)."""
    cells = lb.cells
    key_cols = list(ROW_KINDS)
    datasets = []
    for dataset, (metric, direction) in lb.primary.items():
        present = list(dict.fromkeys(cells.loc[cells["dataset"] == dataset, "metric"]))
        wanted = [m for m in (columns or []) if m in present] or present
        datasets.append(
            Dataset(
                name=dataset,
                primary_metric=metric,
                direction=direction,
                columns=[metric, *(m for m in wanted if m != metric)],
            )
        )

    jobs = lb.jobs
    grouped_jobs = (
        {
            key: frame
            for key, frame in jobs.groupby(["dataset", *key_cols], dropna=False, sort=False)
        }
        if len(jobs)
        else {}
    )
    rows: list[Row] = []
    phrases: dict[str, str] = {}
    descriptions: dict[str, list[str]] = {}
    for keys, group in cells.groupby(["dataset", *key_cols], sort=False, dropna=False):
        dataset, model, debiaser, explainer = keys
        row_id = "|".join(str(k or "") for k in keys)
        phrases[row_id] = _phrase([dataset, model, debiaser, explainer])
        ranked = group.dropna(subset=["rank"])
        row_jobs = grouped_jobs.get(keys)
        components: dict[str, Component] = {}
        seed_jobs: list[SeedJob] = []
        descriptions[row_id] = []
        if row_jobs is not None:
            for job in row_jobs.sort_values(["evaluator", "seed"]).to_dict("records"):
                labels = [job[k] for k in ("dataset", *key_cols, "evaluator")]
                descriptions[row_id].append(
                    " / ".join(str(x) for x in labels if x) + f" / seed {job['seed']}"
                )
                for kind, record in job["components"].items():
                    name = job["evaluator"] if kind == "evaluator" else kind
                    components.setdefault(name, Component(**record))
                seed_jobs.append(
                    SeedJob(
                        evaluator=job["evaluator"],
                        seed=int(job["seed"]),
                        job_key=job["job_key"],
                        status=job["status"],
                        error=_text(job["error"]),
                        duration_s=_number(job["duration_s"]),
                        device=_text(job["device"]),
                        threads=None if _number(job["threads"]) is None else int(job["threads"]),
                        machine=_text(job.get("machine")),
                        finished_at=_text(job["finished_at"]),
                        values=job["values"],
                    )
                )
        rows.append(
            Row(
                id=row_id,
                dataset=dataset,
                model=model,
                debiaser=debiaser,
                explainer=explainer or None,
                rank=int(ranked["rank"].iloc[0]) if len(ranked) else None,
                tied=bool(ranked["tied"].iloc[0]) if len(ranked) else False,
                cells={
                    r["metric"]: Cell(
                        direction=r["direction"],
                        mean=_number(r["mean"]),
                        std=_number(r["std"]),
                        ci_low=_number(r["ci_low"]),
                        ci_high=_number(r["ci_high"]),
                        n=int(r["n"]),
                        n_expected=int(r["n_expected"]),
                        n_failed=int(r["n_failed"]),
                        n_missing=int(r["n_missing"]),
                        text=cell_text(r),
                        badges=badges(r),
                    )
                    for r in group.to_dict("records")
                },
                components=components,
                jobs=seed_jobs,
                command="",
            )
        )
    commands = row_commands(lb.suite_ref, phrases, descriptions)
    for row in rows:
        row.command = commands[row.id]
    order = {d.name: i for i, d in enumerate(datasets)}
    primary = {d.name: (d.primary_metric, d.direction) for d in datasets}

    def board_order(row: Row) -> tuple:
        metric, direction = primary.get(row.dataset, ("", "higher"))
        cell = row.cells.get(metric)
        mean = cell.mean if cell is not None and cell.mean is not None else None
        best_first = (-mean if direction == "higher" else mean) if mean is not None else 0.0
        return (
            order.get(row.dataset, 0),
            row.rank is None,
            row.rank or 0,
            mean is None,
            best_first,
            row.id,
        )

    rows.sort(key=board_order)

    metrics = [
        Metric(column=column, label=lb.labels.get(column, column), **info)  # type: ignore[arg-type]
        for column, info in lb.glossary.items()
    ]
    revision, dirty = _git()
    runs = [
        Run(
            run_id=int(r["run_id"]),
            started_at=str(r["started_at"]),
            finished_at=None if pd.isna(r["finished_at"]) else str(r["finished_at"]),
            status=str(r["status"]),
            config_hash=str(r["config_hash"]),
            machine=json.loads(r["machine"]),
            versions={str(k): str(v) for k, v in json.loads(r["versions"]).items()},
        )
        for r in lb.runs.to_dict("records")
    ]
    conditions = [
        Condition(
            device=str(c["device"]),
            threads=None if pd.isna(c["threads"]) else int(c["threads"]),
            machine=_text(c.get("machine")),
            jobs=int(c["jobs"]),
        )
        for c in lb.conditions.to_dict("records")
    ]
    return Document(
        suite=lb.suite_name,
        suite_ref=lb.suite_ref,
        description=(lb.description or "").strip(),
        methods={"interval": INTERVAL_METHOD, "rank": RANK_METHOD},
        datasets=datasets,
        metrics=metrics,
        rows=rows,
        figures=[_figure(p, sorted(lb.figure_inputs)) for p in figures or []],
        figure_errors=list(figure_errors or []),
        provenance=Provenance(
            suite_config_hash=lb.config_hash,
            git_revision=revision,
            git_dirty=dirty,
            runs=runs,
            machines=_machines(runs),
            conditions=conditions,
            kept_after_failure=lb.kept_after_failure,
        ),
    )


def _machines(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """``fingerprint -> identity`` of the runs' machines (runs from before fingerprints have
    none)."""
    from benchmark.provenance import identity

    return {
        run.machine["fingerprint"]: identity(run.machine)
        for run in runs
        if run.machine.get("fingerprint")
    }


def schema() -> dict[str, Any]:
    """The JSON Schema of ``Document`` (draft 2020-12, as pydantic writes it)."""
    out = Document.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = f"{SCHEMA_ID}/v{SCHEMA_VERSION}"
    return out


def dumps(document: Document) -> str:
    """The document as compact JSON with one row per line, so a republished leaderboard's
    diff shows which rows changed (and the file stays a fraction of an indented one's size)."""
    data = document.model_dump(mode="json")
    rows = data.pop("rows")
    head = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    lines = ",\n".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in rows)
    return f'{head[:-1]},"rows":[\n{lines}\n]}}\n'
