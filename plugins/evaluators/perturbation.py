"""The batched engine behind every perturbation-based faithfulness evaluator.

Pixel flipping (Bach et al. 2015), RISE insertion / deletion (Petsiuk et al. 2018), region
perturbation (Samek et al. 2017) and ROAD (Rong et al. 2022) all do the same thing: rank the
pixels of each image by its attribution map, switch more and more of them from a *start*
image to a *finish* image, and record the model's output for the target class after each step.
Their reference implementations (Quantus ``PixelFlipping`` / ``RegionPerturbation``, RISE's
``CausalMetric``) run one Python step at a time, each step one model call on one batch; this
module builds every perturbed copy of every image up front and feeds them to the model in
chunks of ``batch_size`` copies under ``torch.no_grad()``, so the cost is the model's forward
passes and little else (``tests/benchmarks/test_faithfulness_speed.py`` times both).

Why by hand: captum has no perturbation curves, and Quantus's are the slow per-step loops
described above (and have defects listed in ``faithfulness.py`` / ``road.py``).

Conventions shared by the evaluators:

* *Ranking.* Pixel importance is the attribution summed over channels (signed: a negative
  attribution argues against the target, so it goes last, as in Quantus with ``abs=False``,
  RISE and the ROAD reference, which also sums channels). All channels of a pixel are switched
  together. Ties (flat Grad-CAM regions, zero gradients) are broken by one fixed random
  priority of pixel positions (seed ``TIE_SEED``), the same for every image and explainer, so
  no method gains or loses by the raster order its ties happen to fall in. Quantus breaks ties
  by ``np.argsort``'s unstable quicksort; the two agree whenever a map has no ties.
* *Noise.* Random baselines (uniform noise, ROAD's imputation noise) come from a counter-based
  generator (SplitMix64, Steele, Lea & Flood, "Fast splittable pseudorandom number
  generators", OOPSLA 2014) keyed by the seed and a hash of the image's own pixels: an image
  gets the same noise alone, in a batch of 256 or after reordering, and all of it is drawn in
  one vectorised call, with no per-image generator loop.
* *Targets.* ``prediction`` (the model's class on the clean image, RISE's choice) or
  ``label``; the attributions are computed for that same target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from benchmark.specs import EvaluationContext

Target = Literal["prediction", "label"]
Output = Literal["probability", "logit"]

TIE_SEED = 20150710
"""Seed of the fixed pixel priority that breaks ties in every ranking (Bach et al., July 2015)."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


# --------------------------------------------------------------------------------------------
# Inputs: images, targets, attributions.


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (dropout off) under ``no_grad``; the training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def target_scores(logits: torch.Tensor, target: torch.Tensor, output: Output) -> torch.Tensor:
    """``(B,)`` float64: softmax probability (``probability``) or logit of each row's target."""
    if output == "probability":
        values = logits.double().softmax(1)
    elif output == "logit":
        values = logits.double()
    else:
        raise ValueError(f"output must be 'probability' or 'logit', got {output!r}")
    return values.gather(1, target.view(-1, 1)).squeeze(1)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of every row of ``x``, batched, in eval mode, without gradients."""
    with evaluating(model):
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def resolve_target(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, target: Target, batch_size: int
) -> torch.Tensor:
    """``(N,)`` int64 classes to explain and score: the model's prediction or the label."""
    if target == "prediction":
        return predict(model, x, batch_size).argmax(1)
    if target == "label":
        return labels.long().clone()
    raise ValueError(f"target must be 'prediction' or 'label', got {target!r}")


