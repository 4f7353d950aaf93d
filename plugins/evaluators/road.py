"""ROAD: Remove And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and
Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

Removing pixels by a constant leaks the removal mask's shape to the model (the paper's
"class information leakage"), so a ranking can score well for *where* it removes rather
than *what*. ROAD fills each removed pixel by *noisy linear imputation* (sec. 4.2): the value
that equals the weighted mean of its 8 neighbours, edge neighbours with weight 1/6, diagonal
ones 1/12 (out-of-image neighbours dropped, their weight with them); all removed pixels of an
image, per channel, are solved together as one sparse linear system

    s_i u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij x_j     (i removed),

with ``s_i`` the sum of ``i``'s in-image neighbour weights, then N(0, sigma^2) noise is added
to every imputed value, ``sigma = noise = 0.01`` (the reference's ``NoisyLinearImputer``
adds ``noise * randn``: 0.01 is the standard deviation, not the variance). The model is then
asked about the imputed image *without retraining* (the "debiased" removal makes retraining
unnecessary, sec. 5).

Curves, for each percentage ``p`` of ``percentages`` (10, 20, ..., 90 by default): MoRF
removes the ``floor(H * W * p / 100)`` most relevant pixels, LeRF the same number of least
relevant ones (both curves against the fraction *removed*, as the paper plots them; the
reference code's ``remove=False`` indexes LeRF by the fraction *kept*, so its LeRF at ``p`` is
ours at ``100 - p``). Per image and point: whether the model still predicts the target
(accuracy) and the target's softmax probability. Areas are the trapezoid over ``p / 100``
divided by the span (the curve's mean height): ``morf_auc`` (lower is better), ``lerf_auc``
(higher), ``lerf_minus_morf`` (higher: the gap the paper reads as faithfulness), and the same
three on probabilities (``*_prob_*``). Per image (``Evaluation.per_image``, read back with
``benchmark.api``): the six areas of every image (their means are the metrics) and its four
curves ``morf_accuracy``, ``lerf_accuracy``, ``morf_probability``, ``lerf_probability``, each
``(N, P)``, row ``i`` being test image ``i``. Ranking and ties are ``benchmark.kit.ranking``'s (the
faithfulness metrics' tie seed); the reference breaks ties by a fixed 1e-4 random perturbation
of the map.

Solver. The system is symmetric positive definite (a weighted graph Laplacian restricted to
the removed pixels; every connected removed region touches a kept pixel when ``p < 100``), so
it is solved by conjugate gradients (Hestenes & Stiefel 1952) on all images, percentages,
orders and channels at once: the matrix is never built, ``A u`` is the masked 3x3 stencil
computed separably (``[1, 2, 1]`` down, ``[1, 2, 1]`` across, minus the centre, / 12) on
whole batches in float64, and each system stops on its own once
``||b - A u||_2 <= cg_tol * ||b||_2`` (default ``1e-8``; against a direct ``scipy.sparse``
``spsolve`` the imputed pixels then differ by less than 1e-6, ``tests/test_road.py``). A
system that has converged leaves the batch, so its result does not depend on its neighbours
in the batch. Noise is keyed per image (``benchmark.kit.ranking.keyed_normal``), one stream
per order and percentage.

Reference implementations: tleemann/road_evaluation ``road/imputations.py``
(``NoisyLinearImputer``: one ``scipy.sparse`` ``spsolve`` per image), and Quantus 0.6.0
``metrics/faithfulness/road.py`` with ``functions/perturb_func.py``
``noisy_linear_imputation`` (the same). Quantus 0.6.0 defects, from its source:

1. First batch only: ``ROAD.custom_postprocess`` averages ``self.evaluation_scores[0]``, the
   first batch's results (64 images with the default ``batch_size``); the rest are computed
   and thrown away.
2. MoRF only, accuracy only, and against the label (``y_batch``); no LeRF curve.
3. One ``spsolve`` per image and percentage in a Python loop, noise from the global
   ``np.random`` state (an image's noise depends on what ran before it): about 8 images/s at
   its default 50 percentages and 47 at our 9 (MoRF only), against 200-230 images/s here
   for MoRF and LeRF at 9 percentages (290 in the README's table), on 2 shared CPU cores
   (``tests/benchmarks/test_faithfulness_speed.py``).
4. The ``a_size`` count uses ``a_batch[0, :, :].size``, i.e. ``C * H * W``, and indexes the
   flattened channels-first map: right for one-channel images only.

``tests/test_road.py`` checks the imputation against ``spsolve`` of the same system and
against Quantus's ``noisy_linear_imputation`` (noise off), and the MoRF accuracy curve
against Quantus's ROAD (noise off, all images in its one batch).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from benchmark.kit.evaluation import Target, evaluating, evaluation_seed, explained_images
from benchmark.kit.figures import curve_figures
from benchmark.kit.ranking import (
    image_keys,
    keyed_normal,
    normalised_auc,
    pixel_importance,
    positions,
    ranking,
)
from benchmark.specs import Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec

PERCENTAGES = tuple(range(10, 100, 10))
"""The paper's default grid of removed percentages."""
SOLVE_CHUNK = 512
"""Systems per conjugate-gradient batch: large enough to amortise Python overhead, small enough
(512 x 784 float64 = 3 MiB a vector) to stay in cache."""
ORDERS = ("morf", "lerf")

