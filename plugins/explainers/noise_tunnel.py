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
"""

from __future__ import annotations

from typing import Literal

import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn

from benchmark.kit.seeding import seeded
from plugins.explainers.batching import images_per_chunk, in_chunks

NoiseType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]


def noise_tunnel(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    nt_type: NoiseType,
    noise_std: float,
    samples: int,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """``NoiseTunnel(Saliency)`` of type ``nt_type``, ``(N, C, H, W)``."""
    if int(samples) < 1:
        raise ValueError(f"{nt_type}: samples must be a positive integer, got {samples!r}")
    if not float(noise_std) >= 0.0:
        raise ValueError(f"{nt_type}: noise_std must be >= 0, got {noise_std!r}")
    tunnel = NoiseTunnel(Saliency(model))

    def attribute(xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        return tunnel.attribute(
            xs,
            nt_type=nt_type,
            nt_samples=int(samples),
            stdevs=float(noise_std),
            target=ts,
            abs=False,
        )

    with seeded(seed, x.device):
        return in_chunks(
            attribute,
            x,
            target,
            chunk=images_per_chunk(batch_size, samples),
            channels=x.shape[1],
        )


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    noise_std: float = 0.15,
    samples: int = 50,
    seed: int = 0,
    batch_size: int = 512,
) -> torch.Tensor:
    """Mean gradient over noisy copies (SmoothGrad)."""
    return noise_tunnel(
        model,
        x,
        target,
        nt_type="smoothgrad",
        noise_std=noise_std,
        samples=samples,
        seed=seed,
        batch_size=batch_size,
    )


def smoothgrad_sq(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    noise_std: float = 0.15,
    samples: int = 50,
    seed: int = 0,
    batch_size: int = 512,
) -> torch.Tensor:
    """Mean squared gradient over noisy copies (SmoothGrad-Squared)."""
    return noise_tunnel(
        model,
        x,
        target,
        nt_type="smoothgrad_sq",
        noise_std=noise_std,
        samples=samples,
        seed=seed,
        batch_size=batch_size,
    )


def vargrad(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    noise_std: float = 0.15,
    samples: int = 50,
    seed: int = 0,
    batch_size: int = 512,
) -> torch.Tensor:
    """Variance of the gradient over noisy copies (VarGrad)."""
    return noise_tunnel(
        model,
        x,
        target,
        nt_type="vargrad",
        noise_std=noise_std,
        samples=samples,
        seed=seed,
        batch_size=batch_size,
    )
