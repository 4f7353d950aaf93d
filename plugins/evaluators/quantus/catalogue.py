"""What the adapter knows about Quantus's metric classes: which way each is better, which it
refuses and why, which need ground-truth masks or the job's explainer, which compare images
with each other, and the name a metric's score is stored under.

The tables are Quantus 0.6.0's, read from its source; ``tests/test_quantus_adapter.py`` checks
them against the installed classes (their ``score_direction``, and which ones explain again or
take ``s_batch``), so a Quantus upgrade that changes them fails a test instead of a leaderboard.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from benchmark.registry import suggest
from benchmark.specs import Direction

QUANTUS_DIRECTIONS: dict[str, Direction] = {
    # Quantus 0.6.0 ``score_direction`` of every metric class, except the two corrections
    # marked (defect 9).
    "AUC": "higher",
    "AttributionLocalisation": "higher",
    "AvgSensitivity": "lower",
    "BatchSufficiency": "higher",
    "Completeness": "higher",
    "Complexity": "lower",
    "Consistency": "higher",  # corrected: Quantus says lower
    "Continuity": "lower",
    "EffectiveComplexity": "lower",
    "EfficientMPRT": "higher",
    "FaithfulnessCorrelation": "higher",
    "FaithfulnessEstimate": "higher",
    "Focus": "higher",
    "IROF": "higher",
    "Infidelity": "lower",
    "InputInvariance": "higher",
    "LocalLipschitzEstimate": "lower",
    "MPRT": "lower",
    "MaxSensitivity": "lower",
    "ModelParameterRandomisation": "lower",
    "Monotonicity": "higher",
    "MonotonicityCorrelation": "higher",
    "NonSensitivity": "lower",
    "PixelFlipping": "lower",
    "PointingGame": "higher",
    "ROAD": "lower",
    "RandomLogit": "lower",
    "RegionPerturbation": "higher",  # corrected: Quantus says lower (MoRF drop curve)
    "RelativeInputStability": "lower",
    "RelativeOutputStability": "lower",
    "RelativeRepresentationStability": "lower",
    "RelevanceMassAccuracy": "higher",
    "RelevanceRankAccuracy": "higher",
    "Selectivity": "lower",
    "SensitivityN": "higher",
    "SmoothMPRT": "lower",
    "Sparseness": "higher",
    "Sufficiency": "higher",
    "TopKIntersection": "higher",
}
"""Which way is better, by Quantus class name."""

DIRECTION_CORRECTIONS: dict[str, Direction] = {
    "Consistency": "higher",
    "RegionPerturbation": "higher",
}
"""Where ``QUANTUS_DIRECTIONS`` deliberately differs from Quantus's ``score_direction``."""

REGION_ORDER_DIRECTIONS: dict[str, Direction] = {"lerf": "lower", "random": "higher"}
"""RegionPerturbation orders other than ``morf``, scored under their own names. Least relevant
first, a small drop is good; ``random`` is the baseline, read the same way as MoRF."""

UNSUPPORTED: dict[str, str] = {
    "SmoothMPRT": "Quantus 0.6.0 ignores explain_func in SmoothMPRT.explain_smooth_batch_numpy "
    "(it calls quantus.explain), so it would score Quantus's default explainer, not the job's",
    "Focus": "Focus needs mosaic images and their positions (custom_batch), which the "
    "benchmark's datasets do not provide",
    "BatchSufficiency": "Quantus 0.6.0 crashes on any batch of more than one image "
    "(BatchSufficiency.custom_batch_preprocess reshapes the batch to one image's shape); "
    "use Sufficiency, which computes the same scores",
}
"""Metric classes refused with the reason."""

NEEDS_EXPLAIN: frozenset[str] = frozenset(
    {
        "AvgSensitivity",
        "Continuity",
        "EfficientMPRT",
        "InputInvariance",
        "LocalLipschitzEstimate",
        "MPRT",
        "MaxSensitivity",
        "ModelParameterRandomisation",
        "RandomLogit",
        "RelativeInputStability",
        "RelativeOutputStability",
        "RelativeRepresentationStability",
    }
)
"""Metrics that explain perturbed inputs or randomised models again, so get ``explain_func``."""

NEEDS_MASKS: frozenset[str] = frozenset(
    {
        "AUC",
        "AttributionLocalisation",
        "PointingGame",
        "RelevanceMassAccuracy",
        "RelevanceRankAccuracy",
        "TopKIntersection",
    }
)
"""Localisation metrics: they compare maps with ground-truth masks (``s_batch``)."""

BATCH_LEVEL: frozenset[str] = frozenset({"Consistency", "SensitivityN", "Sufficiency"})
"""Metrics that compare images with each other by definition: an image's score depends on the
other images, whatever the normalisation."""


def snake_case(class_name: str) -> str:
    """``FaithfulnessCorrelation`` -> ``faithfulness_correlation``; acronyms stay one word
    (``ROAD`` -> ``road``, ``EfficientMPRT`` -> ``efficient_mprt``, ``TopKIntersection`` ->
    ``top_k_intersection``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()


def metric_name(class_name: str, metric_params: Mapping[str, Any] | None = None) -> str:
    """The name the job's metric is stored under; RegionPerturbation orders other than MoRF
    get their own name because their direction differs."""
    name = snake_case(class_name)
    if class_name == "RegionPerturbation":
        order = str((metric_params or {}).get("order", "morf")).lower()
        if order != "morf":
            name = f"{name}_{order}"
    return name


def directions() -> dict[str, Direction]:
    """``metric name -> direction`` for every supported metric (the EvaluatorSpec's table)."""
    table: dict[str, Direction] = {
        snake_case(cls): d for cls, d in QUANTUS_DIRECTIONS.items() if cls not in UNSUPPORTED
    }
    for order, direction in REGION_ORDER_DIRECTIONS.items():
        table[f"region_perturbation_{order}"] = direction
    return table


def quantus_version() -> str:
    """The installed Quantus version, without importing it (importing takes seconds)."""
    try:
        return metadata.version("quantus")
    except metadata.PackageNotFoundError:
        return "not installed"


def quantus_module() -> Any:
    """The Quantus library, imported on first use."""
    import quantus  # lazy: a 1-2 s import that `bench plugins` / `bench plan` never need

    return quantus


def metric_classes() -> dict[str, type]:
    """Every metric class Quantus exports, by class name."""
    quantus = quantus_module()
    return {
        name: obj
        for name, obj in vars(quantus).items()
        if inspect.isclass(obj) and issubclass(obj, quantus.Metric) and obj is not quantus.Metric
    }


def metric_class(name: str) -> type:
    """The Quantus metric class called ``name``; ``ValueError`` with close matches if none."""
    classes = metric_classes()
    if name not in classes:
        raise ValueError(f"unknown Quantus metric '{name}'{suggest(name, classes)}")
    if name in UNSUPPORTED:
        raise ValueError(f"Quantus metric '{name}' is not supported: {UNSUPPORTED[name]}")
    return classes[name]
