"""From what a Quantus metric returns to one score per image, and to JSON for the store.

Quantus metrics return a score per image, a curve per image, a dict of per-image lists by
layer (MPRT) or a batch-level curve (SensitivityN); the package docstring says how each is
reduced. Anything else is refused with the shape it had, rather than guessed at. "Defect N" is
the N-th of ``plugins.evaluators.quantus.guards``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

CurveReduction = Literal["auc", "mean"]
"""How a per-image curve becomes one number: unit-spaced trapezoid area or mean height."""
CURVE_REDUCTIONS: tuple[CurveReduction, ...] = ("auc", "mean")


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def reduce_curves(curves: np.ndarray, how: str) -> np.ndarray:
    """``(N, T)`` curves -> ``N`` numbers: unit-spaced trapezoid area (Quantus's
    ``calculate_auc``) or mean height."""
    curves = np.asarray(curves, dtype=float)
    if how == "auc":
        return np.trapezoid(curves, dx=1, axis=1)
    if how == "mean":
        return curves.mean(axis=1)
    raise ValueError(f"curve_reduction must be one of {', '.join(CURVE_REDUCTIONS)}, got {how!r}")


def per_image_scores(
    raw: Any, n: int, *, curve_reduction: str = "auc", layer_reduction: str = "average"
) -> tuple[np.ndarray, str]:
    """One float per image from a Quantus return value, and a sentence saying how.

    Raises ``ValueError`` for an output that is not a score, a curve or a per-layer dict per
    image, rather than guessing.
    """
    if isinstance(raw, Mapping):
        layers = {k: v for k, v in raw.items() if k != "original"}
        if layers and all(_is_sequence(v) and len(v) == n for v in layers.values()):
            table = np.array([np.asarray(v, dtype=float) for v in layers.values()])
            if table.ndim == 2:
                if layer_reduction == "last":
                    return table[-1], f"score at the last randomised layer ({list(layers)[-1]})"
                return table.mean(axis=0), (
                    "mean over the randomised layers, the 'original' entry excluded"
                )
        raise ValueError(
            f"a dict with keys {list(raw)[:5]} is not per-image lists by layer; "
            "cannot reduce it to one score per image"
        )
    if not _is_sequence(raw) or len(raw) != n:
        size = len(raw) if _is_sequence(raw) else "no"
        raise ValueError(
            f"{type(raw).__name__} with {size} entries for {n} images; "
            "cannot reduce it to one score per image"
        )
    rows = [np.asarray(v, dtype=float) for v in raw]
    if all(r.ndim == 0 for r in rows):
        return np.array(rows, dtype=float), "Quantus's score per image"
    if all(r.ndim == 1 for r in rows) and len({r.shape for r in rows}) == 1:
        return reduce_curves(np.stack(rows), curve_reduction), (
            f"{curve_reduction} of each image's curve of {rows[0].shape[0]} steps"
        )
    shapes = sorted({r.shape for r in rows})[:3]
    raise ValueError(f"per-image entries of shapes {shapes}; cannot reduce them to one score")


def as_json(value: Any) -> Any:
    """Quantus output (and metric parameters) as strict JSON: lists, str keys, numbers, with
    NaN and inf as ``None`` and a function as its name.

    Not ``benchmark.records.jsonable``, which converts arrays but keeps a NaN a NaN and an
    object as it is: an undefined per-image score (NaN, a constant map under a correlation)
    must read as missing, and a ``*_func`` parameter given as a function must still store.
    """
    if isinstance(value, Mapping):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return as_json(value.tolist())
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return repr(value)


def summarise(
    metric: str,
    raw: Any,
    captured: list[list[Any]],
    n: int,
    *,
    curve_reduction: str,
    layer_reduction: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-image scores (SensitivityN: its batch-level curve) and the arrays that explain them."""
    if metric == "SensitivityN":
        reduction = "mean over n of the correlation across images (batch-level, no per-image)"
        return np.asarray(raw, dtype=float), {"per_image": None, "reduction": reduction}
    arrays: dict[str, Any] = {}
    per_image_output = raw
    if metric == "ROAD":
        curves = np.concatenate([np.asarray(b, dtype=float) for b in captured[0]])
        arrays["curves"] = as_json(curves)
        per_image_output = list(curves)
    try:
        scores, reduction = per_image_scores(
            per_image_output, n, curve_reduction=curve_reduction, layer_reduction=layer_reduction
        )
    except ValueError as exc:
        raise ValueError(f"Quantus metric '{metric}': {exc}") from None
    return scores, arrays | {"per_image": as_json(scores), "reduction": reduction}
