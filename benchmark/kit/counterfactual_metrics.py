"""Scores of image counterfactuals, batched: validity, proximity, sparsity, yNN, distance to
the data, stability under input noise, invalidation by another model.

Written here because the field's tools get them wrong or only for tables: CARLA's "L2" is the
squared distance and its yNN is right only for two classes; DiCE and CARLA score tabular rows
one at a time. Every function takes whole batches (``(N, C, H, W)`` tensors on one device).

Conventions: ``valid`` (bool ``(N,)``) marks the counterfactuals the model accepts; a metric
over counterfactuals is averaged over the valid ones only, and is NaN when none is valid (the
evaluator then reports validity 0 and leaves those cells empty rather than inventing a value).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.kit.counterfactual_search import predictions


def proximity(x: torch.Tensor, cf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the true L1 and L2 (not squared) distance of the counterfactual."""
    delta = (cf - x).flatten(1)
    return delta.abs().sum(1), delta.norm(dim=1)


def changed_share(x: torch.Tensor, cf: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Per image, the share of pixel values changed by more than ``tolerance`` (sparsity:
    lower is sparser)."""
    return ((cf - x).abs().flatten(1) > tolerance).double().mean(1)


def nearest_indices(
    queries: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and L2 distances of each query's ``k`` nearest reference images."""
    flat = reference.flatten(1)
    index, dist = [], []
    for part in queries.flatten(1).split(chunk):
        d = torch.cdist(part, flat)
        value, where = d.topk(min(k, len(reference)), dim=1, largest=False)
        index.append(where)
        dist.append(value)
    return torch.cat(index), torch.cat(dist)


def ynn(cf_class: torch.Tensor, neighbour_class: torch.Tensor) -> torch.Tensor:
    """Per counterfactual, the share of its ``k`` nearest training images (``neighbour_class``
    ``(N, k)``: the model's predictions for them) that the model puts in the counterfactual's
    class. For two classes this is CARLA's ``1 - |f(x') - f(x_j)|`` averaged over neighbours;
    for more, a neighbour of a third class counts as disagreeing, which CARLA's absolute
    difference of labels does not (a 9 next to a 7 would count as 2 disagreements)."""
    return (neighbour_class == cf_class.view(-1, 1)).double().mean(1)


def class_knn_distance(
    cf: torch.Tensor,
    cf_class: torch.Tensor,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Per counterfactual, the mean L2 distance to the ``k`` nearest training images labelled
    with its class: how far it is from real images of what it claims to be."""
    out = torch.full((len(cf),), float("nan"), dtype=torch.float64, device=cf.device)
    for c in cf_class.unique().tolist():
        rows = (cf_class == c).nonzero().view(-1)
        reference = train_x[train_y == c]
        if len(reference) == 0:
            continue
        _, dist = nearest_indices(cf[rows], reference, k)
        out[rows] = dist.double().mean(1)
    return out


def noise_stability(
    model: nn.Module,
    cf: torch.Tensor,
    cf_class: torch.Tensor,
    noise_std: float,
    samples: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hamman et al. (2023)'s stability of a counterfactual, and the share of noisy copies
    still accepted. Stability is ``mean_i [m(x'_i) - |m(x') - m(x'_i)|]`` over ``samples``
    copies ``x'_i = x' + N(0, noise_std^2)`` (clamped to [0, 1]), where ``m`` is the model's
    probability of the counterfactual's class: high when the neighbourhood is confidently of
    that class, low when the counterfactual sits on a knife's edge."""
    with torch.no_grad():
        base = model(cf).softmax(1).gather(1, cf_class.view(-1, 1)).squeeze(1).double()
        total = torch.zeros_like(base)
        kept = torch.zeros_like(base)
        for _ in range(samples):
            noise = torch.randn(cf.shape, generator=generator, device=cf.device) * noise_std
            logits = model((cf + noise).clamp(0, 1))
            p = logits.softmax(1).gather(1, cf_class.view(-1, 1)).squeeze(1).double()
            total += p - (base - p).abs()
            kept += (logits.argmax(1) == cf_class).double()
    return total / samples, kept / samples


def interpretability_scores(
    cf: torch.Tensor,
    cf_class: torch.Tensor,
    original: torch.Tensor,
    class_autoencoders: list[nn.Module | None],
    autoencoder: nn.Module,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Van Looveren & Klaise (2021)'s IM1 and IM2, per counterfactual (lower is better):
    ``IM1 = ||x' - AE_t(x')||^2 / (||x' - AE_o(x')||^2 + eps)`` (the counterfactual's class t
    reconstructs it better than the original class o), ``IM2 = ||AE_t(x') - AE(x')||^2 /
    (||x'||_1 + eps)`` (the class-t and all-class autoencoders agree on it). NaN where a class
    has no autoencoder (no training image)."""
    n = len(cf)
    im1 = torch.full((n,), float("nan"), dtype=torch.float64, device=cf.device)
    im2 = im1.clone()
    with torch.no_grad():
        everything = autoencoder(cf)
        own = torch.full_like(cf, float("nan"))
        error = torch.full((len(class_autoencoders), n), float("nan"), device=cf.device)
        for c, ae in enumerate(class_autoencoders):
            if ae is None:
                continue
            rows = (cf_class == c) | (original == c)
            if not rows.any():
                continue
            out = ae(cf[rows])
            error[c, rows] = (cf[rows] - out).flatten(1).square().sum(1)
            mine = (cf_class == c)[rows]
            own[rows.nonzero().view(-1)[mine]] = out[mine]
        index = torch.arange(n, device=cf.device)
        target_error = error[cf_class, index].double()
        original_error = error[original, index].double()
        im1 = target_error / (original_error + eps)
        l1 = cf.flatten(1).abs().sum(1).double()
        im2 = (own - everything).flatten(1).square().sum(1).double() / (l1 + eps)
    return im1, im2


def invalidation(model: nn.Module, cf: torch.Tensor, cf_class: torch.Tensor) -> torch.Tensor:
    """Per counterfactual, whether ``model`` (another model of the set) does not put it in the
    class the model it was made for did."""
    return predictions(model, cf) != cf_class


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """The mean over ``mask``'s rows, NaN when the mask is empty."""
    if not bool(mask.any()):
        return float("nan")
    return float(values[mask].double().mean())


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> float:
    """The median over ``mask``'s rows (the mean of the two middle values for an even count,
    as numpy's), NaN when the mask is empty: for a ratio such as IM1, whose mean a few images
    with a near-zero denominator can dominate."""
    if not bool(mask.any()):
        return float("nan")
    return float(values[mask].double().cpu().quantile(0.5))


def autoencoder_specificity(
    x: torch.Tensor, y: torch.Tensor, class_autoencoders: list[nn.Module | None]
) -> float:
    """Share of the images ``x`` (labels ``y``) that their own class's autoencoder reconstructs
    better than every other class's: how far IM1 can tell classes apart at all (1 / K: the
    class autoencoders are interchangeable and IM1 says nothing about the class)."""
    present = [c for c, ae in enumerate(class_autoencoders) if ae is not None]
    if len(x) == 0 or len(present) < 2:
        return float("nan")
    with torch.no_grad():
        errors = torch.stack(
            [(x - class_autoencoders[c](x)).flatten(1).square().sum(1) for c in present]
        )
    best = torch.as_tensor(present, device=x.device)[errors.argmin(0)]
    return float((best == y).double().mean())
