"""Writers that turn a ``Leaderboard`` into the files published under ``leaderboards/<suite>/``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from benchmark.leaderboard import Leaderboard
from benchmark.render import markdown


def write(lb: Leaderboard, out_dir: str | Path, columns: list[str] | None = None) -> Path:
    """Write ``README.md`` (ranked tables), ``results.csv`` (every aggregated cell) and the
    evaluators' summary figures under ``figures/``."""
    target = Path(out_dir) / lb.suite_name
    target.mkdir(parents=True, exist_ok=True)
    figures, figure_errors = write_figures(lb, target / "figures")
    (target / "README.md").write_text(
        markdown.render(lb, columns, figures=figures, figure_errors=figure_errors),
        encoding="utf-8",
    )
    cells = lb.cells.sort_values(
        ["dataset", "rank", "model", "debiaser", "explainer", "metric"], na_position="last"
    )
    cells.to_csv(target / "results.csv", index=False, float_format="%.6g")
    return target


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "figure"


def write_figures(lb: Leaderboard, folder: Path) -> tuple[list[str], list[str]]:
    """Draw every evaluator's ``figures`` from the stored arrays and save them as PNG.

    The folder is rebuilt from scratch so a published leaderboard never keeps a stale figure.
    An evaluator whose figure function raises loses its figures, not the leaderboard: the
    error is returned for the README. PNGs carry no timestamp, so an unchanged store rewrites
    byte-identical files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if folder.exists():
        shutil.rmtree(folder)
    written: list[str] = []
    errors: list[str] = []
    for label, (spec, results) in sorted(lb.figure_inputs.items()):
        try:
            figures = spec.figures(results) if spec.figures is not None else {}
        except Exception as exc:
            errors.append(f"evaluator '{label}': {type(exc).__name__}: {exc}")
            continue
        for stem, figure in sorted(figures.items()):
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{_slug(label)}-{_slug(stem)}.png"
            figure.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
            plt.close(figure)
            written.append(f"{folder.name}/{path.name}")
    return written, errors
