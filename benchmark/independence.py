"""Model-independence flags: a score that does not move when the model does.

An explainer whose maps ignore the model (an edge detector, a seeded random map) can still
get a precise-looking score: every seed and every model gives the same number, so the
leaderboard shows a tiny standard deviation and a confident rank, although the metric then
measures the *images*, not the model. This module finds such cells from the stored jobs.

For each (dataset, explainer, evaluator, metric) with at least two values over models,
debiasers and seeds together:

* ``spread``: their standard deviation (ddof=1);
* ``image_spread``: where the evaluator stored per-image scores of that metric
  (``per_image_spread`` in a job's arrays, ``benchmark.specs.Evaluation.per_image``), the mean
  over jobs of their standard deviation over images;
* ``flag``: ``identical`` when every value is the same (to ``1e-12`` relative), or
  ``far below image spread`` when ``spread < RATIO * image_spread``: the images move the score
  a hundred times more than the model does.

Verdicts and counts (direction ``neither``, names ending in ``verdict``) are left out: a pass
that every seed agrees on is not a sign of model independence. Where every row has one model
and one seed, nothing can be assessed, and the page says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import pandas as pd

RATIO = 0.01
"""A spread over models and seeds below this share of the spread over images is flagged."""
COLUMNS = [
    "dataset",
    "explainer",
    "evaluator",
    "metric",
    "n_values",
    "spread",
    "image_spread",
    "flag",
]


def _skipped(metric: str, direction: str | None) -> bool:
    return direction == "neither" or metric.endswith("verdict")


def model_independence(
    jobs: pd.DataFrame,
    directions: Mapping[tuple[str, str], str],
    image_spreads: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> pd.DataFrame:
    """One row per assessable (dataset, explainer, evaluator, metric); ``flag`` empty when
    the score moves with the model.

    ``jobs`` is ``Leaderboard.jobs`` (component labels, ``job_key``, ``status``, ``values``),
    ``directions`` maps ``(evaluator label, metric)`` to its direction, ``image_spreads``
    maps a job key to its stored ``per_image_spread``.
    """
    image_spreads = image_spreads or {}
    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    spreads: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    if len(jobs):
        for job in jobs[jobs["status"] == "ok"].itertuples(index=False):
            per_image = image_spreads.get(job.job_key, {})
            for metric, value in job.values.items():
                if _skipped(metric, directions.get((job.evaluator, metric))):
                    continue
                key = (job.dataset, job.explainer or "", job.evaluator, metric)
                values[key].append(float(value))
                if metric in per_image and per_image[metric].get("std") is not None:
                    spreads[key].append(float(per_image[metric]["std"]))
    rows = []
    for key, vals in values.items():
        if len(vals) < 2:
            continue
        arr = np.asarray(vals)
        spread = float(arr.std(ddof=1))
        image = float(np.mean(spreads[key])) if spreads.get(key) else np.nan
        scale = max(1.0, float(np.abs(arr).max()))
        if float(arr.max() - arr.min()) <= 1e-12 * scale:
            flag = "identical"
        elif np.isfinite(image) and spread < RATIO * image:
            flag = "far below image spread"
        else:
            flag = ""
        rows.append([*key, len(vals), spread, image, flag])
    return pd.DataFrame(rows, columns=COLUMNS)


def assessable(jobs: pd.DataFrame) -> bool:
    """Whether any (dataset, explainer, evaluator) has more than one model, debiaser or seed."""
    if not len(jobs):
        return False
    ok = jobs[jobs["status"] == "ok"].fillna({"explainer": ""})
    return bool((ok.groupby(["dataset", "explainer", "evaluator"]).size() > 1).any())
