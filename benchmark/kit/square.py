"""Square Attack under Linf (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a score-based
black-box attack, the one AutoAttack adds to its white-box attacks. It reads only the logits,
so a model whose gradients are masked or obfuscated (zero, noisy, shattered) does not fool it:
when it beats the gradient attacks, their numbers overestimate robustness. That comparison is
one of the ``robustness`` evaluator's reliability flags.

Algorithm (the paper's Algorithm 1 with the Linf sampling of sec. 3.1): start from vertical
stripes (each column of each channel at ``+eps`` or ``-eps``), then per iteration change one
square window of side ``s`` to a fresh ``+-2 eps`` offset per channel, project to the eps ball
and the box, and keep the change when the margin loss ``z_y - max_{i != y} z_i`` decreases (or
the point becomes misclassified). ``s = round(sqrt(p h w))`` with ``p`` halving on the
reference's schedule (at 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000 queries,
rescaled to the query budget, ``p_init = 0.8``). Points already fooled stop querying.

Reference implementation: ``fra31/auto-attack`` ``autoattack/square.py``
(``SquareAttack.attack_single_run``, ``p_selection``, ``margin_and_loss`` with
``loss="margin"``). Deliberate difference: the reference draws one window position per
iteration for the whole batch from the global generator; we draw one per image from a stream
keyed by the image's pixels, the seed and the iteration (``benchmark.kit.ranking``), so an
image's result does not depend on its batch and a rerun is bit-identical. Only Linf is
implemented (the L2 version samples nested squares of Gaussian mass: not needed for the flag).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark.kit.ranking import image_keys, keyed_uniform

P_INIT = 0.8
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_STREAM = 0x5A0


def window_fraction(iteration: int, queries: int, p_init: float = P_INIT) -> float:
    """``p``: the share of pixels the window covers at ``iteration`` (0-based), on the
    reference's schedule rescaled from 10,000 queries to ``queries``."""
    it = int(iteration / queries * 10000)
    halvings = sum(it > point for point in _SCHEDULE)
    return p_init / 2**halvings


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{i != y} z_i`` per sample: negative exactly when the point is misclassified
    (ties aside)."""
    true = logits.gather(1, y.view(-1, 1)).view(-1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return true - others.amax(dim=1)


def square_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    queries: int = 1000,
    seed: int = 0,
) -> torch.Tensor:
    """Square Attack (Linf, untargeted, margin loss) with at most ``queries`` model calls per
    point after the first; returns a detached ``x_adv`` in [0, 1] within eps of ``x`` (the best
    point found: misclassified where it succeeded). Never writes to ``x``."""
    if queries < 1:
        raise ValueError(f"queries must be positive, got {queries}")
    c, h, w = x.shape[1:]
    keys = image_keys(x, seed)
    with torch.no_grad():
        stripes = keyed_uniform(keys, _STREAM, (c, 1, w)).to(x.device, x.dtype)
        best = (x + eps * torch.where(stripes < 0.5, -1.0, 1.0)).clamp(0.0, 1.0)
        best_margin = margin(model(best), y)
        rows_h = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols_w = torch.arange(w, device=x.device).view(1, 1, 1, w)
        for it in range(queries):
            active = (best_margin > 0).nonzero().view(-1)
            if len(active) == 0:
                break
            p = window_fraction(it, queries)
            s = min(max(round(math.sqrt(p * h * w)), 1), h, w)
            draws = keyed_uniform(keys[active.cpu().numpy()], _STREAM + 1 + it, (2 + c,))
            draws = draws.to(x.device, x.dtype)
            top = (draws[:, 0] * (h - s + 1)).floor().clamp(max=h - s).view(-1, 1, 1, 1)
            left = (draws[:, 1] * (w - s + 1)).floor().clamp(max=w - s).view(-1, 1, 1, 1)
            signs = torch.where(draws[:, 2:] < 0.5, -1.0, 1.0).view(-1, c, 1, 1)
            window = (rows_h >= top) & (rows_h < top + s) & (cols_w >= left) & (cols_w < left + s)
            x_a, current = x[active], best[active]
            candidate = torch.where(window, current + 2.0 * eps * signs, current)
            candidate = torch.minimum(torch.maximum(candidate, x_a - eps), x_a + eps)
            candidate = candidate.clamp(0.0, 1.0)
            new_margin = margin(model(candidate), y[active])
            improved = new_margin < best_margin[active]
            keep = active[improved]
            best[keep] = candidate[improved]
            best_margin[keep] = new_margin[improved]
    return best.detach()
