"""The core's checks of what plugins return: the contracts a plugin author reads in one place.

A check names the component, its plugin and where its factory is defined, because the fault is
the plugin's: the message says what the contract is and what came back instead. The worker
calls them on every job; ``benchmark.testing`` calls the same ones in a plugin's own tests.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from benchmark.modalities import model_inputs
from benchmark.specs import Counterfactuals, Dataset


class ContractError(ValueError):
    """A plugin returned something that breaks its contract (shape, dtype, finiteness).

    The check that raises it is the core's, the fault the plugin's: ``where`` is where the
    plugin's factory is defined, which is what ``short_error`` shows instead of the core's line.
    """

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


def defined_at(factory: Any) -> str:
    """``file:line`` of a factory (through ``functools.partial``), or ``""``."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    try:
        return f"{inspect.getsourcefile(factory)}:{inspect.getsourcelines(factory)[1]}"
    except (TypeError, OSError):
        return ""


def check_attributions(
    attributions: Any, x: torch.Tensor, explainer: str, plugin: str = "", factory: Any = None
) -> torch.Tensor:
    """Enforce the explainer contract: ``(N, 1 or C, H, W)``, float32, finite. The message
    names the explainer, its plugin and its factory: the core only checks, the fix is there."""
    who = f"explainer '{explainer}'" + (f" (plugin '{plugin}')" if plugin else "")
    where = defined_at(factory) if factory is not None else ""
    if not isinstance(attributions, torch.Tensor):
        raise ContractError(
            f"{who} returned {type(attributions).__name__}, not a torch.Tensor", where
        )
    n, c, h, w = x.shape
    shape = tuple(attributions.shape)
    if len(shape) != 4 or shape[0] != n or shape[1] not in (1, c) or shape[2:] != (h, w):
        allowed = f"({n}, 1, {h}, {w})" + (f" or ({n}, {c}, {h}, {w})" if c != 1 else "")
        raise ContractError(
            f"{who} returned attributions of shape {shape} for a batch x of shape "
            f"{tuple(x.shape)}; the contract is one map per image, (N, 1, H, W) or "
            f"(N, C, H, W): here {allowed}",
            where,
        )
    if attributions.dtype != torch.float32:
        raise ContractError(
            f"{who} returned {attributions.dtype} attributions; the contract is float32 "
            "(return `attributions.float()`)",
            where,
        )
    attributions = attributions.detach()
    if not torch.isfinite(attributions).all():
        raise ContractError(f"{who} returned non-finite attributions", where)
    return attributions


def check_counterfactuals(
    images: Any,
    x: torch.Tensor,
    explainer: str,
    plugin: str = "",
    factory: Any = None,
    seconds: float = 0.0,
) -> Counterfactuals:
    """Enforce the counterfactual explainer contract: images shaped like ``x``, float32, each
    one either in [0, 1] or all NaN (none found). A half-NaN image or an inf is a bug, not a
    "not found"; an image outside [0, 1] is not an image the model could be shown."""
    who = f"explainer '{explainer}'" + (f" (plugin '{plugin}')" if plugin else "")
    where = defined_at(factory) if factory is not None else ""
    if not isinstance(images, torch.Tensor):
        raise ContractError(f"{who} returned {type(images).__name__}, not a torch.Tensor", where)
    if tuple(images.shape) != tuple(x.shape):
        raise ContractError(
            f"{who} returned counterfactuals of shape {tuple(images.shape)} for a batch x of "
            f"shape {tuple(x.shape)}; the contract is one image per input, shaped like it",
            where,
        )
    if images.dtype != torch.float32:
        raise ContractError(f"{who} returned {images.dtype} images; the contract is float32", where)
    images = images.detach()
    flat = images.flatten(1)
    missing = torch.isnan(flat)
    found = ~missing.any(dim=1)
    if (missing.any(dim=1) & ~missing.all(dim=1)).any():
        raise ContractError(
            f"{who} returned an image that is partly NaN; mark a counterfactual that was not "
            "found with an all-NaN image",
            where,
        )
    kept = flat[found]
    if kept.numel() and not torch.isfinite(kept).all():
        raise ContractError(f"{who} returned infinite pixel values", where)
    if kept.numel() and (kept.min() < -1e-6 or kept.max() > 1 + 1e-6):
        raise ContractError(
            f"{who} returned pixels outside [0, 1] ({float(kept.min()):.3g} .. "
            f"{float(kept.max()):.3g}); clamp the counterfactuals to the image range",
            where,
        )
    filled = torch.where(found.view(-1, *([1] * (x.dim() - 1))), images.clamp(0, 1), x)
    return Counterfactuals(images=filled, found=found, seconds=float(seconds))


def check_metrics(metrics: dict[str, float], evaluator: str, spec: Any) -> None:
    """Every metric an evaluator returns must be declared in its ``directions``: an undeclared
    one would be ranked higher-is-better by guess."""
    undeclared = sorted(set(metrics) - set(spec.directions))
    if undeclared:
        raise ContractError(
            f"evaluator '{evaluator}' (plugin '{spec.plugin}') returned metric "
            f"'{undeclared[0]}' that its EvaluatorSpec.directions does not declare"
            + (f" (and {len(undeclared) - 1} more)" if len(undeclared) > 1 else "")
            + "; declare each metric as 'higher' or 'lower'",
            defined_at(spec.factory),
        )


def check_logits(model: torch.nn.Module, dataset: Dataset, label: str, spec: Any = None) -> None:
    """Enforce the model contract on two test images (and their captions, for a model that
    takes text: ``benchmark.modalities``): logits ``(N, num_classes)``, finite."""
    extra = tuple(t[:2] for t in model_inputs(spec, dataset.test)) if spec is not None else ()
    with torch.no_grad():
        out = model(dataset.test.x[:2], *extra)
    expected = (min(2, len(dataset.test)), dataset.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ContractError(
            f"model '{label}' returned {shape} for a batch of test images; "
            f"expected logits of shape {expected}"
        )
    if not torch.isfinite(out).all():
        raise ContractError(f"model '{label}' returned non-finite logits after training")
