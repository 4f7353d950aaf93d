"""Shapley-value approximations through references: DeepSHAP and GradientSHAP (captum).

Both explain ``f(x) - E_b[f(b)]`` over a distribution of references ``b`` (Lundberg & Lee
2017, "A unified approach to interpreting model predictions", section 4.2 and the
GradientExplainer of the ``shap`` package; Erion et al. 2021 for the expected-gradients view).
The references here are a fixed, documented set built from each image itself, so that no
training data has to travel with the explainer and an image's attributions do not depend on
the rest of its batch:

* the black image (zeros), the usual "absence" reference of MNIST-like data, and
* Gaussian blurs of the image with standard deviations ``blur_sigmas`` (Sturmfels et al. 2020,
  "Visualizing the impact of feature attribution baselines", Distill): references that remove
  fine structure while keeping the overall intensity, so attributions are not forced to
  zero on black pixels the way a black reference alone forces them.

Captum's ``DeepLiftShap`` and ``GradientShap`` take one reference set shared by the whole
batch, so the per-image sets are passed by expanding the batch: each image is repeated once
per reference (DeepSHAP) or once per sample (GradientSHAP) and paired with its own reference,
which is exactly what those classes do internally with a shared set.

* ``deep-shap``: the mean over the references of captum ``DeepLift`` (Shrikumar et al. 2017,
  "Learning important features through propagating activation differences", rescale rule);
  this equals ``DeepLiftShap`` with the image's reference set (checked in the tests).
  DeepLIFT hooks the model's nonlinearity modules, hence the ``lrp`` requirement.
* ``gradient-shap``: ``E[grad f(b + a (x + e - b)) * (x + e - b)]`` with the reference ``b``
  cycling through the set, ``a ~ U(0, 1)`` and ``e ~ N(0, noise_std^2)``: captum's
  ``GradientShap`` per sample (its ``InputBaselineXGradient``), seeded with ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from captum.attr import DeepLift
from captum.attr._core.gradient_shap import InputBaselineXGradient
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from benchmark.kit.batching import FAST_LAYOUT, images_per_chunk, in_chunks
from benchmark.kit.seeding import seeded
from benchmark.specs import ExplainerSpec
from plugins.explainers.capabilities import GRADIENT, RULES, explainer_spec
from plugins.explainers.noise_tunnel import check_noise

BlurSigmas = tuple[PositiveFloat, ...]
"""Standard deviations of the blurred references, in pixels (a YAML list)."""


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel: ``scipy.ndimage.gaussian_filter`` with
    ``mode="nearest"`` (edges replicated, so any sigma works on any image size) and its
    default truncation at 4 sigma, batched in torch (checked against scipy in the tests).
    Written here because torchvision's blur reflects at the border and fails when the kernel
    outgrows the image, and scipy works on one array at a time."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, int(4.0 * float(sigma) + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def references(x: torch.Tensor, blur_sigmas: Sequence[float]) -> torch.Tensor:
    """The reference set of every image, ``(N, R, C, H, W)``: zeros, then one blur per sigma."""
    sigmas = [float(s) for s in blur_sigmas]
    if any(not s > 0 for s in sigmas):
        raise ValueError(f"blur_sigmas must be positive, got {list(blur_sigmas)!r}")
    return torch.stack([torch.zeros_like(x), *(gaussian_blur(x, s) for s in sigmas)], dim=1)


def deep_shap(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    blur_sigmas: BlurSigmas = (2.0, 4.0, 8.0),
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """DeepLIFT averaged over each image's references (DeepSHAP), ``(N, C, H, W)``."""
    count = 1 + len(blur_sigmas)
    deeplift = DeepLift(model)

    def attribute(xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        refs = references(xs, blur_sigmas)
        inputs = xs.unsqueeze(1).expand_as(refs).reshape(-1, *xs.shape[1:])
        out = deeplift.attribute(
            inputs.contiguous(memory_format=FAST_LAYOUT),
            baselines=refs.reshape(-1, *xs.shape[1:]).contiguous(memory_format=FAST_LAYOUT),
            target=ts.repeat_interleave(count),
        )
        return out.reshape(xs.shape[0], count, *xs.shape[1:]).mean(dim=1)

    return in_chunks(
        attribute,
        x,
        target,
        chunk=images_per_chunk(batch_size, 2 * count),  # DeepLIFT runs inputs and refs together
        channels=x.shape[1],
    )


def gradient_shap(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    blur_sigmas: BlurSigmas = (2.0, 4.0, 8.0),
    samples: PositiveInt = 32,
    noise_std: NonNegativeFloat = 0.0,
    seed: int = 0,
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """Expected gradients over each image's references (GradientSHAP), ``(N, C, H, W)``."""
    check_noise("gradient-shap", samples, noise_std)
    samples = int(samples)
    method = InputBaselineXGradient(model)

    def attribute(xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        refs = references(xs, blur_sigmas)
        pick = torch.arange(samples, device=xs.device) % refs.shape[1]
        refs = refs[:, pick].reshape(-1, *xs.shape[1:]).contiguous(memory_format=FAST_LAYOUT)
        inputs = xs.repeat_interleave(samples, dim=0).contiguous(memory_format=FAST_LAYOUT)
        if noise_std > 0:  # drawn on the CPU: the same noise on every device
            noise = torch.randn_like(inputs, device="cpu").to(inputs.device)
            inputs = inputs + float(noise_std) * noise
        out = method.attribute(inputs, baselines=refs, target=ts.repeat_interleave(samples))
        return out.reshape(xs.shape[0], samples, *xs.shape[1:]).mean(dim=1)

    with seeded(seed, x.device):
        return in_chunks(
            attribute,
            x,
            target,
            chunk=images_per_chunk(batch_size, samples),
            channels=x.shape[1],
        )


def specs() -> list[ExplainerSpec]:
    """DeepSHAP and GradientSHAP, for ``plugins.explainers`` to register."""
    return [
        explainer_spec(
            "deep-shap",
            deep_shap,
            RULES,
            "DeepLIFT averaged over black + blurred references (Lundberg & Lee 2017)",
        ),
        explainer_spec(
            "gradient-shap",
            gradient_shap,
            GRADIENT,
            "expected gradients over black + blurred references (Lundberg & Lee 2017)",
            batch_independent=False,
        ),
    ]
