"""``bench reproduce`` on the console: a ``benchmark.reproduce.Report`` as rich tables.

Per metric how many values are identical and how far the others moved, the largest
differences, and the conditions published vs rerun. Kept apart from ``benchmark.reproduce``,
which builds the report and its JSON, so that the comparison reads without the layout; text
that comes from the published data or the rerun is escaped for rich markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from benchmark.reproduce import Report


def _std(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def show(report: Report, console: Console) -> None:
    """The report as tables: per metric, the largest differences, the conditions."""
    table = Table(title=f"reproduction of {escape(report.suite)} ({len(report.rows)} cells)")
    for column in (
        "metric",
        "values",
        "identical",
        "largest Δ/std",
        "median Δ/std",
        "largest row-mean shift/std",
        "differing without std (largest |Δ|)",
    ):
        table.add_column(column, overflow="fold")
    for m in report.metrics():
        table.add_row(
            escape(m["metric"]),
            str(m["values"]),
            str(m["identical"]),
            _std(m["largest_std"]),
            _std(m["median_std"]),
            _std(m["largest_mean_shift_std"]),
            f"{m['differing_without_std']} ({_std(m['largest_abs'])})"
            if m["differing_without_std"]
            else "0",
        )
    console.print(table)
    differing = sorted(
        ((r, v) for r in report.rows for v in r.seeds if v.rerun is not None and not v.identical),
        key=lambda rv: (rv[1].diff_std is None, -(rv[1].diff_std or rv[1].abs_diff or 0.0)),
    )
    if differing:
        table = Table(title="largest differences")
        for column in ("row", "metric", "seed", "published", "rerun", "|Δ|", "Δ/std"):
            table.add_column(column, overflow="fold")
        for r, v in differing[:10]:
            table.add_row(
                escape(r.row),
                escape(r.metric),
                str(v.seed),
                repr(v.published),
                repr(v.rerun),
                f"{v.abs_diff:.3g}",
                _std(v.diff_std),
            )
        console.print(table)
    table = Table(title="conditions: published vs rerun")
    for column in ("condition", "published", "rerun", "verdict"):
        table.add_column(column, overflow="fold")
    for c in report.conditions:
        style = {"equal": "", "not recorded": "dim"}.get(c.verdict, "yellow")
        table.add_row(
            c.field,
            escape("; ".join(c.published)),
            escape("; ".join(c.rerun)),
            c.verdict,
            style=style,
        )
    console.print(table)
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    for failure in report.failed:
        console.print(f"[red]rerun failed[/] {escape(failure['job'])}: {escape(failure['error'])}")
    console.print(escape(report.summary()["text"]))
