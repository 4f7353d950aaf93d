"""Completeness and soundness of saliency maps (Gupta & Arora et al., NeurIPS 2022).

"New Definitions and Evaluations for Saliency Methods: Staying Intrinsic, Complete and Sound"
(reference code agup/soundness_saliency, ``certificate_methods.eval_mask_noise_mean_AUC``).
Not Quantus's "Completeness", which is the Integrated-Gradients summation axiom.

*Insertion game* for a label ``c`` and its map: the ``k`` pixels the map ranks highest are
inserted into a canvas that holds the per-channel training mean everywhere else, for ``steps``
equal increments of ``k`` up to the whole image; ``AUC_c`` is the mean of ``softmax_c`` over
the steps (the reference averages the probabilities of its insertion steps).

* Completeness (the map for the predicted label ``y`` holds enough evidence for it):
  ``min(max(eps1, AUC_y) / min(alpha, p_y), 1)`` with ``p_y`` the probability on the full image.
* Soundness (the map for another label ``c`` does not invent evidence for it):
  ``min(max(beta, p_c) / AUC_c, 1)``, averaged over the other labels. The reference divides
  the sum by a hard-coded 9 (ImageNet-style 10-label subsets); we divide by the actual number
  of other labels, ``num_classes - 1``. ``soundness_worst`` takes the minimum over the other
  labels instead of the mean.

Ranking is by the signed attribution summed over channels (the insertion game inserts what the
map says supports the label); ties are broken by pixel index, the same for every image
(``benchmark.kit.ranking.ranking`` with ``tie_seed=None``). Every image's score depends only
on that image. Defaults ``alpha = 1``, ``eps1 = beta = 0.1``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveInt

from benchmark.kit.evaluation import evaluating, predict_logits, require_explainer
from benchmark.kit.ranking import pixel_importance, positions, ranking
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec


def insertion_probabilities(
    model: torch.nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    labels: torch.Tensor,
    fill: torch.Tensor,
    steps: int = 28,
    batch_size: int = 2048,
) -> torch.Tensor:
    """``(N, steps)`` softmax probability of ``labels`` as the top pixels are inserted.

    Step ``s`` (1-based) shows the top ``round(s / steps * H * W)`` pixels of each image's map
    over a ``fill`` canvas; the last step is the whole image. All ``N * steps`` canvases are
    built by broadcasting and scored in batches under ``no_grad``, on ``x``'s device; the
    probabilities come back on the CPU.
    """
    n, c, h, w = x.shape
    device = x.device
    rank = positions(ranking(pixel_importance(attributions.to(device)), tie_seed=None))
    counts = torch.round(torch.arange(1, steps + 1, dtype=torch.float64) / steps * h * w).long()
    counts = counts.to(device)
    labels = labels.to(device)
    canvas = fill.view(1, c, 1, 1).to(device=device, dtype=x.dtype)
    probabilities = torch.empty(n, steps, dtype=torch.float64)
    per_chunk = max(1, batch_size // steps)
    with evaluating(model):
        for start in range(0, n, per_chunk):
            stop = min(n, start + per_chunk)
            shown = rank[start:stop, None, :] < counts[None, :, None]  # (b, steps, HW)
            mask = shown.view(stop - start, steps, 1, h, w)
            images = torch.where(mask, x[start:stop, None], canvas)
            logits = model(images.view(-1, c, h, w)).double()
            probs = logits.softmax(1).view(stop - start, steps, -1)
            index = labels[start:stop, None, None].expand(-1, steps, 1)
            probabilities[start:stop] = probs.gather(2, index).squeeze(2).cpu()
    return probabilities


def completeness(auc: np.ndarray, p: np.ndarray, alpha: float, eps1: float) -> np.ndarray:
    """``min(max(eps1, AUC) / min(alpha, p), 1)`` elementwise."""
    return np.minimum(np.maximum(eps1, auc) / np.minimum(alpha, p), 1.0)


def soundness(auc: np.ndarray, p: np.ndarray, beta: float) -> np.ndarray:
    """``min(max(beta, p) / AUC, 1)`` elementwise (an AUC of 0 cannot be unsound: 1)."""
    ratio = np.divide(np.maximum(beta, p), auc, out=np.full_like(auc, np.inf), where=auc > 0)
    return np.minimum(ratio, 1.0)


def evaluate_completeness_soundness(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    steps: PositiveInt = 28,
    alpha: Annotated[float, Field(gt=0, le=1)] = 1.0,
    eps1: NonNegativeFloat = 0.1,
    beta: NonNegativeFloat = 0.1,
    batch_size: PositiveInt = 2048,
) -> Evaluation:
    """Completeness at the predicted label and soundness over the other labels, per image."""
    explain = require_explainer(context, "completeness-soundness")
    if steps < 1 or not 0 < alpha <= 1 or eps1 < 0 or beta < 0:
        raise ValueError(f"need steps >= 1, 0 < alpha <= 1, eps1, beta >= 0; got {steps}, {alpha}")
    data = context.dataset
    x = data.test.x[:n_images]
    k = data.num_classes
    fill = data.train.x.double().mean(dim=(0, 2, 3))
    full = predict_logits(context.model, x).double().softmax(1).cpu().numpy()
    predicted = full.argmax(1)
    auc = np.zeros((len(x), k))
    for label in range(k):
        target = torch.full((len(x),), label, dtype=torch.long, device=x.device)
        maps = explain(context.model, x, target)
        curve = insertion_probabilities(context.model, x, maps, target, fill, steps, batch_size)
        auc[:, label] = curve.mean(1).numpy()
    rows = np.arange(len(x))
    complete = completeness(auc[rows, predicted], full[rows, predicted], alpha, eps1)
    sound_all = soundness(auc, full, beta)
    others = np.ones_like(sound_all, dtype=bool)
    others[rows, predicted] = False
    sound_other = sound_all[others].reshape(len(x), k - 1)
    metrics = {
        "completeness": float(complete.mean()),
        "soundness": float(sound_other.mean(1).mean()),
        "soundness_worst": float(sound_other.min(1).mean()),
        "insertion_auc_predicted": float(auc[rows, predicted].mean()),
    }
    arrays: dict[str, Any] = {
        "completeness": complete.tolist(),
        "soundness": sound_other.mean(1).tolist(),
        "soundness_worst": sound_other.min(1).tolist(),
        "insertion_auc": auc.tolist(),
        "full_probability": full.tolist(),
    }
    return Evaluation(metrics, arrays)


def specs() -> list[EvaluatorSpec]:
    """The ``completeness-soundness`` evaluator; its parameters are the factory's."""
    description = (
        "Completeness and soundness of saliency maps by the insertion game "
        "(Gupta & Arora et al. 2022)"
    )
    metrics = ("completeness", "soundness", "soundness_worst", "insertion_auc_predicted")
    directions: dict[str, Direction] = dict.fromkeys(metrics, "higher")
    factory = evaluate_completeness_soundness
    return [evaluator_spec("completeness-soundness", factory, description, directions)]
