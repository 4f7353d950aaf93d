"""The evaluator-reliability table as GFM, from the rows of ``benchmark.reliability``.

Kept apart from the statistics so that computing the rows needs no rendering and the README
writer (``benchmark.render.markdown``) finds every table it renders under ``benchmark.render``.
Every string passes through ``benchmark.render.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchmark.render.escape import md, md_code

HEADERS = {
    "column": "metric",
    "n_explainers": "explainers",
    "n_repeats": "cells",
    "alpha_seeds": "α seeds",
    "alpha_retrain_seeds": "α retrains",
    "alpha_models": "α models",
    "alpha_debiasers": "α debiasers",
    "alpha_datasets": "α datasets",
    "alpha_images": "α images",
    "internal_consistency": "internal consistency",
    "inter_method": "inter-method ρ",
    "resilience": "resilience (IAC NR)",
    "reactivity": "reactivity (IAC AR)",
    "rank_resilience": "rank resilience (IEC NR)",
    "worse_under_disruption": "worse when disrupted (IEC AR)",
    "meta_consistency": "MC",
}
"""The header of each rendered column; a column with no value in any row is left out."""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return md(value)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A GFM table of ``rows`` (from ``benchmark.reliability.reliability_table``): the metric as
    code, numbers to three decimals, ``–`` where not assessable; optional columns without any
    value are dropped. Every string passes through ``benchmark.render.escape``."""
    if not rows:
        return "_No evaluator results to assess._\n"
    always = ("column", "n_explainers", "n_repeats")
    shown = [
        key for key in HEADERS if key in always or any(row.get(key) is not None for row in rows)
    ]
    lines = [
        "| " + " | ".join(md(HEADERS[k]) for k in shown) + " |",
        "|" + "|".join(":--" if k == "column" else "--:" for k in shown) + "|",
    ]
    for row in rows:
        cells = [
            md_code(row["column"], in_table=True) if k == "column" else _cell(row.get(k))
            for k in shown
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def by_column(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rows keyed by their ``column`` (what a renderer looks a leaderboard column up by)."""
    return {str(row["column"]): dict(row) for row in rows}
