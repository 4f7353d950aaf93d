"""The ``robustness`` evaluator's reliability flags: automatic reasons to distrust its numbers.

After AutoAttack's ``checks.py`` (fra31/auto-attack, ``flags_doc.md``: zero gradients,
randomised defences, a black-box attack beating the white-box ones) and Carlini et al. 2019,
"On Evaluating Adversarial Robustness" (sec. 5: robust accuracy must fall as eps grows, more
iterations and restarts must not help, an unbounded attack must reach 0 %). Each flag is 1
when raised; the ``*_gain`` and share metrics beside them say by how much, so a reader can
judge a flag near its tolerance. Kept apart from the attacks and the metric bookkeeping
because it changes for a different reason: what counts as a warning sign.

* ``flag_gradients``: some correctly classified point has an all-zero or a non-finite
  input gradient of the cross-entropy (a saturated softmax gives exactly 0 in float32: PGD
  on the cross-entropy cannot move such a point; APGD-DLR's scale-invariant loss can).
  ``zero_gradient_share`` is their share.
* ``flag_randomness``: two forward passes of the same images in eval mode disagree (a
  randomised model needs EOT attacks; ours would overestimate its robustness).
* ``flag_monotone``: the worst-case robust accuracy rises with eps by more than ``tolerance``.
* ``flag_steps`` / ``flag_restarts``: PGD with twice the steps, or with ``check_restarts``
  restarts, fools more than ``tolerance`` of the images at ``check_eps`` that every attack of
  the evaluation missed (``steps_gain``, ``restarts_gain``): the attacks had not converged.
* ``flag_black_box``: the Square Attack fools more than ``tolerance`` of the images that all
  white-box attacks missed (``black_box_gain``): a sign of masked gradients.
* ``flag_unbounded``: PGD at Linf eps 1 (any image in [0, 1] is reachable) leaves more than
  ``tolerance`` of the images correct (``unbounded_accuracy``): the gradient does not lead
  anywhere, or the model is not what the attacks see.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from benchmark.kit.attacks import loss_and_gradient, objective_fn, pgd
from benchmark.specs import Direction

FLAG_TEXT = {
    "flag_gradients": "1 when some correctly classified image has an all-zero or non-finite "
    "input gradient (gradient attacks cannot move it)",
    "zero_gradient_share": "share of correctly classified images whose input gradient of the "
    "cross-entropy is exactly zero or not finite",
    "flag_randomness": "1 when two forward passes of the same images disagree in eval mode",
    "flag_monotone": "1 when worst-case robust accuracy rises with eps by more than the tolerance",
    "flag_steps": "1 when PGD with twice the steps fools more than the tolerance of the "
    "images every attack missed at check_eps",
    "steps_gain": "share of the images fooled by PGD with twice the steps that every attack of "
    "the evaluation missed at check_eps",
    "flag_restarts": "1 when PGD with check_restarts restarts fools more than the tolerance of "
    "the images every attack missed at check_eps",
    "restarts_gain": "share of the images fooled by PGD with more restarts that every attack "
    "missed at check_eps",
    "flag_black_box": "1 when the black-box Square Attack fools more than the tolerance of the "
    "images all white-box attacks missed (masked gradients)",
    "black_box_gain": "share of the images fooled by the Square Attack and by no white-box "
    "attack at check_eps",
    "flag_unbounded": "1 when PGD at Linf eps 1 leaves more than the tolerance of the images "
    "correct",
    "unbounded_accuracy": "accuracy under PGD at Linf eps 1, where every image is reachable: "
    "about 0 for an evaluation that works",
    "flags": "number of reliability flags raised",
}
FLAGS: dict[str, Direction] = {name: "lower" for name in FLAG_TEXT}
UNBOUNDED_EPS = 1.0


def _gradient_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Share of rows whose input gradient of the cross-entropy is all zero or not finite."""
    if len(x) == 0:
        return 0.0
    ce = objective_fn("ce")
    bad = 0
    for start in range(0, len(x), batch_size):
        logits, _, grad = loss_and_gradient(
            model, x[start : start + batch_size], y[start : start + batch_size], ce
        )
        flat = grad.flatten(1)
        zero = flat.abs().amax(dim=1) == 0
        broken = ~torch.isfinite(flat).all(dim=1) | ~torch.isfinite(logits).all(dim=1)
        bad += int((zero | broken).sum())
    return bad / len(x)


