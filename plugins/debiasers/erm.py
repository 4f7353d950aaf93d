"""Plain empirical risk minimisation (``none``): the baseline every debiaser is compared with.

Mini-batch training on cross-entropy with SGD (momentum) or Adam. Batches are drawn by
indexing the tensors with a seeded permutation rather than through a ``DataLoader``: the data
already sits in memory, and this keeps an epoch of the seed CNN on 4,000 MNIST images around a
second on two cores. It never reads ``data.groups``.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.specs import Split

OPTIMIZERS = ("sgd", "adam")


def make_optimizer(
    model: nn.Module, optimizer: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def train_erm(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    epochs: int = 15,
    batch_size: int = 64,
) -> nn.Module:
    """Train ``model`` in place on ``data.x, data.y`` and return it in eval mode."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    x, y = data.x, data.y
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
    return model.eval()
