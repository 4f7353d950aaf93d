"""The batched engine behind the perturbation-based faithfulness evaluators.

Pixel flipping (Bach et al. 2015), RISE insertion / deletion (Petsiuk et al. 2018) and region
perturbation (Samek et al. 2017) all do the same thing: rank the pixels of each image by its
attribution map, switch more and more of them from a *start* image to a *finish* image, and
record the model's output for the target class after each step. Their reference
implementations (Quantus ``PixelFlipping`` / ``RegionPerturbation``, RISE's ``CausalMetric``)
run one Python step at a time, each step one model call on one batch; :func:`switch_curve`
builds every perturbed copy of every image up front and feeds them to the model in chunks of
``batch_size`` copies under ``torch.no_grad()``, so the cost is the model's forward passes and
little else (``tests/benchmarks/test_faithfulness_speed.py`` times both).

Why by hand: captum has no perturbation curves, and Quantus's are the slow per-step loops
described above (and have defects listed in ``faithfulness.py`` / ``road.py``).

The ranking, its tie rule and the keyed noise of the random baselines are the plugin kit's
(``benchmark.kit.ranking``); the images, targets and attributions come from
``benchmark.kit.evaluation.explained_images``. What is left here is particular to these
metrics: the target's score, the step counts, the switching itself and the baselines (what a
removed pixel becomes), including RISE's blur.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from benchmark.kit.evaluation import evaluating
from benchmark.kit.ranking import image_keys, keyed_uniform

Output = Literal["probability", "logit"]
"""What a curve records of the target class: its softmax probability or its logit."""
Baseline = float | Literal["mean", "uniform", "blur"]
"""What a removed pixel becomes (see :func:`baseline_image`)."""


def target_scores(logits: torch.Tensor, target: torch.Tensor, output: Output) -> torch.Tensor:
    """``(B,)`` float64: softmax probability (``probability``) or logit of each row's target."""
    if output == "probability":
        values = logits.double().softmax(1)
    elif output == "logit":
        values = logits.double()
    else:
        raise ValueError(f"output must be 'probability' or 'logit', got {output!r}")
    return values.gather(1, target.view(-1, 1)).squeeze(1)


def step_counts(total: int, steps: int) -> torch.Tensor:
    """``(steps + 1,)`` int64: ``floor(k * total / steps)`` for ``k = 0..steps``.

    With ``total`` divisible by ``steps`` this is ``k * features_in_step`` (Quantus) and
    ``k * step`` (RISE); otherwise the steps are as even as integers allow.
    """
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be between 1 and {total}, got {steps}")
    return torch.arange(steps + 1, dtype=torch.int64) * total // steps


def switch_curve(
    model: nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    position: torch.Tensor,
    thresholds: torch.Tensor,
    target: torch.Tensor,
    *,
    output: Output = "probability",
    batch_size: int = 1024,
) -> torch.Tensor:
    """``(N, S)`` float64 model outputs along a perturbation path, all copies batched.

    Copy ``(i, s)`` shows ``finish[i]`` where ``position[i] < thresholds[s]`` and ``start[i]``
    elsewhere (all channels of a pixel together); its score is the target's softmax
    probability or logit (``output``). ``position`` is ``(N, H*W)``: the rank at which each
    pixel is switched (its place in the ranking, or its region's). The ``N * S`` copies are
    built chunk by chunk, ``batch_size`` copies per forward pass, so memory stays bounded
    while the model sees large batches, on the device of ``start``; the scores come back on
    the CPU. Neither input is modified.
    """
    n, _, h, w = start.shape
    if finish.shape != start.shape or position.shape != (n, h * w):
        raise ValueError(
            f"start {tuple(start.shape)}, finish {tuple(finish.shape)} and position "
            f"{tuple(position.shape)} do not fit together"
        )
    steps = len(thresholds)
    total = n * steps
    scores = torch.empty(total, dtype=torch.float64)
    grid = position.to(start.device).view(n, 1, h, w)
    thresholds = thresholds.to(start.device)
    finish, target = finish.to(start.device), target.to(start.device)
    with evaluating(model):
        for lo in range(0, total, batch_size):
            pair = torch.arange(lo, min(total, lo + batch_size))
            image, step = pair // steps, pair % steps
            switched = grid[image] < thresholds[step].view(-1, 1, 1, 1)
            copies = torch.where(switched, finish[image], start[image])
            scores[lo : lo + len(pair)] = target_scores(model(copies), target[image], output).cpu()
    return scores.view(n, steps)


def rise_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's blur kernel (``gkern`` in eclique/RISE ``evaluation.py``): an impulse at the
    centre of a ``size x size`` grid smoothed by ``scipy.ndimage.gaussian_filter(sigma)``.

    That filter reflects at the grid's edges, so for ``sigma`` comparable to ``size`` the
    Gaussian's tails fold back inside the window; the kernel still sums to 1.
    """
    from scipy import ndimage  # lazy: keeps `bench` start-up fast

    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ValueError(f"blur kernel needs an odd size >= 1 and sigma > 0, got {size}, {sigma}")
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    return torch.from_numpy(ndimage.gaussian_filter(impulse, sigma))


def rise_blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Each channel convolved with ``rise_kernel`` under zero padding (RISE's ``blur``)."""
    c = x.shape[1]
    kernel = rise_kernel(size, sigma).to(device=x.device, dtype=x.dtype)
    kernel = kernel.expand(c, 1, size, size)
    return torch.nn.functional.conv2d(x, kernel, padding=size // 2, groups=c)


def baseline_image(
    x: torch.Tensor,
    baseline: float | str,
    *,
    seed: int,
    stream: int = 0,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
) -> torch.Tensor:
    """What a removed pixel becomes, as a full ``(N, C, H, W)`` image of ``x``'s dtype.

    * a number: that value everywhere (``0.0`` is black for images in [0, 1]);
    * ``"mean"``: each image's per-channel mean (of the unperturbed image);
    * ``"uniform"``: per-pixel, per-channel U(0, 1) noise (Samek et al. 2017), keyed per image
      (``benchmark.kit.ranking.keyed_uniform``, stream ``stream``);
    * ``"blur"``: RISE's blurred copy of the image (``rise_blur``).
    """
    if isinstance(baseline, bool):
        raise ValueError(f"baseline must be a number, 'mean', 'uniform' or 'blur', got {baseline}")
    if isinstance(baseline, int | float):
        return torch.full_like(x, float(baseline))
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if baseline == "uniform":
        noise = keyed_uniform(image_keys(x, seed), stream, x.shape[1:])  # on the CPU
        return noise.to(device=x.device, dtype=x.dtype)
    if baseline == "blur":
        with torch.no_grad():
            return rise_blur(x, blur_kernel, blur_sigma)
    raise ValueError(f"baseline must be a number, 'mean', 'uniform' or 'blur', got {baseline!r}")
