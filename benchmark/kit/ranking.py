"""Pixel rankings from attribution maps, the area under a perturbation curve, and keyed noise.

Perturbation metrics (pixel flipping, RISE insertion / deletion, region perturbation, ROAD,
ROAR / KAR, the completeness game) all rank the pixels of each image by its attribution map,
change them in that order, and summarise the model's answers by an area. Each of them used to
carry its own ranking, tie rule and area; here they are written once, and a plugin that ranks
pixels the same way is measured the same way.

* *Importance* (:func:`pixel_importance`): one number per pixel position, the attribution
  summed over channels (signed by default: a negative attribution argues against the target,
  so it goes last, as in Quantus with ``abs=False``, RISE and the ROAD reference; ROAR squares
  it, after Hooker et al. 2019). All channels of a pixel are then changed together.
* *Ties* (:func:`ranking`): flat Grad-CAM regions and zero gradients tie many pixels. By
  default a tie is broken by one fixed random priority of the pixel positions, drawn from
  ``tie_seed``, the same for every image and explainer, so no method gains or loses by the
  raster order its ties happen to fall in. Two seeds are in use and must stay what they are
  for the stored numbers to hold: :data:`TIE_SEED` (the faithfulness metrics and ROAD) and
  ``plugins.evaluators.roar.TIE_SEED`` (ROAR / KAR). ``tie_seed=None`` breaks ties by pixel
  index instead (the completeness / soundness game, after its reference code). Quantus breaks
  ties by ``np.argsort``'s unstable quicksort; all of them agree on a map without ties.
* *Noise* (:func:`image_keys`, :func:`keyed_uniform`, :func:`keyed_normal`): random baselines
  (uniform noise, ROAD's imputation noise) come from a counter-based generator (SplitMix64,
  Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014) keyed by
  the seed and a hash of the image's own pixels: an image gets the same noise alone, in a batch
  of 256 or after reordering, and all of it is drawn in one vectorised call. A *stream* id
  separates independent draws for one image; each evaluator keeps its own constant ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

Aggregate = Literal["signed", "abs", "square"]
"""How the channels of a pixel's attribution become one importance."""

TIE_SEED = 20150710
"""Seed of the fixed pixel priority that breaks ties in the faithfulness rankings (Bach et al.,
July 2015)."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def pixel_importance(attributions: torch.Tensor, aggregate: Aggregate = "signed") -> torch.Tensor:
    """``(N, 1 or C, H, W)`` -> ``(N, H*W)`` float64: each pixel's attribution over channels,
    summed as is (``signed``), in absolute value (``abs``) or squared (``square``)."""
    values = attributions.detach().double()
    if aggregate == "square":
        values = values.pow(2)
    elif aggregate == "abs":
        values = values.abs()
    elif aggregate != "signed":
        raise ValueError(f"aggregate must be signed, abs or square, got {aggregate!r}")
    return values.sum(1).reshape(attributions.shape[0], -1)


def ranking(importance: torch.Tensor, tie_seed: int | None = TIE_SEED) -> torch.Tensor:
    """``(N, K)`` importance -> ``(N, K)`` indices, most important first.

    Ties follow one fixed random priority of the ``K`` positions drawn from ``tie_seed`` (on
    the CPU, so the same on every device): the columns are permuted by it, sorted stably and
    mapped back. ``tie_seed=None``: ties keep the index order (a plain stable sort).
    """
    if tie_seed is None:
        return torch.argsort(importance, dim=1, descending=True, stable=True)
    k = importance.shape[1]
    priority = torch.randperm(k, generator=torch.Generator().manual_seed(tie_seed))
    priority = priority.to(importance.device)
    order = torch.argsort(importance[:, priority], dim=1, descending=True, stable=True)
    return priority[order]


def positions(order: torch.Tensor) -> torch.Tensor:
    """The inverse permutation of each row: ``positions(order)[i, order[i, r]] == r``, the
    rank at which each pixel is reached."""
    rank = torch.empty_like(order)
    columns = torch.arange(order.shape[1], device=order.device)
    rank.scatter_(1, order, columns.expand_as(order).contiguous())
    return rank


def normalised_auc(curve: torch.Tensor | np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Trapezoid area under ``curve`` (last axis) over ``fractions``, divided by their span.

    Over ``0..1`` this is RISE's ``auc`` (Petsiuk et al. 2018, sec. 4.1: "area under the
    curve" with the x-axis the fraction of pixels changed); over ``0.1..0.9`` (ROAD, ROAR) it
    is the curve's mean height, comparable across percentage sets. One point: its value.
    """
    if isinstance(curve, torch.Tensor):
        curve = curve.detach().cpu()
    values = np.asarray(curve, dtype=np.float64)
    xs = np.asarray(fractions, dtype=np.float64)
    if len(xs) == 1:
        return values[..., 0]
    return np.trapezoid(values, xs, axis=-1) / (xs[-1] - xs[0])


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
    """``(N, *shape)`` float64 uniform on [0, 1), on the CPU: element ``j`` of row ``i`` is a
    function of ``(keys[i], stream[i], j)`` only. ``stream`` (one int, or one per row)
    separates independent draws for one image (a percentage, an evaluator)."""
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
