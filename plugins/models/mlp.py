"""A multilayer perceptron: the no-convolution baseline every image benchmark needs.

It provides ``differentiable`` but not ``conv``, so the planner keeps CAM explainers away, and
``linear-head``: its last layer is the classifier, so the bottleneck debiasers run on it too.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, PositiveInt
from torch import nn

from benchmark.specs import ModelSpec
from plugins.models.bottleneck import LINEAR_HEAD


def build_mlp(
    num_classes: int,
    input_shape: tuple[int, int, int],
    hidden: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (256, 128),
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2,
) -> nn.Sequential:
    """Flatten, then ``Linear -> ReLU -> Dropout`` per entry of ``hidden``, then logits."""
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"mlp: hidden must list positive layer widths, got {hidden!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(dropout)]
        width = int(size)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


DESCRIPTION = "multilayer perceptron (ReLU, dropout); no convolutions"
PROVIDES = frozenset({"differentiable", LINEAR_HEAD})


def specs() -> list[ModelSpec]:
    """``mlp``, for ``plugins.models`` to register."""
    return [ModelSpec("mlp", build_mlp, DESCRIPTION, version="1", provides=PROVIDES)]
