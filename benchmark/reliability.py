"""Which evaluator to trust: the reliability of every explanation metric as an instrument.

A leaderboard ranks explainers by a metric; whether that ranking means anything depends on the
metric. Tomsett, Harborne, Chakraborty, Gurram & Preece, "Sanity Checks for Saliency Metrics"
(AAAI 2020, sec. 3) borrow three reliability measures from psychometrics, and Hedström,
Bommer, Wickstrøm, Samek, Lapuschkin & Höhne, "The Meta-Evaluation Problem in Explainable AI:
Identifying Reliable Estimators with MetaQuantus" (TMLR 2023) add two failure modes under
perturbation. This module computes them from stored results only (the leaderboard's jobs, their
arrays, optionally their per-image scores) and returns one plain row per metric
(:func:`reliability_table`); :func:`markdown` renders the rows, every cell escaped.

The statistics are pure functions in ``benchmark.agreement``, whose docstring defines
Krippendorff's alpha, inter-rater and inter-method reliability and internal consistency and says
why they are written by hand; ``benchmark.render.reliability_table`` renders the rows. Their
public names are re-exported here. What stays here is the table: from stored jobs to the
rankings per cell (``CELL``), with the raters of ``ACROSS``, retraining seeds and test images,
the partner metrics of ``PROPERTIES``, and the columns of the meta-evaluation:

* **MetaQuantus** (from the ``meta-evaluation`` evaluator, ``plugins.evaluators.
  meta_evaluation``, which states the per-job definitions): mean over its jobs of each scoring
  function's ``resilience`` (IAC_NR), ``reactivity`` (IAC_AR) and ``worse_under_disruption``
  (IEC_AR); ``rank_resilience`` (IEC_NR) is computed here, because it compares explainers:
  the share of explainers whose rank among the explainers of a cell is the same under a minor
  perturbation as without it, averaged over perturbations, tests and cells. Deviation:
  MetaQuantus ranks per image; the evaluator stores per-draw means over the images it kept, so
  this ranks the means. ``meta_consistency`` is the mean of the four (MetaQuantus's MC).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.agreement import (
    LEVELS,
    Level,
    cronbach_alpha,
    inter_method_reliability,
    inter_rater_reliability,
    internal_consistency,
    krippendorff_alpha,
    rank_kept,
    ranks,
    spearman,
)
from benchmark.agreement import oriented as _oriented
from benchmark.render.reliability_table import HEADERS, by_column, markdown

__all__ = [
    "ACROSS",
    "CELL",
    "COLUMNS",
    "HEADERS",
    "LEVELS",
    "META_EVALUATOR",
    "META_METRICS",
    "META_TARGETS",
    "PROPERTIES",
    "RETRAIN_METRICS",
    "Level",
    "by_column",
    "cronbach_alpha",
    "inter_method_reliability",
    "inter_rater_reliability",
    "internal_consistency",
    "krippendorff_alpha",
    "markdown",
    "rank_kept",
    "ranks",
    "reliability_table",
    "spearman",
]

CELL = ("dataset", "model", "debiaser", "seed")
"""What identifies one ranking of explainers."""
ACROSS = {"seeds": "seed", "models": "model", "debiasers": "debiaser", "datasets": "dataset"}
"""Table column suffix -> the job field whose values act as raters."""

PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "faithfulness": (
        "pixel-flipping.auc",
        "deletion.auc",
        "insertion.auc",
        "region-perturbation.aopc",
        "road.lerf_minus_morf",
        "roar.auc",
        "kar.auc",
        "quantus.pixel_flipping",
        "quantus.faithfulness_correlation",
        "quantus.region_perturbation",
    ),
    "complexity": ("quantus.sparseness", "quantus.complexity", "quantus.effective_complexity"),
}
"""Metrics that claim to measure the same property (``evaluator name.metric``), for
inter-method reliability."""

META_EVALUATOR = "meta-evaluation"
"""The evaluator name whose jobs feed the MetaQuantus columns."""
META_TARGETS: Mapping[str, tuple[str, str]] = {
    "pixel-flipping": ("pixel-flipping", "auc"),
    "deletion": ("deletion", "auc"),
    "insertion": ("insertion", "auc"),
    "sparseness": ("quantus", "sparseness"),
    "complexity": ("quantus", "complexity"),
}
"""Scoring function of the meta-evaluation -> the (evaluator name, metric) it stands for."""
META_METRICS = ("resilience", "reactivity", "worse_under_disruption")

COLUMNS = (
    "column",
    "evaluator",
    "metric",
    "direction",
    "property",
    "n_explainers",
    "n_repeats",
    "alpha_seeds",
    "alpha_retrain_seeds",
    "alpha_models",
    "alpha_debiasers",
    "alpha_datasets",
    "alpha_images",
    "internal_consistency",
    "inter_method",
    "resilience",
    "reactivity",
    "rank_resilience",
    "worse_under_disruption",
    "meta_consistency",
)
"""The keys of every row, in display order; a value that cannot be assessed is ``None``."""


# --------------------------------------------------------------------------------------------
# From stored results to rows.


def _records(
    source: Any, arrays: Mapping[str, Mapping[str, Any]] | None
) -> tuple[pd.DataFrame, dict[tuple[str, str], str]]:
    """Successful jobs as one frame (cell fields, explainer, evaluator label and name, values,
    arrays, job key) and the directions known from the source."""
    directions: dict[tuple[str, str], str] = {}
    figure_arrays: dict[tuple, Mapping[str, Any]] = {}
    if hasattr(source, "jobs") and isinstance(source.jobs, pd.DataFrame):
        board = source
        frame = board.jobs.copy()
        cells = getattr(board, "cells", pd.DataFrame())
        if len(cells):
            for label, column, direction in cells[["evaluator", "metric", "direction"]].itertuples(
                index=False
            ):
                directions[(label, column.removeprefix(f"{label}."))] = direction
        for label, (_, rows) in getattr(board, "figure_inputs", {}).items():
            for row in rows.to_dict("records"):
                key = (row.get("dataset"), row.get("model"), row.get("debiaser"))
                key += (row.get("explainer"), label, row.get("seed"))
                figure_arrays[key] = row.get("arrays") or {}
    elif isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        frame = pd.DataFrame(list(source))
    if not len(frame):
        empty = [*CELL, "explainer", "evaluator", "name", "values", "arrays", "job_key"]
        return pd.DataFrame(columns=empty), directions
    if "status" in frame:
        frame = frame[frame["status"] == "ok"]
    frame = frame.reset_index(drop=True)
    for column in ("dataset", "model", "debiaser", "explainer"):
        if column not in frame:
            frame[column] = ""
        frame[column] = frame[column].fillna("").astype(str)
    if "seed" not in frame:
        frame["seed"] = 0
    if "job_key" not in frame:
        frame["job_key"] = [f"job-{i}" for i in range(len(frame))]

    def name_of(row: Mapping[str, Any]) -> str:
        components = row.get("components")
        if isinstance(components, Mapping) and isinstance(components.get("evaluator"), Mapping):
            return str(components["evaluator"].get("name") or row["evaluator"])
        given = row.get("evaluator_name")
        return str(given) if isinstance(given, str) and given else str(row["evaluator"])

    def arrays_of(row: Mapping[str, Any]) -> Mapping[str, Any]:
        if arrays is not None and row["job_key"] in arrays:
            return arrays[row["job_key"]] or {}
        own = row.get("arrays")
        if isinstance(own, Mapping):
            return own
        key = (row["dataset"], row["model"], row["debiaser"], row["explainer"])
        return figure_arrays.get((*key, row["evaluator"], row["seed"]), {})

    rows = frame.to_dict("records")
    frame["name"] = [name_of(r) for r in rows]
    frame["arrays"] = [arrays_of(r) for r in rows]
    frame["values"] = [dict(r.get("values") or {}) for r in rows]
    return frame, directions


def _skipped(metric: str, direction: str | None) -> bool:
    return direction == "neither" or metric.endswith("verdict") or metric == "p_value"


def _long(frame: pd.DataFrame, directions: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """One row per (job, metric) of the evaluators that are not the meta-evaluation."""
    rows = []
    for job in frame.itertuples(index=False):
        if job.name == META_EVALUATOR:
            continue
        for metric, value in job.values.items():
            if _skipped(metric, directions.get((job.evaluator, metric))):
                continue
            rows.append(
                {
                    **{c: getattr(job, c) for c in CELL},
                    "explainer": job.explainer,
                    "evaluator": job.evaluator,
                    "name": job.name,
                    "metric": metric,
                    "value": float(value),
                    "job_key": job.job_key,
                }
            )
    return pd.DataFrame(
        rows, columns=[*CELL, "explainer", "evaluator", "name", "metric", "value", "job_key"]
    )


def _pooled_alpha(
    scores: pd.DataFrame, rater: str, group: Sequence[str], direction: str, level: Level
) -> float | None:
    """Alpha of rankings of explainers within each ``group`` x ``rater`` cell; the raters are
    the values of ``rater``, the units the (group, explainer) pairs. ``None`` with fewer than
    two raters or an undefined alpha."""
    if scores[rater].nunique() < 2:
        return None
    cell = [*group, rater]
    scores = scores.groupby([*cell, "explainer"], as_index=False)["value"].mean()
    oriented = _oriented(scores["value"].to_numpy(dtype=float), direction)
    scores = scores.assign(
        rank=pd.Series(-oriented, index=scores.index)
        .groupby([scores[c] for c in cell])
        .rank(method="average")
    )
    table = scores.pivot_table(
        index=rater, columns=[*group, "explainer"], values="rank", aggfunc="mean", dropna=False
    )
    alpha = krippendorff_alpha(table.to_numpy(dtype=float), level)
    return alpha if math.isfinite(alpha) else None


RETRAIN_METRICS = frozenset({"auc", "auc_vs_random"})
"""The ROAR / KAR metrics whose per-retraining-seed values ``auc_per_seed`` holds (within a
cell ``auc_vs_random`` is ``auc`` minus one baseline, so it ranks the same); the others (mask
accuracy, per-threshold accuracies) get no retraining alpha."""


def _retrain_frame(scores: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The ``auc_per_seed`` of each job (ROAR / KAR), one row per retraining seed, for the
    metrics it measures (``RETRAIN_METRICS``)."""
    by_key = dict(zip(frame["job_key"], frame["arrays"], strict=True))
    rows = []
    for job in scores.itertuples(index=False):
        if job.metric not in RETRAIN_METRICS:
            continue
        per_seed = (by_key.get(job.job_key) or {}).get("auc_per_seed")
        if not isinstance(per_seed, Sequence) or isinstance(per_seed, str):
            continue
        for r, value in enumerate(per_seed):
            rows.append({**job._asdict(), "retrain": r, "value": float(value)})
    return pd.DataFrame(rows, columns=[*scores.columns, "retrain"])


