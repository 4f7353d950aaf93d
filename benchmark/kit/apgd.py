"""APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", Algorithm 1): PGD with momentum and a step size
that halves itself, so no step size has to be tuned and a too-large one cannot make a model
look robust.

Reference implementation: ``fra31/auto-attack`` ``autoattack/autopgd_base.py``
(``APGDAttack.attack_single_run``), repackaged on PyPI as ``pyautoattack``.
``tests/test_apgd.py`` runs both on the same trained model and points and holds our robust
accuracy to the reference's within a stated tolerance.

What it does, per point, all points of a batch at once:

* start at a random point of the eps sphere (Linf: ``x + eps * t / ||t||_inf`` with ``t``
  uniform in [-1, 1]^d; L2: ``x + eps * t / ||t||_2`` with ``t`` Gaussian), cut to [0, 1];
* step size ``eta = 2 eps``; the first step is a plain projected steepest-ascent step, later
  ones mix it with the previous displacement (momentum ``alpha = 0.75``, eq. 2);
* checkpoints ``w_j``: the first after ``0.22 N_iter`` iterations, then spaced by
  ``max(previous gap - 0.03 N_iter, 0.06 N_iter)``; at a checkpoint the step size of a point
  halves, and it restarts from its best point so far, if (condition 1) the loss rose in at
  most 75 % of the iterations since the last checkpoint, or (condition 2) the step size was
  not halved at the last checkpoint and the best loss has not improved since;
* the result is the first point found misclassified (else the start point of the batch).

Deliberate differences from the reference, none of which changes the algorithm:
* the random start is keyed by each image's pixels and the seed (``benchmark.kit.ranking``),
  not drawn from the global generator, so an image's result does not depend on its batch;
* condition 1 counts the increases over the ``k`` iterations since the last checkpoint, the
  first one against the start point's loss, as the paper states; at the first checkpoint the
  reference compares the first loss with the zero its buffer wraps around to instead.
* we attack every point given; the reference skips points the model already misclassifies,
  which only saves time (such a point is returned as it is: it is already an adversarial
  example, and it is kept as the first misclassified iterate at iteration 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from benchmark.kit.attacks import (
    Norm,
    Objective,
    _rows,
    check_norm,
    loss_and_gradient,
    objective_fn,
    per_sample_norm,
)
from benchmark.kit.ranking import image_keys, keyed_normal, keyed_uniform

MOMENTUM = 0.75
"""``alpha`` of eq. 2."""
RHO = 0.75
"""Condition 1's threshold: the share of iterations in which the loss must have risen."""
_STREAM = 0xA9D
_TINY = 1e-12


def checkpoints(n_iter: int) -> list[int]:
    """The iterations (1-based counts) at which step sizes are checked, as the reference
    computes them: first ``max(int(0.22 n), 1)``, then gaps shrinking by ``max(int(0.03 n), 1)``
    down to ``max(int(0.06 n), 1)``."""
    gap = max(int(0.22 * n_iter), 1)
    smallest = max(int(0.06 * n_iter), 1)
    shrink = max(int(0.03 * n_iter), 1)
    points, at = [], 0
    while at + gap <= n_iter:
        at += gap
        points.append(at)
        gap = max(gap - shrink, smallest)
    return points


def _start(x: torch.Tensor, norm: Norm, eps: float, seed: int, restart: int) -> torch.Tensor:
    keys = image_keys(x, seed)
    shape = tuple(x.shape[1:])
    stream = _STREAM + restart
    if norm == "linf":
        t = 2.0 * keyed_uniform(keys, stream, shape) - 1.0
    else:
        t = keyed_normal(keys, stream, shape)
    t = t.to(device=x.device, dtype=x.dtype)
    t = t / _rows(per_sample_norm(t, norm) + _TINY, t)
    return (x + eps * t).clamp(0.0, 1.0)


