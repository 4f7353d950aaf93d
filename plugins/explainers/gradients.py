"""The plain gradient family, all from captum: saliency, input x gradient, integrated gradients.

* ``gradient``: the signed gradient of the target logit with respect to the input (Simonyan
  et al. 2014, "Deep inside convolutional networks", eq. 2; captum ``Saliency(abs=False)``:
  the sign is kept, evaluators take ``abs`` or the square as they need).
* ``input-x-gradient``: ``x * d logit / dx`` (Shrikumar et al. 2016, "Not just a black box";
  captum ``InputXGradient``).
* ``integrated-gradients``: the path integral of gradients from a constant baseline to ``x``
  (Sundararajan et al. 2017, "Axiomatic attribution for deep networks", eq. 1; captum
  ``IntegratedGradients``). Completeness: the attributions sum to ``f(x) - f(baseline)``
  up to the quadrature error of ``n_steps`` points.
"""

from __future__ import annotations

from typing import Literal

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from pydantic import PositiveInt
from torch import nn

from benchmark.kit.batching import attribute_in_chunks
from benchmark.specs import ExplainerSpec
from plugins.explainers.capabilities import GRADIENT, explainer_spec

Quadrature = Literal[
    "riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"
]
"""Captum's integration rules for integrated gradients."""


def gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: PositiveInt = 512
) -> torch.Tensor:
    """Signed input gradient of the target logit, ``(N, C, H, W)``."""
    return attribute_in_chunks(Saliency(model), x, target, batch_size=batch_size, abs=False)


def input_x_gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: PositiveInt = 512
) -> torch.Tensor:
    """``x * gradient``, ``(N, C, H, W)``."""
    return attribute_in_chunks(InputXGradient(model), x, target, batch_size=batch_size)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    n_steps: PositiveInt = 50,
    method: Quadrature = "gausslegendre",
    baseline: float = 0.0,
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """Integrated gradients from the constant image ``baseline`` (black by default).

    ``batch_size`` bounds the interpolated images per forward/backward pass: a chunk holds
    ``batch_size // n_steps`` images, each expanded into ``n_steps`` points of the path.
    """
    return attribute_in_chunks(
        IntegratedGradients(model),
        x,
        target,
        batch_size=batch_size,
        per_image=n_steps,
        baselines=float(baseline),
        n_steps=int(n_steps),
        method=method,
    )


def specs() -> list[ExplainerSpec]:
    """The gradient family, for ``plugins.explainers`` to register."""
    return [
        explainer_spec(
            "gradient",
            gradient,
            GRADIENT,
            "signed input gradient of the target logit (Simonyan+ 2014)",
        ),
        explainer_spec(
            "input-x-gradient", input_x_gradient, GRADIENT, "input times gradient (Shrikumar+ 2016)"
        ),
        explainer_spec(
            "integrated-gradients",
            integrated_gradients,
            GRADIENT,
            "integrated gradients from a black baseline (Sundararajan+ 2017)",
        ),
    ]
