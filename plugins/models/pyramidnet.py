"""Additive PyramidNet (Han, Kim & Kim, CVPR 2017, "Deep Pyramidal Residual Networks").

Instead of doubling the width at each down-sampling stage, PyramidNet widens *every* residual
unit by the same amount, alpha / N over the N = 3n units of a ``depth = 6n + 2`` network with
basic blocks (paper eq. 2, additive widening), starting from 16 channels. Unit k (k = 1..N)
therefore has ``round(16 + k * alpha / N)`` output channels; the reference implementation
(``dyhan0920/PyramidNet-PyTorch``, ``PyramidNet.py``) accumulates the fractional width and
rounds it per unit, which is what :func:`pyramid_widths` computes (exactly, with fractions).

Each unit is the paper's final basic block: BN -> conv3x3 -> BN -> ReLU -> conv3x3 -> BN, with
no ReLU after the addition. The shortcut is the identity, zero-padded with the missing channels
(the paper prefers it to a projection shortcut), and a 2x2 average pool where the
unit down-samples (the first unit of stages 2 and 3). The pool uses ``ceil_mode`` so odd maps
match the padded strided convolution (7 -> 4, as a 28x28 input needs; the reference only sees
32x32 CIFAR images, whose maps stay even). After the last unit: BN -> ReLU -> global average pool ->
``fc``, the last ``nn.Linear`` applied to the flat feature vector (the bottleneck contract of
``plugins.models.bottleneck``). Convolutions are initialised N(0, 2 / (k*k*out_channels)), BN
weights 1 and biases 0, as in the reference.

Layout: ``conv1``/``bn1`` (stem), ``blocks`` (all units but the last), ``last_block``. The last
unit is kept apart so that its second convolution, the Grad-CAM layer, has the same path
(``last_block.conv2``) for every ``depth``: ``ModelSpec.target_layer`` is one fixed string.

Defaults and speed. The paper's CIFAR networks are deep (depth 110, alpha 48 to 270) and keep
the full resolution in the first stage. Here ``depth=20`` (n = 3 units per stage, widths 21 ..
64 with ``alpha=48``) and, unlike the paper, ``stem_stride=2``: the stem halves the image so the
three stages run at 14, 7 and 4 pixels (a 4x4 Grad-CAM map for 28x28 inputs). That is 14.5 MMAC
per 3x28x28 image, and one epoch of ``benchmark.kit.training.train_loop`` (4,000 images, batch
64, Adam, cross-entropy) took 6.3 to 6.7 s on one thread of the benchmark's 2-core CPU shared
with other jobs (seed-cnn: 0.7 s). The paper's stride-1 stem costs 4x (55 MMAC, 45 s per
epoch), depth 26 11.3 s, depth 14 4.3 s: ``stem_stride: 1`` and a larger ``depth`` are one
parameter away when a run can afford them.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

import torch
from pydantic import Field, NonNegativeFloat
from torch import nn
from torch.nn import functional as F

from benchmark.specs import ModelSpec
from plugins.models.backbones import backbone_spec, kaiming_conv_bn_

STEM_WIDTH = 16
"""Channels of the stem convolution, as in the paper and the reference (CIFAR)."""


def units_per_stage(depth: int) -> int:
    """``n`` of ``depth = 6n + 2`` (basic blocks: 2 convolutions per unit, 3 stages, stem + fc)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"pyramidnet: depth must be 6n + 2 with n >= 1 for basic blocks (8, 14, 20, 26, ...),"
            f" got {depth!r}"
        )
    return (depth - 2) // 6


def pyramid_widths(depth: int, alpha: float) -> list[int]:
    """Output channels of the 3n residual units: ``round(16 + k * alpha / (3n))``, k = 1..3n.

    Python's ``round`` (half to even), applied to the exact fraction, as the reference applies
    it to its running float width.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha >= 0:
        raise ValueError(f"pyramidnet: alpha must be a non-negative number, got {alpha!r}")
    units = 3 * units_per_stage(depth)
    step = Fraction(alpha) / units
    return [round(STEM_WIDTH + k * step) for k in range(1, units + 1)]


class PyramidBlock(nn.Module):
    """Basic pyramidal unit: BN-conv3x3-BN-ReLU-conv3x3-BN plus a zero-padded identity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("pyramidal units never narrow: out_channels < in_channels")
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.AvgPool2d(2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.relu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = self.shortcut(x)
        if self.extra_channels:
            # (left, right, top, bottom, front, back): new channels appended after the old ones
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return out + shortcut


class PyramidNet(nn.Module):
    """Stem conv-BN, 3n pyramidal units (down-sampling at units n and 2n), BN-ReLU-pool-fc."""

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        depth: int,
        alpha: float,
        stem_stride: int,
    ) -> None:
        super().__init__()
        widths = pyramid_widths(depth, alpha)
        n = units_per_stage(depth)
        if stem_stride not in (1, 2):
            raise ValueError(f"pyramidnet: stem_stride must be 1 or 2, got {stem_stride!r}")
        in_channels, height, width = input_shape
        # padded stride-2 layers never empty a map; as for the torchvision nets we ask the side to
        # be at least the total stride (below that the last stage mostly convolves padding)
        minimum = 4 * stem_stride
        if min(height, width) < minimum:
            raise ValueError(
                f"pyramidnet (stem_stride={stem_stride}) needs inputs of at least "
                f"{minimum}x{minimum} pixels, got {tuple(input_shape)}"
            )
        self.conv1 = nn.Conv2d(
            in_channels, STEM_WIDTH, 3, stride=stem_stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(STEM_WIDTH)
        units = []
        previous = STEM_WIDTH
        for k, channels in enumerate(widths):
            stride = 2 if k in (n, 2 * n) else 1
            units.append(PyramidBlock(previous, channels, stride))
            previous = channels
        self.blocks = nn.Sequential(*units[:-1])
        self.last_block = units[-1]
        self.bn_final = nn.BatchNorm2d(previous)
        self.relu_final = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        kaiming_conv_bn_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last_block(self.blocks(self.bn1(self.conv1(x))))
        x = self.pool(self.relu_final(self.bn_final(x)))
        return self.fc(torch.flatten(x, 1))


def build_pyramidnet(
    num_classes: int,
    input_shape: tuple[int, int, int],
    depth: Annotated[int, Field(ge=8)] = 20,
    alpha: NonNegativeFloat = 48,
    stem_stride: Literal[1, 2] = 2,
) -> PyramidNet:
    """Model factory: additive PyramidNet with basic blocks for ``(C, H, W)`` inputs;
    ``depth`` must be ``6n + 2``."""
    return PyramidNet(num_classes, tuple(input_shape), depth, alpha, stem_stride)


DESCRIPTION = "additive PyramidNet (Han+ 2017), basic blocks, depth 20, alpha 48"


def specs() -> list[ModelSpec]:
    """``pyramidnet``, for ``plugins.models`` to register."""
    return [
        backbone_spec("pyramidnet", build_pyramidnet, "last_block.conv2", DESCRIPTION),
    ]
