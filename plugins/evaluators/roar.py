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

Mask leakage (Rong et al. 2022, "ROAD", sec. 3). A constant fill leaves the *shape* of the
removed region in the image, and the shape can carry the class: integrated gradients is 0
wherever an MNIST image is 0, so its top pixels are the digit's strokes and the filled-in
region is the digit's silhouette. A retrained model then scores well from where pixels were
removed, not from what is left. Two things measure and remedy this:

* ``leakage_seeds`` models (default 1) are trained on the removal mask alone (1 where a pixel
  was removed, 0 elsewhere, no pixel values), per threshold, for the explainer's ranking and
  for the random one: ``mask_accuracy_<t>`` is what the mask by itself tells about the
  label, ``random_mask_accuracy`` what a mask that carries nothing reaches (about the largest
  class share). A ROAR accuracy no higher than ``mask_accuracy`` may come from the mask alone.
  ``foreground_removed_<t>`` is the share of each image's non-background pixels (above the
  image's minimum) that the ranking removes.
* ``fill="noisy-linear"`` fills removed pixels by ROAD's noisy linear imputation (each one the
  weighted mean of its neighbours plus N(0, 0.01^2) noise, ``plugins.evaluators.road``) in
  training and test images alike, so the removed region blends into its surroundings; the
  random baseline is imputed the same way.
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
from plugins.evaluators.road import noisy_linear_imputation

Mode = Literal["roar", "kar"]
Fill = Literal["mean", "noisy-linear"]
IMPUTATION_SEED = 20220717
"""Seed of the imputation noise (keyed per image, so an image's fill never depends on its
batch)."""
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


def removal_mask(
    order: torch.Tensor, count: int, shape: tuple[int, int], from_end: bool = False
) -> torch.Tensor:
    """``(N, H, W)`` bool: the first ``count`` pixels of each ranking in ``order``
    (``from_end``: the last ``count``, KAR's removal)."""
    h, w = shape
    chosen = order[:, h * w - count :] if from_end else order[:, :count]
    mask = torch.zeros(order.shape[0], h * w, dtype=torch.bool, device=order.device)
    mask.scatter_(1, chosen, True)
    return mask.view(-1, h, w)


def fill_removed(
    x: torch.Tensor, removed: torch.Tensor, fill: Fill, mean: torch.Tensor, stream: int = 0
) -> torch.Tensor:
    """A copy of ``x`` with the ``removed`` pixels (all channels) replaced: by the per-channel
    ``mean`` or by ROAD's noisy linear imputation (``stream`` keys its noise)."""
    removed = removed.to(x.device)
    if fill == "mean":
        value = mean.view(1, -1, 1, 1).to(device=x.device, dtype=x.dtype)
        return torch.where(removed[:, None], value, x)
    if fill == "noisy-linear":
        imputed = noisy_linear_imputation(x, removed, seed=IMPUTATION_SEED, stream=stream)
        return imputed.to(x.dtype)
    raise ValueError(f"fill must be 'mean' or 'noisy-linear', got {fill!r}")


def replace_pixels(
    x: torch.Tensor, order: torch.Tensor, count: int, fill: torch.Tensor, from_end: bool = False
) -> torch.Tensor:
    """A copy of ``x`` with the first ``count`` pixels of ``order`` (all channels) set to
    ``fill`` (per channel); ``from_end`` takes the last ``count`` instead (KAR)."""
    removed = removal_mask(order.to(x.device), count, tuple(x.shape[2:]), from_end)
    return fill_removed(x, removed, "mean", fill)


