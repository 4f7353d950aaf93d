"""Writers that turn a ``Leaderboard`` into the files published under ``leaderboards/<suite>/``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.kinds import COMPONENT_KINDS as KINDS
from benchmark.leaderboard import Leaderboard
from benchmark.render import markdown
from benchmark.render.paths import slug


def write(lb: Leaderboard, out_dir: str | Path, columns: list[str] | None = None) -> Path:
    """Write ``README.md`` (ranked tables), ``results.csv`` (every aggregated cell),
    ``seeds.csv`` (every planned job's own values, one row per seed), the evaluators' summary
    figures under ``figures/``, the site's ``data.json`` and
    ``index.html``, and refresh the site's ``index.html`` over every suite of ``out_dir``."""
    from benchmark.render import site, site_data

    target = Path(out_dir) / lb.suite_name
    target.mkdir(parents=True, exist_ok=True)
    remove_written(target)
    figures, figure_errors = write_figures(lb, target / "figures")
    (target / "README.md").write_text(
        markdown.render(lb, columns, figures=figures, figure_errors=figure_errors),
        encoding="utf-8",
    )
    cells = lb.cells.sort_values(
        ["dataset", "rank", "model", "debiaser", "explainer", "metric"], na_position="last"
    )
    cells.to_csv(target / "results.csv", index=False, float_format="%.6g")
    seeds_frame(lb).to_csv(target / "seeds.csv", index=False)
    document = site_data.build(lb, columns, figures, figure_errors)
    pages = site.write_suite(document, target)
    record_written(target, ["README.md", "results.csv", "seeds.csv", *figures, *pages])
    site.write_index(Path(out_dir))
    return target


SEED_COLUMNS = (*KINDS, "seed", "status", "job_key")
"""What identifies a row of ``seeds.csv``; the metric columns follow."""


def seeds_frame(lb: Leaderboard) -> pd.DataFrame:
    """One row per planned job (``Leaderboard.jobs``): its labels, seed, status (ok, failed,
    missing), job key and the value of every metric it stored, so a reader can recompute any
    cell of ``results.csv`` or test over seeds. Metric columns are named as in ``results.csv``
    (``evaluator.metric`` where two evaluators share a name), in its order; a job leaves the
    other evaluators' columns empty. Values are written at full precision (they are data)."""
    known = list(dict.fromkeys(lb.cells["metric"]))
    rows = []
    for job in lb.jobs.to_dict("records"):
        row = {column: job[column] for column in SEED_COLUMNS}
        for metric, value in job["values"].items():
            shared = f"{job['evaluator']}.{metric}"
            row[shared if shared in known else metric] = value
        rows.append(row)
    found = {column for row in rows for column in row}
    metrics = [c for c in known if c in found]
    metrics += sorted(found - set(metrics) - set(SEED_COLUMNS))  # stored, not in the suite now
    frame = pd.DataFrame(rows, columns=[*SEED_COLUMNS, *metrics])
    return frame.sort_values([*KINDS, "seed"], na_position="first", kind="stable")


MANIFEST = ".bench-written.json"
"""The files the last ``write`` put in a leaderboard folder: the only ones it may delete."""


def remove_written(target: Path) -> None:
    """Delete what the previous ``write`` wrote here (a stale figure must not survive), and
    nothing else: a suite's name is a slug, but a folder is still the user's."""
    manifest = target / MANIFEST
    try:
        names = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for name in names if isinstance(names, list) else []:
        path = (target / str(name)).resolve()
        if path.parent not in (target.resolve(), (target / "figures").resolve()):
            continue  # never outside the folder, whatever the manifest says
        if path.is_file() and not path.is_symlink():
            path.unlink()


def record_written(target: Path, names: list[str]) -> None:
    (target / MANIFEST).write_text(json.dumps(sorted(names), indent=0), encoding="utf-8")


def write_figures(lb: Leaderboard, folder: Path) -> tuple[list[str], list[str]]:
    """Draw every evaluator's ``figures`` from the stored arrays and save them as PNG.

    Figures of the previous write were removed by ``remove_written``, so a published
    leaderboard never keeps a stale figure. An evaluator whose figure function raises loses its
    figures, not the leaderboard: the error is returned for the README. PNGs carry no
    timestamp, so an unchanged store rewrites byte-identical files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            path = folder / f"{slug(label)}-{slug(stem)}.png"
            figure.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
            plt.close(figure)
            written.append(f"{folder.name}/{path.name}")
    return written, errors