_STREAM_ROAD = 5


def _box(u: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` convolved with ``[1, 2, 1]^T [1, 2, 1]`` under zero padding, separably."""
    padded = F.pad(u, (1, 1, 1, 1))
    across = torch.add(padded[..., :, :-2], padded[..., :, 2:]).add_(padded[..., :, 1:-1], alpha=2)
    return torch.add(across[..., :-2, :], across[..., 2:, :]).add_(across[..., 1:-1, :], alpha=2)


def neighbour_sum(u: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` -> the weighted sum of each pixel's 8 neighbours, zero outside the image.

    Weights 1/6 (edge) and 1/12 (diagonal) are ``([1, 2, 1]^T [1, 2, 1] - 4 delta) / 12``,
    so two separable passes and a correction replace an 8-term sum.
    """
    return _box(u).sub_(u, alpha=4).div_(12)


def _conjugate_gradients(
    b: torch.Tensor, removed: torch.Tensor, weight_sum: torch.Tensor, tol: float, max_iter: int
) -> torch.Tensor:
    """Solve ``A u = b`` for each of the ``B`` systems of ``(B, H, W)`` ``b``.

    ``A u = weight_sum * u - removed * neighbour_sum(u)`` for ``u`` that is zero on kept
    pixels (the CG directions are: they are built from masked residuals), computed as
    ``(weight_sum + 1/3) * u - removed / 12 * _box(u)``. A system's solution is recorded at
    the first iteration where its residual norm is below ``tol * ||b||``; recorded systems are
    dropped from the working set once they are a quarter of it (dropping one at a time would
    copy the set every iteration). Until then they iterate on harmlessly: their record is
    taken, and the guards below keep an exactly solved system at zero steps. Every operation
    acts on each system alone, so a solution never depends on the rest of the batch.
    """
    solved = torch.zeros_like(b)
    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum((1, 2))
    limit = (b * b).sum((1, 2)) * tol**2
    diagonal = weight_sum + 1 / 3
    twelfth = removed / 12
    active = torch.arange(len(b), device=b.device)
    pending = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for _ in range(max_iter + 1):
        done = pending & (rr <= limit)
        if done.any():
            solved[active[done]] = u[done]
            pending &= ~done
            left = int(pending.sum())
            if left == 0:
                return solved
            if len(pending) - left >= len(pending) / 4:
                active, u, r, p, rr, limit, twelfth, pending = (
                    t[pending] for t in (active, u, r, p, rr, limit, twelfth, pending)
                )
        ap = torch.mul(diagonal, p).addcmul_(twelfth, _box(p), value=-1)
        curvature = (p * ap).sum((1, 2))
        alpha = torch.where(curvature > 0, rr / curvature, 0.0).view(-1, 1, 1)
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        rr_next = (r * r).sum((1, 2))
        beta = torch.where(rr > 0, rr_next / rr, 0.0).view(-1, 1, 1)
        p = torch.addcmul(r, beta, p)
        rr = rr_next
    raise RuntimeError(
        f"ROAD imputation: conjugate gradients did not reach tolerance {tol} in {max_iter} "
        f"iterations for {int(pending.sum())} systems"
    )


def linear_imputation(
    x: torch.Tensor, removed: torch.Tensor, *, cg_tol: float = 1e-8
) -> torch.Tensor:
    """``(N, C, H, W)`` float64: ``x`` with every ``removed`` pixel (``(N, H, W)`` bool) set to
    the solution of ROAD's neighbour-mean system (no noise), every channel solved alike.

    Raises ``ValueError`` if an image has every pixel removed (the system is then singular).
    """
    n, c, h, w = x.shape
    if removed.shape != (n, h, w):
        raise ValueError(f"mask of shape {tuple(removed.shape)} does not fit images {x.shape}")
    if bool(removed.reshape(n, -1).all(1).any()):
        raise ValueError("linear imputation needs at least one kept pixel per image")
    values = x.detach().double().reshape(n * c, h, w)
    mask = removed.repeat_interleave(c, 0).double()
    weight_sum = neighbour_sum(torch.ones(1, h, w, dtype=torch.float64, device=x.device))
    out = torch.empty_like(values)
    for lo in range(0, n * c, SOLVE_CHUNK):
        m, v = mask[lo : lo + SOLVE_CHUNK], values[lo : lo + SOLVE_CHUNK]
        b = m * neighbour_sum((1 - m) * v)
        u = _conjugate_gradients(b, m, weight_sum, cg_tol, max_iter=4 * h * w)
        out[lo : lo + SOLVE_CHUNK] = torch.where(m.bool(), u, v)
    return out.view(n, c, h, w)


def noisy_linear_imputation(
    x: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.01,
    seed: int = 0,
    stream: int | np.ndarray = 0,
    cg_tol: float = 1e-8,
) -> torch.Tensor:
    """``linear_imputation`` plus ``noise`` times standard normal noise on the removed pixels.

    The noise of row ``i`` is keyed by ``seed``, the pixels of ``x[i]`` and ``stream`` (one
    int, or one per row), so it does not depend on the other rows.
    """
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    imputed = linear_imputation(x, removed, cg_tol=cg_tol)
    if noise == 0:
        return imputed
    eps = keyed_normal(image_keys(x, seed), stream, x.shape[1:]).to(imputed.device)
    return torch.where(removed[:, None], imputed + noise * eps, imputed)


def removal_masks(
    rank: torch.Tensor, counts: torch.Tensor, order: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """``(T, H, W)`` bool: for system ``t`` the ``counts[t]`` most (``order[t] == 0``, MoRF) or
    least (``1``, LeRF) relevant pixels of the ranking whose positions are ``rank[t]``."""
    total = rank.shape[1]
    morf = rank < counts[:, None]
    lerf = rank >= (total - counts)[:, None]
    return torch.where(order[:, None] == 0, morf, lerf).view(-1, *shape)


def road_curves(
    model: nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target: torch.Tensor,
    *,
    percentages: Sequence[float] = PERCENTAGES,
    noise: float = 0.01,
    seed: int = 0,
    cg_tol: float = 1e-8,
    batch_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and probability, each ``(N, 2, P)`` float64 (orders MoRF, LeRF; percentages).

    Every (image, order, percentage) is one imputed copy; copies are imputed and scored
    ``batch_size`` at a time. The noise of a copy is keyed by ``seed``, the image's pixels,
    the order and the percentage, never by its place in the batch.
    """
    n, _, h, w = x.shape
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    pcts = torch.as_tensor([float(p) for p in percentages], dtype=torch.float64)
    if len(pcts) == 0 or not bool(((pcts >= 0) & (pcts < 100)).all()):
        raise ValueError(f"percentages must be in [0, 100), got {list(percentages)}")
    if len(pcts) > 1 and not bool((pcts[1:] > pcts[:-1]).all()):
        raise ValueError(f"percentages must increase, got {list(percentages)}")
    counts = torch.tensor([int(h * w * float(p) / 100) for p in percentages], dtype=torch.int64)
    attributions, target = attributions.to(x.device), target.to(x.device)
    rank = positions(ranking(pixel_importance(attributions)))
    on_device = counts.to(x.device)
    pct_ids = step_ids(pcts)
    steps = len(pcts)
    total = n * 2 * steps
    correct = torch.empty(total, dtype=torch.float64)
    probability = torch.empty(total, dtype=torch.float64)
    with evaluating(model):
        for lo in range(0, total, batch_size):
            system = torch.arange(lo, min(total, lo + batch_size))
            image, order, step = system // (2 * steps), system // steps % 2, system % steps
            # indices stay on the CPU (they also key the noise); the masks are built on x's device
            removed = removal_masks(rank[image], on_device[step], order.to(x.device), (h, w))
            stream = _STREAM_ROAD * 10**8 + (order.numpy() + 1) * 10**6 + pct_ids[step.numpy()]
            imputed = noisy_linear_imputation(
                x[image], removed, noise=noise, seed=seed, stream=stream, cg_tol=cg_tol
            )
            logits = model(imputed.to(x.dtype))
            hit = logits.argmax(1) == target[image]
            correct[lo : lo + len(system)] = hit.double().cpu()
            probs = logits.double().softmax(1).gather(1, target[image].view(-1, 1)).squeeze(1)
            probability[lo : lo + len(system)] = probs.cpu()
    return correct.view(n, 2, steps), probability.view(n, 2, steps)


def step_ids(percentages: torch.Tensor) -> np.ndarray:
    """A noise stream id per percentage from its value (thousandths of a percent), so an
    image's noise at 30 % is the same whichever other percentages are evaluated."""
    return np.round(percentages.numpy() * 1000).astype(np.int64)


def evaluate_road(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    percentages: Sequence[Annotated[float, Field(ge=0, lt=100)]] = PERCENTAGES,
    noise: NonNegativeFloat = 0.01,
    cg_tol: PositiveFloat = 1e-8,
    seed: int | None = None,
    batch_size: PositiveInt = 1024,
) -> Evaluation:
    """ROAD MoRF and LeRF curves with noisy linear imputation on the first ``n_images``."""
    x, classes, attributions = explained_images(context, n_images, target, batch_size, "road")
    correct, probability = road_curves(
        context.model,
        x,
        attributions,
        classes,
        percentages=percentages,
        noise=noise,
        seed=evaluation_seed(context, seed),
        cg_tol=cg_tol,
        batch_size=batch_size,
    )
    fractions = [float(p) / 100 for p in percentages]
    metrics: dict[str, float] = {}
    arrays: dict[str, Any] = {"percentages": [float(p) for p in percentages]}
    per_image: dict[str, np.ndarray] = {}
    for suffix, curves in (("", correct), ("_prob", probability)):
        area = {o: normalised_auc(curves[:, i], fractions) for i, o in enumerate(ORDERS)}
        gap = area["lerf"] - area["morf"]
        name = "accuracy" if suffix == "" else "probability"
        for i, o in enumerate(ORDERS):
            metrics[f"{o}{suffix}_auc"] = float(area[o].mean())
            arrays[f"{o}{suffix}_auc"] = area[o].tolist()
            arrays[f"{o}_{name}"] = curves[:, i].mean(0).tolist()
            per_image[f"{o}{suffix}_auc"] = area[o]
            per_image[f"{o}_{name}"] = curves[:, i].numpy()
        metrics[f"lerf_minus_morf{suffix}"] = float(gap.mean())
        arrays[f"lerf_minus_morf{suffix}"] = gap.tolist()
        per_image[f"lerf_minus_morf{suffix}"] = gap
    return Evaluation(metrics, arrays, per_image)


FIGURE_PANELS = (
    ("percentages", "morf_accuracy", "% removed, most relevant first", "accuracy"),
    ("percentages", "lerf_accuracy", "% removed, least relevant first", "accuracy"),
)
"""The leaderboard figure's panels (``benchmark.kit.figures.curve_figures``): the two accuracy
curves."""

DIRECTIONS = {
    "morf_auc": "lower",
    "lerf_auc": "higher",
    "lerf_minus_morf": "higher",
    "morf_prob_auc": "lower",
    "lerf_prob_auc": "higher",
    "lerf_minus_morf_prob": "higher",
}


def specs() -> list[EvaluatorSpec]:
    """The ``road`` evaluator; its parameters are ``evaluate_road``'s."""
    description = (
        "ROAD (Rong et al. 2022): MoRF / LeRF accuracy and probability with noisy linear "
        "imputation, no retraining"
    )
    figures = functools.partial(curve_figures, title="ROAD", panels=FIGURE_PANELS)
    return [evaluator_spec("road", evaluate_road, description, DIRECTIONS, figures=figures)]
