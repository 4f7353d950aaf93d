"""Inverse group-frequency re-weighting (``reweight``): a supervised debiaser that needs groups.

Each training sample is weighted by ``1 / n(cell)``, the number of training samples sharing its
cell, and the weights are normalised to mean 1 over the training split; training minimises the
weighted cross-entropy ``mean_i(w_i * CE_i)`` over each batch. Every cell then carries the same
total weight, so the rare bias-conflicting cells count as much as the common bias-aligned ones.
This is the importance-weighting baseline that group DRO is compared with (Sagawa, Koh,
Hashimoto & Liang, ICLR 2020; see also Byrd & Lipton, ICML 2019), here with per-sample weights
rather than a resampled loader so that it runs through the shared loop.

The cell is ``(class, group)`` by default (``cell="class-group"``). On colored MNIST the group
is the colour, and colour is spuriously tied to the class: the (y, a) cell is what separates
aligned samples (digit 3 in the colour of 3s) from conflicting ones (digit 3 in another
colour). Weighting by the group alone would only balance colours overall, leaving every
aligned cell as heavy as before. ``cell="group"`` is offered for datasets whose groups already
encode the label (Waterbirds-style group ids).

Normalising to mean 1 keeps the loss scale, and hence the learning rate, comparable with ERM.
Because the weights are fixed per sample, ``w_i`` for a batch is gathered by ``Batch.index``;
the batch mean of ``w_i * CE_i`` is an unbiased estimate of the re-weighted training risk.
Defaults: ``cell="class-group"`` and the shared training defaults (Adam, lr 1e-3, 5 epochs,
batch 64).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from benchmark.kit.training import Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec

Cell = Literal["class-group", "group"]
"""What a cell is: a ``(class, group)`` pair, or the group alone."""
CELLS: tuple[Cell, ...] = ("class-group", "group")


def require_groups(data: Split, debiaser: str) -> torch.Tensor:
    """``data.groups``, or a clear error naming the debiaser when the split has none."""
    if data.groups is None:
        raise ValueError(
            f"debiaser '{debiaser}' is supervised: it needs per-sample group labels "
            "(a dataset that provides 'groups'), but the training split has none"
        )
    if data.groups.shape != data.y.shape:
        raise ValueError(
            f"debiaser '{debiaser}': groups has shape {tuple(data.groups.shape)}, "
            f"labels {tuple(data.y.shape)}"
        )
    return data.groups


def cell_ids(y: torch.Tensor, groups: torch.Tensor, cell: Cell = "class-group") -> torch.Tensor:
    """``int64 (N,)`` compact id of each sample's cell: ``(y, group)`` pairs or ``group``."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    keys = torch.stack([y, groups], dim=1) if cell == "class-group" else groups[:, None]
    return torch.unique(keys, dim=0, return_inverse=True)[1]


def inverse_frequency_weights(cells: torch.Tensor) -> torch.Tensor:
    """``w_i = 1 / n(cell_i)``, normalised to mean 1: ``N / (n_cells * n(cell_i))``."""
    counts = torch.bincount(cells)
    weights = 1.0 / counts[cells].double()
    return (weights / weights.mean()).float()


def cell_weights(data: Split, cell: Cell, debiaser: str) -> torch.Tensor:
    """Inverse cell-frequency weights of the training rows (``reweight``'s loss weights,
    ``resample``'s sampling weights), computed on the CPU so that the weights, and for
    resampling the draws, are the same on every device. Raises when ``data`` has no groups."""
    groups = require_groups(data, debiaser)
    return inverse_frequency_weights(cell_ids(data.y.cpu(), groups.cpu(), cell))


def train_reweight(
    model: nn.Module, data: Split, *, seed: int, cell: Cell = "class-group", **training: Any
) -> nn.Module:
    """Weighted cross-entropy with inverse cell-frequency weights; returns the model in eval
    mode. Raises ``ValueError`` when ``data`` has no groups."""
    weights = cell_weights(data, cell, "reweight")

    def step(batch: Batch) -> torch.Tensor:
        losses = nn.functional.cross_entropy(model(batch.x), batch.y, reduction="none")
        return (weights[batch.index].to(losses.device) * losses).mean()

    return train_loop(model, data, step, seed=seed, use_groups=True, **training)


DESCRIPTION = "cross-entropy weighted by 1 / size of each sample's (class, group) cell"

REQUIRES = frozenset({"groups"})


def specs() -> list[DebiaserSpec]:
    """The ``reweight`` debiaser, for ``plugins.debiasers`` to register."""
    return [debiaser_spec("reweight", train_reweight, DESCRIPTION, requires=REQUIRES)]
