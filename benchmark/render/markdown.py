"""Leaderboard -> Markdown: one ranked table per dataset, failures listed, provenance stated.

Every number states its spread, interval and sample size (``mean ± std [95 % interval] (n)``,
``benchmark.render.cells``), every column its direction (↑ higher is better, ↓ lower), every
rank whether it is shared (``=1``: the intervals overlap, ``benchmark.statistics``), and every
cell that failed or never ran says so instead of staying blank. Every string a plugin or a
suite provides goes through ``benchmark.render.escape``.
"""

from __future__ import annotations

import json
import math

import pandas as pd
from scipy.stats import kendalltau

from benchmark import rashomon_spread
from benchmark.independence import RATIO
from benchmark.kinds import COMPONENT_KINDS
from benchmark.leaderboard import ROW_KINDS, Leaderboard
from benchmark.render.cells import cell_markdown, rank_text
from benchmark.render.escape import md, md_code
from benchmark.statistics import INTERVAL_METHOD, RANK_METHOD

ARROWS = {"higher": "↑", "lower": "↓", "neither": ""}


def _cell(row: pd.Series) -> str:
    return cell_markdown(row.to_dict())


def header(lb: Leaderboard, metric: str, direction: str | None) -> str:
    """A metric's column header: its label (escaped) and its direction's arrow."""
    arrow = ARROWS.get(direction or "higher", "")
    return f"{md(lb.labels.get(metric, metric))} {arrow}".rstrip()


def _columns(cells: pd.DataFrame, wanted: list[str], primary: str) -> list[str]:
    """The metrics shown, in order: the primary one first, then ``wanted`` (default: all)."""
    metrics = list(dict.fromkeys(cells["metric"]))
    columns = [m for m in wanted if m in metrics] if wanted else metrics
    return [primary, *(m for m in columns if m != primary)]


def _row_kinds(cells: pd.DataFrame) -> list[str]:
    """The row-identifying kinds this dataset's table uses (those that are not all empty)."""
    return [k for k in ROW_KINDS if (cells[k] != "").any()]


