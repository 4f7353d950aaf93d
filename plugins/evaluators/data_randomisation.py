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
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmark.specs import Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.model_randomisation import explain_targets as _targets
from plugins.evaluators.predictions import predict_logits
from plugins.evaluators.similarity import MEASURES, similarity

PERMUTATION_SEED = 4242
"""Fixed seed of the label permutation (the same randomised model for every explainer)."""


def permuted_labels(y: torch.Tensor, seed: int = PERMUTATION_SEED) -> torch.Tensor:
    """A random permutation of ``y``: class frequencies kept, the image-label link destroyed.
    Drawn on the CPU (the same permutation on every device), applied where ``y`` is."""
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)]


def evaluate_data_randomisation(
    context: EvaluationContext,
    n_images: int = 256,
    target: str = "prediction",
    measures: Sequence[str] = MEASURES,
    verdict_measure: str = "spearman",
    threshold: float = 0.5,
) -> Evaluation:
    """Per-image similarity between the original model's maps and the permuted-label model's.

    ``verdict`` is 1 (pass) when the mean ``verdict_measure`` is below ``threshold``.
    """
    if context.explain is None:
        raise ValueError("sanity-data needs an explainer")
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or verdict_measure not in measures:
        raise ValueError(
            f"measures must come from {', '.join(MEASURES)} and include verdict_measure "
            f"{verdict_measure!r}; got {list(measures)}"
        )
    train = context.dataset.train
    shuffled = dataclasses.replace(train, y=permuted_labels(train.y))
    randomised = context.train(shuffled, seed=context.seed).eval()
    fit = float((predict_logits(randomised, shuffled.x).argmax(1) == shuffled.y).double().mean())
    test = context.dataset.test
    x, y = test.x[:n_images], test.y[:n_images]
    original = context.explain(context.model, x, _targets(context.model, x, y, target))
    maps = context.explain(randomised, x, _targets(randomised, x, y, target))
    scores = {m: similarity(m, original, maps) for m in measures}
    metrics = {m: float(np.mean(scores[m])) for m in measures}
    metrics["randomised_train_accuracy"] = fit
    metrics["verdict"] = float(metrics[verdict_measure] < threshold)
    arrays: dict[str, Any] = {
        "per_image": {m: scores[m].tolist() for m in measures},
        "example_maps": [original[0].sum(0).cpu().tolist(), maps[0].sum(0).cpu().tolist()],
        "verdict_rule": f"{verdict_measure} < {threshold}",
    }
    return Evaluation(metrics, arrays)


def one_retrain(params: dict) -> int:
    """The permuted-label model (shared by every explainer of a suite through the cache)."""
    return 1


def spec() -> EvaluatorSpec:
    """The ``sanity-data`` evaluator spec."""
    directions = {m: "lower" for m in MEASURES}
    directions |= {"verdict": "higher", "randomised_train_accuracy": "higher"}
    return EvaluatorSpec(
        name="sanity-data",
        factory=evaluate_data_randomisation,
        version="1",
        description="Data randomisation (Adebayo et al. 2018): similarity of maps of the model "
        "and of the same model retrained on permuted labels",
        params={
            "n_images": 256,
            "target": "prediction",
            "measures": list(MEASURES),
            "verdict_measure": "spearman",
            "threshold": 0.5,
        },
        requires=frozenset({"explainer"}),
        retrains=one_retrain,
        directions=directions,
    )
