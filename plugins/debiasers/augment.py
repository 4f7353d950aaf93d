"""Data augmentation (``augment``): ERM on randomly flipped and rotated training images.

The seed report (``shared/seeds/000``, Que-2, "Data techniques for bias mitigation") trains
PyramidNet with ``RandomHorizontalFlip`` and ``RandomRotation`` "to make it more robust and
bias free"; the report gives no parameters. Its code (github.com/nirbhay-design/sem-8-assn,
``DAI/DAI_Assn2/que2_pyramidnet.py``, ``data()``) uses ``RandomHorizontalFlip(0.6)`` then
``RandomRotation(10)``: rotation angle uniform in [-10, 10] degrees, nearest-neighbour
sampling, zero fill, about the image centre (torchvision's defaults). We keep ``degrees=10``
and torchvision's default flip probability ``flip_p=0.5`` (the report text names the bare
transform; pass ``flip_p=0.6`` to match the code exactly).

Why by hand rather than ``torchvision.transforms``: those draw one random angle per call, so a
batch would need a per-image Python loop. Here the whole batch is transformed at once: a flip
mask, then one ``affine_grid`` / ``grid_sample`` with a per-sample rotation matrix (the same
inverse mapping as ``torchvision.transforms.v2.functional.rotate``; the tests compare the two).
Randomness comes from a generator seeded by the job's seed, so reruns are identical and the
batch order (drawn by the shared loop) does not shift when augmentation is switched on.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from pydantic import Field, NonNegativeFloat
from torch import nn

from benchmark.kit.seeding import stream_seed
from benchmark.kit.training import Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.debiasers.declaring import debiaser_spec

_STREAM = 0xA06  # separates the augmentation random stream from the loop's batch order


def rotate_batch(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` ``(N, C, H, W)`` counter-clockwise by its own angle.

    ``degrees`` is ``(N,)``. Nearest-neighbour sampling and zero fill outside the image, like
    torchvision's ``rotate`` defaults. The sampling grid maps each output pixel back to the
    input: in pixel coordinates about the centre (x right, y down) the inverse of a
    counter-clockwise rotation by ``a`` is ``[[cos a, -sin a], [sin a, cos a]]``; converted to
    ``affine_grid``'s normalised coordinates, the off-diagonal terms pick up the aspect ratio
    (``H/W`` and ``W/H``) so non-square images rotate rigidly.
    """
    n, _, h, w = x.shape
    radians = degrees.to(device=x.device, dtype=x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (h / w), zero], dim=1),
            torch.stack([sin * (w / h), cos, zero], dim=1),
        ],
        dim=1,
    )
    grid = nn.functional.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return nn.functional.grid_sample(
        x, grid, mode="nearest", padding_mode="zeros", align_corners=False
    )


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, flip_p: float = 0.5, degrees: float = 10.0
) -> torch.Tensor:
    """Random horizontal flip (probability ``flip_p``) then random rotation (uniform in
    ``[-degrees, degrees]``), drawn independently per image from ``generator`` (CPU)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < flip_p
    angles = (torch.rand(n, generator=generator) * 2.0 - 1.0) * degrees
    flip = flip.to(x.device).view(n, 1, 1, 1)
    out = torch.where(flip, x.flip(-1), x)
    if degrees != 0:
        out = rotate_batch(out, angles)
    return out


def train_augment(
    model: nn.Module,
    data: Split,
    *,
    seed: int,
    flip_p: Annotated[float, Field(ge=0, le=1)] = 0.5,
    degrees: NonNegativeFloat = 10.0,
    **training: Any,
) -> nn.Module:
    """Cross-entropy on a freshly augmented copy of every batch; returns the model in eval mode.

    Defaults: ``flip_p=0.5``, ``degrees=10`` (the seed report's code), and the shared training
    defaults (Adam, lr 1e-3, 5 epochs, batch 64). Test images are never augmented.
    """
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip_p must be in [0, 1], got {flip_p!r}")
    if degrees < 0:
        raise ValueError(f"degrees must be non-negative, got {degrees!r}")
    generator = torch.Generator().manual_seed(stream_seed(seed, _STREAM))

    def step(batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            x = augment_batch(batch.x, generator, flip_p=flip_p, degrees=degrees)
        return nn.functional.cross_entropy(model(x), batch.y)

    return train_loop(model, data, step, seed=seed, **training)


DESCRIPTION = "ERM with random horizontal flip and random rotation (+-10 deg) per batch"


def specs() -> list[DebiaserSpec]:
    """The ``augment`` debiaser, for ``plugins.debiasers`` to register."""
    return [debiaser_spec("augment", train_augment, DESCRIPTION)]