def _randomised(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether two forward passes of the same images disagree beyond float rounding."""
    with torch.no_grad():
        first, second = model(x), model(x)
    return not torch.allclose(first, second, rtol=1e-5, atol=1e-6)


def _non_monotone(curves: Mapping[str, Any], tolerance: float) -> bool:
    for curve in curves.values():
        values = curve.get("robust", [])
        if any(b > a + tolerance for a, b in pairwise(values)):
            return True
    return False


def _pgd_gain(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    restarts: int,
    settings: Mapping[str, Any],
) -> int:
    """How many of the points ``x`` (robust to every attack) a stronger PGD fools."""
    if len(x) == 0:
        return 0
    size = settings["batch_size"]
    fooled = 0
    for start in range(0, len(x), size):
        xb, yb = x[start : start + size], y[start : start + size]
        x_adv = pgd(model, xb, yb, eps, steps=steps, restarts=restarts, seed=settings["seed"] + 1)
        with torch.no_grad():
            fooled += int((model(x_adv).argmax(dim=1) != yb).sum())
    return fooled


def reliability_flags(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n_images: int,
    robust_at: Mapping[tuple[str, str, float], torch.Tensor],
    curves: Mapping[str, Any],
    check_eps: float,
    check_restarts: int,
    tolerance: float,
    settings: Mapping[str, Any],
) -> tuple[dict[str, float], dict[str, Any]]:
    """The flags and their measures (``x``, ``y``: the correctly classified images; shares are
    of all ``n_images`` evaluated). The model must be in eval mode."""
    metrics: dict[str, float] = {}
    share = _gradient_share(model, x, y, settings["batch_size"])
    metrics["zero_gradient_share"] = share
    metrics["flag_gradients"] = float(share > 0)
    metrics["flag_randomness"] = float(len(x) > 0 and _randomised(model, x[:256]))
    metrics["flag_monotone"] = float(_non_monotone(curves, tolerance))

    robust = robust_at[("robust", "linf", check_eps)]
    xr, yr = x[robust], y[robust]
    steps = settings["pgd_steps"]
    steps_gain = _pgd_gain(model, xr, yr, check_eps, 2 * steps, 1, settings) / n_images
    restarts_gain = _pgd_gain(model, xr, yr, check_eps, steps, check_restarts, settings) / n_images
    metrics["steps_gain"], metrics["restarts_gain"] = steps_gain, restarts_gain
    metrics["flag_steps"] = float(steps_gain > tolerance)
    metrics["flag_restarts"] = float(restarts_gain > tolerance)

    square = robust_at.get(("square", "linf", check_eps))
    if square is not None:
        white = torch.ones_like(square)
        for (attack, norm, eps), survived in robust_at.items():
            if norm == "linf" and eps == check_eps and attack not in ("robust", "square"):
                white &= survived
        gain = float((white & ~square).sum()) / n_images
    else:
        gain = 0.0
    metrics["black_box_gain"] = gain
    metrics["flag_black_box"] = float(gain > tolerance)

    unbounded = 0
    size = settings["batch_size"]
    for start in range(0, len(x), size):
        xb, yb = x[start : start + size], y[start : start + size]
        x_adv = pgd(model, xb, yb, UNBOUNDED_EPS, steps=steps, seed=settings["seed"] + 2)
        with torch.no_grad():
            unbounded += int((model(x_adv).argmax(dim=1) == yb).sum())
    metrics["unbounded_accuracy"] = unbounded / n_images
    metrics["flag_unbounded"] = float(metrics["unbounded_accuracy"] > tolerance)
    metrics["flags"] = float(sum(v for k, v in metrics.items() if k.startswith("flag_")))
    details = {
        "check_eps": check_eps,
        "tolerance": tolerance,
        "black_box": square is not None,
        "robust_points_checked": int(robust.sum()),
    }
    return metrics, details
