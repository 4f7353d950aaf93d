"""Gradient alignment: do a model's attributions resemble its input and point at the signal?

Why. Adversarially robust models are reported to have input gradients that look like the image
(Tsipras et al., "Robustness May Be at Odds with Accuracy", ICLR 2019) and that highlight the
discriminative pixels, where standard models' gradients look like noise or even highlight the
wrong pixels. This evaluator puts numbers on both claims for the job's explainer ``a`` on the
first ``n_images`` test images, explained for the model's prediction by default
(``benchmark.kit.evaluation.explained_images``):

* ``alignment`` (Etmann, Lunz, Maass & Schönlieb, "On the Connection Between Adversarial
  Robustness and Saliency Map Interpretability", ICML 2019, their definition): with the map
  ``g(x) = grad_x Psi^{i*}(x)``, the gradient of the logit of the predicted class ``i*``,
  ``alpha(x) = |<x, g(x)>| / ||g(x)||``, the length of the projection of the image onto the
  map's direction; the mean over images. Etmann et al. leave ``||x||`` out on purpose (``alpha``
  is what their link to robustness bounds: for a linear binary model without bias it is the
  distance of ``x`` to the decision boundary), so ``alpha`` grows with the image's norm;
  ``alignment_cosine = |<x, a>| / (||x|| ||a||)`` divides it out, in [0, 1], comparable across
  images and datasets. For the ``gradient`` explainer with ``target="prediction"`` this is
  exactly Etmann's alignment; for any other explainer it is the same formula on its map. A
  one-channel map of a C-channel image is broadcast over the channels.
* ``spearman_input`` and ``ssim_input``: how much the map *looks like* the image, by the
  measures of Adebayo et al.'s sanity checks (``plugins.evaluators.similarity``): the Spearman
  rank correlation and the SSIM between ``|a|`` summed over channels and the image averaged
  over channels (SSIM min-max scales both to [0, 1] per image).
* ``foreground_mass``: the share of ``|a|`` on the image's foreground (pixels above the
  image's minimum: an MNIST digit's strokes), beside ``foreground_area``, the foreground's
  share of the pixels (what a uniform map gets). A map can put its magnitude on the strokes
  with mixed signs: then ``foreground_mass`` is high while ``alignment_cosine``, a signed inner
  product, is low; the two together say which sense of "looks like the input" holds.
* ``signal_mass`` (Shah, Jain & Netrapalli, "Do Input Gradients Highlight Discriminative
  Features?", NeurIPS 2021, sec. 4): on a dataset with ``extras["signal_mask"]``
  (``block-mnist``), the share of ``|a|`` mass inside the signal block, mean over images
  (``plugins.evaluators.bias_localisation.region_mass``); ``signal_mass_random`` beside it is
  the block's share of the pixels, what a uniform map (and, in expectation, a random one) gets.
  Absent on other datasets.
* ``diffroar_<pct>`` (Shah et al. 2021, sec. 3, DiffROAR): for each level ``k`` in
  ``diffroar_k`` (the fraction of pixels *kept*, as in the paper), two models are retrained
  from scratch, one on images that keep only their top-``k`` pixels by ``|a|`` and one on
  images that keep only their bottom-``k`` (the rest replaced by the training set's
  per-channel mean, in the training and the test split: ROAR's machinery,
  ``plugins.evaluators.roar``); ``DiffROAR(k) = ACC(top-k) - ACC(bottom-k)``: above 0 when the
  map ranks predictive pixels first, about 0 for a random map, below 0 when it inverts them
  (the paper's "feature inversion in gradients"). Equivalently, accuracy with the bottom
  ``1 - k`` removed minus accuracy with the top ``1 - k`` removed; at ``k = 0.5`` both readings
  coincide. Off by default (``[]``): it retrains ``2 * len(diffroar_k)`` models.

Retraining follows the paper: standard training of the same architecture (the robust models
are the ones *explained*; the retrained models only measure how predictive the kept pixels
are), here plain cross-entropy through ``benchmark.kit.training.train_loop`` with its shared
defaults and ``diffroar_epochs``, on a fresh copy of the job's architecture (its suite parameters
included), re-initialised by each layer's ``reset_parameters`` seeded by the job's seed
(both models of a level start from the same weights).
The retrained weights are cached content-addressed under ``context.cache_dir`` (kind
``diffroar``, keyed by the architecture, the training parameters, the seed and a fingerprint of
the masked training data), so a rerun retrains nothing. The training set's attributions come
from the job's explainer in batches of ``batch_size``.

Reference implementation: Shah et al.'s ``harshays/inputgradients`` (``scripts/saliency_utils
.py``: rank by ``|gradient|``, fill with the mean; the notebook's ``bottom - top`` difference
over levels ``1 - mask_fraction``). ``tests/test_gradient_alignment.py`` holds the code to
hand-computed values (``alpha(x; x) = ||x||``, sign invariance, orthogonal maps), to an oracle
DiffROAR on a task whose informative pixels are known, and runs the whole evaluator on a real
seed-cnn trained on block-mnist with the ``gradient`` explainer, cache included.

Deliberate deviations: pixels (all channels together) are ranked by ``|a|`` summed over
channels, ties broken by ROAR's fixed priority, where the reference ranks each coordinate; the
retrained model is trained with plain ERM whatever the job's debiaser (see above).
Images whose map is all zero have no alignment; they are left out of every mean and counted
in ``zero_maps``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from benchmark.cache import ArtifactCache, tensor_fingerprint
from benchmark.kit.devices import initialise_on_cpu
from benchmark.kit.evaluation import (
    Target,
    check_attributions,
    check_target,
    explained_images,
    predict_logits,
    require_explainer,
    resolve_target,
)
from benchmark.kit.figures import combinations, stem
from benchmark.kit.seeding import seeded
from benchmark.kit.training import TRAINING, Batch, train_loop
from benchmark.records import digest
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec, Split
from plugins.evaluators.bias_localisation import region_mass
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.roar import fill_removed, removal_mask, removal_order
from plugins.evaluators.similarity import spearman, ssim

NAME = "gradient-alignment"
VERSION = "2"
"""The evaluator's version (2: ``foreground_mass`` and ``foreground_area`` added)."""
RETRAIN_VERSION = "1"
"""Part of DiffROAR's retrained models' cache key: bump it when their training changes."""
CACHE_KIND = "diffroar"
"""The artifact kind of DiffROAR's retrained weights under ``context.cache_dir``."""
SAMPLE = 6
"""Test images (and their maps) stored in ``arrays`` for the saliency figure."""


