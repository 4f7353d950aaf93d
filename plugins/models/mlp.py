"""A multilayer perceptron: the no-convolution baseline every image benchmark needs.

It provides ``differentiable`` but not ``conv``, so the planner keeps CAM explainers away.
"""

from __future__ import annotations

import math

from torch import nn


def build_mlp(
    num_classes: int,
    input_shape: tuple[int, int, int],
    hidden: list[int] | tuple[int, ...] = (256, 128),
    dropout: float = 0.2,
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
