"""Plain empirical risk minimisation (``none``): the baseline every debiaser is compared with.

Mini-batch cross-entropy with SGD (momentum) or Adam, through the shared loop
(``benchmark.kit.training``): an epoch of the seed CNN on 4,000 MNIST images takes around a
second on two cores. It never reads ``data.groups``.
"""

from __future__ import annotations

from torch import nn

from benchmark.kit.training import Batch, train_loop
from benchmark.specs import Split


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

    def step(batch: Batch):
        return nn.functional.cross_entropy(model(batch.x), batch.y)

    return train_loop(
        model,
        data,
        step,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )
