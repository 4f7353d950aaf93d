"""Gradients averaged over noisy copies of the input, with captum's ``NoiseTunnel``.

* ``smoothgrad``: mean gradient over ``samples`` copies ``x + N(0, noise_std^2)`` (Smilkov et
  al. 2017, "SmoothGrad: removing noise by adding noise", eq. 3; they recommend a noise level
  of 10-20 % of the input range, inputs are in [0, 1], so ``noise_std`` is that fraction, and
  find 50 samples enough).
* ``smoothgrad-sq``: mean of the squared gradients, SG-SQ of Hooker et al. 2019 ("A benchmark
  for interpretability methods in deep neural networks", ROAR), where it beat most methods.
* ``vargrad``: variance of the gradients over the noisy copies (Adebayo et al. 2018,
  "Local explanation methods for deep neural networks lack sensitivity to parameter
  values"; also one of ROAR's winners).

The base attribution is the signed input gradient. Noise comes from captum (torch's global
generator), seeded with ``seed`` inside :func:`benchmark.kit.seeding.seeded`, so a result
depends on the inputs and parameters only, never on what ran before, and the caller's random
stream is left untouched. Chunks draw their noise one after the other, so the noise (and a
result) also depends on ``batch_size``, which sets the chunks.

The three differ only in how the noisy gradients are reduced, so they are one function,
:func:`noise_tunnel`, with its ``nt_type`` bound (``functools.partial``, which pickles and
whose bound keyword is not a suite parameter).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from captum.attr import NoiseTunnel, Saliency
from pydantic import NonNegativeFloat, PositiveInt
from torch import nn

from benchmark.kit.batching import attribute_in_chunks
from benchmark.kit.seeding import seeded
from benchmark.specs import ExplainerSpec
from plugins.explainers.capabilities import GRADIENT, explainer_spec

NoiseType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]


def check_noise(method: str, samples: int, noise_std: float) -> None:
    """Clear errors for the noise parameters (also GradientSHAP's) when called directly; a
    suite's values are checked against the annotations at plan time already."""
    if int(samples) < 1:
        raise ValueError(f"{method}: samples must be a positive integer, got {samples!r}")
    if not float(noise_std) >= 0.0:
        raise ValueError(f"{method}: noise_std must be >= 0, got {noise_std!r}")


def noise_tunnel(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    nt_type: NoiseType,
    noise_std: NonNegativeFloat = 0.15,
    samples: PositiveInt = 50,
    seed: int = 0,
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """``NoiseTunnel(Saliency)`` of type ``nt_type``, ``(N, C, H, W)``."""
    check_noise(nt_type, samples, noise_std)
    with seeded(seed, x.device):
        return attribute_in_chunks(
            NoiseTunnel(Saliency(model)),
            x,
            target,
            batch_size=batch_size,
            per_image=samples,
            nt_type=nt_type,
            nt_samples=int(samples),
            stdevs=float(noise_std),
            abs=False,
        )


smoothgrad = functools.partial(noise_tunnel, nt_type="smoothgrad")
"""Mean gradient over noisy copies (SmoothGrad)."""
smoothgrad_sq = functools.partial(noise_tunnel, nt_type="smoothgrad_sq")
"""Mean squared gradient over noisy copies (SmoothGrad-Squared)."""
vargrad = functools.partial(noise_tunnel, nt_type="vargrad")
"""Variance of the gradient over noisy copies (VarGrad)."""


def specs() -> list[ExplainerSpec]:
    """SmoothGrad, SmoothGrad-Squared and VarGrad, for ``plugins.explainers`` to register;
    the same noisy gradients (for the same seed and batch size), reduced three ways."""
    return [
        explainer_spec(
            "smoothgrad",
            smoothgrad,
            GRADIENT,
            "gradient averaged over noisy copies (Smilkov+ 2017)",
            batch_independent=False,
        ),
        explainer_spec(
            "smoothgrad-sq",
            smoothgrad_sq,
            GRADIENT,
            "mean squared gradient over noisy copies, SG-SQ (Hooker+ 2019)",
            batch_independent=False,
        ),
        explainer_spec(
            "vargrad",
            vargrad,
            GRADIENT,
            "variance of gradients over noisy copies (Adebayo+ 2018)",
            batch_independent=False,
        ),
    ]
