"""Batched, seeded white-box attacks under Linf and L2: the pieces adversarial training and the
``robustness`` evaluator are made of.

* FGSM (Goodfellow, Shlens & Szegedy, ICLR 2015): one step of size ``eps`` along the sign of
  the input gradient (Linf) or along the normalised gradient (L2), from ``x`` or from
  ``x + init`` (Wong, Rice & Kolter's FGSM with random start passes ``init``).
* PGD (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018): ``steps`` steepest-ascent steps of
  size ``step_size`` (default ``2.5 eps / steps``, the paper's rule), each projected back to
  the eps ball and to the image box [0, 1], from a random start uniform in the ball, repeated
  ``restarts`` times. Reference: ``MadryLab/mnist_challenge`` ``pgd_attack.py`` (Linf) and
  ``MadryLab/robustness`` ``attack_steps.py`` (L2 step and projection); the test reference is
  ``tests/test_attacks.py`` (invariants) and, for APGD, the reference AutoAttack.

Why our own code rather than ``torchattacks`` or ``advertorch``: every attack here runs the
whole batch at once and is *batch-independent*: the random start of an image is drawn from a
stream keyed by the image's own pixels, the seed and the restart (``benchmark.kit.ranking``'s
keyed uniform), so an image's adversarial example does not depend on the batch it came in,
and a rerun is bit-identical. torchattacks draws one global-RNG stream per batch, and its PGD
keeps only the last iterate. Ours keeps, per point, the first iterate that is misclassified
(``keep="best"``: what an evaluation wants, since that point is a valid adversarial example)
or the last one (``keep="last"``: what adversarial training wants, the loss maximiser).

Contracts every attack keeps (``tests/test_attacks.py``): it never writes to ``x``; it never
changes the model's train / eval mode (the caller chooses: training keeps train mode, as the
reference training codes do); it takes gradients with respect to the perturbation only, so
the model's parameter ``.grad`` is untouched; it returns a detached ``x_adv`` in [0, 1] with
``||x_adv - x|| <= eps`` in the attack's norm (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from benchmark.kit.ranking import image_keys, keyed_normal, keyed_uniform

Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = ("linf", "l2")
Objective = Literal["ce", "dlr"] | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""What an attack maximises: cross-entropy, Croce & Hein's DLR loss, or any
``(logits, y) -> per-sample loss`` (TRADES passes its KL term)."""
Keep = Literal["best", "last"]

_TINY = 1e-12
_START_STREAM = 0xA77AC


def check_norm(norm: str) -> None:
    """A clear error for an unknown norm."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def per_sample_norm(v: torch.Tensor, norm: Norm) -> torch.Tensor:
    """``(N,)`` Linf or L2 norm of each row of ``v``."""
    flat = v.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1, 1, ...)`` broadcastable against ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def project(delta: torch.Tensor, norm: Norm, eps: float | torch.Tensor) -> torch.Tensor:
    """The closest perturbation to ``delta`` in the eps ball (Linf: clamp; L2: rescale rows
    whose norm exceeds eps). ``eps`` may be one number or one per row."""
    eps_t = torch.as_tensor(eps, dtype=delta.dtype, device=delta.device)
    if eps_t.ndim == 0:
        eps_t = eps_t.expand(delta.shape[0])
    if norm == "linf":
        bound = _rows(eps_t, delta)
        return torch.maximum(torch.minimum(delta, bound), -bound)
    norms = per_sample_norm(delta, "l2")
    factor = torch.clamp(eps_t / (norms + _TINY), max=1.0)
    return delta * _rows(factor, delta)


def into_box(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``delta`` cut so that ``x + delta`` stays in [0, 1]."""
    return (x + delta).clamp(0.0, 1.0) - x


def steepest_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The unit-norm ascent direction: the gradient's sign (Linf) or the gradient divided by
    its L2 norm (a zero gradient gives a zero step, never a NaN)."""
    if norm == "linf":
        return grad.sign()
    return grad / _rows(per_sample_norm(grad, "l2") + _TINY, grad)


def random_start(
    x: torch.Tensor, norm: Norm, eps: float, seed: int, stream: int = 0
) -> torch.Tensor:
    """A start uniform in the eps ball, keyed by each image's pixels, ``seed`` and ``stream``
    (a restart's index): Linf uniform per coordinate; L2 uniform in the ball (a Gaussian
    direction times ``eps * U^(1/d)``). Cut to the image box."""
    check_norm(norm)
    keys = image_keys(x, seed)
    shape = tuple(x.shape[1:])
    streams = _START_STREAM + 2 * int(stream)
    if norm == "linf":
        u = keyed_uniform(keys, streams, shape)
        delta = (2.0 * u - 1.0) * eps
    else:
        direction = keyed_normal(keys, streams, shape)
        direction = direction / _rows(per_sample_norm(direction, "l2") + _TINY, direction)
        d = direction[0].numel()
        radius = keyed_uniform(keys, streams + 1, (1,)).view(-1) ** (1.0 / d) * eps
        delta = direction * _rows(radius, direction)
    delta = delta.to(device=x.device, dtype=x.dtype)
    return into_box(x, delta)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Croce & Hein 2020's Difference of Logits Ratio, per sample (eq. 4):
    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, with ``pi`` the logits sorted in
    decreasing order: invariant to shifting and rescaling the logits, so a model cannot hide
    behind large logits the way it can against cross-entropy. Needs three or more classes."""
    if logits.shape[1] < 3:
        raise ValueError("the DLR loss needs at least three classes")
    ordered, order = logits.sort(dim=1)
    rows = torch.arange(len(y), device=logits.device)
    true = logits[rows, y]
    top_is_true = (order[:, -1] == y).to(logits.dtype)
    best_other = ordered[:, -2] * top_is_true + ordered[:, -1] * (1.0 - top_is_true)
    return -(true - best_other) / (ordered[:, -1] - ordered[:, -3] + _TINY)


