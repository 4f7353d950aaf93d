"""Model-parameter randomisation test (MPRT): does the explanation depend on what was learnt?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, sec. 3 (reference code
adebayoj/sanity_checks_saliency). Layers are re-initialised *cascading*, from the logits down
to the first layer (each step keeps the earlier randomisations), and *independently*, one
layer at a time. Each layer is re-initialised with its own initialiser (``reset_parameters``,
what PyTorch used to build it) under a fixed seed. A method whose maps stay similar to the
original while the weights become noise explains the input, not the model, and fails.

Targets: by default each model is explained for its own prediction, as Adebayo et al. do
(``target="prediction"``: the randomised model's prediction for the randomised maps). Quantus's
``MPRT`` explains the original label for both (``target="label"``), available as an option.

Quantus 0.6.0 also implements MPRT; ours differs in the target convention above, computes every
similarity per image in one vectorised pass, and evaluates all layers through the runner's
attribution cache. ``tests/benchmarks`` times both on the same model and inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import PositiveInt
from torch import nn

from benchmark.kit.devices import initialise_on_cpu
from benchmark.kit.evaluation import Target, check_target, require_explainer, resolve_target
from benchmark.kit.figures import combinations, legend_outside, mean_curve, stem
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators import floors
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.similarity import MEASURES, Measure, check_measures, similarity

MAX_LAYERS = 64
"""Per-layer metrics are named by depth from the logits (``spearman_cascade_1``: only the top
layer re-initialised; ``_2``: the top two; ...) so that one leaderboard column means the same
depth for every explainer; the layer names are in the stored arrays (``layers``). Directions
are declared up to this depth."""


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters and know how to re-initialise them, in
    registration order (input side first), which is forward order for sequential models."""
    return [
        name
        for name, module in model.named_modules()
        if name
        and hasattr(module, "reset_parameters")
        and any(True for _ in module.parameters(recurse=False))
    ]


def reinitialise(model: nn.Module, name: str, seed: int) -> None:
    """Re-draw one layer's parameters with its own initialiser, reproducibly from ``seed``,
    without touching the global random state; drawn on the CPU, so a model on a GPU gets the
    same randomised weights (``benchmark.kit.devices.initialise_on_cpu``)."""
    initialise_on_cpu(model.get_submodule(name), seed, lambda layer: layer.reset_parameters())


Mode = Literal["cascading", "independent"]


def evaluate_model_randomisation(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    measures: Sequence[Measure] = MEASURES,
    modes: Sequence[Mode] = ("cascading", "independent"),
    verdict_measure: Measure = "spearman",
    threshold: float = 0.5,
    seed: int = 0,
) -> Evaluation:
    """Similarity between the original maps and the maps of progressively randomised models.

    ``verdict`` is 1 (pass) when the mean ``verdict_measure`` over the cascade is below
    ``threshold``: the explanation changed once the learnt weights were gone.
    ``floor_verdict`` judges the same mean against the architecture's floor and the
    retrained seed's similarity instead of a fixed threshold (``plugins.evaluators.floors``).
    The default measure is the signed Spearman correlation: with absolute values, any map that
    follows the digit's outline (input x gradient on MNIST keeps 0.99) correlates through the
    input alone, which Adebayo et al. (sec. 3, "absolute values") warn makes the absolute
    variant lenient.
    """
    explain = require_explainer(context, "sanity-model")
    check_measures(measures, verdict_measure)
    if not set(modes) <= {"cascading", "independent"} or "cascading" not in modes:
        raise ValueError(f"modes must include cascading (and may add independent), got {modes}")
    check_target(target)
    test = context.dataset.test
    x, y = test.x[:n_images], test.y[:n_images]
    original = context.model.eval()
    layers = randomisable_layers(original)
    if not layers:
        raise ValueError("the model has no layers with reset_parameters() to randomise")
    reference = explain(original, x, resolve_target(original, x, y, target))

    def compare(model: nn.Module) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        maps = explain(model, x, resolve_target(model, x, y, target))
        return {m: similarity(m, reference, maps) for m in measures}, maps

    top_down = list(reversed(layers))
    curves: dict[str, dict[str, list[float]]] = {}
    per_image: dict[str, Any] = {}
    examples = [reference[0].sum(0).cpu().tolist()]
    cascade = copy.deepcopy(original).eval()
    curves["cascading"] = {m: [] for m in measures}
    for step, name in enumerate(top_down):
        reinitialise(cascade, name, seed * 1000 + layers.index(name))
        scores, maps = compare(cascade)
        for m in measures:
            curves["cascading"][m].append(float(scores[m].mean()))
        examples.append(maps[0].sum(0).cpu().tolist())
        if step == len(top_down) - 1:
            per_image["cascading_full"] = {m: scores[m].tolist() for m in measures}
    if "independent" in modes:
        curves["independent"] = {m: [] for m in measures}
        for name in top_down:
            single = copy.deepcopy(original).eval()
            reinitialise(single, name, seed * 1000 + layers.index(name))
            scores, _ = compare(single)
            for m in measures:
                curves["independent"][m].append(float(scores[m].mean()))

    metrics: dict[str, float] = {}
    for m in measures:
        cascade_curve = curves["cascading"][m]
        metrics[f"{m}_top"] = cascade_curve[0]
        metrics[f"{m}_full"] = cascade_curve[-1]
        metrics[f"{m}_cascade_mean"] = float(np.mean(cascade_curve))
        for depth, value in enumerate(cascade_curve, start=1):
            metrics[f"{m}_cascade_{depth}"] = value
        if "independent" in curves:
            metrics[f"{m}_independent_mean"] = float(np.mean(curves["independent"][m]))
            for depth, value in enumerate(curves["independent"][m], start=1):
                metrics[f"{m}_independent_{depth}"] = value
    metrics["verdict"] = float(metrics[f"{verdict_measure}_cascade_mean"] < threshold)
    refs = floors.references(context, explain, x, y, target, reference, measures)
    observed = {m: metrics[f"{m}_cascade_mean"] for m in measures}
    metrics |= floors.relative_metrics(observed, refs, verdict_measure, label="cascade_mean")
    arrays = {
        "layers": top_down,
        "curves": curves,
        "per_image": per_image,
        "example_maps": examples,
        "example_image": x[0].sum(0).cpu().tolist(),
        "verdict_rule": f"{verdict_measure}_cascade_mean < {threshold}",
        "floor_verdict_rule": f"{verdict_measure}_cascade_mean: {floors.VERDICT_RULE}",
    }
    per_image_out = {f"{ref}_{m}": np.asarray(v) for ref, d in refs.items() for m, v in d.items()}
    per_image_out |= {
        f"cascading_full_{m}": np.asarray(v) for m, v in per_image["cascading_full"].items()
    }
    return Evaluation(metrics, arrays, per_image=per_image_out)


