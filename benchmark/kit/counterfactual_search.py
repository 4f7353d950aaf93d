"""Batched counterfactual searches: Wachter et al.'s loss, a targeted PGD, the nearest training
image of the target class.

Written here rather than taken from alibi (TensorFlow graph mode, one image at a time, and a
non-production licence since January 2024) or DiCE / CARLA (tabular only): every search below
runs a whole batch at once on the batch's device, each image with its own state (its own
lambda, its own step size), and returns an all-NaN image where it found nothing, which is the
counterfactual explainer contract of ``benchmark.specs.ExplainerSpec.output``.

Targets: ``target[i]`` is a class index, or ``ANY_OTHER_CLASS`` (-1): any class but the one the
model predicts for ``x[i]``. An image the model already assigns to its target is its own
counterfactual (distance 0). A counterfactual is *found* when the model assigns it to the
target: validity is decided by the model's argmax, never by a loss threshold.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from benchmark.kit.attacks import into_box, project, steepest_direction
from benchmark.specs import ANY_OTHER_CLASS

DistanceNorm = Literal["l1", "l2"]


def predictions(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The model's predicted classes for ``x``, in chunks, without gradients."""
    if len(x) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    with torch.no_grad():
        return torch.cat([model(c).argmax(1) for c in x.split(batch_size)])


