"""ROAR and KAR: remove (or keep) the pixels an explainer ranks highest, retrain, re-test.

Hooker, Erhan, Kindermans & Kim, "A Benchmark for Interpretability Methods in Deep Neural
Networks", NeurIPS 2019 (reference code: google-research/google-research ``interpretability_
benchmark``). Removing pixels and testing the *original* model confounds "the pixels were
important" with "the model never saw such images"; retraining on the modified training set
removes the distribution shift, so a drop in accuracy means information was removed.

* Ranking (sec. 3): per image, over every pixel position; the heatmap is the squared
  attribution summed over channels by default (``aggregate``), all channels of a chosen pixel
  are replaced. Ties (a Grad-CAM map that is zero over a whole region, a saturated map) are
  broken by one fixed random priority of pixel positions, the same for every image and every
  explainer, so no method gains or loses by the order its ties happen to fall in
  (``benchmark.kit.ranking.ranking`` with this module's ``TIE_SEED``).
* ROAR replaces the top ``t`` % of pixels, KAR the bottom ``t`` % (it keeps the most
  important ones), for ``t`` in ``thresholds`` (10, 30, 50, 70, 90 as in the paper), with the
  per-channel mean of the unmodified training set, in both the training and the test split.
* Retraining: from scratch with the job's own model and debiaser (``context.train``, i.e. the
  runner's content-addressed model cache: a rerun retrains nothing), ``retrain_seeds`` times.
* Baseline: a random ranking (one fixed random order per image, independent of the explainer),
  retrained the same way. It is the same data for every explainer, so its models are trained
  once and then come from the cache. KAR's baseline is the same removal of a random ``t`` %,
  because "remove a random top" and "remove a random bottom" are the same distribution.
* ``auc_std`` is the standard deviation (ddof=1) of the area over the retrains: the spread
  the leaderboard's seed column cannot show when a suite runs one model seed.
* Verdict (sec. 4 asks whether a method beats random): the area under the accuracy curve is
  compared with the random baseline's, paired by retrain seed, with a one-sided paired t-test
  (ROAR: lower than random; KAR: higher). ``verdict`` is 1 when ``p < alpha``.

The area under the curve is the trapezoid over the removed fraction, divided by the span of
the thresholds, so it is the curve's mean accuracy (comparable across threshold sets;
``benchmark.kit.ranking.normalised_auc``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from scipy import stats

from benchmark.kit.evaluation import (
    Target,
    check_target,
    predict_logits,
    require_explainer,
    resolve_target,
)
from benchmark.kit.figures import curve_figures
from benchmark.kit.ranking import Aggregate, normalised_auc, pixel_importance, ranking
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec, Split
from plugins.evaluators.declaring import evaluator_spec

Mode = Literal["roar", "kar"]
TIE_SEED = 20190101
"""Seed of the fixed pixel priority that breaks ties in every ROAR / KAR ranking (the
faithfulness metrics use ``benchmark.kit.ranking.TIE_SEED``: each keeps its stored numbers)."""
RANDOM_RANKING_SEED = 7919
"""Seed of the random baseline's rankings (shared by all explainers, so cached once)."""


def removal_order(attributions: torch.Tensor, aggregate: Aggregate = "square") -> torch.Tensor:
    """``(N, C, H, W)`` attributions -> ``(N, H*W)`` pixel indices, most important first: the
    importance aggregated over channels (``aggregate``), ties by the fixed priority of
    ``TIE_SEED``."""
    return ranking(pixel_importance(attributions, aggregate), tie_seed=TIE_SEED)


def random_order(n: int, h: int, w: int, seed: int = RANDOM_RANKING_SEED) -> torch.Tensor:
    """One random ranking per image (the ROAR baseline), reproducible from ``seed``; drawn on
    the CPU, so it is the same whatever device the images are on."""
    scores = torch.rand(n, h * w, generator=torch.Generator().manual_seed(seed))
    return torch.argsort(scores, dim=1)


