"""Permuted AdaIN (``padain``): Nuriel, Benaim & Wolf, "Permuted AdaIN: Reducing the Bias
Towards Global Statistics in Image Classification", CVPR 2021.

CNNs lean on global image statistics (colour, texture, contrast), which is exactly the shortcut
a spurious attribute such as a digit's colour offers. PAdaIN (eq. 5 of the paper) takes, with a
small probability ``p`` per forward pass of a layer, the activation ``x`` ``(N, C, H, W)`` of
a batch and a random permutation ``pi`` of its samples, and gives every sample ``i`` the
per-channel mean and standard deviation of its partner ``pi(i)``:

    PAdaIN(x)_i = sigma(x_pi(i)) * (x_i - mu(x_i)) / sigma(x_i) + mu(x_pi(i))

while the spatial content stays that of sample ``i`` and the label stays ``y_i``, so the model
is taught that these statistics do not decide the class. It is applied after each convolution
and before the following batch norm, during training only; at test time the network is
unchanged. The seed report (``shared/seeds/000``, Que-2) uses it on PyramidNet with ``p=0.01``.

Details follow the authors' ``PermuteAdaptiveInstanceNorm2d`` (``PAdaIN.py`` of their code):
``p=0.01``, ``eps=1e-5``; sigma is ``sqrt(unbiased variance + eps)`` and the division adds
``eps`` once more; the partner's statistics are detached (no gradient flows into the partner);
activations with a 1x1 spatial map are left alone (their variance is undefined); a sample may
draw itself as partner. One coin is tossed per layer per forward pass.

Instead of editing the architecture we attach a forward hook to every ``nn.Conv2d`` for the
duration of training and remove it afterwards, so any conv model works and the returned model's
modules and ``state_dict`` are exactly those of the model passed in. The coin tosses and
permutations come from a generator seeded by the job's seed, not from ``random``, so a rerun is
identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import Field, PositiveFloat
from torch import nn

from benchmark.kit.seeding import stream_seed
from benchmark.kit.training import Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec

_STREAM = 0xADA1  # separates PAdaIN's random stream from the loop's batch order


def channel_stats(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and ``sqrt(unbiased var + eps)``, each ``(N, C, 1, 1)``."""
    flat = x.flatten(2)
    mean = flat.mean(dim=2)[..., None, None]
    std = (flat.var(dim=2) + eps).sqrt()[..., None, None]
    return mean, std


def permuted_adain(x: torch.Tensor, permutation: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN of every sample ``i`` of ``x`` with the statistics of sample ``permutation[i]``."""
    mean, std = channel_stats(x, eps)
    style_mean, style_std = mean[permutation].detach(), std[permutation].detach()
    return (x - mean) / (std + eps) * style_std + style_mean


def maybe_permute(
    x: torch.Tensor, p: float, generator: torch.Generator, eps: float = 1e-5
) -> torch.Tensor:
    """With probability ``p`` (one coin for the whole batch), PAdaIN with a random permutation;
    otherwise ``x`` itself. Draws come from ``generator`` (CPU)."""
    if x.ndim != 4 or x.shape[-2:] == (1, 1):
        return x
    if not torch.rand(1, generator=generator).item() < p:
        return x
    permutation = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return permuted_adain(x, permutation, eps)


def padain_hook(
    p: float, eps: float, generator: torch.Generator
) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
    """A forward hook that replaces a conv layer's output by ``maybe_permute`` of it while the
    layer is in training mode."""

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
        if not module.training:
            return output
        return maybe_permute(output, p, generator, eps)

    return hook


def train_padain(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    p: Annotated[float, Field(ge=0, le=1)] = 0.01,
    eps: PositiveFloat = 1e-5,
    **training: Any,
) -> nn.Module:
    """Cross-entropy with PAdaIN after every ``nn.Conv2d``; the hooks are gone on return.

    Defaults: ``p=0.01`` and ``eps=1e-5`` (the authors' code), and the shared training
    defaults (Adam, lr 1e-3, 5 epochs, batch 64).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"padain needs a model with nn.Conv2d layers; {type(model).__name__} has none"
        )
    hook = padain_hook(p, eps, torch.Generator().manual_seed(stream_seed(seed, _STREAM)))

    def step(batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch.x), batch.y)

    handles = [conv.register_forward_hook(hook) for conv in convs]
    try:
        return train_loop(model, data, step, seed=seed, **training)
    finally:
        for handle in handles:
            handle.remove()


DESCRIPTION = (
    "Permuted AdaIN (Nuriel et al. 2021): swap per-channel feature statistics "
    "between samples after each conv, p=0.01"
)

REQUIRES = frozenset({"conv"})


def specs() -> list[DebiaserSpec]:
    """The ``padain`` debiaser, for ``plugins.debiasers`` to register."""
    return [debiaser_spec("padain", train_padain, DESCRIPTION, requires=REQUIRES)]
