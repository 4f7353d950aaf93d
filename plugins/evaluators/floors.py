"""Floors and ceilings for the sanity checks' similarities: what a number means.

A similarity of 0.5 between the maps of a trained and a randomised model says nothing alone:
maps of two *unrelated* models of the same architecture already share what the architecture
and the input impose (a convolution's receptive fields, the digit's outline); maps of two
models trained from different seeds share what was learnt, but also differ by seed. So every
similarity of ``sanity-model`` and ``sanity-data`` is published next to two references,
computed with the same explainer, images, targets and measure:

* **floor** (``floor_<measure>``): maps of two independently initialised, untrained models
  of the job's architecture (every layer re-drawn by its own initialiser, seeds
  ``FLOOR_SEEDS`` plus twice the job's seed, so each seed measures its own pair), compared
  with each other. A randomised model whose maps are no more
  similar to the original than this has kept nothing the training gave.
* **seeds** (``seeds_<measure>``): the job's trained model against the same model and
  debiaser trained from the next seed (``context.seed + 1``: in a suite with several seeds it
  is the next seed's own model, loaded from the cache). The similarity a faithful
  explanation of *another training of the same function* reaches.

The verdict relative to them (``floor_verdict``): the similarity that survives
randomisation above the floor is less than half of what a retrained model shares above it,

    (s - floor) < 0.5 * (seeds - floor),

and it fails when ``seeds <= floor`` (the explanation does not tell two trainings of one model
from two untrained ones, so randomisation cannot be detected by it). ``relative_<measure>`` is
``(s - floor) / (seeds - floor)`` where ``seeds - floor`` exceeds ``MIN_GAP``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from benchmark.kit.devices import initialise_on_cpu
from benchmark.kit.evaluation import resolve_target
from benchmark.specs import Direction, EvaluationContext
from plugins.evaluators.similarity import MEASURES, similarity

FLOOR_SEEDS = (7001, 7002)
"""Initialisation seeds of the two untrained models for job seed 0 (the same for every
explainer, so every explainer's floor is measured on the same pair)."""
MIN_GAP = 1e-3
"""Smallest ``seeds - floor`` for which the relative similarity is reported."""
VERDICT_SHARE = 0.5


def untrained_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture with every parameter-owning layer re-drawn by its own
    initialiser (``reset_parameters``), reproducibly from ``seed``, on the model's device."""
    fresh = copy.deepcopy(model).eval()
    for i, (name, module) in enumerate(fresh.named_modules()):
        own = any(True for _ in module.parameters(recurse=False))
        if name and own and hasattr(module, "reset_parameters"):
            initialise_on_cpu(module, seed * 1000 + i, lambda layer: layer.reset_parameters())
    return fresh


def references(
    context: EvaluationContext,
    explain: Callable[..., torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    target: str,
    original_maps: torch.Tensor,
    measures: Sequence[str],
) -> dict[str, dict[str, np.ndarray]]:
    """Per-image ``floor`` and ``seeds`` similarities (``{"floor": {measure: (N,)}, ...}``)."""

    def maps_of(model: nn.Module) -> torch.Tensor:
        return explain(model, x, resolve_target(model, x, y, target))

    a, b = (untrained_copy(context.model, s + 2 * context.seed) for s in FLOOR_SEEDS)
    maps_a, maps_b = maps_of(a), maps_of(b)
    other = context.train(context.dataset.train, seed=context.seed + 1).eval()
    maps_other = maps_of(other)
    return {
        "floor": {m: similarity(m, maps_a, maps_b) for m in measures},
        "seeds": {m: similarity(m, original_maps, maps_other) for m in measures},
    }


def relative_metrics(
    observed: dict[str, float],
    refs: dict[str, dict[str, np.ndarray]],
    verdict_measure: str,
    label: str = "",
) -> dict[str, float]:
    """``floor_<m>``, ``seeds_<m>``, ``<m>[_label]_minus_floor`` and
    ``relative_<m>[_label]`` (when defined) for each measure ``m`` of ``observed`` (the
    randomised similarity, e.g. the cascade's mean with ``label="cascade_mean"``), and
    ``floor_verdict`` by ``verdict_measure``."""
    metrics: dict[str, float] = {}
    for m, value in observed.items():
        floor = float(np.mean(refs["floor"][m]))
        seeds = float(np.mean(refs["seeds"][m]))
        name = f"{m}_{label}" if label else m
        metrics[f"floor_{m}"] = floor
        metrics[f"seeds_{m}"] = seeds
        metrics[f"{name}_minus_floor"] = value - floor
        if seeds - floor > MIN_GAP:
            metrics[f"relative_{name}"] = (value - floor) / (seeds - floor)
    value = observed[verdict_measure]
    floor, seeds = metrics[f"floor_{verdict_measure}"], metrics[f"seeds_{verdict_measure}"]
    passed = seeds - floor > MIN_GAP and value - floor < VERDICT_SHARE * (seeds - floor)
    metrics["floor_verdict"] = float(passed)
    return metrics


def directions(label: str = "") -> dict[str, Direction]:
    """Floors are context (no better side); the rest: less similarity after randomisation."""
    out: dict[str, Direction] = {"floor_verdict": "higher"}
    for m in MEASURES:
        name = f"{m}_{label}" if label else m
        out |= {
            f"floor_{m}": "neither",
            f"seeds_{m}": "higher",
            f"{name}_minus_floor": "lower",
            f"relative_{name}": "lower",
        }
    return out


def one_retrain(params: object) -> int:
    """The next seed's model (shared by every explainer of a suite through the cache)."""
    return 1


VERDICT_RULE = (
    f"(similarity - floor) < {VERDICT_SHARE} x (seeds - floor); fails when seeds <= floor"
)