def replace_pixels(
    x: torch.Tensor, order: torch.Tensor, count: int, fill: torch.Tensor, from_end: bool = False
) -> torch.Tensor:
    """A copy of ``x`` with the first ``count`` pixels of ``order`` (all channels) set to
    ``fill`` (per channel); ``from_end`` takes the last ``count`` instead (KAR)."""
    n, c, h, w = x.shape
    chosen = order[:, h * w - count :] if from_end else order[:, :count]
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=x.device)
    mask.scatter_(1, chosen.to(x.device), True)
    mask = mask.view(n, 1, h, w)
    return torch.where(mask, fill.view(1, c, 1, 1).to(device=x.device, dtype=x.dtype), x)


def paired_p_value(method: np.ndarray, baseline: np.ndarray, alternative: str) -> float:
    """One-sided paired t-test p-value of ``method`` vs ``baseline`` (``less``/``greater``).

    With identical differences the t statistic is undefined; the answer is then exact: p = 0
    when every difference goes the wanted way, 1 otherwise.
    """
    diff = np.asarray(method, dtype=float) - np.asarray(baseline, dtype=float)
    if len(diff) < 2 or np.allclose(diff, diff[0], rtol=0, atol=1e-12):
        wanted = diff[0] < 0 if alternative == "less" else diff[0] > 0
        return 0.0 if wanted and len(diff) >= 2 else 1.0
    return float(stats.ttest_rel(method, baseline, alternative=alternative).pvalue)


def _accuracy(model: torch.nn.Module, split: Split) -> float:
    logits = predict_logits(model, split.x)
    return float((logits.argmax(1) == split.y).double().mean())


def remove_and_retrain(
    context: EvaluationContext,
    *,
    mode: Mode,
    thresholds: Sequence[Annotated[float, Field(gt=0, lt=100)]] = (10, 30, 50, 70, 90),
    retrain_seeds: Annotated[int, Field(ge=2)] = 3,
    aggregate: Aggregate = "square",
    target: Target = "label",
    alpha: float = 0.05,
) -> Evaluation:
    """Accuracy after retraining on images with ``thresholds`` % of pixels replaced (``mode``:
    the top-ranked ones for ROAR, the bottom-ranked ones for KAR)."""
    explain = require_explainer(context, mode)
    if not thresholds or any(not 0 < float(t) < 100 for t in thresholds):
        raise ValueError(f"thresholds must be percentages in (0, 100), got {list(thresholds)}")
    if retrain_seeds < 2:
        raise ValueError("retrain_seeds must be at least 2 for the paired test across seeds")
    check_target(target)
    thresholds = sorted(float(t) for t in thresholds)
    data = context.dataset
    h, w = data.train.x.shape[2:]
    fill = data.train.x.double().mean(dim=(0, 2, 3))
    splits = {"train": data.train, "test": data.test}
    orders = {}
    for name, split in splits.items():
        classes = resolve_target(context.model, split.x, split.y, target)
        orders[name] = removal_order(explain(context.model, split.x, classes), aggregate)
    random_orders = {
        name: random_order(len(split), h, w, RANDOM_RANKING_SEED + i)
        for i, (name, split) in enumerate(splits.items())
    }
    seeds = [10_000 + 100 * context.seed + i for i in range(retrain_seeds)]

    def retrained_accuracy(order: dict[str, torch.Tensor], count: int, from_end: bool) -> list:
        modified = {
            name: dataclasses.replace(
                split, x=replace_pixels(split.x, order[name], count, fill, from_end)
            )
            for name, split in splits.items()
        }
        return [
            _accuracy(context.train(modified["train"], seed=s), modified["test"]) for s in seeds
        ]

    method = np.zeros((retrain_seeds, len(thresholds)))
    baseline = np.zeros_like(method)
    for j, t in enumerate(thresholds):
        count = round(t / 100 * h * w)
        method[:, j] = retrained_accuracy(orders, count, from_end=(mode == "kar"))
        baseline[:, j] = retrained_accuracy(random_orders, count, from_end=False)

    fractions = [t / 100 for t in thresholds]
    method_auc = normalised_auc(method, fractions)
    baseline_auc = normalised_auc(baseline, fractions)
    alternative = "less" if mode == "roar" else "greater"
    p_value = paired_p_value(method_auc, baseline_auc, alternative)
    metrics = {f"accuracy_{t:g}": float(method[:, j].mean()) for j, t in enumerate(thresholds)}
    metrics |= {
        "auc": float(method_auc.mean()),
        "auc_std": float(method_auc.std(ddof=1)),
        "random_auc": float(baseline_auc.mean()),
        "auc_vs_random": float((method_auc - baseline_auc).mean()),
        "p_value": p_value,
        "verdict": float(p_value < alpha),
    }
    arrays: dict[str, Any] = {
        "thresholds": thresholds,
        "retrain_seeds": seeds,
        "accuracy": method.tolist(),
        "random_accuracy": baseline.tolist(),
        "auc_per_seed": method_auc.tolist(),
        "random_auc_per_seed": baseline_auc.tolist(),
        "original_accuracy": _accuracy(context.model, data.test),
    }
    return Evaluation(metrics, arrays)


