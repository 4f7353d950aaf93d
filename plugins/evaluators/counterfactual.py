"""``counterfactual``: is a counterfactual valid, close, sparse, and like the data; and
``counterfactual-invalidation``: does another equally good model accept it?

The per-model evaluator asks the job's counterfactual explainer for the first ``images`` test
images, each for a target class (``target``: a seeded random class other than the model's
prediction, the next class, or any other class), and scores what comes back with
``benchmark.kit.counterfactual_metrics``. Two references are computed in the same job, so a
number can be read: ``real_knn_distance`` (the same distance-to-data score for real test images
of the target classes: what an in-distribution image scores) and ``real_ynn``. For the grid
figure (the seed report's inputs x target classes, grey where nothing was found) the job also
asks for one test image per class towards every class, stored for the seeds of ``grid_seeds``.

The model-set evaluator makes the counterfactuals of every member of a Rashomon set (the same
images and targets, so they come from the cache when the per-model jobs ran) and counts how
often another member refuses them (Pawelczyk et al. 2020's and Black et al. 2022's concern:
a recourse that another equally accurate model would deny).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field, PositiveInt

from benchmark.kit import counterfactual_metrics as cm
from benchmark.kit.autoencoders import cached_autoencoder, class_autoencoders
from benchmark.kit.counterfactual_search import accepted, predictions
from benchmark.kit.seeding import generator
from benchmark.model_sets import DEFAULT_EPS, Across, RashomonEps
from benchmark.specs import ANY_OTHER_CLASS, Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec

COUNTERFACTUAL = frozenset({"counterfactual"})
Target = Literal["random", "next", "other"]

DIRECTIONS: dict[str, Direction] = {
    "validity": "higher",
    "l1": "lower",
    "l2": "lower",
    "changed_pixels": "lower",
    "ynn": "higher",
    "knn_distance": "lower",
    "real_knn_distance": "neither",
    "real_ynn": "neither",
    "im1": "lower",
    "im1_median": "lower",
    "im2": "lower",
    "real_im1": "neither",
    "real_im1_median": "neither",
    "autoencoder_specificity": "neither",
    "stability": "higher",
    "noise_validity": "higher",
    "seconds_per_counterfactual": "lower",
}
GLOSSARY = {
    "validity": "Share of the images for which the method returned a counterfactual the model "
    "assigns to the target class.",
    "l1": "Mean L1 distance (sum of absolute pixel changes) of the valid counterfactuals.",
    "l2": "Mean L2 distance (not squared) of the valid counterfactuals.",
    "changed_pixels": "Mean share of pixel values changed by more than the tolerance "
    "(sparsity; lower is sparser).",
    "ynn": "Share of each counterfactual's k nearest training images that the model puts in "
    "the counterfactual's class (Pawelczyk et al. 2021's yNN, for many classes).",
    "knn_distance": "Mean L2 distance of a counterfactual to the k nearest training images "
    "labelled with its class (closer: more like real images of that class).",
    "real_knn_distance": "Reference: the same distance for real test images of the target classes.",
    "real_ynn": "Reference: yNN of real test images of the target classes.",
    "im1": "Van Looveren & Klaise's IM1: reconstruction error of the counterfactual by an "
    "autoencoder of its class over that by an autoencoder of the original class (below 1: "
    "it looks more like its new class).",
    "im2": "Van Looveren & Klaise's IM2: difference between the reconstructions by the "
    "autoencoder of its class and by one of all classes, over its L1 norm.",
    "real_im1": "Reference: IM1 of real test images of the target classes against the "
    "counterfactuals' original classes.",
    "im1_median": "Median of IM1 over the valid counterfactuals (the mean is a mean of ratios, "
    "which a few images with a near-zero denominator can dominate).",
    "real_im1_median": "Reference: the median IM1 of the real test images.",
    "autoencoder_specificity": "Control for IM1: share of test images that their own class's "
    "autoencoder reconstructs better than any other class's (1 / K: IM1 cannot tell classes "
    "apart).",
    "stability": "Hamman et al. 2023's stability: mean over noisy copies of the class "
    "probability minus its change; high when the neighbourhood agrees.",
    "noise_validity": "Share of noisy copies of a counterfactual the model still assigns to "
    "its class.",
    "seconds_per_counterfactual": "Wall-clock seconds of the explainer per image, on the "
    "job's device (machine-dependent; not bit-reproducible).",
}
REFERENCE = (
    "Wachter, Mittelstadt & Russell 2017; Van Looveren & Klaise 2021 (IM1/IM2, prototypes); "
    "Pawelczyk et al. 2021, CARLA (yNN); Hamman et al. 2023, Robust Counterfactual "
    "Explanations for Neural Networks with Probabilistic Guarantees (ICML)"
)
SET_DIRECTIONS: dict[str, Direction] = {
    "set_size": "neither",
    "invalidation": "lower",
    "invalidation_max": "lower",
    "member_validity": "higher",
}
SET_GLOSSARY = {
    "set_size": "Models in the Rashomon set.",
    "invalidation": "Share of a member's valid counterfactuals that another member of the set "
    "assigns to another class, mean over ordered pairs of members.",
    "invalidation_max": "The same for the pair of members that disagree most.",
    "member_validity": "Validity of the members' counterfactuals, mean over members.",
}


def choose_targets(
    predicted: torch.Tensor, num_classes: int, target: Target, seed: int
) -> torch.Tensor:
    """One target per image: a seeded random class other than the prediction (``random``),
    the next class (``next``) or ``ANY_OTHER_CLASS`` (``other``)."""
    if target == "other":
        return torch.full_like(predicted, ANY_OTHER_CLASS)
    if target == "next":
        return (predicted + 1) % num_classes
    gen = generator(seed)
    shift = torch.randint(1, num_classes, (len(predicted),), generator=gen)
    return (predicted + shift.to(predicted.device)) % num_classes


def _images(context: EvaluationContext, images: int, target: Target):
    test = context.dataset.test
    x = test.x[:images]
    predicted = predictions(context.model, x)
    wanted = choose_targets(predicted, context.dataset.num_classes, target, seed=0)
    return x, predicted, wanted


def _grid(context: EvaluationContext, grid_seeds: tuple[int, ...]) -> dict[str, Any]:
    """One test image per class, towards every class (the seed report's figure)."""
    if context.seed not in grid_seeds:
        return {}
    test, classes = context.dataset.test, context.dataset.num_classes
    rows = [int((test.y == c).nonzero()[0]) for c in range(classes) if (test.y == c).any()]
    x = test.x[rows]
    xs = x.repeat_interleave(classes, 0)
    targets = torch.arange(classes, device=x.device).repeat(len(rows))
    out = context.explain(context.model, xs, targets)
    images = (out.images * 255).round().to(torch.uint8)
    return {
        "grid_inputs": (x * 255).round().to(torch.uint8).cpu().tolist(),
        "grid_images": images.view(len(rows), classes, *x.shape[1:]).cpu().tolist(),
        "grid_valid": accepted(predictions(context.model, out.images), targets, targets)
        .logical_and(out.found)
        .view(len(rows), classes)
        .cpu()
        .tolist(),
    }


def counterfactual(
    context: EvaluationContext,
    images: PositiveInt = 100,
    target: Target = "random",
    tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.05,
    k: PositiveInt = 5,
    noise_std: Annotated[float, Field(gt=0)] = 0.05,
    noise_samples: PositiveInt = 16,
    grid_seeds: tuple[int, ...] = (0,),
    autoencoder_steps: PositiveInt = 1000,
) -> Evaluation:
    """The counterfactual metrics of the job's explainer (see the module docstring)."""
    if context.explain is None:
        raise ValueError("counterfactual needs the job's counterfactual explainer")
    model, data = context.model, context.dataset
    x, predicted, wanted = _images(context, images, target)
    out = context.explain(model, x, wanted)
    cf_class = predictions(model, out.images)
    valid = out.found & accepted(cf_class, wanted, predicted) & (wanted != predicted)
    l1, l2 = cm.proximity(x, out.images)
    changed = cm.changed_share(x, out.images, tolerance)
    train_pred = predictions(model, data.train.x)
    index, _ = cm.nearest_indices(out.images, data.train.x, k)
    ynn = cm.ynn(cf_class, train_pred[index])
    knn = cm.class_knn_distance(out.images, cf_class, data.train.x, data.train.y, k)
    stability, kept = cm.noise_stability(
        model, out.images, cf_class, noise_std, noise_samples, generator(context.seed, x.device)
    )
    real = data.test.x[torch.isin(data.test.y, cf_class[valid])] if valid.any() else x[:0]
    real_pred = predictions(model, real)
    real_index, _ = cm.nearest_indices(real, data.train.x, k)
    real_knn = cm.class_knn_distance(real, real_pred, data.train.x, data.train.y, k)
    real_ynn = cm.ynn(real_pred, train_pred[real_index]) if len(real) else real_pred
    train = data.train
    everything = cached_autoencoder(train.x, context.cache_dir, steps=autoencoder_steps)
    per_class = class_autoencoders(
        train.x, train.y, data.num_classes, context.cache_dir, steps=autoencoder_steps
    )
    im1, im2 = cm.interpretability_scores(out.images, cf_class, predicted, per_class, everything)
    real_im1 = _real_im1(real, real_pred, predicted[valid], cf_class[valid], per_class, everything)
    finite_real = torch.isfinite(real_im1)
    values = {
        "validity": float(valid.double().mean()),
        "l1": cm.masked_mean(l1, valid),
        "l2": cm.masked_mean(l2, valid),
        "changed_pixels": cm.masked_mean(changed, valid),
        "ynn": cm.masked_mean(ynn, valid),
        "knn_distance": cm.masked_mean(knn, valid),
        "real_knn_distance": cm.masked_mean(real_knn, torch.isfinite(real_knn)),
        "real_ynn": cm.masked_mean(real_ynn, torch.ones_like(real_ynn, dtype=torch.bool)),
        "im1": cm.masked_mean(im1, valid & torch.isfinite(im1)),
        "im2": cm.masked_mean(im2, valid & torch.isfinite(im2)),
        "im1_median": cm.masked_median(im1, valid & torch.isfinite(im1)),
        "real_im1": cm.masked_mean(real_im1, finite_real),
        "real_im1_median": cm.masked_median(real_im1, finite_real),
        "autoencoder_specificity": cm.autoencoder_specificity(data.test.x, data.test.y, per_class),
        "stability": cm.masked_mean(stability, valid),
        "noise_validity": cm.masked_mean(kept, valid),
        "seconds_per_counterfactual": out.seconds / max(1, len(x)),
    }
    metrics = {name: v for name, v in values.items() if v == v}  # NaN: no valid one to score
    return Evaluation(
        metrics=metrics,
        arrays={
            "valid_by_target": _by_class(valid, wanted, data.num_classes),
            **_grid(context, tuple(grid_seeds)),
        },
        per_image={
            "valid": valid.float().cpu(),
            "l1": torch.where(valid, l1, torch.nan).float().cpu(),
            "changed_pixels": torch.where(valid, changed, torch.nan).float().cpu(),
        },
    )


def _real_im1(
    real: torch.Tensor,
    real_class: torch.Tensor,
    origins: torch.Tensor,
    targets: torch.Tensor,
    per_class: list[Any],
    everything: Any,
) -> torch.Tensor:
    """IM1 of real test images, each scored as if it were a counterfactual from an original
    class the counterfactuals came from (drawn in turn from the valid ones' (o, t) pairs with
    t its class): what an image that truly is of class t scores."""
    none = torch.zeros(0, dtype=torch.float64, device=real.device)
    if len(real) == 0 or len(targets) == 0:
        return none
    origin = torch.empty_like(real_class)
    for c in real_class.unique():
        sources = origins[targets == c]
        rows = (real_class == c).nonzero().view(-1)
        if len(sources) == 0:
            origin[rows] = -1
            continue
        origin[rows] = sources[torch.arange(len(rows), device=rows.device) % len(sources)]
    keep = origin >= 0
    if not keep.any():
        return none
    im1, _ = cm.interpretability_scores(
        real[keep], real_class[keep], origin[keep], per_class, everything
    )
    return im1


def _by_class(valid: torch.Tensor, wanted: torch.Tensor, classes: int) -> list[float | None]:
    out: list[float | None] = []
    for c in range(classes):
        rows = wanted == c
        out.append(float(valid[rows].double().mean()) if rows.any() else None)
    return out


def counterfactual_invalidation(
    context: EvaluationContext,
    across: Across = "seeds",
    rashomon_eps: RashomonEps = DEFAULT_EPS,
    images: PositiveInt = 100,
    target: Target = "random",
) -> Evaluation:
    """How often a member of the set refuses another member's counterfactuals."""
    members = context.members or ()
    if not members or any(m.explain is None for m in members):
        raise ValueError("counterfactual-invalidation is a model-set evaluator: it needs members")
    x = context.dataset.test.x[:images]
    made = []
    for member in members:
        predicted = predictions(member.model, x)
        wanted = choose_targets(predicted, context.dataset.num_classes, target, seed=0)
        out = member.explain(member.model, x, wanted)
        cf_class = predictions(member.model, out.images)
        valid = out.found & accepted(cf_class, wanted, predicted) & (wanted != predicted)
        made.append((out.images, cf_class, valid))
    m = len(members)
    rates = torch.full((m, m), float("nan"), dtype=torch.float64)
    for i, (images_i, class_i, valid_i) in enumerate(made):
        for j, other in enumerate(members):
            if i != j and valid_i.any():
                refused = cm.invalidation(other.model, images_i[valid_i], class_i[valid_i])
                rates[i, j] = refused.double().mean()
    off = rates[~torch.eye(m, dtype=torch.bool)]
    off = off[torch.isfinite(off)]
    metrics = {
        "set_size": float(m),
        "member_validity": float(torch.stack([v.double().mean() for _, _, v in made]).mean()),
    }
    if len(off):
        metrics |= {"invalidation": float(off.mean()), "invalidation_max": float(off.max())}
    return Evaluation(
        metrics=metrics,
        arrays={
            "members": [member.label for member in members],
            "invalidation_matrix": [[None if v != v else v for v in r] for r in rates.tolist()],
        },
    )


def specs() -> list[EvaluatorSpec]:
    """``counterfactual`` and ``counterfactual-invalidation``, for ``plugins.evaluators``."""
    from plugins.evaluators.counterfactual_figures import figures

    return [
        evaluator_spec(
            "counterfactual",
            counterfactual,
            "Counterfactual explanations: validity, L1/L2 proximity, sparsity, yNN, distance "
            "to the target class's training images, noise stability, time",
            DIRECTIONS,
            requires=COUNTERFACTUAL,
            version="2",  # 2: IM1 medians and the autoencoder-specificity control
            glossary=GLOSSARY,
            reference=REFERENCE,
            figures=figures,
        ),
        evaluator_spec(
            "counterfactual-invalidation",
            counterfactual_invalidation,
            "Counterfactuals across a Rashomon set: how often another equally good model "
            "refuses a member's counterfactual",
            SET_DIRECTIONS,
            requires=COUNTERFACTUAL,
            glossary=SET_GLOSSARY,
            reference="Pawelczyk, Broelemann & Kasneci 2020, On Counterfactual Explanations "
            "under Predictive Multiplicity (UAI); Black, Wang & Fredrikson 2022, Consistent "
            "Counterfactuals for Deep Models (ICLR)",
            model_set=True,
        ),
    ]
