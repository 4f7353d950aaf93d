"""Group DRO (``group-dro``): Sagawa, Koh, Hashimoto & Liang, "Distributionally Robust Neural
Networks for Group Shifts: On the Importance of Regularization for Worst-Case
Generalization", ICLR 2020. A supervised debiaser: it needs group labels.

ERM minimises the average loss, which a model can keep low while failing a small group (the
bias-conflicting samples). Group DRO minimises the worst expected loss over groups,
``min_theta max_g E_{P_g}[loss]``, with the online algorithm of the paper (Algorithm 1): keep a
distribution ``q`` over groups (uniform at start); at every step compute each group's mean
loss ``L_g`` on the batch, take an exponentiated-gradient ascent step on ``q``

    q_g <- q_g * exp(eta * L_g),  then  q <- q / sum(q),

and descend on ``sum_g q_g * L_g`` with the new ``q``. Groups with persistently high loss
gather weight, so the model is pushed to fit them.

As in the authors' reference code (``loss.py`` of github.com/kohpangwei/group_DRO,
``LossComputer.compute_robust_loss``): a group absent from the batch has ``L_g = 0`` (its weight
then shrinks relative to the others); ``q`` is updated from the detached losses; the optional
generalisation adjustment (Sec. 3.3 of the paper) adds ``C / sqrt(n_g)`` to ``L_g`` in the
``q`` update, ``n_g`` being the group's size in the training split, so that small groups, whose
training loss underestimates their test loss, get more weight. The adjustment is constant, so
it changes ``q`` but not the gradient of the objective; we leave it out of the returned loss.

Groups are the ``(class, group)`` cells present in the training split (``cell="class-group"``):
on colored MNIST the group attribute is the colour and the worst group is a digit in an
unusual colour, which only the (y, a) cell isolates (see ``plugins.debiasers.reweight``).
Defaults: ``step_size`` (eta) 0.01 and ``adjustment`` (C) 0, the reference code's defaults,
and the shared training defaults (Adam, lr 1e-3, 5 epochs, batch 64). The paper's strong L2
penalty / early stopping are left to ``weight_decay`` and ``epochs``.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import NonNegativeFloat
from torch import nn

from benchmark.kit.training import Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec
from plugins.debiasers.reweight import Cell, cell_ids, require_groups


def group_means(
    losses: torch.Tensor, groups: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean loss per group, count per group)`` over a batch; absent groups get loss 0."""
    counts = torch.bincount(groups, minlength=num_groups).to(losses.dtype)
    sums = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device)
    sums = sums.index_add(0, groups, losses)
    return sums / counts.clamp(min=1), counts


def update_group_weights(
    q: torch.Tensor, group_loss: torch.Tensor, step_size: float
) -> torch.Tensor:
    """One exponentiated-gradient step: ``q * exp(step_size * group_loss)``, renormalised."""
    q = q * torch.exp(step_size * group_loss)
    return q / q.sum()


class GroupDROLoss:
    """The online group-DRO objective; ``q`` is the current weight of each group."""

    def __init__(
        self, group_counts: torch.Tensor, step_size: float = 0.01, adjustment: float = 0.0
    ) -> None:
        if not step_size >= 0:
            raise ValueError(f"step_size must be non-negative, got {step_size!r}")
        if not adjustment >= 0:
            raise ValueError(f"adjustment must be non-negative, got {adjustment!r}")
        counts = group_counts.detach().double().cpu()
        if (counts <= 0).any():
            raise ValueError("every group needs at least one training sample")
        self.num_groups = len(counts)
        self.step_size = step_size
        self.adjustment = adjustment / counts.sqrt()
        self.q = torch.full((self.num_groups,), 1.0 / self.num_groups, dtype=torch.float64)

    def __call__(self, losses: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """``sum_g q_g * L_g`` for per-sample ``losses`` of samples in ``groups`` (ids in
        ``[0, num_groups)``), after updating ``q`` with this batch's group losses."""
        group_loss, _ = group_means(losses, groups, self.num_groups)
        adjusted = group_loss.detach().double().cpu() + self.adjustment
        self.q = update_group_weights(self.q, adjusted, self.step_size)
        return (self.q.to(group_loss) * group_loss).sum()


def train_group_dro(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    step_size: NonNegativeFloat = 0.01,
    adjustment: NonNegativeFloat = 0.0,
    cell: Cell = "class-group",
    **training: Any,
) -> nn.Module:
    """Train ``model`` on the online group-DRO loss; returns it in eval mode. Raises
    ``ValueError`` when ``data`` has no groups."""
    groups = require_groups(data, "group-dro")
    # bookkeeping on the CPU, where q lives; each batch's cell ids go to the loss's device
    cells = cell_ids(data.y.cpu(), groups.cpu(), cell)
    objective = GroupDROLoss(torch.bincount(cells), step_size, adjustment)

    def step(batch: Batch) -> torch.Tensor:
        losses = nn.functional.cross_entropy(model(batch.x), batch.y, reduction="none")
        return objective(losses, cells[batch.index].to(losses.device))

    return train_loop(model, data, step, seed=seed, use_groups=True, **training)


DESCRIPTION = (
    "Group DRO (Sagawa et al. 2020): online worst-group loss over (class, group) cells, eta=0.01"
)

REQUIRES = frozenset({"groups"})


def specs() -> list[DebiaserSpec]:
    """The ``group-dro`` debiaser, for ``plugins.debiasers`` to register."""
    return [debiaser_spec("group-dro", train_group_dro, DESCRIPTION, requires=REQUIRES)]
