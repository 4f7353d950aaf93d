"""Does a leaderboard's ranking survive the Rashomon set? The spread of each row's primary
metric over its seeds, and which neighbouring rows lie within it.

The seeds of one row are models trained by the same procedure on the same data that differ
only in their random initialisation and batch order: the textbook Rashomon set (Watson et al.
2022; Cooper et al. 2024, "Arbitrariness and social prediction", who find many fairness gaps
smaller than what seeds alone move). A row's **spread** is the range (max - min) of its
primary metric over those models. Two rows next to each other in the ranking whose means
differ by less than the larger of their two spreads are **within arbitrariness**: some model
of the worse row's set scores as well as the better row's mean, and the order between them is
not a property of the methods. This is a reading of the spread, not a test: with three seeds
a range is a rough estimate, and the leaderboard's ranks with ties (``benchmark.statistics``)
remain the conservative reading.

The suites that rank with this (fairness, explainability) hold out no validation split, so
the set here is every seed of the row, not filtered by eps; ``bench run --suite
multiplicity`` measures filtered sets. Works from a leaderboard (``rows_of_leaderboard``) or
from a published ``data.json`` (``rows_of_site_data``), so a published leaderboard whose
store is not public can be read the same way.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.render.escape import md

ROW_KINDS = ("model", "debiaser", "explainer")


@dataclass(frozen=True)
class SpreadRow:
    """One leaderboard row's primary metric over its seeds."""

    labels: tuple[str, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def spread(self) -> float:
        return max(self.values) - min(self.values)


def ranked(rows: Iterable[SpreadRow], direction: str) -> list[SpreadRow]:
    """Rows with at least one value, best mean first."""
    kept = [r for r in rows if r.values]
    return sorted(kept, key=lambda r: -r.mean if direction != "lower" else r.mean)


def within_spread(rows: list[SpreadRow]) -> list[bool]:
    """Per ranked row (but the last): does the next row lie within the larger spread?"""
    return [_close(a, b) for a, b in itertools.pairwise(rows)]


def _close(a: SpreadRow, b: SpreadRow) -> bool:
    return abs(a.mean - b.mean) < max(a.spread, b.spread)


def close_rows(rows: list[SpreadRow]) -> list[int]:
    """Per ranked row, how many other rows lie within the larger of the two spreads."""
    return [sum(_close(a, b) for b in rows if b is not a) for a in rows]


def table(rows: list[SpreadRow], kinds: list[str], metric: str, direction: str) -> list[str]:
    """Markdown lines: the ranked rows with mean, range over seeds, spread and the marker."""
    order = ranked(rows, direction)
    if len(order) < 2:
        return []
    marks = within_spread(order)
    close = close_rows(order)
    pairs = len(marks)
    lines = [
        f"Ranked by **{md(metric)}** ({direction} is better). {sum(marks)} of {pairs} "
        "neighbouring pairs differ by less than the larger of their two spreads (≈ in *next*); "
        f"the first row is that close to {close[0]} of the other {len(order) - 1} rows "
        "(*close rows*).",
        "",
        "| # | "
        + " | ".join(kinds)
        + " | mean | min – max over seeds | spread | next | close rows |",
        "|" + "---|" * (len(kinds) + 6),
    ]
    for index, row in enumerate(order):
        mark = ("≈" if marks[index] else "") if index < pairs else ""
        lines.append(
            f"| {index + 1} | "
            + " | ".join(md(label) for label in row.labels)
            + f" | {row.mean:.4f} | {min(row.values):.4f} – {max(row.values):.4f} "
            f"| {row.spread:.4f} (n={len(row.values)}) | {mark} | {close[index]} |"
        )
    return lines


def section(
    by_dataset: Mapping[str, list[SpreadRow]],
    primary: Mapping[str, tuple[str, str]],
    kinds: list[str],
) -> list[str]:
    """The ``## Rashomon spread`` section, one table per dataset; empty where no row has two
    seeds (a model-set suite's rows are sets already)."""
    tables: list[str] = []
    for dataset, rows in by_dataset.items():
        if not any(len(r.values) > 1 for r in rows):
            continue
        metric, direction = primary[dataset]
        body = table(rows, kinds, metric, direction)
        if body:
            tables += [f"### {md(dataset)}", "", *body, ""]
    if not tables:
        return []
    return [
        "## Rashomon spread",
        "",
        "Each row's primary metric over its seeds: models that differ only by seed, the row's "
        "Rashomon set (all of its seeds, not filtered by validation accuracy). Two rows whose "
        "means differ by less than the larger of their two spreads are "
        "within arbitrariness: some model of one row's set scores as well as the other row's mean. "
        "A reading of the spread, not a test; three seeds make a rough range "
        "(`benchmark.rashomon_spread`).",
        "",
        *tables,
    ]


def rows_of_leaderboard(lb: Any) -> dict[str, list[SpreadRow]]:
    """Per dataset, each row's primary-metric values over its successful seeds."""
    jobs = lb.jobs
    out: dict[str, list[SpreadRow]] = {}
    if not len(jobs):
        return out
    kinds = [k for k in ROW_KINDS if k in jobs and jobs[k].fillna("").astype(bool).any()]
    for dataset, (metric, _) in lb.primary.items():
        frame = jobs[(jobs["dataset"] == dataset) & (jobs["status"] == "ok")]
        rows = []
        for labels, group in frame.groupby([frame[k].fillna("") for k in kinds], sort=False):
            labels = labels if isinstance(labels, tuple) else (labels,)
            values = [
                float(v[name])
                for v, evaluator in zip(group["values"], group["evaluator"], strict=True)
                if isinstance(v, dict) and _finite(v.get(name := _bare(metric, evaluator)))
            ]
            rows.append(SpreadRow(tuple(labels), tuple(values)))
        out[dataset] = rows
    return out


def _bare(metric: str, evaluator: str) -> str:
    """A metric as one evaluator's job stores it (``label.metric`` when two share a name)."""
    return metric.removeprefix(f"{evaluator}.")


def row_kinds_of(lb: Any) -> list[str]:
    jobs = lb.jobs
    return [k for k in ROW_KINDS if k in jobs and jobs[k].fillna("").astype(bool).any()]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def rows_of_site_data(data: Mapping[str, Any]) -> tuple[dict[str, list[SpreadRow]], list[str]]:
    """The same rows from a published ``data.json`` (its rows' per-job ``values``)."""
    primary = primary_of_site_data(data)
    kinds = [k for k in ROW_KINDS if any(row.get(k) for row in data["rows"])]
    out: dict[str, list[SpreadRow]] = {}
    for row in data["rows"]:
        metric = primary[row["dataset"]][0]
        values = [
            float(job["values"][name])
            for job in row.get("jobs", [])
            if job.get("status") == "ok"
            and _finite((job.get("values") or {}).get(name := _bare(metric, job["evaluator"])))
        ]
        labels = tuple(row.get(k) or "" for k in kinds)
        out.setdefault(row["dataset"], []).append(SpreadRow(labels, tuple(values)))
    return out, kinds


def primary_of_site_data(data: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``dataset -> (primary metric, direction)`` of a published ``data.json``."""
    return {d["name"]: (d["primary_metric"], d["direction"]) for d in data["datasets"]}


def insert_section(readme: str, lines: list[str]) -> str:
    """``readme`` with its ``## Rashomon spread`` section replaced by ``lines`` (or inserted
    before the first of Figures / Provenance, else appended): the place ``bench leaderboard``
    renders it, so a later re-render gives the same page."""
    body = readme.splitlines()
    heading = "## Rashomon spread"
    if heading in body:
        start = body.index(heading)
        end = next((i for i in range(start + 1, len(body)) if body[i].startswith("## ")), len(body))
        body[start:end] = lines
    else:
        at = next(
            (i for i, line in enumerate(body) if line in ("## Figures", "## Provenance")),
            len(body),
        )
        body[at:at] = lines
    return "\n".join(body).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmark.rashomon_spread leaderboards/<suite>``: add the section to a
    leaderboard published before it existed, from its ``data.json`` (whose store may not be
    public), into its README.md."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmark.rashomon_spread LEADERBOARD_DIR", file=sys.stderr)
        return 2
    folder = Path(args[0])
    source, target = folder / "data.json", folder / "README.md"
    for needed in (source, target):
        if not needed.is_file():
            print(f"error: {needed}: no published leaderboard file", file=sys.stderr)
            return 2
    data = json.loads(source.read_text(encoding="utf-8"))
    rows, kinds = rows_of_site_data(data)
    lines = section(rows, primary_of_site_data(data), kinds)
    if not lines:
        print(f"error: {source}: no row has two seeds", file=sys.stderr)
        return 2
    lines += [f"(Added from this folder's `{source.name}`.)", ""]
    readme = target.read_text(encoding="utf-8")
    target.write_text(insert_section(readme, lines), encoding="utf-8")
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
