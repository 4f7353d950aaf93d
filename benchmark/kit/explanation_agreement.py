"""How much two explanations of the same images agree: the disagreement-problem metrics.

Pure functions of two ``(N, D)`` tensors of attribution maps (``N`` images, ``D`` pixels,
channels already summed), one value per image, batched over images on the input's device.
Top-k sets are by absolute value, ordered by a *stable* descending sort, so ties (Grad-CAM's
upsampled plateaus, integrated gradients' zeros) are broken by pixel index and two identical
maps always agree exactly. Definitions after Krishna et al., "The Disagreement Problem in
Explainable Machine Learning" (TMLR 2024), with ``S_a`` the top-k pixels of ``a``:

* **feature agreement** ``|S_a ∩ S_b| / k``; **rank agreement**: the share of the ``k`` rank
  positions holding the same pixel in both; **sign agreement**: pixels of ``S_a ∩ S_b`` with the
  same sign, over ``k``; **signed rank agreement**: same pixel at the same position with the
  same sign, over ``k``; **top-k IoU** ``|S_a ∩ S_b| / |S_a ∪ S_b|``;
* **rank correlation**: Spearman correlation of ``|a|`` and ``|b|`` over all pixels, ties given
  their average rank (as ``scipy.stats.rankdata``); **Pearson** of the signed maps;
* **pairwise rank agreement**: the share of pixel pairs ``(i, j)`` that both maps order the same
  way by magnitude (ties agree with ties), on a fixed random sample of pairs
  (``sample_pixel_pairs``), since all ``D (D - 1) / 2`` pairs of a 784-pixel map are 307k.

A constant row has no ranking: its correlations are 1 with an identical row and 0 otherwise.

Why by hand: OpenXAI implements these per instance in NumPy, on tabular features and against
a linear model's ground truth, and over a chosen feature subset for the correlations; here
they are batched torch over whole images, compared between models. The tests hold the
correlations to SciPy / NumPy and the set metrics to hand-computed values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def k_of(fraction: float, d: int) -> int:
    """Pixels in the top ``fraction`` of a ``d``-pixel map (at least one)."""
    return max(1, round(fraction * d))


def top_k(a: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, k)`` pixel indices by descending ``|a|``, ties by index."""
    return torch.argsort(a.abs(), dim=-1, descending=True, stable=True)[..., :k]


def _membership(index: torch.Tensor, d: int) -> torch.Tensor:
    """``(N, D)`` bool: which pixels an ``(N, k)`` index set holds."""
    out = torch.zeros(*index.shape[:-1], d, dtype=torch.bool, device=index.device)
    return out.scatter(-1, index, True)


def feature_agreement(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    d = a.shape[-1]
    both = _membership(top_k(a, k), d) & _membership(top_k(b, k), d)
    return both.sum(-1).double() / k


def rank_agreement(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    return (top_k(a, k) == top_k(b, k)).sum(-1).double() / k


def sign_agreement(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    d = a.shape[-1]
    both = _membership(top_k(a, k), d) & _membership(top_k(b, k), d)
    same_sign = torch.sign(a) == torch.sign(b)
    return (both & same_sign).sum(-1).double() / k


def signed_rank_agreement(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    ia, ib = top_k(a, k), top_k(b, k)
    same_sign = torch.sign(a.gather(-1, ia)) == torch.sign(b.gather(-1, ib))
    return ((ia == ib) & same_sign).sum(-1).double() / k


def topk_iou(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    shared = feature_agreement(a, b, k) * k
    return shared / (2 * k - shared)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..D along the last axis, ties given their average rank (``rankdata``)."""
    v = values.double()
    order = torch.argsort(v, dim=-1, stable=True)
    sorted_v = v.gather(-1, order)
    d = v.shape[-1]
    new_group = torch.ones_like(sorted_v, dtype=torch.bool)
    new_group[..., 1:] = sorted_v[..., 1:] != sorted_v[..., :-1]
    group = new_group.long().cumsum(-1) - 1  # (N, D) group id per sorted position
    position = torch.arange(1, d + 1, dtype=torch.float64, device=v.device).expand_as(sorted_v)
    total = torch.zeros_like(sorted_v).scatter_add(-1, group, position)
    count = torch.zeros_like(sorted_v).scatter_add(-1, group, torch.ones_like(sorted_v))
    mean_rank = total.gather(-1, group) / count.gather(-1, group)
    return torch.empty_like(mean_rank).scatter(-1, order, mean_rank)


def _correlation(x: torch.Tensor, y: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    denominator = torch.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    rho = torch.where(denominator > 0, (x * y).sum(-1) / denominator.clamp_min(1e-300), 0.0)
    return torch.where(same, torch.ones_like(rho), rho)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of ``|a|`` and ``|b|`` per image."""
    same = (a.abs() == b.abs()).all(-1)
    return _correlation(average_ranks(a.abs()), average_ranks(b.abs()), same)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the signed maps per image."""
    return _correlation(a.double(), b.double(), (a == b).all(-1))


def sample_pixel_pairs(d: int, count: int, seed: int) -> torch.Tensor:
    """``(count, 2)`` int64 pixel pairs with ``i != j``, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, d, (count,), generator=generator)
    offset = torch.randint(1, d, (count,), generator=generator)
    return torch.stack([first, (first + offset) % d], dim=1)


def pairwise_rank_agreement(a: torch.Tensor, b: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Share of ``pairs`` ordered the same way by ``|a|`` and by ``|b|`` (ties agree with ties)."""
    i, j = pairs[:, 0], pairs[:, 1]
    order_a = torch.sign(a.abs()[..., i] - a.abs()[..., j])
    order_b = torch.sign(b.abs()[..., i] - b.abs()[..., j])
    return (order_a == order_b).double().mean(-1)


def agreement_matrix(
    maps: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``(M, M)`` mean over images of ``fn`` for every pair of the ``(M, N, D)`` maps (each
    unordered pair computed once and mirrored: the metrics here are symmetric)."""
    m = maps.shape[0]
    out = torch.empty(m, m, dtype=torch.float64)
    for i in range(m):
        out[i, i] = float(fn(maps[i], maps[i]).mean())
        for j in range(i + 1, m):
            out[i, j] = out[j, i] = float(fn(maps[i], maps[j]).mean())
    return out