evaluate_roar = functools.partial(remove_and_retrain, mode="roar")
"""ROAR: remove the most important pixels; a faithful ranking makes accuracy fall fast."""
evaluate_kar = functools.partial(remove_and_retrain, mode="kar")
"""KAR: remove the least important pixels; a faithful ranking keeps accuracy high."""


def _figures(mode: Mode) -> Any:
    """Accuracy vs removed fraction per explainer (mean over seeds and retrains) against the
    random baseline, one figure per (dataset, model, debiaser)."""
    removed = "most" if mode == "roar" else "least"
    panel = (
        "thresholds",
        "accuracy",
        f"% of pixels removed ({removed} important first), then retrained",
        "test accuracy after retraining",
    )
    return functools.partial(
        curve_figures,
        title=mode.upper(),
        panels=(panel,),
        baseline=("random_accuracy", "random baseline"),
    )


def _directions(mode: Mode) -> dict[str, Direction]:
    """Every metric's direction; ``accuracy_<t>`` for any whole percentage a suite may pick."""
    better: Direction = "lower" if mode == "roar" else "higher"
    directions: dict[str, Direction] = {f"accuracy_{t}": better for t in range(1, 100)}
    directions |= {"auc": better, "random_auc": better, "auc_vs_random": better}
    directions["auc_std"] = "lower"  # spread over retrains: smaller is a steadier estimate
    return directions | {"p_value": "lower", "verdict": "higher"}


def retrains(params: Mapping[str, Any]) -> int:
    """Models one job trains: each threshold x retrain seed, for the explainer's ranking and for
    the random baseline (the baseline is shared by every explainer, so most jobs load it)."""
    return 2 * len(params["thresholds"]) * int(params["retrain_seeds"])


DESCRIPTIONS = {
    "roar": "RemOve And Retrain (Hooker et al. 2019): accuracy after retraining without the "
    "top-ranked pixels, vs a random ranking",
    "kar": "Keep And Retrain (Hooker et al. 2019): accuracy after retraining without the "
    "bottom-ranked pixels, vs a random ranking",
}
FACTORIES = {"roar": evaluate_roar, "kar": evaluate_kar}


def specs() -> list[EvaluatorSpec]:
    """The ``roar`` and ``kar`` evaluators; their parameters are ``remove_and_retrain``'s."""
    return [
        evaluator_spec(
            mode,
            FACTORIES[mode],
            DESCRIPTIONS[mode],
            _directions(mode),
            figures=_figures(mode),
            retrains=retrains,
        )
        for mode in ("roar", "kar")
    ]