def _image_frame(
    scores: pd.DataFrame, per_image: Mapping[str, Mapping[str, Any]] | None
) -> pd.DataFrame:
    """One row per (job, image) from the given per-image scores of the metric."""
    rows: list[dict[str, Any]] = []
    if not per_image:
        return pd.DataFrame(rows, columns=[*scores.columns, "image"])
    for job in scores.itertuples(index=False):
        values = (per_image.get(job.job_key) or {}).get(job.metric)
        if values is None:
            continue
        values = np.asarray(values, dtype=float)
        if values.ndim != 1:
            continue
        base = job._asdict()
        rows.extend({**base, "image": i, "value": float(v)} for i, v in enumerate(values))
    return pd.DataFrame(rows, columns=[*scores.columns, "image"])


def _consistency(images: pd.DataFrame) -> float | None:
    if not len(images):
        return None
    found = []
    for _, cell in images.groupby(list(CELL)):
        table = cell.pivot_table(index="explainer", columns="image", values="value")
        value = internal_consistency(table.to_numpy(dtype=float))
        if math.isfinite(value):
            found.append(value)
    return float(np.mean(found)) if found else None


def _inter_method(
    long: pd.DataFrame,
    evaluator: str,
    metric: str,
    partners: Sequence[tuple[str, str]],
    directions: Mapping[tuple[str, str], str],
) -> float | None:
    """Mean Spearman over cells and partners between this metric and each partner metric."""
    own = long[(long["evaluator"] == evaluator) & (long["metric"] == metric)]
    rhos = []
    for partner_label, partner_metric in partners:
        other = long[(long["evaluator"] == partner_label) & (long["metric"] == partner_metric)]
        both = own.merge(other, on=[*CELL, "explainer"], suffixes=("", "_other"))
        if not len(both):
            continue
        for _, cell in both.groupby(list(CELL)):
            rho = spearman(
                _oriented(
                    cell["value"].to_numpy(float), directions.get((evaluator, metric), "higher")
                ),
                _oriented(
                    cell["value_other"].to_numpy(float),
                    directions.get((partner_label, partner_metric), "higher"),
                ),
            )
            if math.isfinite(rho):
                rhos.append(rho)
    return float(np.mean(rhos)) if rhos else None


