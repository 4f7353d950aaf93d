"""BAM: attribution methods judged by *relative* feature importance (Yang & Kim 2019,
"Benchmarking Attribution Methods with Relative Feature Importance", arXiv:1907.09701).

No one knows which pixels a trained model uses, but on a dataset built for it one can know
which pixels matter *more to one model than to another*. Every image of a BAM dataset is a
scene with an object pasted in, and every object class appears on every scene class
(``bam-mnist``: MNIST digits on procedural textures). A model trained on the *object* labels
must rely on the object pixels; one trained on the *scene* labels on the same images gains
nothing from them. An attribution method is then asked three things:

- **MCS, model contrast score**: does the object region get more attribution from the object
  model than from the scene model? ``mean(G(f_obj, x) - G(f_scene, x))`` over the test images
  both models classify correctly. Higher is better; a model-independent map scores 0.
- **IDR, input dependence rate**: for the scene model, is the object region attributed *less*
  when the object is there (a feature the model learnt to ignore) than when the scene shows
  through? The share of images, correct with and without the object, with
  ``G(f_scene, scene_only) > G(f_scene, x)``. Higher is better (1 - IDR is the false-positive
  rate).
- **IIR, input independence rate**: for a model trained on scene-only images, paste a patch
  in the object region optimised to leave the model's logits unchanged (a functionally
  insignificant change); a faithful map should not change either. The share of images where
  ``|G(x) - G(x + patch)| < tau * G(x)`` (``tau`` 0.1), over images whose prediction stays
  correct. Higher is better.

``G(f, x)`` is the region score of the reference code (``bim/attributions.py``): the positive
attributions summed over channels, clipped at the image's 99th percentile, scaled to [0, 1]
between the image's minimum and that percentile, and averaged over the object mask. A map that
is constant has no 99th percentile above its minimum; the reference divides by zero there, we
score it 0 (it points at nothing).

Models: the object and scene models are the job's model and debiaser trained through
``context.train`` (cached by content: every explainer of a suite shares the same three models;
when the dataset's own labels are the object labels the job's trained model *is* the object
model and is reused). Explanations target each model's prediction, as in the reference (only
correctly classified images count, so prediction and label agree).

Patch (the reference's ``construct_delta_patch.py``): starts from the object's own pixels, is
confined to the object mask, and minimises ``||f(x + d) - f(x)||_2 - alpha ||d||_2`` by Adam
for ``patch_steps`` steps, all images at once; the reference keeps pixels in range with a
penalty, we clamp the patched image to [0, 1]. Its success is reported
(``patch_logit_change``, relative to the logits' norm, and ``patch_kept_prediction``).

Relative model contrast (RMCS, a family of models trained with the object in k of the scene
classes) is not implemented: it needs ten more trained models per seed and adds no verdict on
its own that MCS does not already give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from benchmark.kit.evaluation import predict_logits, require_explainer
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec, Split
from plugins.evaluators.declaring import evaluator_spec

PERCENTILE = 99.0
"""Each map is scaled between its minimum and this percentile (the reference's ``vmax``)."""
LOWER_IS_BETTER = ("object_region_scene_model", "patch_logit_change")
"""The scene model should not look at the object; the patch should not move the logits."""
DIRECTIONS: dict[str, Direction] = dict.fromkeys(
    (
        *("mcs", "idr", "iir", "object_region_object_model", "n_mcs", "n_idr", "n_iir"),
        *("object_model_accuracy", "scene_model_accuracy", "scene_only_model_accuracy"),
        "patch_kept_prediction",
    ),
    "higher",
) | dict.fromkeys(LOWER_IS_BETTER, "lower")
"""Every metric ``evaluate_bam`` returns; the counts ``n_*`` are higher-is-better (more images
judged)."""


def region_scores(attributions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64: the mean scaled positive attribution inside each image's ``mask``.

    ``attributions`` is ``(N, C, H, W)``, ``mask`` ``(N, H, W)`` bool with at least one pixel
    per image. Every image is scaled by its own minimum and 99th percentile (numpy's linear
    interpolation), so a score never depends on the other images.
    """
    if mask.shape != (attributions.shape[0], *attributions.shape[2:]):
        raise ValueError(f"mask {tuple(mask.shape)} does not fit maps {tuple(attributions.shape)}")
    if not bool(mask.flatten(1).any(1).all()):
        raise ValueError("every image needs a non-empty object mask")
    positive = attributions.detach().to(mask.device).double().clamp_min(0).sum(1)
    flat = positive.flatten(1)
    top = torch.quantile(flat, PERCENTILE / 100, dim=1).view(-1, 1, 1)
    bottom = flat.min(1).values.view(-1, 1, 1)
    span = top - bottom
    scaled = torch.where(span > 0, ((positive - bottom) / span.clamp_min(1e-300)).clamp(0, 1), 0.0)
    inside = mask.double()
    return (scaled * inside).sum((1, 2)) / inside.sum((1, 2))


def model_contrast(object_scores: torch.Tensor, scene_scores: torch.Tensor) -> float:
    """MCS: mean difference of the object region's score between object and scene model."""
    return float((object_scores - scene_scores).mean()) if len(object_scores) else float("nan")


def input_dependence(with_object: torch.Tensor, scene_only: torch.Tensor) -> float:
    """IDR: share of images whose object region scores higher without the object than with."""
    return float((scene_only > with_object).double().mean()) if len(scene_only) else float("nan")


def input_independence(plain: torch.Tensor, patched: torch.Tensor, tau: float = 0.1) -> float:
    """IIR: share of images whose region score moved by less than ``tau`` of its value."""
    if not len(plain):
        return float("nan")
    return float(((plain - patched).abs() < tau * plain).double().mean())


def insignificant_patch(
    model: nn.Module,
    scene: torch.Tensor,
    start: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int = 100,
    lr: float = 0.05,
    alpha: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patched images ``(N, C, H, W)`` and each one's relative logit change ``(N,)``.

    ``start`` is the image the patch starts from (the scene with the object pasted in): the
    patch is ``start - scene`` inside ``mask`` at first, then optimised to keep ``model``'s
    logits where they are on ``scene`` while staying large (``alpha``). The model's weights
    are left untouched (no gradient is kept for them).
    """
    region = mask[:, None].to(scene.dtype)
    delta = ((start - scene) * region).detach().requires_grad_(True)
    optimiser = torch.optim.Adam([delta], lr=lr)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        model.eval()
        with torch.no_grad():
            reference = model(scene)
        with torch.enable_grad():
            for _ in range(steps):
                patched = (scene + delta * region).clamp(0, 1)
                change = (model(patched) - reference).norm(dim=1)
                size = (delta * region).flatten(1).norm(dim=1)
                optimiser.zero_grad()
                (change - alpha * size).sum().backward()
                optimiser.step()
        with torch.no_grad():
            patched = (scene + delta * region).clamp(0, 1)
            change = (model(patched) - reference).norm(dim=1) / reference.norm(dim=1)
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    return patched.detach(), change.detach()


def _bam_extras(split: Split, where: str) -> dict[str, torch.Tensor]:
    needed = ("object_labels", "scene_labels", "object_mask", "scene_only")
    missing = [k for k in needed if k not in split.extras]
    if missing:
        raise ValueError(f"bam needs a BAM dataset: the {where} split has no {', '.join(missing)}")
    return {k: split.extras[k] for k in needed}


def evaluate_bam(
    context: EvaluationContext,
    n_images: PositiveInt = 500,
    tau: NonNegativeFloat = 0.1,
    patch_steps: NonNegativeInt = 100,
    patch_lr: PositiveFloat = 0.05,
    patch_alpha: NonNegativeFloat = 0.01,
) -> Evaluation:
    """MCS, IDR and IIR of the job's explainer, with the three models trained (cached) here."""
    explain = require_explainer(context, "bam")
    if n_images < 1:
        raise ValueError(f"n_images must be positive, got {n_images}")
    train, test = context.dataset.train, context.dataset.test
    tr, te = _bam_extras(train, "train"), _bam_extras(test, "test")

    def trained(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
        if torch.equal(x, train.x) and torch.equal(y, train.y):
            return context.model.eval()  # the job's own model was trained on exactly this
        split = dataclasses.replace(train, x=x, y=y, groups=None, extras={})
        return context.train(split, seed=context.seed).eval()

    object_model = trained(train.x, tr["object_labels"])
    scene_model = trained(train.x, tr["scene_labels"])
    scene_only_model = trained(tr["scene_only"], tr["scene_labels"])

    x, twin, mask = test.x[:n_images], te["scene_only"][:n_images], te["object_mask"][:n_images]
    objects, scenes = te["object_labels"][:n_images], te["scene_labels"][:n_images]

    def scored(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prediction = predict_logits(model, images).argmax(1)
        return region_scores(explain(model, images, prediction), mask), prediction

    g_object, pred_object = scored(object_model, x)
    g_scene, pred_scene = scored(scene_model, x)
    g_scene_twin, pred_scene_twin = scored(scene_model, twin)
    contrast = (pred_object == objects) & (pred_scene == scenes)
    dependence = (pred_scene == scenes) & (pred_scene_twin == scenes)

    patched, change = insignificant_patch(
        scene_only_model, twin, x, mask, steps=patch_steps, lr=patch_lr, alpha=patch_alpha
    )
    g_plain, pred_plain = scored(scene_only_model, twin)
    g_patched, pred_patched = scored(scene_only_model, patched)
    independence = (pred_plain == scenes) & (pred_patched == scenes)

    def accuracy(prediction: torch.Tensor, labels: torch.Tensor) -> float:
        return float((prediction == labels).double().mean())

    metrics = {
        "mcs": model_contrast(g_object[contrast], g_scene[contrast]),
        "idr": input_dependence(g_scene[dependence], g_scene_twin[dependence]),
        "iir": input_independence(g_plain[independence], g_patched[independence], tau),
        "object_region_object_model": float(g_object[contrast].mean()),
        "object_region_scene_model": float(g_scene[contrast].mean()),
        "n_mcs": int(contrast.sum()),
        "n_idr": int(dependence.sum()),
        "n_iir": int(independence.sum()),
        "object_model_accuracy": accuracy(pred_object, objects),
        "scene_model_accuracy": accuracy(pred_scene, scenes),
        "scene_only_model_accuracy": accuracy(pred_plain, scenes),
        "patch_kept_prediction": float((pred_patched == pred_plain).double().mean()),
        "patch_logit_change": float(change.mean()),
    }
    empty = [k for k in ("mcs", "idr", "iir") if np.isnan(metrics[k])]
    if empty:
        raise ValueError(
            f"no test image is classified correctly by the models behind {', '.join(empty)}: "
            "train longer or use more images"
        )
    relative_change = (g_plain - g_patched).abs() / g_plain.clamp_min(1e-12)
    arrays: dict[str, Any] = {
        "mcs_per_image": (g_object - g_scene)[contrast].cpu().tolist(),
        "idr_per_image": (g_scene_twin - g_scene)[dependence].cpu().tolist(),
        "iir_per_image": relative_change[independence].cpu().tolist(),
        "tau": tau,
    }
    return Evaluation(metrics, arrays)


def plot_bam(results: Any) -> dict[str, Any]:
    """Per (dataset, model, debiaser): MCS, IDR and IIR of every explainer side by side, with
    the spread over images (MCS) and seeds."""
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    for (dataset, model, debiaser), rows in results.groupby(["dataset", "model", "debiaser"]):
        explainers = sorted(rows["explainer"].unique())
        fig, axes = plt.subplots(1, 3, figsize=(11, 0.32 * len(explainers) + 1.5), sharey=True)
        panels = (
            ("mcs_per_image", "MCS (object model - scene model)", "mean"),
            ("idr_per_image", "IDR (share with G(scene only) > G(with object))", "positive"),
            ("iir_per_image", "IIR (share with relative change < tau)", "below_tau"),
        )
        for axis, (key, title, kind) in zip(axes, panels, strict=True):
            values = []
            for explainer in explainers:
                per_seed = []
                for arrays in rows.loc[rows["explainer"] == explainer, "arrays"]:
                    data = np.asarray(arrays[key], dtype=float)
                    if kind == "mean":
                        per_seed.append(data.mean() if data.size else np.nan)
                    elif kind == "positive":
                        per_seed.append((data > 0).mean() if data.size else np.nan)
                    else:
                        per_seed.append((data < arrays["tau"]).mean() if data.size else np.nan)
                values.append(per_seed)
            means = [np.nanmean(v) for v in values]
            spread = [np.nanstd(v) if len(v) > 1 else 0.0 for v in values]
            axis.barh(range(len(explainers)), means, xerr=spread, color="tab:blue", alpha=0.8)
            axis.axvline(0, color="black", linewidth=0.8)
            axis.set_title(title, fontsize=8)
            axis.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(range(len(explainers)), explainers, fontsize=7)
        fig.suptitle(f"BAM relative importance: {dataset} / {model} / {debiaser}", fontsize=9)
        fig.tight_layout()
        figures[f"scores-{dataset}-{model}-{debiaser}"] = fig
    return figures


def bam_retrains(params: Mapping[str, Any]) -> int:
    """Up to three models: object (the job's own model when its labels are the objects), scene
    and scene-only; every explainer of a suite shares them through the cache."""
    return 3


def specs() -> list[EvaluatorSpec]:
    """The ``bam`` evaluator (it needs a BAM dataset); its parameters are ``evaluate_bam``'s."""
    description = (
        "BAM (Yang & Kim 2019): model contrast score, input dependence rate and input "
        "independence rate on a dataset with pasted objects and scene-only twins"
    )
    spec = evaluator_spec(
        "bam",
        evaluate_bam,
        description,
        DIRECTIONS,
        requires=frozenset({"explainer", "bam"}),
        figures=plot_bam,
        retrains=bam_retrains,
    )
    return [spec]
