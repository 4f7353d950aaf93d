"""``explanation-disagreement``: do the equally good models of a Rashomon set explain the same
images the same way?

A model-set evaluator (``EvaluatorSpec.model_set``), one explainer per job. Every model of
the set (``context.members``) explains the same test images for the same class, their true
label (each model's own prediction would make two models explain different classes wherever
they disagree, which ``prediction-multiplicity`` measures); maps are summed over channels.
For every pair of models, ``benchmark.kit.explanation_agreement`` gives Krishna et al.'s
feature, rank, sign and signed-rank agreement at k = 1, 5 and 10 % of the pixels, top-k IoU,
Spearman rank correlation of the magnitudes, Pearson correlation of the signed maps, pairwise
rank agreement on a fixed sample of pixel pairs, and the sanity checks' SSIM. Each metric is
the mean over pairs of the mean over images.

Chance is not zero for most of these (feature agreement of unrelated maps is k/d, pairwise
rank agreement of maps with many ties is far above 0.5), so every job also measures a
**permutation control**: the same pairs with the second map's pixels permuted (one fixed
permutation per job), which keeps each map's values and ties but breaks where they are. A
reading is "models agree" only where the metric stands clear of its control.

Arrays: the model x model matrices of feature agreement at 10 % and of Spearman (the
heatmaps), and the best model's top-10 % pixels on the first images, from which the figures
compare explainers with each other on one model (``explanation_figures``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field, PositiveInt

from benchmark.kit import explanation_agreement as ea
from benchmark.model_sets import DEFAULT_EPS, Across, RashomonEps
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators import similarity
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.explanation_figures import figures

K_PERCENTS = (1, 5, 10)
TOPK = (
    "feature_agreement",
    "rank_agreement",
    "sign_agreement",
    "signed_rank_agreement",
    "topk_iou",
)
CONTROLLED = ("feature_agreement_k10", "rank_correlation", "pairwise_rank_agreement", "ssim")
"""Metrics measured again against the permutation control (``control_<metric>``)."""
TOP_PIXELS_IMAGES = 100
"""Images whose top-10 % pixels of the best model are stored for the explainer x explainer
figure (100 x 78 indices for MNIST: small enough for the results store)."""

DIRECTIONS: dict[str, Direction] = {
    "set_size": "neither",
    **{f"{m}_k{k}": "higher" for m in TOPK for k in K_PERCENTS},
    "rank_correlation": "higher",
    "pearson": "higher",
    "pairwise_rank_agreement": "higher",
    "ssim": "higher",
    "feature_agreement_k10_worst_pair": "higher",
    **{f"control_{m}": "neither" for m in CONTROLLED},
}
GLOSSARY = {
    "set_size": "Models in the Rashomon set (validation accuracy within eps of the best).",
    "feature_agreement_k10": "Share of the top-10 % pixels (by |attribution|) two models have "
    "in common, mean over images and pairs of models (Krishna et al.).",
    "rank_agreement_k10": "Share of the top-10 % rank positions holding the same pixel in both "
    "maps (Krishna et al.).",
    "sign_agreement_k10": "Share of the top-10 % pixels common to both maps and of the same "
    "sign (Krishna et al.).",
    "signed_rank_agreement_k10": "Same pixel at the same rank with the same sign, share of k.",
    "topk_iou_k10": "Intersection over union of the two top-10 % pixel sets.",
    "rank_correlation": "Spearman correlation of |attribution| over all pixels (ties averaged).",
    "pearson": "Pearson correlation of the signed maps.",
    "pairwise_rank_agreement": "Share of a fixed sample of pixel pairs that both maps order "
    "the same way by |attribution| (Krishna et al.).",
    "ssim": "SSIM of the [0, 1]-scaled absolute maps (Adebayo et al.'s sanity checks).",
    "feature_agreement_k10_worst_pair": "Feature agreement at 10 % of the least agreeing pair.",
    **{
        f"control_{m}": f"Control for {m}: the same pairs, second map's pixels permuted."
        for m in CONTROLLED
    },
}
REFERENCE = (
    "Krishna et al. 2024, The Disagreement Problem in Explainable Machine Learning (TMLR); "
    "Watson et al. 2022, Agree to Disagree (WACV); Adebayo et al. 2018 (SSIM)"
)


def _pair_scores(
    a: torch.Tensor, b: torch.Tensor, side: tuple[int, int], pairs: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every metric of one pair of ``(N, D)`` maps, one value per image."""
    d = a.shape[1]
    out: dict[str, torch.Tensor] = {}
    functions: dict[str, Callable[..., torch.Tensor]] = {
        "feature_agreement": ea.feature_agreement,
        "rank_agreement": ea.rank_agreement,
        "sign_agreement": ea.sign_agreement,
        "signed_rank_agreement": ea.signed_rank_agreement,
        "topk_iou": ea.topk_iou,
    }
    for k in K_PERCENTS:
        kk = ea.k_of(k / 100, d)
        for name, fn in functions.items():
            out[f"{name}_k{k}"] = fn(a, b, kk)
    out["rank_correlation"] = ea.rank_correlation(a, b)
    out["pearson"] = ea.pearson(a, b)
    out["pairwise_rank_agreement"] = ea.pairwise_rank_agreement(a, b, pairs)
    h, w = side
    out["ssim"] = torch.as_tensor(
        similarity.ssim(a.reshape(-1, 1, h, w).cpu(), b.reshape(-1, 1, h, w).cpu()),
        dtype=torch.float64,
    )
    return {k: v.double().cpu() for k, v in out.items()}


