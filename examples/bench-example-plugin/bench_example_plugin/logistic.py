"""Multinomial logistic regression: the simplest differentiable baseline for any image size.

One linear map from the flattened image to the class logits, so it adapts to every input shape
a dataset reports and gives explainers and calibration metrics a model with no hidden layers to
compare deeper ones against. It provides ``differentiable`` but not ``conv``: the planner keeps
CAM explainers, which need a convolutional ``target_layer``, away from it.
"""

from __future__ import annotations

import math

from torch import nn


def build_logistic_regression(
    num_classes: int, input_shape: tuple[int, int, int], bias: bool = True
) -> nn.Sequential:
    """``Flatten -> Linear(C*H*W, num_classes)``; ``bias=False`` fits a model through the origin."""
    if num_classes < 2:
        raise ValueError(f"logistic-regression needs at least 2 classes, got {num_classes}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes, bias=bias))
