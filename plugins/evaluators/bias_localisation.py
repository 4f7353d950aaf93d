"""Bias localisation: does an explanation point at the shortcut the model took?

The fairness leaderboard measures *that* a model leans on a spurious feature (colored-mnist's
background colour predicts the class in 99 % of training images); an explanation that
deserves trust should show *where*: a shortcut model's attribution mass should sit on the
background, a debiased model's on the digit. This evaluator measures, on the same test images
for every explainer, the share of absolute attribution mass on the spurious region:

* colored-mnist: the background, i.e. the pixels whose value equals the image's corner pixel in
  every channel (the digit is composited over a uniform colour and never reaches the corner);
* bam-mnist: the scene, i.e. every pixel outside ``extras["object_mask"]``;
* any other image dataset: the pixels equal to the corner pixel (MNIST's black background).

Metrics: ``background_mass`` (mean over images of mass on the region / total mass; images
whose map is all zero are left out and counted in ``zero_maps``), ``background_area`` (the
region's share of the pixels: what a map spread uniformly would get), ``mass_over_area``
(per image, mass share / area share, then the mean: 1 for the ``random`` control, above 1
when the map concentrates on the spurious region), and, where the dataset marks bias-aligned
images (``extras["bias_aligned"]``), both on the aligned and on the conflicting images, with
the model's accuracy on each (``accuracy_aligned``, ``accuracy_conflicting``) on the same
images, so the attribution and the behaviour it should explain sit in one row. A model that
follows the colour gets conflicting images wrong and should show more background mass there.

No reference implementation reports this for colored-mnist; the mass-in-region score is the
one of BAM's region scores and of the pointing-game family (Zhang et al. 2018), computed per
image, batched, without gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import PositiveInt

from benchmark.kit.evaluation import Target, explained_images, predict_logits
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec


def corner_background(x: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """``(N, H, W)`` bool: pixels equal (within ``tol``, every channel) to the image's
    top-left pixel."""
    corner = x[:, :, :1, :1]
    return ((x - corner).abs() <= tol).all(dim=1)


def spurious_region(x: torch.Tensor, extras: dict[str, Any], rows: slice) -> torch.Tensor:
    """The spurious region of the evaluated images: the scene where the dataset has object
    masks, else the uniform background."""
    mask = extras.get("object_mask")
    if mask is not None:
        return ~torch.as_tensor(mask[rows], device=x.device).bool()
    return corner_background(x)


def region_mass(attributions: torch.Tensor, region: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: share of absolute attribution mass inside ``region`` (NaN for an all-zero
    map), and the region's share of the pixels."""
    mass = attributions.detach().abs().double().sum(1)
    inside = (mass * region.to(mass.device)).sum((1, 2))
    total = mass.sum((1, 2))
    share = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.nan)
    area = region.double().mean((1, 2))
    return share.cpu().numpy(), area.cpu().numpy()


def evaluate_bias_localisation(
    context: EvaluationContext,
    n_images: PositiveInt = 512,
    target: Target = "prediction",
    batch_size: PositiveInt = 256,
) -> Evaluation:
    """Share of attribution mass on the spurious region for the first ``n_images`` test
    images (explained for the model's prediction by default: the question is what the model
    used)."""
    x, _, attributions = explained_images(
        context, n_images, target, batch_size, "bias-localisation"
    )
    test = context.dataset.test
    rows = slice(0, len(x))
    region = spurious_region(x, test.extras or {}, rows)
    share, area = region_mass(attributions, region)
    valid = ~np.isnan(share) & (area > 0)
    predicted = predict_logits(context.model, x).argmax(1)
    if not valid.any():
        if not (area > 0).any():
            raise ValueError(f"none of the {len(x)} test images has a spurious region")
        correct = (predicted == test.y[rows]).double().mean().item()
        classes = int(predicted.unique().numel())
        raise ValueError(
            f"every attribution map of the {len(x)} images is all zero: nothing to localise. "
            f"The model predicts {classes} distinct class(es) here (accuracy {correct:.3f}); "
            "a model that collapsed to a constant output has no gradient to explain"
        )
    ratio = np.where(valid, share / np.where(area > 0, area, 1.0), np.nan)
    metrics = {
        "background_mass": float(share[valid].mean()),
        "background_area": float(area.mean()),
        "mass_over_area": float(ratio[valid].mean()),
        "zero_maps": float((~valid).sum()),
        "accuracy": float((predicted == test.y[rows]).double().mean().item()),
    }
    aligned = (test.extras or {}).get("bias_aligned")
    if aligned is not None:
        aligned = torch.as_tensor(aligned[rows]).bool().cpu().numpy()
        correct = (predicted == test.y[rows]).cpu().numpy()
        for name, part in (("aligned", aligned), ("conflicting", ~aligned)):
            if (part & valid).any():
                metrics[f"background_mass_{name}"] = float(share[part & valid].mean())
                metrics[f"mass_over_area_{name}"] = float(ratio[part & valid].mean())
            if part.any():
                metrics[f"accuracy_{name}"] = float(correct[part].mean())
    per_image = {"background_mass": share, "background_area": area, "mass_over_area": ratio}
    return Evaluation(metrics, {"n_images": len(x)}, per_image=per_image)


DIRECTIONS: dict[str, Direction] = {
    "background_mass": "neither",
    "background_area": "neither",
    "mass_over_area": "neither",
    "zero_maps": "neither",
    "background_mass_aligned": "neither",
    "background_mass_conflicting": "neither",
    "mass_over_area_aligned": "neither",
    "mass_over_area_conflicting": "neither",
    "accuracy": "higher",
    "accuracy_aligned": "higher",
    "accuracy_conflicting": "higher",
}
"""Where the mass *should* be depends on the model (a shortcut model's explanation should show
the shortcut), so the shares have no better side; they are read next to the accuracies."""
GLOSSARY = {
    "background_mass": "Share of the absolute attribution mass on the spurious region "
    "(colored-mnist: the coloured background; bam-mnist: the scene), mean over test images.",
    "background_area": "Share of the pixels in the spurious region: what a uniform map gets.",
    "mass_over_area": "Per image, the share of mass on the spurious region divided by the "
    "region's share of pixels, mean over images: 1 for a uniform or random map, above 1 when "
    "the map concentrates on the spurious region.",
    "mass_over_area_aligned": "mass_over_area on bias-aligned test images.",
    "mass_over_area_conflicting": "mass_over_area on bias-conflicting test images.",
    "zero_maps": "Test images whose attribution map is all zero (left out of the shares).",
    "background_mass_aligned": "background_mass on test images that wear their class colour.",
    "background_mass_conflicting": "background_mass on test images painted in another class's "
    "colour: where a shortcut model is misled.",
    "accuracy": "The model's accuracy on the scored test images (a collapsed model's maps say "
    "nothing about a shortcut).",
    "accuracy_aligned": "The model's accuracy on the same bias-aligned images.",
    "accuracy_conflicting": "The model's accuracy on the same bias-conflicting images.",
}


def specs() -> list[EvaluatorSpec]:
    """The ``bias-localisation`` evaluator."""
    spec = evaluator_spec(
        "bias-localisation",
        evaluate_bias_localisation,
        "Share of attribution mass on the spurious region (background colour, scene), next "
        "to the model's accuracy on bias-aligned and bias-conflicting images",
        DIRECTIONS,
        glossary=GLOSSARY,
        version="2",  # 2: the model's accuracy on the scored images; collapsed models named
    )
    return [spec]