def accepted(predicted: torch.Tensor, target: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Whether each prediction is the requested one: ``target``, or any class but
    ``original`` where the target is ``ANY_OTHER_CLASS``."""
    other = target == ANY_OTHER_CLASS
    return torch.where(other, predicted != original, predicted == target)


def distance(delta: torch.Tensor, norm: DistanceNorm) -> torch.Tensor:
    """Per-image L1 or (true, not squared) L2 norm of a perturbation."""
    flat = delta.flatten(1)
    return flat.abs().sum(1) if norm == "l1" else flat.norm(dim=1)


def target_probability(
    logits: torch.Tensor, target: torch.Tensor, original: torch.Tensor
) -> torch.Tensor:
    """``f_t(x')``: the softmax probability of the target class, or for ``ANY_OTHER_CLASS``
    the largest probability of a class other than the original one (alibi's "other")."""
    probs = logits.softmax(1)
    other = target == ANY_OTHER_CLASS
    masked = probs.scatter(1, original.view(-1, 1), -1.0).max(1).values
    given = probs.gather(1, target.clamp(min=0).view(-1, 1)).squeeze(1)
    return torch.where(other, masked, given)


def mark_not_found(x: torch.Tensor, best: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """``best`` where found, an all-NaN image elsewhere: the contract's "none found"."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    return torch.where(found.view(shape), best, torch.full_like(x, float("nan")))


@torch.enable_grad()  # a caller's no_grad must not stop the search
def wachter(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    norm: DistanceNorm = "l1",
    target_proba: float = 1.0,
    lam: float = 0.01,
    search_steps: int = 8,
    steps: int = 100,
    lr: float = 0.02,
) -> torch.Tensor:
    """Wachter et al. (2017): minimise ``(f_t(x') - p_t)^2 + lambda * ||x' - x||`` by Adam on
    ``x'`` (projected onto [0, 1]), with lambda found per image by bisection: a search step
    that found a counterfactual raises the image's lambda (closer, maybe invalid), one that did
    not lowers it (by ten until a first success, then halfway). The closest accepted iterate of
    every search step is kept. The learning rate decays (cosine) within each search step so
    Adam settles on the loss's minimiser rather than circling it."""
    original = predictions(model, x)
    found = accepted(original, target, original)
    best = x.detach().clone()
    best_dist = torch.where(found, 0.0, float("inf")).to(x)
    lam_now = torch.full((len(x),), float(lam), device=x.device)
    low = torch.zeros_like(lam_now)  # the largest lambda known to find one
    high = torch.full_like(lam_now, float("inf"))  # the smallest lambda known to fail
    todo = ~found
    for _ in range(search_steps):
        rows = todo.nonzero().view(-1)
        if len(rows) == 0:
            break
        x_r, t_r, o_r, l_r = x[rows], target[rows], original[rows], lam_now[rows]
        x_cf = x_r.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([x_cf], lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
        success = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
        for _ in range(steps):
            logits = model(x_cf)
            with torch.no_grad():
                ok = accepted(logits.argmax(1), t_r, o_r)
                dist = distance(x_cf - x_r, norm)
                better = ok & (dist < best_dist[rows])
                best[rows[better]] = x_cf.detach()[better]
                best_dist[rows[better]] = dist[better]
                success |= ok
            gap = target_probability(logits, t_r, o_r) - target_proba
            loss = (gap.square() + l_r * distance(x_cf - x_r, norm)).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                x_cf.clamp_(0.0, 1.0)
        with torch.no_grad():
            ok = accepted(predictions(model, x_cf.detach()), t_r, o_r)
            dist = distance(x_cf.detach() - x_r, norm)
            better = ok & (dist < best_dist[rows])
            best[rows[better]] = x_cf.detach()[better]
            best_dist[rows[better]] = dist[better]
            success |= ok
        low[rows] = torch.where(success, l_r, low[rows])
        high[rows] = torch.where(success, high[rows], l_r)
        bounded = torch.isfinite(high[rows]) & (low[rows] > 0)
        grow = torch.where(torch.isfinite(high[rows]), (low[rows] + high[rows]) / 2, l_r * 10)
        shrink = torch.where(bounded, (low[rows] + high[rows]) / 2, l_r / 10)
        lam_now[rows] = torch.where(success, grow, shrink)
    return mark_not_found(x, best, torch.isfinite(best_dist)).detach()


@torch.enable_grad()  # a caller's no_grad must not stop the search
def targeted_pgd(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    norm: Literal["linf", "l2"] = "linf",
    eps_ladder: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5),
    steps: int = 40,
) -> torch.Tensor:
    """A targeted adversarial example as a counterfactual: PGD descending the cross-entropy
    of the target class (for ``ANY_OTHER_CLASS``, ascending that of the original class) inside
    an eps ball, for each eps of the ladder in turn on the images not yet found, so every image
    gets the smallest budget of the ladder that reaches its target. What it shows: how close a
    "counterfactual" can be while being noise no person would read as the target class."""
    original = predictions(model, x)
    found = accepted(original, target, original)
    best = x.detach().clone()
    other = target == ANY_OTHER_CLASS
    aim = torch.where(other, original, target)
    sign = torch.where(other, 1.0, -1.0).to(x)  # ascend CE(original), descend CE(target)
    for eps in eps_ladder:
        rows = (~found).nonzero().view(-1)
        if len(rows) == 0:
            break
        x_r, aim_r, sign_r = x[rows], aim[rows], sign[rows]
        delta = torch.zeros_like(x_r)
        alpha = 2.5 * eps / steps
        hit = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
        for _ in range(steps):
            delta.requires_grad_(True)
            logits = model(x_r + delta)
            loss = (sign_r * nn.functional.cross_entropy(logits, aim_r, reduction="none")).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                ok = accepted(logits.argmax(1), target[rows], original[rows]) & ~hit
                best[rows[ok]] = (x_r + delta)[ok]
                hit |= ok
                step = alpha * steepest_direction(grad, norm)
                delta = into_box(x_r, project(delta + step, norm, eps))
        with torch.no_grad():
            ok = accepted(predictions(model, x_r + delta), target[rows], original[rows]) & ~hit
            best[rows[ok]] = (x_r + delta)[ok]
            hit |= ok
        found[rows] = hit
    return mark_not_found(x, best, found).detach()


def nearest_of_target(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    train_x: torch.Tensor,
    *,
    norm: DistanceNorm = "l2",
    chunk: int = 256,
) -> torch.Tensor:
    """The nearest training image (in ``norm``) that the model assigns to the target class
    (for ``ANY_OTHER_CLASS``: to any class but the original): a real image, accepted by
    construction, so it bounds how plausible a counterfactual can look and how far it must go.
    Not found only when the model assigns no training image to the target."""
    original = predictions(model, x)
    train_pred = predictions(model, train_x)
    flat_train = train_x.flatten(1)
    best = torch.empty_like(x)
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    p = 1.0 if norm == "l1" else 2.0
    for start in range(0, len(x), chunk):
        sl = slice(start, start + chunk)
        d = torch.cdist(x[sl].flatten(1), flat_train, p=p)  # (n, M)
        t, o = target[sl], original[sl]
        allowed = torch.where(
            (t == ANY_OTHER_CLASS).view(-1, 1),
            train_pred.view(1, -1) != o.view(-1, 1),
            train_pred.view(1, -1) == t.view(-1, 1),
        )
        d = d.masked_fill(~allowed, float("inf"))
        value, index = d.min(1)
        best[sl] = train_x[index]
        found[sl] = torch.isfinite(value)
    itself = accepted(original, target, original)
    best = torch.where(itself.view(-1, 1, 1, 1), x, best)
    return mark_not_found(x, best, found | itself).detach()
