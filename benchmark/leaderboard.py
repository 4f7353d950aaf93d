"""Stored results -> aggregated, ranked leaderboard tables (mean ± std and a 95 % interval
over seeds; ranks that admit ties, ``benchmark.statistics``).

A leaderboard is regenerated from the store only, never edited by hand. Its cells are the
planned combinations of the suite, so a combination that failed or never ran shows up as a
failed or missing cell instead of silently disappearing (DomainBed's silent skips produced
confusing blanks, facebookresearch/DomainBed#75 and #127).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.cache import ArtifactCache, ArtifactDamaged
from benchmark.independence import model_independence
from benchmark.kinds import COMPONENT_KINDS as KINDS
from benchmark.records import Job, Plan
from benchmark.specs import EvaluatorSpec
from benchmark.statistics import t_interval, tied_ranks
from benchmark.store import Store
from benchmark.suite import shared_metrics

ROW_KINDS = ("model", "debiaser", "explainer")
"""What identifies a leaderboard row within a dataset (the dataset partitions the tables);
each evaluator contributes columns. A metric name that two evaluators share is shown as
``evaluator.metric`` so that no column mixes two definitions."""


@dataclass
class Leaderboard:
    """Aggregated cells plus what is needed to render them."""

    suite_ref: str
    """What to pass to ``bench run --suite`` to reproduce the numbers."""
    suite_name: str
    description: str
    cells: pd.DataFrame
    """One row per (combination, metric): mean, std (ddof=1), the 95 % t interval
    (``ci_low``, ``ci_high``), n, n_failed, n_missing, ``rank`` (with ties) and ``tied``."""
    primary: dict[str, tuple[str, str]]
    """Per dataset label: (primary metric, direction)."""
    failures: pd.DataFrame
    """One row per failed job: components, seed, error."""
    runs: pd.DataFrame
    """The runs that produced the stored results shown (for versions and dates)."""
    figure_inputs: dict[str, tuple[EvaluatorSpec, pd.DataFrame]] = field(default_factory=dict)
    """Per evaluator label that draws figures: its spec and one row per successful job
    (component labels, seed, stored ``arrays``), the input of ``EvaluatorSpec.figures``."""
    labels: dict[str, str] = field(default_factory=dict)
    """Column header per metric (the suite's ``leaderboard.labels``)."""
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Jobs shown, counted by ``(device, threads)``: more than one row means the numbers
    were made under different conditions, which the rendered page says."""
    kept_after_failure: int = 0
    """Jobs whose good result is shown although a later attempt failed (``--rerun``)."""
    glossary: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per metric column: ``evaluator`` label, bare ``metric`` name, ``direction``,
    ``description`` (the evaluator's glossary entry, else its description) and ``reference``."""
    config_hash: str = ""
    """The suite's configuration hash (the one every run of it records)."""
    jobs: pd.DataFrame = field(default_factory=pd.DataFrame)
    """One row per planned job: component labels, seed, ``job_key``, ``status`` (ok, failed or
    missing), error, duration, device, threads, the metric ``values`` it stored, and each
    component's name, version and params (``components``): the rows' drill-down."""
    independence: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Model-independence flags per (dataset, explainer, evaluator, metric)
    (``benchmark.independence``)."""
    reliability: list[dict] = field(default_factory=list)
    """Per shown metric of a suite with several explainers: how reliable it is as an
    instrument (``benchmark.reliability.reliability_table``); empty without explainers."""


def _combo(job: Job) -> tuple[str, ...]:
    labels = job.labels()
    return tuple(labels[k] or "" for k in KINDS)


def aggregate(plan: Plan, store: Store, cache: ArtifactCache | None = None) -> Leaderboard:
    """Mean, std (ddof=1) and n over seeds for every planned cell and metric; rank rows.

    ``cache`` (the run's artifact cache) is where per-image scores are read from for the
    evaluator-reliability statistics over test images; without it those are not assessed."""
    definition = plan.suite.model.leaderboard
    results = store.results(job.key for job in plan.jobs)
    by_key = {key: frame for key, frame in results.groupby("job_key")}

    expected: dict[tuple[str, ...], list[Job]] = defaultdict(list)
    for job in plan.jobs:
        expected[_combo(job)].append(job)

    def evaluator_spec(job: Job) -> EvaluatorSpec:
        return plan.component(job.evaluator).spec  # type: ignore[return-value]

    rows, failure_rows, job_rows = [], [], []
    figure_rows: dict[str, list[dict]] = defaultdict(list)
    for combo, jobs in expected.items():
        values: dict[str, list[float]] = defaultdict(list)
        stored_directions: dict[str, str] = {}
        n_failed = n_missing = 0
        for job in jobs:
            frame = by_key.get(job.key)
            job_rows.append(_job_row(job, combo, frame))
            if frame is None:
                n_missing += 1
                continue
            if frame["status"].iloc[0] == "failed":
                n_failed += 1
                failure_rows.append(
                    {
                        **dict(zip(KINDS, combo, strict=True)),
                        "seed": job.seed,
                        "error": frame["error"].iloc[0],
                    }
                )
                continue
            for metric, value, direction in zip(
                frame["metric"], frame["value"], frame["direction"], strict=True
            ):
                values[metric].append(float(value))
                if isinstance(direction, str):
                    stored_directions.setdefault(metric, direction)
            if evaluator_spec(job).figures is not None:
                figure_rows[job.evaluator.label].append(
                    {**job.labels(), "seed": job.seed, "arrays": store.arrays(job.key)}
                )
        declared = evaluator_spec(jobs[0]).directions
        metrics = list(values) or list(declared)
        for metric in metrics:
            vals = np.asarray(values.get(metric, []), dtype=float)
            mean = vals.mean() if vals.size else np.nan
            std = vals.std(ddof=1) if vals.size > 1 else np.nan
            low, high = t_interval(float(mean), float(std), int(vals.size))
            rows.append(
                {
                    **dict(zip(KINDS, combo, strict=True)),
                    "metric": metric,
                    # the direction stored with the results, so a plugin release cannot
                    # silently re-read old numbers; the spec's for metrics never stored
                    "direction": stored_directions.get(metric, declared.get(metric, "higher")),
                    "mean": mean,
                    "std": std,
                    "ci_low": low,
                    "ci_high": high,
                    "n": int(vals.size),
                    "n_expected": len(jobs),
                    "n_failed": n_failed,
                    "n_missing": n_missing,
                }
            )
    cells = pd.DataFrame(
        rows,
        columns=[
            *KINDS,
            "metric",
            "direction",
            "mean",
            "std",
            "ci_low",
            "ci_high",
            "n",
            "n_expected",
            "n_failed",
            "n_missing",
        ],
    )
    # the names the suite was checked against: a metric two evaluator entries return is
    # ``label.metric``; results-based sharing is kept for stores written before the check
    declared_shared = shared_metrics(plan.suite)
    owners = cells.groupby("metric")["evaluator"].nunique()
    shared = (cells["metric"].map(owners) > 1) | cells["metric"].isin(declared_shared)
    cells.loc[shared, "metric"] = cells.loc[shared, "evaluator"] + "." + cells.loc[shared, "metric"]

    primary: dict[str, tuple[str, str]] = {}
    for dataset in plan.suite.components["dataset"]:
        metric = definition.metric_by_dataset.get(dataset.label, definition.metric)
        declared = cells.loc[cells["metric"] == metric, "direction"]
        # the suite's ``direction`` belongs to its ``metric``; a per-dataset metric keeps the
        # direction its evaluator declares
        stated = definition.direction if metric == definition.metric else None
        direction = stated or (declared.iloc[0] if len(declared) else "higher")
        primary[dataset.label] = (metric, direction)
    cells["rank"], cells["tied"] = _rank(cells, primary)

    runs = store.runs()
    runs = runs[runs["run_id"].isin(set(results["run_id"].dropna()))]
    failures = pd.DataFrame(failure_rows, columns=[*KINDS, "seed", "error"])
    specs = {c.label: c.spec for c in plan.suite.components["evaluator"]}
    figure_inputs = {
        label: (specs[label], pd.DataFrame(rows_)) for label, rows_ in figure_rows.items()
    }
    shown = results[(results["status"] == "ok")].drop_duplicates("job_key")
    conditions = (
        shown.assign(device=shown["device"].fillna("unrecorded"))
        .groupby(["device", "threads"], dropna=False)
        .size()
        .rename("jobs")
        .reset_index()
    )
    kept = int((shown["failed_attempts"].fillna(0) > 0).sum())
    jobs_frame = pd.DataFrame(job_rows)
    directions = {
        (label, metric): direction
        for label, spec in specs.items()
        for metric, direction in spec.directions.items()
    }
    image_spreads = {key: store.arrays(key).get("per_image_spread", {}) for key in shown["job_key"]}
    independence = model_independence(jobs_frame, directions, image_spreads)
    board = Leaderboard(
        plan.suite.ref,
        plan.suite.name,
        plan.suite.model.description,
        cells,
        primary,
        failures,
        runs,
        figure_inputs,
        dict(definition.labels),
        conditions,
        kept,
        _glossary(cells, plan),
        plan.suite.config_hash(),
        jobs_frame,
        independence,
    )
    board.reliability = _reliability(board, plan, store, cache)
    return board


def _reliability(
    board: Leaderboard, plan: Plan, store: Store, cache: ArtifactCache | None
) -> list[dict]:
    """The reliability rows of the metrics the leaderboard shows (its primary metrics and
    columns), where at least two explainers are ranked; per-image scores from ``cache``."""
    from benchmark.executors.worker import PER_IMAGE_KIND
    from benchmark.reliability import reliability_table

    explainers = {c.label for c in plan.suite.components.get("explainer", [])}
    if len(explainers) < 2 or not len(board.jobs):
        return []
    shown = [metric for metric, _ in board.primary.values()]
    shown += list(plan.suite.model.leaderboard.columns)
    owner = dict(zip(board.cells["metric"], board.cells["evaluator"], strict=False))
    wanted = {
        name if name.startswith(f"{owner[name]}.") else f"{owner[name]}.{name}"
        for name in shown
        if name in owner
    }
    done = board.jobs[(board.jobs["status"] == "ok") & board.jobs["explainer"].notna()]
    keys = list(done["job_key"])
    arrays = {key: store.arrays(key) for key in keys}
    per_image: dict[str, dict] = {}
    for key in keys if cache is not None else []:
        try:
            stored = cache.load(PER_IMAGE_KIND, key)
        except (FileNotFoundError, ArtifactDamaged):  # not kept, or moved aside: not assessed
            continue
        per_image[key] = {n: t.numpy() for n, t in stored.items() if t.ndim == 1}
    ordered = [c for c in dict.fromkeys(shown) if c in owner]
    rows = reliability_table(board, arrays=arrays, per_image=per_image or None, metrics=wanted)
    order = {f"{owner[c]}.{c.removeprefix(owner[c] + '.')}": i for i, c in enumerate(ordered)}
    return sorted(rows, key=lambda row: order.get(row["column"], len(order)))


def _glossary(cells: pd.DataFrame, plan: Plan) -> dict[str, dict[str, str]]:
    specs = {c.label: c.spec for c in plan.suite.components["evaluator"]}
    out: dict[str, dict[str, str]] = {}
    for column, label, direction in (
        cells[["metric", "evaluator", "direction"]]
        .drop_duplicates("metric")
        .itertuples(index=False)
    ):
        spec = specs.get(label)
        bare = column[len(label) + 1 :] if column.startswith(f"{label}.") else column
        described = getattr(spec, "glossary", {}).get(bare) if spec else None
        out[column] = {
            "evaluator": label,
            "metric": bare,
            "direction": direction,
            "description": described or (spec.description if spec else ""),
            "reference": getattr(spec, "reference", "") if spec else "",
        }
    return out


def _job_row(job: Job, combo: tuple[str, ...], frame: pd.DataFrame | None) -> dict:
    """What a reader drilling into a row needs about one of its jobs."""
    components = {
        kind: {"name": record.name, "version": record.version, "params": record.params}
        for kind in KINDS
        if (record := getattr(job, kind)) is not None
    }
    row = {
        **dict(zip(KINDS, combo, strict=True)),
        "seed": job.seed,
        "job_key": job.key,
        "components": components,
        "status": "missing",
        "error": None,
        "duration_s": None,
        "device": None,
        "threads": None,
        "finished_at": None,
        "values": {},
    }
    if frame is None:
        return row
    first = frame.iloc[0]

    def known(value):
        return None if pd.isna(value) else value

    row |= {
        "status": str(first["status"]),
        "error": known(first["error"]),
        "duration_s": known(first["duration_s"]),
        "device": known(first["device"]),
        "threads": None if pd.isna(first["threads"]) else int(first["threads"]),
        "finished_at": known(first["finished_at"]),
    }
    if first["status"] == "ok":
        row["values"] = {
            str(m): float(v)
            for m, v in zip(frame["metric"], frame["value"], strict=True)
            if isinstance(m, str) and not pd.isna(v)
        }
    return row


def _rank(cells: pd.DataFrame, primary: dict[str, tuple[str, str]]) -> tuple[pd.Series, pd.Series]:
    """Rank with ties of each row within its dataset by the primary metric (1 = best;
    ``benchmark.statistics.RANK_METHOD``), and whether the rank is shared.

    Rows whose primary metric has no value (all seeds failed or missing) get no rank.
    """
    rank = pd.Series(np.nan, index=cells.index, dtype=float)
    tied = pd.Series(False, index=cells.index, dtype=bool)
    for dataset, (metric, direction) in primary.items():
        in_dataset = cells["dataset"] == dataset
        scores = cells[in_dataset & (cells["metric"] == metric)].set_index(list(ROW_KINDS))
        by_row, shared = tied_ranks(scores["mean"], scores["ci_low"], scores["ci_high"], direction)
        row_keys = cells.loc[in_dataset, list(ROW_KINDS)].apply(tuple, axis=1)
        rank.loc[in_dataset] = row_keys.map(by_row.to_dict()).to_numpy(dtype=float)
        tied.loc[in_dataset] = row_keys.map(shared.to_dict()).fillna(False).to_numpy(dtype=bool)
    return rank, tied
