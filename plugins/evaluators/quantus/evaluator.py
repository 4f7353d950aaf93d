"""The ``quantus`` evaluator: one Quantus metric, named in the suite, scored per image.

``evaluate_quantus`` checks the whole request before any work (metric, parameters, target,
reduction, the crashes Quantus would hit), then hands Quantus private numpy copies of the first
``n_images`` test images, their targets and the job's attributions as one batch, and reduces
what comes back to one score per image (see the package docstring), returned as the metric's
``Evaluation.per_image`` entry. "Defect N" is the N-th of ``plugins.evaluators.quantus.guards``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import PositiveInt

from benchmark.kit.devices import device_of
from benchmark.kit.evaluation import Target, check_target, explained_images, require_explainer
from benchmark.specs import Evaluation, EvaluationContext, EvaluatorSpec, FrozenDict
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.quantus.calls import constructor_kwargs, quantus_explain_func, run_metric
from plugins.evaluators.quantus.catalogue import (
    BATCH_LEVEL,
    NEEDS_EXPLAIN,
    NEEDS_MASKS,
    directions,
    metric_class,
    metric_name,
    quantus_version,
)
from plugins.evaluators.quantus.guards import check_known_crashes
from plugins.evaluators.quantus.scores import (
    CURVE_REDUCTIONS,
    CurveReduction,
    as_json,
    summarise,
)

NO_PARAMS: Mapping[str, Any] = FrozenDict()
"""The default ``metric_params``: the metric's own defaults (read-only, so it can be shared)."""


def _numpy_copy(t: torch.Tensor) -> np.ndarray:
    """A private CPU copy: a tensor's ``.numpy()`` shares memory, and Quantus writes (defect 1)."""
    return t.detach().cpu().numpy().copy()


def _masks(context: EvaluationContext, metric: str, n: int) -> np.ndarray:
    masks = context.dataset.test.extras.get("object_mask")
    if masks is None:
        raise ValueError(
            f"Quantus metric '{metric}' compares maps with ground-truth masks, but the dataset "
            "provides no 'object_mask'"
        )
    return np.asarray(torch.as_tensor(masks[:n]).cpu(), dtype=float).copy()


def evaluate_quantus(
    context: EvaluationContext,
    metric: str = "FaithfulnessCorrelation",
    metric_params: Mapping[str, Any] = NO_PARAMS,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    seed: int = 0,
    curve_reduction: CurveReduction = "auc",
) -> Evaluation:
    """Score the job's explanations of the first ``n_images`` test images with one Quantus
    metric (see the package docstring for the reductions and ``guards`` for the defects
    guarded against).

    ``target`` is ``prediction`` (explain what the model predicts) or ``label``; ``seed``
    seeds every random draw of the metric. Every request is checked before any work.
    """
    explain = require_explainer(context, "the quantus evaluator")
    check_target(target)
    if curve_reduction not in CURVE_REDUCTIONS:
        raise ValueError(
            f"curve_reduction must be one of {', '.join(CURVE_REDUCTIONS)}, got {curve_reduction!r}"
        )
    if int(n_images) < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    cls = metric_class(metric)
    params = dict(metric_params or {})
    kwargs, layer_reduction = constructor_kwargs(
        cls, params, seed=seed, num_classes=context.dataset.num_classes
    )
    model = context.model
    check_known_crashes(metric, kwargs, model, tuple(context.dataset.test.x.shape[1:]))
    n = len(context.dataset.test.x[: int(n_images)])
    masks = _masks(context, metric, n) if metric in NEEDS_MASKS else None

    x, targets, attributions = explained_images(context, int(n_images), target, batch_size=512)
    device = device_of(model)
    call: dict[str, Any] = {
        "model": model,
        "x_batch": _numpy_copy(x),
        "y_batch": _numpy_copy(targets),
        "a_batch": _numpy_copy(attributions),
        "channel_first": True,
        "device": str(device),
        "batch_size": n,  # one batch: no first-batch-only summaries (defect 3)
    }
    if masks is not None:
        call["s_batch"] = masks
    if metric in NEEDS_EXPLAIN:
        call["explain_func"] = quantus_explain_func(explain, device)
    raw, captured = run_metric(cls, kwargs, call, seed=seed)

    scores, arrays = summarise(
        metric,
        raw,
        captured,
        n,
        curve_reduction=curve_reduction,
        layer_reduction=layer_reduction,
    )
    finite = np.isfinite(scores)
    if not finite.any():
        raise ValueError(
            f"Quantus metric '{metric}' gave no finite score for any of the {n} images"
        )
    arrays |= {
        "metric": metric,
        "metric_params": as_json(params),
        "n_images": n,
        "n_undefined": int((~finite).sum()),
        "target": target,
        "targets": targets.cpu().tolist(),
        "batch_level": metric in BATCH_LEVEL,
        "quantus_version": quantus_version(),
        "raw": as_json(raw),
    }
    name = metric_name(metric, params)
    # one score per image (NaN where undefined), aligned with ``targets``; SensitivityN has none
    per_image = {} if metric == "SensitivityN" else {name: scores.astype(np.float64)}
    return Evaluation({name: float(scores[finite].mean())}, arrays, per_image=per_image)


def returned_metric(params: Mapping[str, Any]) -> list[str]:
    """The one metric a job returns: its name depends on ``metric`` (and a region order), so a
    suite's leaderboard section is checked against it rather than against the catalogue."""
    return [metric_name(params["metric"], params.get("metric_params"))]


def specs() -> list[EvaluatorSpec]:
    """The ``quantus`` evaluator; its parameters are ``evaluate_quantus``'s, its version carries
    the installed Quantus's (a Quantus upgrade is a new cache key). Version 2: Infidelity
    perturbs the original images (defect 14), and per-image scores are returned."""
    description = (
        "any Quantus metric by class name (metric, metric_params): per-image scores, "
        "batch-independent normalisation, seeded"
    )
    version = f"2+quantus{quantus_version()}"
    spec = evaluator_spec(
        "quantus",
        evaluate_quantus,
        description,
        directions(),
        version=version,
        metrics=returned_metric,
    )
    return [spec]
