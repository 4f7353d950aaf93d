"""The ``explain`` function a job's evaluator calls: the explainer, contract-checked and cached.

One place for both kinds of explainer (``ExplainerSpec.output``): an attribution method's maps
and a counterfactual method's images go through the same content-addressed cache, keyed by the
model's weights, the explainer's identity, the target layer and the inputs, so an evaluator
that asks twice (or a rerun) computes nothing again. A counterfactual batch is stored with the
wall-clock time it took, so "time per counterfactual" is the time of the computation, not of a
cache hit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from benchmark.cache import ArtifactCache, tensor_fingerprint
from benchmark.executors.contracts import ContractError, check_attributions, check_counterfactuals
from benchmark.records import digest
from benchmark.specs import Counterfactuals, Split

if TYPE_CHECKING:
    from benchmark.suite import Component

ATTRIBUTIONS_KIND = "attributions"
COUNTERFACTUALS_KIND = "counterfactuals"


def _synchronise(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock time covers the computation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def explain_function(
    cache: ArtifactCache, explainer: Component, model_comp: Component, train: Split | None = None
) -> Callable[..., Any]:
    """``explain(model, x, target)`` for the job's explainer on ``model_comp``'s architecture:
    attributions (a tensor) or ``Counterfactuals``, after the core's contract checks. ``train``
    is the job's training split, passed to explainers that use it (``uses_training_data``)."""
    spec = explainer.spec
    uses_data = getattr(spec, "uses_training_data", False)
    if uses_data and train is None:
        raise ContractError(f"explainer '{explainer.label}' needs the training split")
    layer = model_comp.spec.target_layer if spec.uses_target_layer else ""
    counterfactual = getattr(spec, "output", "attribution") == "counterfactual"

    def params() -> dict[str, Any]:
        found = dict(explainer.params)
        if spec.uses_target_layer and "target_layer" not in found:
            if not model_comp.spec.target_layer:
                raise ContractError(
                    f"explainer '{explainer.label}' needs a target layer, but model "
                    f"'{model_comp.label}' declares none (ModelSpec.target_layer)"
                )
            found["target_layer"] = model_comp.spec.target_layer
        if uses_data:
            found |= {"data": train, "cache_dir": str(cache.root)}
        return found

    def explain(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> Any:
        key = digest(
            {
                "model": tensor_fingerprint(*model.state_dict().values()),
                "explainer": explainer.identity(),
                "layer": layer,
                "inputs": tensor_fingerprint(x, target),
                "data": tensor_fingerprint(train.x, train.y) if uses_data and train else "",
            }
        )

        def attributions() -> torch.Tensor:
            model.eval()
            out = spec.factory(model, x, target, **params())
            return check_attributions(out, x, explainer.label, spec.plugin, spec.factory)

        def counterfactuals() -> dict[str, torch.Tensor]:
            model.eval()
            _synchronise(x.device)
            start = time.perf_counter()
            out = spec.factory(model, x, target, **params())
            _synchronise(x.device)
            seconds = time.perf_counter() - start
            checked = check_counterfactuals(
                out, x, explainer.label, spec.plugin, spec.factory, seconds
            )
            return {
                "images": checked.images,
                "found": checked.found,
                "seconds": torch.tensor(seconds, dtype=torch.float64),
            }

        if not counterfactual:
            out, _ = cache.load_or_build(ATTRIBUTIONS_KIND, key, attributions)
            return out.to(x.device)
        stored, _ = cache.load_or_build(COUNTERFACTUALS_KIND, key, counterfactuals)
        return Counterfactuals(
            images=stored["images"].to(x.device),
            found=stored["found"].to(x.device),
            seconds=float(stored["seconds"]),
        )

    return explain
