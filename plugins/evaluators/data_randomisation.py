"""Data randomisation test: does the explanation depend on the relation between images and
labels that the model learnt?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, sec. 4: train the same
architecture on the same images with the labels randomly permuted, until it fits them (it can
only memorise), and compare its maps with the original model's. A method whose maps stay
similar explains the images, not the learnt function, and fails.

The permuted-label model is trained through ``context.train``: the job's own model and
debiaser, on the training split with permuted labels, cached by content like every other
model (a rerun retrains nothing). Adebayo et al. train to memorisation; ERM's default epochs
may not reach 100 % training accuracy on permuted labels, so the training accuracy reached is
stored (``randomised_train_accuracy``) rather than assumed. Targets and similarity measures
are those of ``sanity-model`` (``plugins.evaluators.similarity``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import PositiveInt

from benchmark.kit.evaluation import (
    Target,
    check_target,
    predict_logits,
    require_explainer,
    resolve_target,
)
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators import floors
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.similarity import MEASURES, Measure, check_measures, similarity

PERMUTATION_SEED = 4242
"""Fixed seed of the label permutation (the same randomised model for every explainer)."""


def permuted_labels(y: torch.Tensor, seed: int = PERMUTATION_SEED) -> torch.Tensor:
    """A random permutation of ``y``: class frequencies kept, the image-label link destroyed.
    Drawn on the CPU (the same permutation on every device), applied where ``y`` is."""
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)]


def evaluate_data_randomisation(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    measures: Sequence[Measure] = MEASURES,
    verdict_measure: Measure = "spearman",
    threshold: float = 0.5,
) -> Evaluation:
    """Per-image similarity between the original model's maps and the permuted-label model's.

    ``verdict`` is 1 (pass) when the mean ``verdict_measure`` is below ``threshold``;
    ``floor_verdict`` judges it against the architecture's floor and the retrained seed's
    similarity instead (``plugins.evaluators.floors``).
    """
    explain = require_explainer(context, "sanity-data")
    check_measures(measures, verdict_measure)
    check_target(target)
    train = context.dataset.train
    shuffled = dataclasses.replace(train, y=permuted_labels(train.y))
    randomised = context.train(shuffled, seed=context.seed).eval()
    fit = float((predict_logits(randomised, shuffled.x).argmax(1) == shuffled.y).double().mean())
    test = context.dataset.test
    x, y = test.x[:n_images], test.y[:n_images]
    original = explain(context.model, x, resolve_target(context.model, x, y, target))
    maps = explain(randomised, x, resolve_target(randomised, x, y, target))
    scores = {m: similarity(m, original, maps) for m in measures}
    metrics = {m: float(np.mean(scores[m])) for m in measures}
    metrics["randomised_train_accuracy"] = fit
    metrics["verdict"] = float(metrics[verdict_measure] < threshold)
    refs = floors.references(context, explain, x, y, target, original, measures)
    metrics |= floors.relative_metrics({m: metrics[m] for m in measures}, refs, verdict_measure)
    arrays: dict[str, Any] = {
        "per_image": {m: scores[m].tolist() for m in measures},
        "example_maps": [original[0].sum(0).cpu().tolist(), maps[0].sum(0).cpu().tolist()],
        "verdict_rule": f"{verdict_measure} < {threshold}",
        "floor_verdict_rule": f"{verdict_measure}: {floors.VERDICT_RULE}",
    }
    per_image = {m: np.asarray(scores[m]) for m in measures}
    per_image |= {f"{ref}_{m}": np.asarray(v) for ref, d in refs.items() for m, v in d.items()}
    return Evaluation(metrics, arrays, per_image=per_image)


def two_retrains(params: Mapping[str, Any]) -> int:
    """The permuted-label model and the next seed's model (both shared by every explainer of a
    suite through the cache)."""
    return 2


def specs() -> list[EvaluatorSpec]:
    """The ``sanity-data`` evaluator; its parameters are the factory's."""
    directions: dict[str, Direction] = {m: "lower" for m in MEASURES}
    directions |= {"verdict": "higher", "randomised_train_accuracy": "higher"}
    directions |= floors.directions()
    description = (
        "Data randomisation (Adebayo et al. 2018): similarity of maps of the model and of the "
        "same model retrained on permuted labels"
    )
    spec = evaluator_spec(
        "sanity-data",
        evaluate_data_randomisation,
        description,
        directions,
        retrains=two_retrains,
        version="2",
    )
    return [spec]
