"""The one way a leaderboard cell is written, shared by the Markdown page and the site's data.

Both outputs show the same string for the same cell (``tests/test_site_data.py`` holds them to
it): ``mean ± std [ci_low, ci_high] (n=k)`` with four decimals, then the badges for seeds that
failed or have not run. The interval is ``benchmark.statistics``' 95 % t interval over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DECIMALS = 4


def number(value: float) -> str:
    return f"{value:.{DECIMALS}f}"


def value_text(cell: Mapping[str, Any]) -> str:
    """The numbers of a cell, or ``""`` when no seed produced one. A count (direction
    ``neither``: cells, images) is written as a count: ``100 (n=3)`` when every seed agrees,
    else its mean and std with one decimal, no interval; a ``neither`` share below 2 (a
    floor, an area) is written like any score."""
    if not cell.get("n"):
        return ""
    if cell.get("direction") == "neither":
        std = cell.get("std")
        steady = std is None or math.isnan(std) or std == 0
        if steady and float(cell["mean"]).is_integer():
            return f"{cell['mean']:g} (n={cell['n']})"
        if abs(cell["mean"]) >= 2:  # a count that varies over seeds
            spread = "" if steady else f" ± {std:.1f}"
            return f"{cell['mean']:.1f}{spread} (n={cell['n']})"
    text = number(cell["mean"])
    std, low, high = (cell.get(k) for k in ("std", "ci_low", "ci_high"))
    if std is not None and not math.isnan(std):
        text += f" ± {number(std)}"
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        text += f" [{number(low)}, {number(high)}]"
    return f"{text} (n={cell['n']})"


def badges(cell: Mapping[str, Any]) -> list[str]:
    """``FAILED k/n`` and ``missing k/n`` where seeds failed or never ran."""
    out = []
    if cell.get("n_failed"):
        out.append(f"FAILED {cell['n_failed']}/{cell['n_expected']}")
    if cell.get("n_missing"):
        out.append(f"missing {cell['n_missing']}/{cell['n_expected']}")
    return out


def cell_text(cell: Mapping[str, Any]) -> str:
    """The plain text of a cell: numbers and badges, ``—`` when there is neither."""
    return " ".join(part for part in (value_text(cell), *badges(cell)) if part) or "—"


def cell_markdown(cell: Mapping[str, Any]) -> str:
    """The Markdown of a cell: ``cell_text`` with a failure in bold and a gap in italics (it
    renders to exactly ``cell_text``)."""
    parts = [value_text(cell)] if cell.get("n") else []
    for badge in badges(cell):
        parts.append(f"**{badge}**" if badge.startswith("FAILED") else f"*{badge}*")
    return " ".join(parts) or "—"


def rank_text(rank: float | None, tied: bool) -> str:
    """``1``, ``=1`` for a shared rank, ``–`` for no rank."""
    if rank is None or (isinstance(rank, float) and math.isnan(rank)):
        return "–"
    return f"={int(rank)}" if tied else str(int(rank))