def plot_randomisation(results: Any) -> dict[str, Any]:
    """Per (dataset, model, debiaser): the cascading-randomisation grid (rows: explainers,
    columns: original then layers randomised, top down) for the first test image of the first
    seed, and the cascading similarity curves of every explainer."""
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    for labels, rows in combinations(results):
        first = rows.sort_values("seed").groupby("explainer").head(1).sort_values("explainer")
        layers = first["arrays"].iloc[0]["layers"]
        grid, axes = plt.subplots(
            len(first),
            len(layers) + 1,
            figsize=(1.3 * (len(layers) + 1), 1.3 * len(first) + 0.4),
            squeeze=False,
            layout="constrained",
        )
        for r, (_, row) in enumerate(first.iterrows()):
            for c, heat in enumerate(row["arrays"]["example_maps"]):
                heat = np.abs(np.asarray(heat))
                axes[r, c].imshow(heat, cmap="gray", vmin=0, vmax=max(heat.max(), 1e-12))
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
                if r == 0:
                    axes[r, c].set_title(
                        "original" if c == 0 else f"-> {layers[c - 1]}", fontsize=6
                    )
            axes[r, 0].set_ylabel(row["explainer"], fontsize=7)
        grid.suptitle(f"Cascading randomisation: {' / '.join(labels)}", fontsize=9)
        figures[stem("cascade", labels)] = grid

        curve, axis = plt.subplots(figsize=(6.5, 4))
        for explainer, runs in rows.groupby("explainer"):
            cascades = [a["curves"]["cascading"] for a in runs["arrays"]]
            values = mean_curve(cascades, "spearman_abs")
            axis.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=explainer)
        axis.set_xticks(range(1, len(layers) + 1), layers, rotation=45, fontsize=7)
        axis.set_ylabel("Spearman |attribution| vs original")
        axis.set_xlabel("randomised down to layer (cascading)")
        axis.grid(alpha=0.3)
        legend_outside(axis, fontsize=6)
        figures[stem("similarity", labels)] = curve
    return figures


def _directions() -> dict[str, Direction]:
    """Every metric's direction, per-layer ones up to ``MAX_LAYERS`` deep."""
    directions: dict[str, Direction] = {"verdict": "higher"}
    for m in MEASURES:
        for suffix in ("top", "full", "cascade_mean", "independent_mean"):
            directions[f"{m}_{suffix}"] = "lower"  # similar after randomisation = insensitive
        for depth in range(1, MAX_LAYERS + 1):
            directions[f"{m}_cascade_{depth}"] = "lower"
            directions[f"{m}_independent_{depth}"] = "lower"
    return directions | floors.directions("cascade_mean")


def specs() -> list[EvaluatorSpec]:
    """The ``sanity-model`` evaluator; its parameters are the factory's."""
    description = (
        "Model-parameter randomisation (Adebayo et al. 2018), cascading and independent: "
        "similarity of maps before/after re-initialising layers"
    )
    spec = evaluator_spec(
        "sanity-model",
        evaluate_model_randomisation,
        description,
        _directions(),
        figures=plot_randomisation,
        retrains=floors.one_retrain,
        version="2",
    )
    return [spec]
