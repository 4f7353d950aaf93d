"""Multinomial logistic regression: the simplest differentiable baseline for any image size."""

from __future__ import annotations

import math

from torch import nn


def build_logistic_regression(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
