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

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from plugins.explainers.batching import images_per_chunk, in_chunks


def gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int = 512
) -> torch.Tensor:
    """Signed input gradient of the target logit, ``(N, C, H, W)``."""
    saliency = Saliency(model)
    return in_chunks(
        lambda xs, ts: saliency.attribute(xs, target=ts, abs=False),
        x,
        target,
        chunk=images_per_chunk(batch_size, 1),
        channels=x.shape[1],
    )


def input_x_gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int = 512
) -> torch.Tensor:
    """``x * gradient``, ``(N, C, H, W)``."""
    method = InputXGradient(model)
    return in_chunks(
        lambda xs, ts: method.attribute(xs, target=ts),
        x,
        target,
        chunk=images_per_chunk(batch_size, 1),
        channels=x.shape[1],
    )


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    n_steps: int = 50,
    method: str = "gausslegendre",
    baseline: float = 0.0,
    batch_size: int = 512,
) -> torch.Tensor:
    """Integrated gradients from the constant image ``baseline`` (black by default).

    ``batch_size`` bounds the interpolated images per forward/backward pass: a chunk holds
    ``batch_size // n_steps`` images, each expanded into ``n_steps`` points of the path.
    """
    ig = IntegratedGradients(model)
    return in_chunks(
        lambda xs, ts: ig.attribute(
            xs, baselines=float(baseline), target=ts, n_steps=int(n_steps), method=method
        ),
        x,
        target,
        chunk=images_per_chunk(batch_size, n_steps),
        channels=x.shape[1],
    )