def _dataset_table(lb: Leaderboard, dataset: str, wanted: list[str]) -> str:
    cells = lb.cells[lb.cells["dataset"] == dataset]
    metric, direction = lb.primary[dataset]
    columns = _columns(cells, wanted, metric)
    row_kinds = _row_kinds(cells)
    directions = dict(zip(cells["metric"], cells["direction"], strict=False))

    rows = []
    for keys, group in cells.groupby(row_kinds, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        by_metric = {r["metric"]: r for _, r in group.iterrows()}
        ranked = group.dropna(subset=["rank"])
        primary_mean = by_metric[metric]["mean"] if metric in by_metric else math.nan
        rows.append(
            {
                "order": -primary_mean if direction == "higher" else primary_mean,
                "rank": int(ranked["rank"].iloc[0]) if len(ranked) else None,
                "tied": bool(ranked["tied"].iloc[0]) if len(ranked) else False,
                "cells": [
                    *(md(key) for key in keys),
                    *(_cell(by_metric[m]) if m in by_metric else "—" for m in columns),
                ],
            }
        )
    # by rank, then within a shared rank by the primary metric's mean, best first
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, math.isnan(r["order"]), r["order"]))

    head = ["rank", *row_kinds, *(header(lb, m, directions.get(m)) for m in columns)]
    lines = [
        f"### {md(dataset)}",
        "",
        f"Ranked by **{md(metric)}** ({direction} is better).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join([rank_text(row["rank"], row["tied"]), *row["cells"]]) + " |")
    return "\n".join(lines)


def _rank_table(lb: Leaderboard, dataset: str, wanted: list[str]) -> str:
    """Each row's rank under every shown metric, and how far each metric agrees with the primary.

    Faithfulness metrics are known to disagree with one another (Tomsett et al. 2020, "Sanity
    checks for saliency metrics"), so a single ranked column would hide the question a user
    most needs answered: does the winner depend on the metric? Ranks are by mean (1 = best in
    the metric's direction, ties share the lowest rank); the last row is Kendall's tau-b between
    the metric's ranking and the primary one over the rows both rank (1: same order, -1:
    reversed). Empty when there are fewer than three rows: no ranking to compare.
    """
    cells = lb.cells[lb.cells["dataset"] == dataset]
    metric, _ = lb.primary[dataset]
    columns = _columns(cells, wanted, metric)
    row_kinds = _row_kinds(cells)
    means = cells.pivot_table(index=row_kinds, columns="metric", values="mean", dropna=False)
    if len(means) < 3 or metric not in means:
        return ""
    directions = dict(zip(cells["metric"], cells["direction"], strict=False))
    ranks = pd.DataFrame(
        {
            m: means[m].rank(ascending=directions.get(m) == "lower", method="min")
            for m in columns
            if m in means and directions.get(m) in ("higher", "lower")
        }
    )
    ranks = ranks.sort_values(metric, na_position="last")
    head = [*row_kinds, *(header(lb, m, directions.get(m)) for m in ranks)]
    lines = [
        f"Rank of each row by each metric's mean (1 = best; no ties from intervals here), and "
        f"Kendall's τ with the **{md(metric)}** ranking:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for keys, row in ranks.iterrows():
        keys = keys if isinstance(keys, tuple) else (keys,)
        shown = ("–" if math.isnan(r) else str(int(r)) for r in row)
        lines.append("| " + " | ".join([*map(md, keys), *shown]) + " |")
    taus = []
    for m in ranks:
        both = ranks[[metric, m]].dropna()
        tau = kendalltau(both[metric], both[m]).statistic if len(both) >= 3 else math.nan
        taus.append("–" if math.isnan(tau) else f"{tau:+.2f}")
    lines.append("| " + " | ".join(["**τ**", *[""] * (len(row_kinds) - 1), *taus]) + " |")
    return "\n".join(lines)


def _conditions(lb: Leaderboard) -> list[str]:
    """Under which device and thread count the shown jobs ran; a warning when they differ,
    since numbers at the last bits depend on both."""
    lines = []
    conditions = lb.conditions
    if len(conditions):
        listed = ", ".join(
            f"{row['jobs']} job(s) on {md(row['device'])} with "
            + (
                "unrecorded threads"
                if pd.isna(row["threads"])
                else f"{int(row['threads'])} thread(s)"
            )
            for _, row in conditions.iterrows()
        )
        if len(conditions) > 1:
            lines += [
                f"**Mixed conditions:** {listed}. Rows made on different devices or thread "
                "counts can differ in the last digits for that reason alone.",
                "",
            ]
        else:
            lines += [f"Conditions: {listed}.", ""]
    if lb.kept_after_failure:
        lines += [
            f"{lb.kept_after_failure} job(s) show a stored good result although a later "
            "attempt failed (`bench` never replaces a good result with a failure; the store's "
            "`attempts` table has the errors).",
            "",
        ]
    return lines


def _independence(lb: Leaderboard) -> list[str]:
    """The model-independence flags (``benchmark.independence``), or why there are none."""
    lines = ["## Model independence", ""]
    flags = lb.independence
    if not len(flags):
        return [
            *lines,
            "Not assessable: every (explainer, evaluator) here has one model and one seed, so "
            "no spread over models and seeds can be compared with the spread over images.",
            "",
        ]
    flagged = flags[flags["flag"] != ""]
    lines += [
        f"{len(flags)} (dataset, explainer, metric) combinations have values from several "
        "models or seeds; "
        f"{len(flagged)} are flagged: the score is identical over every model and seed, or "
        f"its spread over them is below {RATIO:g} x its spread over test images, so it "
        "measures the images rather than the model.",
        "",
    ]
    identical = flagged[flagged["flag"] == "identical"]
    below = flagged[flagged["flag"] != "identical"]
    if len(identical):
        lines += [
            "Identical over every model and seed (a model-independent control belongs here):",
            "",
            "| dataset | explainer | evaluator | metrics | examples |",
            "|---|---|---|---|---|",
        ]
        for (dataset, explainer, evaluator), group in identical.groupby(
            ["dataset", "explainer", "evaluator"], sort=False
        ):
            shown = ", ".join(md(m) for m in group["metric"].head(3))
            more = f" and {len(group) - 3} more" if len(group) > 3 else ""
            lines.append(
                f"| {md(dataset)} | {md(explainer)} | {md(evaluator)} | {len(group)} | "
                f"{shown}{more} |"
            )
        lines.append("")
    if len(below):
        lines += [
            "| dataset | explainer | metric | values | spread | spread over images | flag |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in below.itertuples(index=False):
            image = "" if pd.isna(row.image_spread) else f"{row.image_spread:.4g}"
            lines.append(
                f"| {md(row.dataset)} | {md(row.explainer)} | {md(row.evaluator)}.{md(row.metric)} "
                f"| {row.n_values} | {row.spread:.3g} | {image} | {row.flag} |"
            )
        lines.append("")
    return lines


def _reliability(lb: Leaderboard) -> list[str]:
    """The evaluator-reliability table (``benchmark.reliability``) of suites with explainers."""
    if not lb.reliability:
        return []
    from benchmark.reliability import markdown as reliability_markdown

    return [
        "## Evaluator reliability",
        "",
        "Is each metric a reliable instrument for ranking explainers (Tomsett et al. 2020, "
        "Hedström et al. 2023)? α is Krippendorff's ordinal alpha of the explainers' rankings "
        "when the rater is the named repeat that should not matter (1: the same ranking "
        "every time, 0: agreement at chance level, below 0: systematic disagreement): seeds, "
        "ROAR / KAR retraining seeds, models, debiasers, datasets, test images. Internal "
        "consistency is Cronbach's alpha with test images as items; inter-method ρ is the "
        "mean Spearman correlation of the explainer ranking with the other metrics shown that "
        "claim the same property; the MetaQuantus columns (from `meta-evaluation` jobs, where "
        "the suite has them) are resilience to minor and reactivity to disruptive noise. "
        "– means not assessable here (one seed, one model, or no per-image scores kept).",
        "",
        reliability_markdown(lb.reliability),
    ]


def render(
    lb: Leaderboard,
    columns: list[str] | None = None,
    command: str = "",
    figures: list[str] | None = None,
    figure_errors: list[str] | None = None,
) -> str:
    """The whole ``README.md`` of ``leaderboards/<suite>/``; ``figures`` are relative paths."""
    parts = [f"# Leaderboard: {md_code(lb.suite_name)}", ""]
    if lb.description:
        parts += [md(lb.description.strip()), ""]
    parts += [
        f"Reproduce with {md_code(command or f'bench run --suite {lb.suite_ref}')}. "
        "Generated from the results store by `bench leaderboard`; do not edit by hand. "
        "Explore, filter and download it on the [site](index.html) (open the file in a "
        "browser; it needs no network).",
        "",
        "Cells show mean ± standard deviation over seeds (ddof=1), the 95 % interval in "
        f"brackets ({md(INTERVAL_METHOD)}) and n, the number of seeds that produced a value. "
        f"Ranks: {md(RANK_METHOD)}. ↑ higher is better, ↓ lower is better; a column without an "
        "arrow is a count shown beside a score. "
        "**FAILED k/n**: k seeds raised an error (listed below); *missing k/n*: k seeds have "
        "not run yet.",
        "",
    ]
    for dataset in lb.primary:
        parts += [_dataset_table(lb, dataset, columns or []), ""]
        ranks = _rank_table(lb, dataset, columns or [])
        if ranks:
            parts += [ranks, ""]
    parts += rashomon_spread.section(
        rashomon_spread.rows_of_leaderboard(lb), lb.primary, rashomon_spread.row_kinds_of(lb)
    )
    if figures or figure_errors:
        parts += ["## Figures", ""]
        for path in figures or []:
            parts += [f"![{md(path)}]({path})", ""]
        for error in figure_errors or []:
            parts += [f"- figure not drawn: {md(error)}", ""]
    parts += _independence(lb)
    parts += _reliability(lb)
    if len(lb.failures):
        parts += ["## Failures", "", "| job | seed | error |", "|---|---|---|"]
        for _, failure in lb.failures.iterrows():
            job = " / ".join(md(failure[k]) for k in COMPONENT_KINDS if failure[k])
            parts.append(f"| {job} | {failure['seed']} | {md(failure['error'])} |")
        parts.append("")
    if len(lb.runs):
        last = lb.runs.iloc[-1]
        versions = json.loads(last["versions"])
        machine = json.loads(last["machine"])
        cpu = machine.get("cpu") or machine["processor"]
        executor = (
            f"executor {machine['executor']}"
            if machine.get("executor")
            else f"{machine['torch_threads']} torch threads"
        )
        parts += [
            "## Provenance",
            "",
            f"Results produced by run {', '.join(str(r) for r in lb.runs['run_id'])} of the "
            f"store; the latest started {md(last['started_at'])} on {md(machine['platform'])} "
            f"({md(cpu)}, {md(executor)}).",
            "",
            *_conditions(lb),
            "Versions (latest run): "
            + ", ".join(f"{md(k)} {md(v)}" for k, v in sorted(versions.items()))
            + ".",
            "",
        ]
    return "\n".join(parts)
