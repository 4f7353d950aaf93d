"""Pixel flipping, RISE insertion / deletion and region perturbation, batched.

All four remove (or insert) pixels in the order an attribution map ranks them and watch the
model's output for the target class; a faithful map makes the output change fastest. They
run on ``perturbation.switch_curve`` (every perturbed copy built up front and scored in large
batches; the ranking, tie and noise conventions are ``benchmark.kit.ranking``'s). Reference
implementations, and the tests that hold these to them (``tests/test_perturbation_metrics.py``):
Quantus 0.6.0 ``PixelFlipping`` and ``RegionPerturbation`` (curves equal to 1e-6), RISE
``evaluation.py`` (``CausalMetric``) re-run as a direct loop, and hand-computed toy models.

* ``pixel-flipping`` (Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier
  Decisions by Layer-Wise Relevance Propagation", PLoS ONE 10(7), 2015, sec. "Pixel-flipping";
  Quantus ``PixelFlipping``): the most relevant pixels are replaced by ``baseline`` in
  ``steps`` equal steps (``floor(k * H * W / steps)`` pixels after step ``k``); the curve is the
  target's output after each step (``k = 1..steps``, no unperturbed point, as Quantus).
  ``auc`` is the trapezoid over the fraction removed ``k / steps``: Quantus's
  ``calculate_auc(curve)`` (unit spacing) divided by ``steps``, so it does not grow with the
  step count. Lower is better (the output collapses as soon as the relevant pixels go).
* ``deletion`` / ``insertion`` (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for
  Explanation of Black-box Models", BMVC 2018, sec. 4.1): deletion moves from the image to the
  ``baseline`` (0, black, as RISE's zero substrate), insertion from RISE's blurred image
  (kernel 11, sigma 5) back to the image, most relevant pixels first; the curve is the softmax
  probability of the target at ``k = 0..steps`` and ``auc`` RISE's normalised area
  (trapezoid over the fraction changed, x in [0, 1]). Deletion: lower is better; insertion:
  higher.
* ``region-perturbation`` (Samek, Binder, Montavon, Lapuschkin & Mueller, "Evaluating the
  Visualization of What a Deep Neural Network Has Learned", IEEE TNNLS 28(11), 2017, MoRF,
  eq. 12): the image is tiled into ``patch_size`` squares (the tiling centred as Quantus pads
  it when the size does not divide the image), regions ranked by their summed attribution and
  replaced one by one by ``baseline`` (uniform noise, Samek's choice, or the image's mean);
  ``AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x) - f(x_k))`` per image, averaged. Higher is better.
  Samek perturbs a 9x9 window around each most relevant pixel (windows may overlap); Quantus
  and we tile the image, so each step removes exactly one region.

Per image (``Evaluation.per_image``, kept in the artifact cache, read back with
``benchmark.api``): each evaluator returns its score of every image (``auc``, ``aopc``:
their mean is the metric) and every image's curve (``curve`` ``(N, T)``, region
perturbation's ``drop_curve`` ``(N, L + 1)``), row ``i`` being test image ``i``; the stored
arrays keep the mean curve, which the figures draw.

Quantus 0.6.0 points where these differ on purpose (all checked in the installed source):

1. ``helpers/utils.py`` ``calculate_auc`` calls ``np.trapz``, removed in NumPy 2.4 (here:
   2.4): ``PixelFlipping(return_auc_per_sample=True)`` and ``IROF`` crash. We use
   ``np.trapezoid``; the tests compare curves and compute Quantus's area themselves.
2. ``metrics/base.py`` normalises every map by the maximum over the whole batch
   (``normalise_by_max`` over all axes). Harmless for a ranking (a positive factor), but it
   couples images; nothing here is normalised.
3. Quantus's ``"black"`` baseline is each (partially perturbed) image's minimum, its
   ``"mean"`` the mean of the partially perturbed (in ``RegionPerturbation``: edge-padded)
   image, recomputed after every step, and its batched ``"uniform"`` one random value per
   image and step (``helpers/utils.py`` ``get_baseline_dict``), not per pixel. Ours are fixed
   images: a number, the clean image's mean, per-pixel U(0, 1) noise (Samek), RISE's blur.
   With a numeric baseline the curves are Quantus's to float precision.
4. Ties: Quantus sorts with ``np.argsort(-a)`` (unstable); we use one fixed random priority.
5. Quantus rebuilds the perturbed batch with one model call per step (784 calls per batch for
   ``PixelFlipping``'s default ``features_in_step=1``); all copies here go in large batches.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from benchmark.kit.evaluation import Target, evaluation_seed, explained_images
from benchmark.kit.figures import Panel, curve_figures
from benchmark.kit.ranking import normalised_auc, pixel_importance, positions, ranking
from benchmark.specs import Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.perturbation import (
    Baseline,
    Output,
    baseline_image,
    step_counts,
    switch_curve,
)

Mode = Literal["insertion", "deletion"]

# Noise streams (see benchmark.kit.ranking.keyed_uniform): one per evaluator, so two
# evaluators never draw the same noise for an image by accident.
_STREAM_PIXEL_FLIPPING = 1
_STREAM_DELETION = 2
_STREAM_INSERTION = 3
_STREAM_REGIONS = 4


def pixel_flipping_curve(
    model: nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target: torch.Tensor,
    fill: torch.Tensor,
    *,
    steps: int = 28,
    output: Output = "probability",
    batch_size: int = 1024,
) -> torch.Tensor:
    """``(N, steps)`` target output after each step of replacing the top pixels by ``fill``."""
    h, w = x.shape[-2:]
    position = positions(ranking(pixel_importance(attributions)))
    thresholds = step_counts(h * w, steps)[1:]
    return switch_curve(
        model, x, fill, position, thresholds, target, output=output, batch_size=batch_size
    )


def insertion_deletion_curve(
    model: nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target: torch.Tensor,
    substrate: torch.Tensor,
    *,
    mode: Mode,
    steps: int = 28,
    batch_size: int = 1024,
) -> torch.Tensor:
    """``(N, steps + 1)`` softmax probability of the target at ``k = 0..steps`` (RISE).

    Deletion goes from ``x`` to ``substrate``, insertion from ``substrate`` to ``x``; step
    ``k`` has changed the ``floor(k * H * W / steps)`` most relevant pixels.
    """
    if mode not in ("insertion", "deletion"):
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    h, w = x.shape[-2:]
    position = positions(ranking(pixel_importance(attributions)))
    start, finish = (x, substrate) if mode == "deletion" else (substrate, x)
    counts = step_counts(h * w, steps)
    return switch_curve(
        model, start, finish, position, counts, target, output="probability", batch_size=batch_size
    )


def region_labels(height: int, width: int, patch_size: int) -> tuple[torch.Tensor, int]:
    """``(H*W,)`` region index of every pixel, and the number of regions.

    Squares of ``patch_size`` tile the image padded to a multiple of it, the padding split
    evenly (``floor`` before, ``ceil`` after), as Quantus's ``get_padding_size`` does, so the
    border regions are the partial ones on both sides.
    """
    if patch_size < 1:
        raise ValueError(f"patch_size must be at least 1, got {patch_size}")
    pad_h = (-height % patch_size) // 2
    pad_w = (-width % patch_size) // 2
    rows = (torch.arange(height) + pad_h) // patch_size
    cols = (torch.arange(width) + pad_w) // patch_size
    n_rows, n_cols = -(-height // patch_size), -(-width // patch_size)
    return (rows[:, None] * n_cols + cols[None, :]).reshape(-1), n_rows * n_cols


def region_perturbation_curve(
    model: nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target: torch.Tensor,
    fill: torch.Tensor,
    *,
    patch_size: int = 4,
    regions: int | None = None,
    output: Output = "probability",
    batch_size: int = 1024,
) -> torch.Tensor:
    """``(N, L + 1)`` target output after ``k = 0..L`` most relevant regions became ``fill``.

    A region's relevance is the sum of its pixels' (channel-summed) attributions, as in
    Quantus; ``regions`` (``L``) defaults to all of them.
    """
    n, _, h, w = x.shape
    labels, n_regions = region_labels(h, w, patch_size)
    count = n_regions if regions is None else int(regions)
    if not 1 <= count <= n_regions:
        raise ValueError(f"regions must be between 1 and {n_regions}, got {regions}")
    pixels = pixel_importance(attributions)
    labels = labels.to(pixels.device)
    importance = torch.zeros(n, n_regions, dtype=torch.float64, device=pixels.device)
    importance.index_add_(1, labels, pixels)
    region_rank = positions(ranking(importance))
    position = region_rank[:, labels]
    thresholds = torch.arange(count + 1, dtype=torch.int64)
    return switch_curve(
        model, x, fill, position, thresholds, target, output=output, batch_size=batch_size
    )


def aopc(outputs: torch.Tensor) -> np.ndarray:
    """Per-image AOPC (Samek et al. 2017, eq. 12) from ``(N, L + 1)`` outputs at ``k = 0..L``:
    the mean over ``k`` of ``f(x_0) - f(x_k)`` (the ``k = 0`` term is zero)."""
    drops = outputs[:, :1] - outputs
    return drops.mean(1).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Evaluators.


def evaluate_pixel_flipping(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    steps: PositiveInt = 28,
    baseline: Baseline = 0.0,
    output: Output = "probability",
    seed: int | None = None,
    batch_size: PositiveInt = 1024,
) -> Evaluation:
    """Pixel flipping (Bach et al. 2015) on the first ``n_images`` test images."""
    x, classes, attributions = explained_images(context, n_images, target, batch_size)
    noise_seed = evaluation_seed(context, seed)
    fill = baseline_image(x, baseline, seed=noise_seed, stream=_STREAM_PIXEL_FLIPPING)
    curve = pixel_flipping_curve(
        context.model,
        x,
        attributions,
        classes,
        fill,
        steps=steps,
        output=output,
        batch_size=batch_size,
    )
    auc = np.trapezoid(curve.cpu().numpy(), dx=1.0 / steps, axis=1)
    fractions = (np.arange(1, steps + 1) / steps).tolist()
    arrays: dict[str, Any] = {
        "auc": auc.tolist(),
        "curve": curve.mean(0).tolist(),
        "fractions": fractions,
    }
    per_image = {"auc": auc, "curve": curve.cpu().numpy()}
    return Evaluation({"auc": float(auc.mean())}, arrays, per_image)


def insertion_deletion(
    context: EvaluationContext,
    mode: Mode,
    n_images: int,
    target: Target,
    steps: int,
    baseline: float | str,
    blur_kernel: int,
    blur_sigma: float,
    seed: int | None,
    batch_size: int,
) -> Evaluation:
    """RISE's deletion or insertion game on the first ``n_images`` test images: the curve, and
    its normalised area per image (what ``evaluate_deletion`` and ``evaluate_insertion`` run;
    they differ only in the direction and the default substrate)."""
    x, classes, attributions = explained_images(context, n_images, target, batch_size)
    substrate = baseline_image(
        x,
        baseline,
        seed=evaluation_seed(context, seed),
        stream=_STREAM_DELETION if mode == "deletion" else _STREAM_INSERTION,
        blur_kernel=blur_kernel,
        blur_sigma=blur_sigma,
    )
    curve = insertion_deletion_curve(
        context.model,
        x,
        attributions,
        classes,
        substrate,
        mode=mode,
        steps=steps,
        batch_size=batch_size,
    )
    fractions = np.arange(steps + 1) / steps
    auc = normalised_auc(curve, fractions)
    arrays: dict[str, Any] = {
        "auc": auc.tolist(),
        "curve": curve.mean(0).tolist(),
        "fractions": fractions.tolist(),
    }
    per_image = {"auc": auc, "curve": curve.cpu().numpy()}
    return Evaluation({"auc": float(auc.mean())}, arrays, per_image)


def evaluate_deletion(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    steps: PositiveInt = 28,
    baseline: Baseline = 0.0,
    blur_kernel: PositiveInt = 11,
    blur_sigma: PositiveFloat = 5.0,
    seed: int | None = None,
    batch_size: PositiveInt = 1024,
) -> Evaluation:
    """RISE deletion (Petsiuk et al. 2018): most relevant pixels to ``baseline`` first."""
    settings = (n_images, target, steps, baseline, blur_kernel, blur_sigma, seed, batch_size)
    return insertion_deletion(context, "deletion", *settings)


def evaluate_insertion(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    steps: PositiveInt = 28,
    baseline: Baseline = "blur",
    blur_kernel: PositiveInt = 11,
    blur_sigma: PositiveFloat = 5.0,
    seed: int | None = None,
    batch_size: PositiveInt = 1024,
) -> Evaluation:
    """RISE insertion (Petsiuk et al. 2018): most relevant pixels back into the blur first."""
    settings = (n_images, target, steps, baseline, blur_kernel, blur_sigma, seed, batch_size)
    return insertion_deletion(context, "insertion", *settings)


def evaluate_region_perturbation(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    patch_size: PositiveInt = 4,
    regions: PositiveInt | None = None,
    baseline: Baseline = "uniform",
    output: Output = "probability",
    seed: int | None = None,
    batch_size: PositiveInt = 1024,
) -> Evaluation:
    """Region perturbation, MoRF (Samek et al. 2017): AOPC over the first ``n_images``."""
    x, classes, attributions = explained_images(context, n_images, target, batch_size)
    fill = baseline_image(x, baseline, seed=evaluation_seed(context, seed), stream=_STREAM_REGIONS)
    outputs = region_perturbation_curve(
        context.model,
        x,
        attributions,
        classes,
        fill,
        patch_size=patch_size,
        regions=regions,
        output=output,
        batch_size=batch_size,
    )
    scores = aopc(outputs)
    arrays: dict[str, Any] = {
        "aopc": scores.tolist(),
        "drop_curve": (outputs[:, :1] - outputs).mean(0).tolist(),
        "regions_removed": list(range(outputs.shape[1])),
    }
    per_image = {"aopc": scores, "drop_curve": (outputs[:, :1] - outputs).cpu().numpy()}
    return Evaluation({"aopc": float(scores.mean())}, arrays, per_image)


# --------------------------------------------------------------------------------------------
# Specs: parameters and their types come from the factories' signatures.


def _figures(title: str, panel: Panel) -> Any:
    """The mean curve per explainer (``benchmark.kit.figures.curve_figures``); a partial of a
    module-level function, so the spec pickles and travels to worker processes."""
    return functools.partial(curve_figures, title=title, panels=(panel,))


def specs() -> list[EvaluatorSpec]:
    """The ``pixel-flipping``, ``deletion``, ``insertion`` and ``region-perturbation``
    evaluators; their parameters are the factories'."""
    return [
        evaluator_spec(
            "pixel-flipping",
            evaluate_pixel_flipping,
            "Pixel flipping (Bach et al. 2015): target output as the most relevant pixels turn "
            "black, area under the curve",
            {"auc": "lower"},
            figures=_figures(
                "Pixel flipping",
                ("fractions", "curve", "fraction of pixels flipped", "target output"),
            ),
        ),
        evaluator_spec(
            "deletion",
            evaluate_deletion,
            "RISE deletion (Petsiuk et al. 2018): target probability as the most relevant "
            "pixels are deleted, normalised AUC",
            {"auc": "lower"},
            figures=_figures(
                "Deletion", ("fractions", "curve", "fraction of pixels deleted", "probability")
            ),
        ),
        evaluator_spec(
            "insertion",
            evaluate_insertion,
            "RISE insertion (Petsiuk et al. 2018): target probability as the most relevant "
            "pixels return to a blurred image, normalised AUC",
            {"auc": "higher"},
            figures=_figures(
                "Insertion", ("fractions", "curve", "fraction of pixels inserted", "probability")
            ),
        ),
        evaluator_spec(
            "region-perturbation",
            evaluate_region_perturbation,
            "Region perturbation, MoRF (Samek et al. 2017): AOPC as the most relevant patches "
            "become uniform noise",
            {"aopc": "higher"},
            figures=_figures(
                "Region perturbation (MoRF)",
                ("regions_removed", "drop_curve", "regions removed", "f(x) - f(x_k)"),
            ),
        ),
    ]
