"""Calling a Quantus metric: its constructor arguments checked and completed, the job's
explainer behind Quantus's ``explain_func``, and the call with every protection on.

A suite names a metric and its constructor parameters; everything the adapter decides itself
(per-image scores, silenced warnings, the seed) is refused in the suite with the reason, so a
result never depends on a setting the leaderboard does not show. "Defect N" is the N-th of
``plugins.evaluators.quantus.guards``.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from benchmark.kit.evaluation import eval_mode
from benchmark.kit.seeding import seeded
from benchmark.registry import suggest
from plugins.evaluators.quantus.catalogue import quantus_module
from plugins.evaluators.quantus.guards import (
    PerImageNormalisation,
    capture_batches,
    numpy_aliases,
    quiet,
    single_perturbations,
)

_LAYER_DICT: frozenset[str] = frozenset({"MPRT", "ModelParameterRandomisation"})
_RETURN_FLAGS = (
    "return_average_correlation",
    "return_last_correlation",
    "return_sample_correlation",
)

MANAGED: dict[str, str] = {
    "return_aggregate": "the adapter needs per-image scores and takes their mean itself",
    "aggregate_func": "the adapter takes the mean over images itself",
    "disable_warnings": "Quantus's warnings and prints are always silenced",
    "display_progressbar": "progress bars are always off",
    "default_plot_func": "figures come from stored arrays, not from Quantus",
    "seed": "set the evaluator's 'seed' parameter instead; it seeds Quantus too",
}
"""Constructor parameters the adapter sets itself, with the reason."""

_CALLABLE_PARAM = re.compile(r"(_func|^norm_numerator|^norm_denominator)$")


def constructor_parameters(cls: type) -> list[str]:
    """Named parameters of the metric's constructor (the first ``__init__`` up the class tree
    that names them: ``ModelParameterRandomisation`` only forwards ``*args`` to ``MPRT``)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        names = [
            p.name
            for p in inspect.signature(init).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if names:
            return names
    return []


def _resolve_callable(metric: str, param: str, value: Any) -> Any:
    """A Quantus function given by name in the suite (``similarity_func: correlation_spearman``)."""
    if not isinstance(value, str) or not _CALLABLE_PARAM.search(param):
        return value
    quantus = quantus_module()
    found = getattr(quantus, value, None)
    if callable(found) and not inspect.isclass(found):
        return found
    functions = [
        n for n, f in vars(quantus).items() if inspect.isfunction(f) and not n.startswith("_")
    ]
    raise ValueError(
        f"Quantus metric '{metric}': parameter '{param}' names no Quantus function '{value}'"
        + suggest(value, functions)
    )


def constructor_kwargs(
    cls: type, metric_params: Mapping[str, Any], *, seed: int, num_classes: int
) -> tuple[dict[str, Any], str]:
    """Validated constructor arguments, and how to reduce MPRT's per-layer scores.

    Unknown names and names the adapter manages are refused with the metric and parameter
    named; the adapter's own settings are added (defects 5, 7, 10, 11).
    """
    name = cls.__name__
    accepted = constructor_parameters(cls)
    kwargs: dict[str, Any] = {}
    for param, value in metric_params.items():
        if param in MANAGED and param in accepted:
            raise ValueError(
                f"Quantus metric '{name}': parameter '{param}' is set by the adapter "
                f"({MANAGED[param]})"
            )
        if param not in accepted:
            hint = difflib.get_close_matches(param, accepted, n=1, cutoff=0.6)
            raise ValueError(
                f"Quantus metric '{name}' has no constructor parameter '{param}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; its parameters: {', '.join(p for p in accepted if p not in MANAGED)}"
            )
        kwargs[param] = _resolve_callable(name, param, value)
    layer_reduction = "average"
    if name in _LAYER_DICT:
        if kwargs.get("return_last_correlation"):
            layer_reduction = "last"
        for flag in _RETURN_FLAGS:  # we reduce the per-layer dict ourselves (defect 6)
            kwargs.pop(flag, None)
    for param, value in (
        ("return_aggregate", False),
        ("disable_warnings", True),
        ("display_progressbar", False),
        ("seed", seed),
    ):
        if param in accepted:
            kwargs[param] = value
    if "num_classes" in accepted and "num_classes" not in kwargs:
        kwargs["num_classes"] = num_classes
    return kwargs, layer_reduction


def quantus_explain_func(
    explain: Callable[..., torch.Tensor], device: torch.device
) -> Callable[..., np.ndarray]:
    """``context.explain`` behind Quantus's ``explain_func(model, inputs, targets, **kwargs)``.

    Quantus hands numpy inputs (float64 after noise) and the model it wants explained (the
    job's, a randomised copy or a shifted one); the runner's ``explain`` checks the result and
    caches it. The map comes back as a private float32 copy (defect 1).
    """

    def explain_func(model: torch.nn.Module, inputs: Any, targets: Any, **_: Any) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
        target = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device).reshape(-1)
        a = explain(model, x, target)
        return a.detach().cpu().numpy().astype(np.float32, copy=True)

    return explain_func


def run_metric(
    cls: type, kwargs: Mapping[str, Any], call: Mapping[str, Any], *, seed: int
) -> tuple[Any, list[list[Any]]]:
    """Build and call the metric with every protection on (Infidelity perturbing the original
    images, defect 14); return its output and, for ROAD, the per-batch results before its
    summary."""
    metric = cls.__name__
    device = torch.device(call["device"])
    with quiet(), numpy_aliases(), seeded(seed, device), eval_mode(call["model"]):
        instance = cls(**kwargs)
        if metric != "Sufficiency":  # Sufficiency normalises a distance matrix between images
            instance.normalise_func = PerImageNormalisation(instance.normalise_func)
        if metric == "Infidelity":  # one perturbation per term, not an accumulation (defect 14)
            single_perturbations(instance)
        captured = capture_batches(instance) if metric == "ROAD" else []
        try:
            return instance(**call), captured
        except AssertionError as exc:  # Quantus reports bad inputs with bare asserts
            raise ValueError(f"Quantus metric '{metric}' refused the inputs: {exc}") from exc