def _to_ball(x: torch.Tensor, point: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """Project ``point`` onto the eps ball around ``x`` and the box, as the reference does."""
    if norm == "linf":
        return torch.minimum(torch.maximum(point, x - eps), x + eps).clamp(0.0, 1.0)
    diff = point - x
    size = per_sample_norm(diff, "l2")
    scale = torch.clamp(size, max=eps) / (size + _TINY)
    return (x + diff * _rows(scale, diff)).clamp(0.0, 1.0)


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: Norm = "linf",
    steps: int = 100,
    restarts: int = 1,
    objective: Objective = "ce",
    seed: int = 0,
) -> torch.Tensor:
    """Untargeted APGD on ``objective`` (``"ce"``: APGD-CE, ``"dlr"``: APGD-DLR); returns a
    detached ``x_adv`` in [0, 1] within eps of ``x``: for each point the first misclassified
    iterate found over all restarts, else ``x`` itself. Never writes to ``x``; the model's
    mode is left as it is (evaluate in eval mode)."""
    check_norm(norm)
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be positive, got {steps} and {restarts}")
    loss = objective_fn(objective)
    result = x.detach().clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for restart in range(restarts):
        todo = ~fooled
        if not todo.any():
            break
        rows = todo.nonzero().view(-1)
        found, adv = _single_run(model, x[rows], y[rows], eps, norm, steps, loss, seed, restart)
        result[rows[found]] = adv[found]
        fooled[rows[found]] = True
    return result


def _single_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: Norm,
    n_iter: int,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    seed: int,
    restart: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from one random start: ``(fooled (N,), first misclassified point)``."""
    x_adv = _start(x, norm, eps, seed, restart)
    logits, loss_now, grad = loss_and_gradient(model, x_adv, y, loss)
    fooled = logits.argmax(dim=1) != y
    x_found = torch.where(_rows(fooled, x), x_adv, x)
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss_now.clone()
    step = torch.full((len(x),), 2.0 * eps, dtype=x.dtype, device=x.device)
    losses = torch.empty((n_iter + 1, len(x)), dtype=loss_now.dtype, device=x.device)
    losses[0] = loss_now  # losses[t + 1]: the loss after iteration t
    checks = set(checkpoints(n_iter))
    last_check, best_at_last_check = 0, loss_best.clone()
    halved_at_last_check = torch.ones(len(x), dtype=torch.bool, device=x.device)
    x_previous = x_adv.clone()
    for i in range(n_iter):
        with torch.no_grad():
            momentum = x_adv - x_previous
            x_previous = x_adv
            a = MOMENTUM if i > 0 else 1.0
            if norm == "linf":
                direction = grad.sign()
            else:
                direction = grad / _rows(per_sample_norm(grad, "l2") + _TINY, grad)
            z = _to_ball(x, x_adv + _rows(step, x) * direction, norm, eps)
            x_adv = _to_ball(x, x_adv + (z - x_adv) * a + momentum * (1.0 - a), norm, eps)
        # a fooled point is done (its first misclassified iterate is kept); rows are
        # independent in eval mode, so the others' iterates are what a full batch gives
        alive = (~fooled).nonzero().view(-1)
        if len(alive) == 0:
            break
        logits, loss_alive, grad_alive = loss_and_gradient(model, x_adv[alive], y[alive], loss)
        with torch.no_grad():
            loss_now = loss_now.clone()
            loss_now[alive] = loss_alive
            grad = grad.clone()
            grad[alive] = grad_alive
            new = alive[logits.argmax(dim=1) != y[alive]]
            x_found[new] = x_adv[new]
            fooled[new] = True
            losses[i + 1] = loss_now
            better = loss_now > loss_best
            x_best[better] = x_adv[better]
            grad_best[better] = grad[better]
            loss_best = torch.where(better, loss_now, loss_best)
            if i + 1 in checks:
                k = i + 1 - last_check
                rises = (losses[last_check + 1 : i + 2] > losses[last_check : i + 1]).sum(dim=0)
                oscillating = rises.to(x.dtype) <= k * RHO
                stalled = ~halved_at_last_check & (best_at_last_check >= loss_best)
                halve = oscillating | stalled
                halved_at_last_check = halve
                best_at_last_check = loss_best.clone()
                if halve.any():
                    step = torch.where(halve, step / 2.0, step)
                    x_adv = torch.where(_rows(halve, x), x_best, x_adv)
                    grad = torch.where(_rows(halve, x), grad_best, grad)
                last_check = i + 1
    return fooled, x_found