def alignment(x: torch.Tensor, attributions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image, Etmann's ``|<x, a>| / ||a||`` and the cosine ``|<x, a>| / (||x|| ||a||)``
    (float64; NaN where the map, or for the cosine the image, is all zero)."""
    with torch.no_grad():
        xs = x.detach().double().flatten(1)
        a = attributions.detach().to(x.device).double().expand_as(x).flatten(1)
        inner = (xs * a).sum(1).abs()
        a_norm, x_norm = a.norm(dim=1), xs.norm(dim=1)
        nan = torch.full_like(inner, torch.nan)
        alpha = torch.where(a_norm > 0, inner / a_norm.clamp_min(1e-300), nan)
        both = (a_norm > 0) & (x_norm > 0)
        cosine = torch.where(both, inner / (a_norm * x_norm).clamp_min(1e-300), nan)
    return alpha.cpu().numpy(), cosine.cpu().numpy()


def input_similarity(x: torch.Tensor, attributions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image, Spearman and SSIM of ``|a|`` (summed over channels) with the image (averaged
    over channels)."""
    with torch.no_grad():
        magnitude = attributions.detach().abs().sum(1, keepdim=True).cpu()
        image = x.detach().mean(1, keepdim=True).cpu()
    return spearman(magnitude, image), ssim(magnitude, image)


def signal_mass(
    attributions: torch.Tensor, signal_mask: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the share of ``|a|`` mass on the signal pixels (NaN for an all-zero map) and
    the signal's share of the pixels; ``signal_mask`` is ``(N, H, W)`` or ``(N, 1 or C, H, W)``
    (a pixel counts when any channel is marked)."""
    mask = torch.as_tensor(signal_mask).bool()
    region = mask.any(1) if mask.ndim == 4 else mask
    with torch.no_grad():
        return region_mass(attributions, region)


def foreground_mass(x: torch.Tensor, attributions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the share of ``|a|`` mass on the image's foreground (pixels above the image's
    minimum in some channel: an MNIST digit's strokes) and the foreground's share of the pixels.

    It separates the two things "the map looks like the input" can mean: a map whose magnitude
    sits on the strokes with mixed signs has a high ``foreground_mass`` and a low
    ``alignment_cosine`` (the signed inner product cancels)."""
    with torch.no_grad():
        low = x.detach().flatten(1).amin(dim=1).view(-1, 1, 1, 1)
        region = (x.detach() > low + 1e-6).any(dim=1)
        return region_mass(attributions, region)


def normalised_maps(attributions: torch.Tensor) -> np.ndarray:
    """``|a|`` summed over channels, divided by each map's maximum (zeros stay zeros)."""
    with torch.no_grad():
        m = attributions.detach().abs().double().sum(1)
        peak = m.amax((1, 2), keepdim=True)
        return torch.where(peak > 0, m / peak.clamp_min(1e-300), 0.0).cpu().numpy()


def check_levels(levels: Sequence[float]) -> list[int]:
    """The levels as whole percentages, or a ``ValueError``: fractions in (0, 1) with a whole
    percentage each (the metric is named ``diffroar_<pct>``)."""
    percents = []
    for k in levels:
        pct = round(float(k) * 100)
        if not 0 < float(k) < 1 or abs(float(k) * 100 - pct) > 1e-9:
            raise ValueError(
                f"diffroar_k must be fractions of pixels kept in (0, 1) with a whole "
                f"percentage (0.1, 0.25, 0.5), got {list(levels)}"
            )
        percents.append(pct)
    if len(set(percents)) < len(percents):
        raise ValueError(f"diffroar_k repeats a level: {list(levels)}")
    return percents


def _attributions(
    context: EvaluationContext, split: Split, target: str, batch_size: int
) -> torch.Tensor:
    """The job's explainer on a whole split, ``batch_size`` images per call."""
    explain = require_explainer(context, NAME)
    classes = resolve_target(context.model, split.x, split.y, target, batch_size)
    parts = []
    for i in range(0, len(split), batch_size):
        x = split.x[i : i + batch_size]
        a = explain(context.model, x, classes[i : i + batch_size])
        check_attributions(a, x)
        parts.append(a.detach().to(x.device))
    return torch.cat(parts)


def _reset_parameters(model: torch.nn.Module) -> None:
    """Every layer's own initialisation (``reset_parameters``), running statistics reset."""
    for module in model.modules():
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def retrained_model(context: EvaluationContext, data: Split, epochs: int) -> torch.nn.Module:
    """A fresh model of the job's architecture trained with plain cross-entropy on ``data``,
    seeded by the job's seed; loaded from ``context.cache_dir`` when trained before."""
    spec, dataset, seed = context.model_spec, context.dataset, int(context.seed)
    training = dataclasses.asdict(TRAINING) | {"epochs": int(epochs)}
    # the job's own architecture (its suite parameters included), freshly initialised: the
    # factory's defaults could be another network (madry-cnn's reference widths)
    model = initialise_on_cpu(copy.deepcopy(context.model), seed, _reset_parameters)

    def step(batch: Batch) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)

    def build() -> dict[str, torch.Tensor]:
        with seeded(seed, context.device):
            train_loop(model, data, step, seed=seed, **training)
        return model.state_dict()

    if not context.cache_dir:
        build()
        return model.eval()
    identity = {
        "evaluator": NAME,
        "version": RETRAIN_VERSION,
        "model": {"name": spec.name, "version": spec.version, "architecture": repr(model)},
        "classes": dataset.num_classes,
        "input_shape": list(dataset.input_shape),
        "training": training,
        "seed": seed,
        "data": tensor_fingerprint(data.x, data.y),
    }
    cache = ArtifactCache(context.cache_dir)
    state, status = cache.load_or_build(CACHE_KIND, digest(identity), build, meta=identity)
    if status == "hit":
        # the weights are shared by every job whose masked data is the same (a model-
        # independent ranking such as ``random``); a debiaser's record buffers on the job's
        # model (adv-fgsm-rs's guard) are not part of the retrained network
        missing, unexpected = model.load_state_dict(state, strict=False)
        parameters = dict(model.named_parameters())
        if unexpected or any(name in parameters for name in missing):
            raise RuntimeError(f"cached DiffROAR weights do not fit: {missing} {unexpected}")
    return model.eval()


def diffroar(
    context: EvaluationContext, levels: Sequence[float], target: str, epochs: int, batch_size: int
) -> dict[str, list[float]]:
    """Accuracy of models retrained on the top-``k`` and on the bottom-``k`` pixels (by
    ``|a|``) of every image, per level ``k`` (fraction kept)."""
    data = context.dataset
    splits = {"train": data.train, "test": data.test}
    h, w = data.input_shape[1:]
    orders = {
        name: removal_order(_attributions(context, split, target, batch_size), "abs")
        for name, split in splits.items()
    }
    mean = data.train.x.double().mean(dim=(0, 2, 3))
    top, bottom = [], []
    for k in levels:
        removed = h * w - round(float(k) * h * w)
        for accuracies, from_end in ((top, True), (bottom, False)):  # top-k: drop the end
            masked = {
                name: dataclasses.replace(
                    split,
                    x=fill_removed(
                        split.x,
                        removal_mask(orders[name].to(split.x.device), removed, (h, w), from_end),
                        "mean",
                        mean,
                    ),
                )
                for name, split in splits.items()
            }
            model = retrained_model(context, masked["train"], epochs)
            logits = predict_logits(model, masked["test"].x, batch_size)
            accuracies.append(float((logits.argmax(1) == masked["test"].y).double().mean()))
    return {"top_accuracy": top, "bottom_accuracy": bottom}


def evaluate_gradient_alignment(
    context: EvaluationContext,
    n_images: PositiveInt = 500,
    target: Target = "prediction",
    batch_size: PositiveInt = 256,
    diffroar_k: Sequence[Annotated[float, Field(gt=0, lt=1)]] = (),
    diffroar_epochs: PositiveInt = 5,
) -> Evaluation:
    """Alignment of the attributions with the first ``n_images`` test images, their similarity
    to them, their mass on the signal block (where the dataset marks it) and, for each level
    of ``diffroar_k``, DiffROAR (two retrained models per level)."""
    check_target(target)
    percents = check_levels(diffroar_k)
    x, classes, attributions = explained_images(context, n_images, target, batch_size, NAME)
    alpha, cosine = alignment(x, attributions)
    spear, structural = input_similarity(x, attributions)
    valid = ~np.isnan(alpha)
    if not valid.any():
        raise ValueError(
            f"every attribution map of the {len(x)} images is all zero: no alignment to "
            "measure (a model with a constant output has no gradient)"
        )
    spear, structural = np.where(valid, spear, np.nan), np.where(valid, structural, np.nan)
    per_image = {
        "alignment": alpha,
        "alignment_cosine": cosine,
        "spearman_input": spear,
        "ssim_input": structural,
    }
    share, area = foreground_mass(x, attributions)
    per_image["foreground_mass"] = np.where(valid, share, np.nan)
    metrics = {name: float(np.nanmean(v)) for name, v in per_image.items()}
    metrics["foreground_area"] = float(area.mean())
    metrics["zero_maps"] = float((~valid).sum())
    mask = (context.dataset.test.extras or {}).get("signal_mask")
    if mask is not None:
        share, area = signal_mass(attributions, torch.as_tensor(mask[: len(x)]).to(x.device))
        per_image["signal_mass"] = share
        metrics["signal_mass"] = float(np.nanmean(share))
        metrics["signal_mass_random"] = float(area.mean())
    rows = slice(0, min(SAMPLE, len(x)))
    arrays: dict[str, Any] = {
        "n_images": len(x),
        "sample_images": np.round(x[rows].detach().cpu().double().numpy(), 4).tolist(),
        "sample_maps": np.round(normalised_maps(attributions[rows]), 4).tolist(),
        "sample_labels": context.dataset.test.y[rows].cpu().tolist(),
        "sample_targets": classes[rows].cpu().tolist(),
    }
    if percents:
        curves = diffroar(context, diffroar_k, target, diffroar_epochs, batch_size)
        for j, pct in enumerate(percents):
            metrics[f"diffroar_{pct}"] = curves["top_accuracy"][j] - curves["bottom_accuracy"][j]
        arrays |= {"diffroar_k": [float(k) for k in diffroar_k], **curves}
    return Evaluation(metrics, arrays, per_image=per_image)


def saliency_figures(results: Any) -> dict[str, Any]:
    """Per (dataset, model, explainer), the stored test images on top and one row of
    normalised ``|a|`` maps per debiaser (its smallest seed), in the order of the rows."""
    import matplotlib.pyplot as plt  # lazy: only leaderboards draw

    figures: dict[str, Any] = {}
    for labels, rows in combinations(results, ("dataset", "model", "explainer")):
        chosen = []
        for debiaser in dict.fromkeys(rows["debiaser"]):
            runs = rows[(rows["debiaser"] == debiaser) & rows["arrays"].map(_has_sample)]
            if len(runs):
                chosen.append((debiaser, runs.sort_values("seed", kind="stable").iloc[0]))
        if not chosen:
            continue
        first = chosen[0][1]["arrays"]
        images = np.asarray(first["sample_images"], dtype=float)
        n, (h, w) = len(images), images.shape[2:]
        cell = 1.3
        figure, axes = plt.subplots(
            1 + len(chosen),
            n,
            figsize=(cell * n + 1.2, cell * h / w * (1 + len(chosen)) + 0.8),
            squeeze=False,
        )
        for j, image in enumerate(images):
            shown = image.transpose(1, 2, 0) if image.shape[0] == 3 else image.mean(0)
            axes[0][j].imshow(np.clip(shown, 0, 1), cmap="gray", vmin=0, vmax=1)
            axes[0][j].set_title(f"label {first['sample_labels'][j]}", fontsize=7)
        axes[0][0].set_ylabel("input", fontsize=8)
        for r, (debiaser, row) in enumerate(chosen, start=1):
            for j, heat in enumerate(np.asarray(row["arrays"]["sample_maps"], dtype=float)[:n]):
                axes[r][j].imshow(heat, cmap="hot", vmin=0, vmax=1)
            axes[r][0].set_ylabel(f"{debiaser}\n(seed {row['seed']})", fontsize=8)
        for axis in axes.flat:
            axis.set_xticks([])
            axis.set_yticks([])
        figure.suptitle(f"|attribution|, {labels[2]}: {labels[0]} / {labels[1]}", fontsize=9)
        figures[stem("saliency", labels)] = figure
    return figures


def _has_sample(arrays: Any) -> bool:
    return isinstance(arrays, Mapping) and "sample_maps" in arrays and "sample_images" in arrays


def retrains(params: Mapping[str, Any]) -> int:
    """Models one job trains: two per DiffROAR level (top-k and bottom-k kept)."""
    return 2 * len(params.get("diffroar_k") or ())


DIRECTIONS: dict[str, Direction] = {
    "alignment": "higher",
    "alignment_cosine": "higher",
    "spearman_input": "higher",
    "ssim_input": "higher",
    "signal_mass": "higher",
    "signal_mass_random": "neither",
    "foreground_mass": "higher",
    "foreground_area": "neither",
    "zero_maps": "neither",
} | {f"diffroar_{t}": "higher" for t in range(1, 100)}
"""Higher is "more like the image" and "more on the discriminative pixels", the sense in which
the robustness literature calls a map more interpretable; an edge detector also scores well on
the first four, so read them beside ``signal_mass`` and DiffROAR."""
GLOSSARY = {
    "alignment": "Etmann et al.'s alignment |<x, a>| / ||a||: the length of the image's "
    "projection onto the attribution map, mean over test images (grows with the image's norm).",
    "alignment_cosine": "|<x, a>| / (||x|| ||a||): the absolute cosine between image and map, "
    "mean over test images; 1 when the map is a multiple of the image.",
    "spearman_input": "Spearman rank correlation between |a| and the image, mean over images.",
    "ssim_input": "SSIM between the [0, 1]-scaled |a| and the image, mean over images.",
    "signal_mass": "Share of the |a| mass inside the signal block (block-mnist's digit), mean "
    "over test images.",
    "signal_mass_random": "The signal block's share of the pixels: what a uniform or random "
    "map gets, the control for signal_mass.",
    "zero_maps": "Test images whose map is all zero (left out of every mean).",
    "foreground_mass": "Share of the |a| mass on the image's foreground (pixels above its "
    "minimum: the digit's strokes), mean over test images.",
    "foreground_area": "The foreground's share of the pixels: what a uniform map gets, the "
    "control for foreground_mass.",
} | {
    f"diffroar_{t}": f"DiffROAR at k = {t / 100:g} (Shah et al. 2021): accuracy of a model "
    f"retrained on the top {t} % of pixels by |a| minus one retrained on the bottom {t} %; "
    "above 0 when the map ranks predictive pixels first"
    for t in range(1, 100)
}


def specs() -> list[EvaluatorSpec]:
    """The ``gradient-alignment`` evaluator."""
    return [
        evaluator_spec(
            NAME,
            evaluate_gradient_alignment,
            "Alignment of attributions with the input (Etmann et al. 2019), their similarity "
            "to it, mass on BlockMNIST's signal block and DiffROAR (Shah et al. 2021)",
            DIRECTIONS,
            figures=saliency_figures,
            retrains=retrains,
            glossary=GLOSSARY,
            version=VERSION,
        )
    ]
