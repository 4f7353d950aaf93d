"""Leaderboard figures of evaluators, drawn from stored arrays (``EvaluatorSpec.figures``).

A spec's ``figures(results)`` gets one row per successful job (the component labels, ``seed``
and the job's stored ``arrays``) and returns ``{file stem: matplotlib Figure}``. Most built-in
figures are the same picture: per (dataset, model, debiaser), one line per explainer of a
stored curve averaged over seeds, maybe against a baseline. :func:`curve_figures` draws it;
the helpers below are what the other figures share (the grouping, the file stems, the legend
outside the axes), so every figure of a leaderboard reads alike.

Give a spec ``figures=functools.partial(curve_figures, title=..., panels=...)``: a partial of
a module-level function pickles, so the spec still travels to worker processes (a lambda
would not). matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

COMBINATION = ("dataset", "model", "debiaser")
"""The columns one figure is drawn for: one figure per trained model of the leaderboard."""

Panel = tuple[str, str, str, str]
"""``(x array, y array, x label, y label)``: one axis of a curve figure."""


def combinations(results: Any, columns: Sequence[str] = COMBINATION) -> Iterator[tuple[Any, Any]]:
    """``(labels, rows)`` per combination of ``columns`` in ``results`` (a DataFrame), in the
    order of the stored rows."""
    yield from results.groupby(list(columns), sort=False)


def stem(prefix: str, labels: Iterable[str]) -> str:
    """A figure's file stem: ``curves-mnist-seed-cnn-none`` for prefix and labels."""
    return "-".join([prefix, *map(str, labels)])


def legend_outside(axis: Any, fontsize: float = 7) -> None:
    """The legend right of the axes, so it never hides a curve however many explainers."""
    axis.legend(fontsize=fontsize, loc="center left", bbox_to_anchor=(1.01, 0.5))


def mean_curve(arrays: Iterable[Mapping[str, Any]], key: str) -> np.ndarray:
    """The stored curve ``key`` averaged over jobs: a curve of a job may be one row or several
    (ROAR: one per retrain seed); every row counts once."""
    rows = [np.atleast_2d(np.asarray(a[key], dtype=float)) for a in arrays]
    return np.concatenate(rows).mean(0)


def curve_figures(
    results: Any,
    title: str,
    panels: Sequence[Panel],
    baseline: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One figure per (dataset, model, debiaser), one axis per panel, one line per explainer:
    the stored curve ``y`` against ``x``, averaged over seeds.

    ``baseline`` is ``(y array, label)`` of a reference curve every job stores alongside its
    own (ROAR's random ranking), drawn dashed over all jobs of the figure.
    """
    import matplotlib.pyplot as plt  # lazy: only leaderboards draw

    figures = {}
    for labels, rows in combinations(results):
        figure, axes = plt.subplots(
            1, len(panels), figsize=(4.8 * len(panels) + 1.8, 4.2), squeeze=False
        )
        colours = plt.get_cmap("tab20")
        for axis, (x_key, y_key, x_label, y_label) in zip(axes[0], panels, strict=True):
            xs = rows["arrays"].iloc[0][x_key]
            for i, (explainer, runs) in enumerate(sorted(rows.groupby("explainer"))):
                curve = mean_curve(runs["arrays"], y_key)
                axis.plot(
                    xs, curve, marker="o", markersize=2, color=colours(i % 20), label=explainer
                )
            if baseline is not None:
                reference = mean_curve(rows["arrays"], baseline[0])
                axis.plot(xs, reference, color="black", linestyle="--", label=baseline[1])
            axis.set_xlabel(x_label)
            axis.set_ylabel(y_label)
            axis.grid(alpha=0.3)
        legend_outside(axes[0][-1])
        figure.suptitle(f"{title}: {' / '.join(labels)}")
        figures[stem("curves", labels)] = figure
    return figures