def explained_images(
    context: EvaluationContext, n_images: int, target: Target, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n_images`` test images, their targets and the job's attributions for them.

    The first ``n`` (not a random draw) so every explainer and evaluator of a suite scores the
    same images and the runner's attribution cache is shared between evaluators.
    """
    if context.explain is None:
        raise ValueError("this evaluator needs an explainer (requires 'explainer')")
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    test = context.dataset.test
    x = test.x[:n_images]
    classes = resolve_target(context.model, x, test.y[:n_images], target, batch_size)
    attributions = context.explain(context.model, x, classes)
    check_attributions(attributions, x)
    return x, classes, attributions.to(x.device)


def check_attributions(attributions: torch.Tensor, x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``attributions`` is ``(N, 1 or C, H, W)`` for ``x``."""
    n, c, h, w = x.shape
    shape = tuple(attributions.shape)
    if len(shape) != 4 or shape[0] != n or shape[1] not in (1, c) or shape[2:] != (h, w):
        raise ValueError(f"attributions of shape {shape} do not fit images of shape {(n, c, h, w)}")


# --------------------------------------------------------------------------------------------
# Rankings.


def pixel_importance(attributions: torch.Tensor) -> torch.Tensor:
    """``(N, 1 or C, H, W)`` -> ``(N, H*W)`` float64: the attribution summed over channels."""
    n = attributions.shape[0]
    return attributions.detach().double().sum(1).reshape(n, -1)


def ranking(importance: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` importance -> ``(N, K)`` indices, most important first.

    Ties follow one fixed random priority of the ``K`` positions (``TIE_SEED``): the columns
    are permuted by it, sorted stably and mapped back.
    """
    k = importance.shape[1]
    priority = torch.randperm(k, generator=torch.Generator().manual_seed(TIE_SEED))
    priority = priority.to(importance.device)  # drawn on the CPU: the same on every device
    order = torch.argsort(importance[:, priority], dim=1, descending=True, stable=True)
    return priority[order]


def positions(order: torch.Tensor) -> torch.Tensor:
    """The inverse permutation of each row: ``positions(order)[i, order[i, r]] == r``."""
    rank = torch.empty_like(order)
    columns = torch.arange(order.shape[1], device=order.device)
    rank.scatter_(1, order, columns.expand_as(order).contiguous())
    return rank


def step_counts(total: int, steps: int) -> torch.Tensor:
    """``(steps + 1,)`` int64: ``floor(k * total / steps)`` for ``k = 0..steps``.

    With ``total`` divisible by ``steps`` this is ``k * features_in_step`` (Quantus) and
    ``k * step`` (RISE); otherwise the steps are as even as integers allow.
    """
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be between 1 and {total}, got {steps}")
    return torch.arange(steps + 1, dtype=torch.int64) * total // steps


# --------------------------------------------------------------------------------------------
# The engine.


def switch_curve(
    model: nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    position: torch.Tensor,
    thresholds: torch.Tensor,
    target: torch.Tensor,
    *,
    output: Output = "probability",
    batch_size: int = 1024,
) -> torch.Tensor:
    """``(N, S)`` float64 model outputs along a perturbation path, all copies batched.

    Copy ``(i, s)`` shows ``finish[i]`` where ``position[i] < thresholds[s]`` and ``start[i]``
    elsewhere (all channels of a pixel together); its score is the target's softmax
    probability or logit (``output``). ``position`` is ``(N, H*W)``: the rank at which each
    pixel is switched (its place in the ranking, or its region's). The ``N * S`` copies are
    built chunk by chunk, ``batch_size`` copies per forward pass, so memory stays bounded
    while the model sees large batches, on the device of ``start``; the scores come back on
    the CPU. Neither input is modified.
    """
    n, _, h, w = start.shape
    if finish.shape != start.shape or position.shape != (n, h * w):
        raise ValueError(
            f"start {tuple(start.shape)}, finish {tuple(finish.shape)} and position "
            f"{tuple(position.shape)} do not fit together"
        )
    steps = len(thresholds)
    total = n * steps
    scores = torch.empty(total, dtype=torch.float64)
    grid = position.to(start.device).view(n, 1, h, w)
    thresholds = thresholds.to(start.device)
    finish, target = finish.to(start.device), target.to(start.device)
    with evaluating(model):
        for lo in range(0, total, batch_size):
            pair = torch.arange(lo, min(total, lo + batch_size))
            image, step = pair // steps, pair % steps
            switched = grid[image] < thresholds[step].view(-1, 1, 1, 1)
            copies = torch.where(switched, finish[image], start[image])
            scores[lo : lo + len(pair)] = target_scores(model(copies), target[image], output).cpu()
    return scores.view(n, steps)


def normalised_auc(curve: torch.Tensor | np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Trapezoid area under ``curve`` (last axis) over ``fractions``, divided by their span.

    Over ``0..1`` this is RISE's ``auc`` (Petsiuk et al. 2018, sec. 4.1: "area under the
    curve" with the x-axis the fraction of pixels changed); over ``0.1..0.9`` (ROAD) it is the
    curve's mean height, comparable across percentage sets. One point: its value.
    """
    if isinstance(curve, torch.Tensor):
        curve = curve.detach().cpu()
    values = np.asarray(curve, dtype=np.float64)
    xs = np.asarray(fractions, dtype=np.float64)
    if len(xs) == 1:
        return values[..., 0]
    return np.trapezoid(values, xs, axis=-1) / (xs[-1] - xs[0])


# --------------------------------------------------------------------------------------------
# Keyed noise and baselines.


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele et al. 2014, Fig. 3): a bijective 64-bit avalanche."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def image_keys(x: torch.Tensor, seed: int) -> np.ndarray:
    """``(N,)`` uint64 keys: a hash of the seed and each image's float32 pixels (its own
    content, never its place in the batch)."""
    n = x.shape[0]
    bits = x.detach().float().contiguous().view(torch.int32).reshape(n, -1).cpu().numpy()
    words = bits.astype(np.uint32).astype(np.uint64)
    index = np.arange(1, words.shape[1] + 1, dtype=np.uint64) * _GOLDEN
    with np.errstate(over="ignore"):
        content = _mix(words + index).sum(axis=1, dtype=np.uint64)
        return _mix(content ^ _mix(np.uint64(seed % 2**64) + _GOLDEN))


def keyed_uniform(keys: np.ndarray, stream: int | np.ndarray, shape: Sequence[int]) -> torch.Tensor:
    """``(N, *shape)`` float64 uniform on [0, 1): element ``j`` of row ``i`` is a function of
    ``(keys[i], stream[i], j)`` only. ``stream`` (one int, or one per row) separates
    independent draws for one image (a percentage, an evaluator)."""
    count = int(np.prod(shape))
    streams = np.asarray(stream, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(keys ^ _mix(streams * _GOLDEN + _GOLDEN))
        state = base[:, None] + np.arange(1, count + 1, dtype=np.uint64)[None, :] * _GOLDEN
        bits = _mix(state) >> np.uint64(11)
    values = bits.astype(np.float64) * 2.0**-53
    return torch.from_numpy(values).view(len(keys), *shape)


def keyed_normal(keys: np.ndarray, stream: int | np.ndarray, shape: Sequence[int]) -> torch.Tensor:
    """``(N, *shape)`` float64 standard normal by Box-Muller on two keyed uniform draws."""
    count = int(np.prod(shape))
    u = keyed_uniform(keys, stream, (2, count))
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:, 0]))
    return (radius * torch.cos(2 * torch.pi * u[:, 1])).view(len(keys), *shape)


def rise_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's blur kernel (``gkern`` in eclique/RISE ``evaluation.py``): an impulse at the
    centre of a ``size x size`` grid smoothed by ``scipy.ndimage.gaussian_filter(sigma)``.

    That filter reflects at the grid's edges, so for ``sigma`` comparable to ``size`` the
    Gaussian's tails fold back inside the window; the kernel still sums to 1.
    """
    from scipy import ndimage  # lazy: keeps `bench` start-up fast

    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ValueError(f"blur kernel needs an odd size >= 1 and sigma > 0, got {size}, {sigma}")
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    return torch.from_numpy(ndimage.gaussian_filter(impulse, sigma))


def rise_blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Each channel convolved with ``rise_kernel`` under zero padding (RISE's ``blur``)."""
    c = x.shape[1]
    kernel = rise_kernel(size, sigma).to(device=x.device, dtype=x.dtype)
    kernel = kernel.expand(c, 1, size, size)
    return torch.nn.functional.conv2d(x, kernel, padding=size // 2, groups=c)


def baseline_image(
    x: torch.Tensor,
    baseline: float | str,
    *,
    seed: int,
    stream: int = 0,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
) -> torch.Tensor:
    """What a removed pixel becomes, as a full ``(N, C, H, W)`` image of ``x``'s dtype.

    * a number: that value everywhere (``0.0`` is black for images in [0, 1]);
    * ``"mean"``: each image's per-channel mean (of the unperturbed image);
    * ``"uniform"``: per-pixel, per-channel U(0, 1) noise (Samek et al. 2017), keyed per image;
    * ``"blur"``: RISE's blurred copy of the image (``rise_blur``).
    """
    if isinstance(baseline, bool):
        raise ValueError(f"baseline must be a number, 'mean', 'uniform' or 'blur', got {baseline}")
    if isinstance(baseline, int | float):
        return torch.full_like(x, float(baseline))
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if baseline == "uniform":
        noise = keyed_uniform(image_keys(x, seed), stream, x.shape[1:])  # on the CPU
        return noise.to(device=x.device, dtype=x.dtype)
    if baseline == "blur":
        with torch.no_grad():
            return rise_blur(x, blur_kernel, blur_sigma)
    raise ValueError(f"baseline must be a number, 'mean', 'uniform' or 'blur', got {baseline!r}")


# --------------------------------------------------------------------------------------------
# Figures (EvaluatorSpec.figures): drawn from stored arrays when a leaderboard is written.

Panel = tuple[str, str, str, str]
"""``(x array, y array, x label, y label)``: one axis of a curve figure."""


def curve_figures(results: Any, title: str, panels: Sequence[Panel]) -> dict[str, Any]:
    """One figure per (dataset, model, debiaser), one axis per panel, one line per explainer:
    the stored mean curve ``y`` against ``x``, averaged over seeds."""
    import matplotlib.pyplot as plt  # lazy: only leaderboards draw

    figures = {}
    for (dataset, model, debiaser), rows in results.groupby(["dataset", "model", "debiaser"]):
        figure, axes = plt.subplots(
            1, len(panels), figsize=(4.8 * len(panels) + 1.8, 4.2), squeeze=False
        )
        colours = plt.get_cmap("tab20")
        for axis, (x_key, y_key, x_label, y_label) in zip(axes[0], panels, strict=True):
            for i, (explainer, runs) in enumerate(sorted(rows.groupby("explainer"))):
                curve = np.mean([np.asarray(a[y_key], dtype=float) for a in runs["arrays"]], 0)
                xs = runs["arrays"].iloc[0][x_key]
                axis.plot(
                    xs, curve, marker="o", markersize=2, color=colours(i % 20), label=explainer
                )
            axis.set_xlabel(x_label)
            axis.set_ylabel(y_label)
            axis.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        figure.suptitle(f"{title}: {dataset} / {model} / {debiaser}")
        figures[f"curves-{dataset}-{model}-{debiaser}"] = figure
    return figures