def _meta_columns(frame: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (evaluator name, metric) the MetaQuantus columns from the meta-evaluation jobs."""
    meta = frame[frame["name"] == META_EVALUATOR]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not len(meta):
        return out
    functions = sorted(
        {m.split(".", 1)[0] for values in meta["values"] for m in values if "." in m}
    )
    for fn in functions:
        columns: dict[str, Any] = {}
        for part in META_METRICS:
            found = [v[f"{fn}.{part}"] for v in meta["values"] if f"{fn}.{part}" in v]
            columns[part] = float(np.mean(found)) if found else None
        columns["rank_resilience"] = _rank_resilience(meta, fn)
        parts = [columns[p] for p in ("resilience", "reactivity", "rank_resilience")]
        parts.append(columns["worse_under_disruption"])
        known = [p for p in parts if p is not None]
        columns["meta_consistency"] = float(np.mean(known)) if known else None
        columns["n_explainers"] = int(meta["explainer"].nunique())
        columns["n_repeats"] = int(meta[list(CELL)].drop_duplicates().shape[0])
        out[META_TARGETS.get(fn, (fn, "score"))] = columns
    return out


def _rank_resilience(meta: pd.DataFrame, fn: str) -> float | None:
    """IEC_NR on the stored per-draw means: explainers ranked without and with each minor
    perturbation, within each cell with two or more explainers."""
    kept = []
    for _, cell in meta.groupby(list(CELL)):
        if cell["explainer"].nunique() < 2:
            continue
        tables = [(a or {}).get("mean_scores", {}).get(fn) for a in cell["arrays"]]
        if any(t is None for t in tables):
            continue
        for test in sorted(set.intersection(*(set(t) for t in tables))):
            draws = [t[test].get("minor") for t in tables]
            if any(d is None for d in draws):
                continue
            before = np.array([d["unperturbed"] for d in draws], dtype=float)
            after = np.array([d["perturbed"] for d in draws], dtype=float)
            if before.shape != after.shape or before.ndim != 2:
                continue
            for k in range(before.shape[1]):
                value = rank_kept(before[:, k], after[:, k])
                if math.isfinite(value):
                    kept.append(value)
    return float(np.mean(kept)) if kept else None


def _select(frame: pd.DataFrame, evaluator: str, metric: str) -> pd.DataFrame:
    if not len(frame):
        return frame
    return frame[(frame["evaluator"] == evaluator) & (frame["metric"] == metric)]


def _property_of(name: str, metric: str, properties: Mapping[str, Sequence[str]]) -> str | None:
    for prop, members in properties.items():
        if f"{name}.{metric}" in members:
            return prop
    return None


def reliability_table(
    source: Any,
    *,
    arrays: Mapping[str, Mapping[str, Any]] | None = None,
    per_image: Mapping[str, Mapping[str, Any]] | None = None,
    directions: Mapping[tuple[str, str], str] | None = None,
    properties: Mapping[str, Sequence[str]] = PROPERTIES,
    metrics: Iterable[str] | None = None,
    level: Level = "ordinal",
) -> list[dict[str, Any]]:
    """One row per (evaluator label, metric) with the reliability statistics of the module
    docstring (keys: ``COLUMNS``; ``None`` where a statistic cannot be assessed).

    ``source`` is a ``benchmark.leaderboard.Leaderboard`` (its ``jobs``; directions from its
    ``cells``; arrays of evaluators that draw figures from its ``figure_inputs``), its
    ``jobs`` frame, or an iterable of per-job dicts with ``dataset``, ``model``, ``debiaser``,
    ``explainer``, ``evaluator``, ``seed`` and ``values`` (``{metric: value}``), optionally
    ``job_key``, ``status``, ``evaluator_name`` (the registered name where the label differs)
    and ``arrays``. ``arrays`` maps a job key to its stored arrays (``Store.arrays``): ROAR's
    ``auc_per_seed`` and the meta-evaluation's ``mean_scores`` come from there. ``per_image``
    maps a job key to its per-image scores (``Evaluation.per_image``, by metric name).
    ``directions`` maps ``(evaluator label, metric)`` to higher / lower / neither (metrics
    with ``neither``, verdicts and p-values get no row). ``metrics`` keeps only the named
    columns (``evaluator.metric``). ``level`` is alpha's level of measurement for the ranks.
    """
    frame, known = _records(source, arrays)
    known.update(directions or {})
    long = _long(frame, known)
    meta = _meta_columns(frame)
    wanted = set(metrics) if metrics is not None else None
    names = dict(zip(long["evaluator"], long["name"], strict=True))
    keys = list(dict.fromkeys(zip(long["evaluator"], long["metric"], strict=True)))
    retrain = _retrain_frame(long, frame)
    images = _image_frame(long, per_image)

    rows: list[dict[str, Any]] = []
    covered: set[tuple[str, str]] = set()
    for evaluator, metric in keys:
        column = f"{evaluator}.{metric}"
        if wanted is not None and column not in wanted:
            continue
        name = names[evaluator]
        direction = known.get((evaluator, metric), "higher")
        scores = _select(long, evaluator, metric)
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        prop = _property_of(name, metric, properties)
        row |= {
            "column": column,
            "evaluator": evaluator,
            "metric": metric,
            "direction": direction,
            "property": prop,
            "n_explainers": int(scores["explainer"].nunique()),
            "n_repeats": int(scores[list(CELL)].drop_duplicates().shape[0]),
        }
        for suffix, rater in ACROSS.items():
            group = [c for c in CELL if c != rater]
            row[f"alpha_{suffix}"] = _pooled_alpha(scores, rater, group, direction, level)
        runs = _select(retrain, evaluator, metric)
        if len(runs):
            row["alpha_retrain_seeds"] = _pooled_alpha(runs, "retrain", CELL, direction, level)
        pictures = _select(images, evaluator, metric)
        if len(pictures):
            row["alpha_images"] = _pooled_alpha(pictures, "image", CELL, direction, level)
            row["internal_consistency"] = _consistency(pictures)
        if prop is not None:
            partners = [
                (label, m)
                for label, m in keys
                if (label, m) != (evaluator, metric) and f"{names[label]}.{m}" in properties[prop]
            ]
            row["inter_method"] = _inter_method(long, evaluator, metric, partners, known)
        target = (name, metric)
        if target in meta:
            covered.add(target)
            row |= {k: v for k, v in meta[target].items() if k not in ("n_explainers", "n_repeats")}
        rows.append(row)
    for (name, metric), columns in meta.items():
        column = f"{name}.{metric}"
        if (name, metric) in covered or (wanted is not None and column not in wanted):
            continue
        row = dict.fromkeys(COLUMNS)
        row |= {"column": column, "evaluator": name, "metric": metric}
        row |= {"property": _property_of(name, metric, properties), **columns}
        rows.append(row)
    return rows
