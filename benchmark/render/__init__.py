"""Writers that turn a ``Leaderboard`` into the files published under ``leaderboards/<suite>/``."""

from __future__ import annotations

from pathlib import Path

from benchmark.leaderboard import Leaderboard
from benchmark.render import markdown


def write(lb: Leaderboard, out_dir: str | Path, columns: list[str] | None = None) -> Path:
    """Write ``README.md`` (ranked tables) and ``results.csv`` (every aggregated cell)."""
    target = Path(out_dir) / lb.suite_name
    target.mkdir(parents=True, exist_ok=True)
    (target / "README.md").write_text(markdown.render(lb, columns), encoding="utf-8")
    cells = lb.cells.sort_values(
        ["dataset", "rank", "model", "debiaser", "explainer", "metric"], na_position="last"
    )
    cells.to_csv(target / "results.csv", index=False, float_format="%.6g")
    return target
