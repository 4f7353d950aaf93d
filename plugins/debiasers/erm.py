"""Plain empirical risk minimisation (``none``): the baseline every debiaser is compared with.

Mini-batch cross-entropy with SGD (momentum) or Adam, through the shared loop
(``benchmark.kit.training``): an epoch of the seed CNN on 4,000 MNIST images takes around a
second on two cores. It never reads ``data.groups``. ERM keeps its own training defaults
(``ERM_TRAINING``: SGD, lr 0.05, 15 epochs; ``tests/test_erm.py`` holds them to its accuracy
bar on MNIST); the fairness suite gives it the debiasers' budget instead.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from benchmark.kit.training import Batch, TrainingParams, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec

ERM_TRAINING = TrainingParams(optimizer="sgd", lr=0.05, epochs=15)
"""ERM's own training defaults (momentum 0.9, no weight decay, batch 64 as the others)."""


def train_erm(model: nn.Module, data: Split, *, seed: int, **training: Any) -> nn.Module:
    """Train ``model`` in place on ``data.x, data.y`` and return it in eval mode.

    ``training`` overrides ``ERM_TRAINING``, also when the function is called directly.
    """

    def step(batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch.x), batch.y)

    return train_loop(model, data, step, seed=seed, **(asdict(ERM_TRAINING) | training))


DESCRIPTION = "plain ERM: cross-entropy, mini-batch SGD with momentum (or Adam)"


def specs() -> list[DebiaserSpec]:
    """The ``none`` debiaser, for ``plugins.debiasers`` to register."""
    return [debiaser_spec("none", train_erm, DESCRIPTION, training=ERM_TRAINING)]