def foreground_share(x: torch.Tensor, removed: torch.Tensor) -> float:
    """Mean over images of the share of non-background pixels (channel sum above the image's
    minimum) that ``removed`` covers; 0 for an image without foreground."""
    intensity = x.sum(1)
    foreground = intensity > intensity.amin(dim=(1, 2), keepdim=True)
    covered = (foreground & removed.to(x.device)).sum(dim=(1, 2)).double()
    return float((covered / foreground.sum(dim=(1, 2)).clamp(min=1)).mean())


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
    fill: Fill = "mean",
    leakage_seeds: Annotated[int, Field(ge=0)] = 1,
) -> Evaluation:
    """Accuracy after retraining on images with ``thresholds`` % of pixels replaced (``mode``:
    the top-ranked ones for ROAR, the bottom-ranked ones for KAR), and what a model learns from
    the removal mask alone (``leakage_seeds`` models per threshold, 0 to skip)."""
    explain = require_explainer(context, mode)
    if not thresholds or any(not 0 < float(t) < 100 for t in thresholds):
        raise ValueError(f"thresholds must be percentages in (0, 100), got {list(thresholds)}")
    if retrain_seeds < 2:
        raise ValueError("retrain_seeds must be at least 2 for the paired test across seeds")
    if fill not in ("mean", "noisy-linear"):
        raise ValueError(f"fill must be 'mean' or 'noisy-linear', got {fill!r}")
    if not 0 <= leakage_seeds <= retrain_seeds:
        raise ValueError(
            f"leakage_seeds must be between 0 and retrain_seeds ({retrain_seeds}), "
            f"got {leakage_seeds}"
        )
    check_target(target)
    thresholds = sorted(float(t) for t in thresholds)
    data = context.dataset
    shape = tuple(data.train.x.shape[2:])
    h, w = shape
    mean = data.train.x.double().mean(dim=(0, 2, 3))
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
    from_end = mode == "kar"

    def masks(order: dict[str, torch.Tensor], count: int, end: bool) -> dict[str, torch.Tensor]:
        return {
            n: removal_mask(order[n].to(s.x.device), count, shape, end) for n, s in splits.items()
        }

    def retrained_accuracy(removed: dict[str, torch.Tensor], stream: int) -> list[float]:
        modified = {
            name: dataclasses.replace(
                split, x=fill_removed(split.x, removed[name], fill, mean, stream)
            )
            for name, split in splits.items()
        }
        return [
            _accuracy(context.train(modified["train"], seed=s), modified["test"]) for s in seeds
        ]

    def mask_accuracy(removed: dict[str, torch.Tensor]) -> float:
        """Accuracy of models trained on the mask alone: 1 where removed, 0 elsewhere."""
        only = {
            name: dataclasses.replace(
                split, x=removed[name][:, None].expand_as(split.x).to(split.x.dtype).clone()
            )
            for name, split in splits.items()
        }
        accuracies = [
            _accuracy(context.train(only["train"], seed=s), only["test"])
            for s in seeds[:leakage_seeds]
        ]
        return float(np.mean(accuracies))

    method = np.zeros((retrain_seeds, len(thresholds)))
    baseline = np.zeros_like(method)
    leak = {"method": [], "random": [], "foreground": []}
    for j, t in enumerate(thresholds):
        count = round(t / 100 * h * w)
        removed = masks(orders, count, from_end)
        random_removed = masks(random_orders, count, False)
        method[:, j] = retrained_accuracy(removed, stream=2 * j)
        baseline[:, j] = retrained_accuracy(random_removed, stream=2 * j + 1)
        leak["foreground"].append(foreground_share(data.test.x, removed["test"]))
        if leakage_seeds:
            leak["method"].append(mask_accuracy(removed))
            leak["random"].append(mask_accuracy(random_removed))

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
    metrics |= {
        f"foreground_removed_{t:g}": v for t, v in zip(thresholds, leak["foreground"], strict=True)
    }
    if leakage_seeds:
        metrics |= {
            f"mask_accuracy_{t:g}": v for t, v in zip(thresholds, leak["method"], strict=True)
        }
        metrics["mask_accuracy"] = float(np.mean(leak["method"]))
        metrics["random_mask_accuracy"] = float(np.mean(leak["random"]))
    arrays: dict[str, Any] = {
        "thresholds": thresholds,
        "retrain_seeds": seeds,
        "fill": fill,
        "accuracy": method.tolist(),
        "random_accuracy": baseline.tolist(),
        "auc_per_seed": method_auc.tolist(),
        "random_auc_per_seed": baseline_auc.tolist(),
        "original_accuracy": _accuracy(context.model, data.test),
        "foreground_removed": leak["foreground"],
        "mask_accuracy": leak["method"],
        "random_mask_accuracy": leak["random"],
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
    for t in range(1, 100):
        directions[f"mask_accuracy_{t}"] = "lower"  # the mask alone should tell nothing
        directions[f"foreground_removed_{t}"] = "neither"
    directions |= {"mask_accuracy": "lower", "random_mask_accuracy": "neither"}
    return directions | {"p_value": "lower", "verdict": "higher"}


def retrains(params: Mapping[str, Any]) -> int:
    """Models one job trains: each threshold x (retrain seeds + mask-only seeds), for the
    explainer's ranking and for the random baseline (the baseline is shared by every
    explainer, so most jobs load it)."""
    per_threshold = int(params["retrain_seeds"]) + int(params.get("leakage_seeds", 0))
    return 2 * len(params["thresholds"]) * per_threshold


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
            version="2",
        )
        for mode in ("roar", "kar")
    ]
