"""The one mini-batch training loop every built-in debiaser runs, and the parameters it shares.

Debiasers differ in *what* a step minimises (a reweighted loss, a worst-group loss, an extra
regulariser on the bottleneck), not in how batches are drawn, how the optimiser is built or how
the model is put back in eval mode. Writing that loop once keeps the twelve debiasers short,
comparable (same batches for the same seed, same optimiser defaults) and fast: batches are drawn
by indexing the in-memory tensors with a seeded permutation instead of a ``DataLoader``.

A debiaser passes ``step(batch) -> loss``; the loop does zero_grad / backward / optimiser step.
``Batch.index`` holds the rows of the training split in the batch, so debiasers that keep
per-sample state (LfF's loss EMAs, JTT's error set, online weights) can address it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from benchmark.specs import Split

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainingParams:
    """The parameters every debiaser shares, with their types and ranges (checked when a suite
    is planned). Give one to ``DebiaserSpec(training=...)`` with the debiaser's defaults; the
    factory takes them as ``**training`` and hands them to ``train_loop`` unchanged."""

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: PositiveFloat = 0.001
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 0.0
    epochs: PositiveInt = 5
    batch_size: PositiveInt = 64


TRAINING = TrainingParams()
"""Defaults shared by the fairness debiasers; a suite may override any of them per debiaser.
They are also ``train_loop``'s defaults, so a debiaser called directly trains as its spec says."""


@dataclass(frozen=True)
class Batch:
    """One mini-batch of the training split, with the rows it came from."""

    index: torch.Tensor
    """``int64 (B,)`` rows of the training split."""
    x: torch.Tensor
    y: torch.Tensor
    groups: torch.Tensor | None
    """Group labels of the rows; ``None`` for debiasers that must not read them."""
    epoch: int
    step: int
    """Global step count, from 0."""


def make_optimizer(
    parameters: Iterable[nn.Parameter],
    optimizer: str,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD with momentum or Adam: the two optimisers the source reports use."""
    parameters = list(parameters)
    if optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def check_training_params(epochs: int, batch_size: int, lr: float) -> None:
    """Clear errors for the parameters every debiaser shares."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")


def check_sampling_weights(weights: torch.Tensor, n: int) -> torch.Tensor:
    """``weights`` as ``float64`` on the CPU, or a clear error: one finite, non-negative weight
    per training row, not all zero."""
    weights = torch.as_tensor(weights).detach().to("cpu", torch.float64)
    if weights.shape != (n,):
        raise ValueError(
            f"sampling_weights must have one weight per training row ({n}), "
            f"got shape {tuple(weights.shape)}"
        )
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("sampling_weights must be finite, non-negative and not all zero")
    return weights


def check_epoch_rows(rows: torch.Tensor, n: int) -> torch.Tensor:
    """``rows`` as ``int64`` on the CPU, or a clear error: a non-empty list of rows of a split
    of ``n`` rows."""
    rows = torch.as_tensor(rows).detach().to("cpu")
    if rows.ndim != 1 or len(rows) == 0 or rows.dtype.is_floating_point or rows.dtype == torch.bool:
        raise ValueError(f"epoch_rows must be a non-empty 1-d integer tensor, got {rows!r:.80}")
    rows = rows.to(torch.int64)
    if (rows < 0).any() or (rows >= n).any():
        raise ValueError(f"epoch_rows must be rows of the training split (0..{n - 1})")
    return rows


def train_loop(
    model: nn.Module,
    data: Split,
    step: Callable[[Batch], torch.Tensor],
    *,
    seed: int,
    epochs: int = TRAINING.epochs,
    batch_size: int = TRAINING.batch_size,
    optimizer: str = TRAINING.optimizer,
    lr: float = TRAINING.lr,
    momentum: float = TRAINING.momentum,
    weight_decay: float = TRAINING.weight_decay,
    parameters: Iterable[nn.Parameter] | None = None,
    use_groups: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    sampling_weights: torch.Tensor | None = None,
    epoch_rows: torch.Tensor | None = None,
) -> nn.Module:
    """Train ``model`` in place by minimising ``step(batch)``; return it in eval mode.

    The six training parameters (``TrainingParams``) default to ``TRAINING``; a debiaser takes
    them as ``**training`` and passes them on, so it states none of them itself.
    ``parameters`` defaults to the model's; pass more (an auxiliary head) to optimise them
    jointly. ``use_groups`` is the only way a batch carries group labels, so an unsupervised
    debiaser that leaves it ``False`` provably never sees them. The batch order depends only on
    ``seed``, the split size and ``sampling_weights``.

    ``sampling_weights`` (``(N,)``, non-negative) replaces the epoch's permutation by ``N`` rows
    drawn with replacement, row ``i`` with probability proportional to ``w_i``: resampling, for
    debiasers that rebalance *which* samples a batch holds rather than how much each one's loss
    counts (the two have the same expectation, not the same variance).

    ``epoch_rows`` (``int64``, rows of the split, repeats allowed) replaces the split by an
    upsampled copy of it: each epoch visits every entry once, in a seeded random order. That is
    oversampling by duplication, as JTT's reference code builds its stage-2 data (error-set
    rows listed ``lambda_up`` times); an epoch is then ``len(epoch_rows)`` rows long.
    """
    check_training_params(epochs, batch_size, lr)
    if use_groups and data.groups is None:
        raise ValueError("this debiaser needs group labels, but the training split has none")
    opt = make_optimizer(
        model.parameters() if parameters is None else parameters,
        optimizer,
        lr,
        momentum,
        weight_decay,
    )
    if sampling_weights is not None:
        sampling_weights = check_sampling_weights(sampling_weights, len(data))
    if epoch_rows is not None:
        if sampling_weights is not None:
            raise ValueError("give sampling_weights or epoch_rows, not both")
        epoch_rows = check_epoch_rows(epoch_rows, len(data))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks and any randomness inside step()
    n = len(data) if epoch_rows is None else len(epoch_rows)
    count = 0
    model.train()
    for epoch in range(epochs):
        if sampling_weights is not None:
            order = torch.multinomial(sampling_weights, n, replacement=True, generator=generator)
        elif epoch_rows is not None:
            order = epoch_rows[torch.randperm(n, generator=generator)]
        else:
            order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            batch = Batch(
                index=rows,
                x=data.x[rows],
                y=data.y[rows],
                groups=data.groups[rows] if use_groups else None,
                epoch=epoch,
                step=count,
            )
            opt.zero_grad(set_to_none=True)
            loss = step(batch)
            loss.backward()
            opt.step()
            count += 1
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return model.eval()