def explanation_disagreement(
    context: EvaluationContext,
    across: Across = "seeds",
    rashomon_eps: RashomonEps = DEFAULT_EPS,
    images: PositiveInt = 200,
    pixel_pairs: Annotated[int, Field(ge=10)] = 2000,
) -> Evaluation:
    """Agreement of ``context.members``' explanations of the first ``images`` test images."""
    members = context.members or ()
    if not members:
        raise ValueError("explanation-disagreement is a model-set evaluator: it needs members")
    test = context.dataset.test
    x, y = test.x[:images], test.y[:images]
    maps = []
    for member in members:
        assert member.explain is not None
        maps.append(member.explain(member.model, x, y).double().sum(1).flatten(1))
    side = (int(x.shape[2]), int(x.shape[3]))
    d = maps[0].shape[1]
    generator = torch.Generator().manual_seed(context.seed)
    pairs = ea.sample_pixel_pairs(d, pixel_pairs, context.seed).to(maps[0].device)
    permutation = torch.randperm(d, generator=generator).to(maps[0].device)
    m = len(members)
    per_pair: dict[str, list[float]] = {}
    per_image: dict[str, list[torch.Tensor]] = {}
    fa = torch.eye(m, dtype=torch.float64)
    rho = torch.eye(m, dtype=torch.float64)
    for i in range(m):
        for j in range(i + 1, m):
            scores = _pair_scores(maps[i], maps[j], side, pairs)
            control = _pair_scores(maps[i], maps[j][:, permutation], side, pairs)
            for name, values in scores.items():
                per_pair.setdefault(name, []).append(float(values.mean()))
                per_image.setdefault(name, []).append(values)
            for name in CONTROLLED:
                per_pair.setdefault(f"control_{name}", []).append(float(control[name].mean()))
            fa[i, j] = fa[j, i] = per_pair["feature_agreement_k10"][-1]
            rho[i, j] = rho[j, i] = per_pair["rank_correlation"][-1]
    metrics = {"set_size": float(m)}
    if m > 1:
        metrics.update({name: sum(v) / len(v) for name, v in per_pair.items()})
        metrics["feature_agreement_k10_worst_pair"] = min(per_pair["feature_agreement_k10"])
    else:  # one model agrees with itself: no pair to measure, so no agreement numbers
        raise ValueError(
            f"the Rashomon set holds one model ({members[0].label}): no pair to compare; "
            "raise rashomon_eps or add seeds"
        )
    k10 = ea.k_of(0.10, d)
    top = torch.argsort(maps[0][:TOP_PIXELS_IMAGES].abs(), dim=1, descending=True, stable=True)
    return Evaluation(
        metrics=metrics,
        arrays={
            "members": [member.label for member in members],
            "feature_agreement_k10_matrix": fa.tolist(),
            "rank_correlation_matrix": rho.tolist(),
            "best_model": members[0].label,
            "best_top_pixels": top[:, :k10].cpu().tolist(),
        },
        per_image={
            name: torch.stack(per_image[name]).mean(0).float()
            for name in ("feature_agreement_k10", "rank_correlation")
        },
    )


def specs() -> list[EvaluatorSpec]:
    """``explanation-disagreement``, for ``plugins.evaluators`` to register."""
    return [
        evaluator_spec(
            "explanation-disagreement",
            explanation_disagreement,
            "Disagreement of a Rashomon set's explanations (Krishna et al.'s feature, rank, "
            "sign agreement; rank correlation; pairwise rank agreement; SSIM) with a "
            "permutation control",
            DIRECTIONS,
            figures=figures,
            glossary=GLOSSARY,
            reference=REFERENCE,
            model_set=True,
        )
    ]