def objective_fn(objective: Objective) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-sample loss an attack maximises."""
    if callable(objective):
        return objective
    if objective == "ce":
        return lambda logits, y: nn.functional.cross_entropy(logits, y, reduction="none")
    if objective == "dlr":
        return dlr_loss
    raise ValueError(f"objective must be 'ce', 'dlr' or a callable, got {objective!r}")


def loss_and_gradient(
    model: nn.Module,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, per-sample loss and its gradient with respect to ``x_adv`` (nothing else)."""
    point = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(point)
        values = loss(logits, y)
        (grad,) = torch.autograd.grad(values.sum(), point)
    return logits.detach(), values.detach(), grad.detach()


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: Norm = "linf",
    objective: Objective = "ce",
    init: torch.Tensor | None = None,
    step_size: float | None = None,
) -> torch.Tensor:
    """One step of ``step_size`` (default ``eps``) along the steepest direction from
    ``x + init``, projected to the eps ball around ``x`` and the image box."""
    check_norm(norm)
    loss = objective_fn(objective)
    delta = torch.zeros_like(x) if init is None else into_box(x, project(init, norm, eps))
    _, _, grad = loss_and_gradient(model, x + delta, y, loss)
    step = eps if step_size is None else step_size
    delta = project(delta + step * steepest_direction(grad, norm), norm, eps)
    return (x + into_box(x, delta)).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: Norm = "linf",
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    seed: int = 0,
    objective: Objective = "ce",
    init: torch.Tensor | None = None,
    keep: Keep = "best",
    on_restart: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on ``objective`` within the eps ball (see the module
    docstring). ``init`` (a perturbation) replaces the random start of the first restart.
    ``on_restart(r, fooled)`` is called after restart ``r`` with the ``(N,)`` bool of points
    misclassified so far, so an evaluator can see what each extra restart bought."""
    check_norm(norm)
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be positive, got {steps} and {restarts}")
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    loss = objective_fn(objective)
    alpha = 2.5 * eps / steps if step_size is None else step_size
    best = x.detach().clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for restart in range(restarts):
        if restart == 0 and init is not None:
            delta = into_box(x, project(init, norm, eps))
        elif random_start:
            delta = _random_start(x, norm, eps, seed, restart)
        else:
            delta = torch.zeros_like(x)
        for _ in range(steps):
            if keep == "last":
                _, _, grad = loss_and_gradient(model, x + delta, y, loss)
                delta = into_box(
                    x, project(delta + alpha * steepest_direction(grad, norm), norm, eps)
                )
                continue
            # an evaluation stops attacking a point once it is fooled: rows are independent in
            # eval mode, so the others' iterates are exactly what a full batch would give
            rows = (~fooled).nonzero().view(-1)
            if len(rows) == 0:
                break
            x_r, d_r = x[rows], delta[rows]
            logits, _, grad = loss_and_gradient(model, x_r + d_r, y[rows], loss)
            _record_rows(best, fooled, rows, x_r + d_r, logits, y[rows])
            d_r = into_box(x_r, project(d_r + alpha * steepest_direction(grad, norm), norm, eps))
            delta[rows] = d_r
        last = (x + delta).detach()
        if keep == "last":
            best = last
            continue
        rows = (~fooled).nonzero().view(-1)
        if len(rows):
            with torch.no_grad():
                _record_rows(best, fooled, rows, last[rows], model(last[rows]), y[rows])
        if on_restart is not None:
            on_restart(restart, fooled.clone())
    if keep == "best":
        # points never fooled keep the last iterate of the last restart (the loss maximiser)
        best = torch.where(_rows(fooled, x), best, last)
    return best.detach()


_random_start = random_start  # ``pgd`` has a parameter of the same name


def _record_rows(
    best: torch.Tensor,
    fooled: torch.Tensor,
    rows: torch.Tensor,
    points: torch.Tensor,
    logits: torch.Tensor,
    y: torch.Tensor,
) -> None:
    """Keep ``points[j]`` as row ``rows[j]``'s adversarial example where it is misclassified
    (``rows`` are points not fooled yet)."""
    new = logits.argmax(dim=1) != y
    if new.any():
        best[rows[new]] = points[new].detach()
        fooled[rows[new]] = True


def misclassified(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """``(N,)`` bool: the model's prediction on ``x`` is not ``y`` (no gradients, batched)."""
    with torch.no_grad():
        wrong = [
            model(x[i : i + batch_size]).argmax(dim=1) != y[i : i + batch_size]
            for i in range(0, len(x), batch_size)
        ]
    return torch.cat(wrong) if wrong else torch.zeros(0, dtype=torch.bool, device=x.device)
