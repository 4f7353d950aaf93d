"""SimpleConvNet: the Colored-MNIST backbone of ReBias (Bahng et al., ICML 2020) and LfF.

Reference: ``clovaai/rebias`` ``models/mnist_models.py``: four ``Conv2d(k=7, padding=3)``
layers with 16, 32, 64 and 128 channels, each followed by ``BatchNorm2d`` and ``ReLU``, then
global average pooling and one linear classifier (128 -> classes); convolutions are
Kaiming-normal initialised (``fan_out``), BatchNorm weights 1 and biases 0. We keep that block,
layer names that say what they are (``features.conv4`` is the Grad-CAM layer) and the bottleneck
contract (``fc`` is the last ``nn.Linear`` and reads the pooled 128-d vector).

Speed, and the one deliberate difference. The reference keeps the full 28x28 resolution through
all four 7x7 layers: 0.41 GMAC per 3x28x28 image, and one epoch (4,000 images of 3x28x28,
batch 64, Adam, cross-entropy, ``benchmark.kit.training.train_loop``) took 88 s on one thread of
the benchmark's 2-core CPU shared with other jobs, far too slow for a suite of ~300 trainings.
The default ``strides`` are therefore ``[1, 2, 2, 1]``: the second and third convolutions halve
the map (28 -> 14 -> 7), which keeps the kernel size, the widths, the depth, the parameter count
and a 7x7 map for Grad-CAM, and cuts the cost 13x (31 MMAC per image; 6.3 to 8.9 s per epoch
measured over three runs, seed-cnn 0.7 s in the same runs). ``strides: [1, 1, 1, 1]`` restores
the reference network exactly, for runs that can afford it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import Field, PositiveInt
from torch import nn

from benchmark.specs import ModelSpec
from plugins.models.backbones import backbone_spec, kaiming_conv_bn_

FourInts = Annotated[tuple[PositiveInt, ...], Field(min_length=4, max_length=4)]
"""One positive integer per convolution."""
DEFAULT_CHANNELS = (16, 32, 64, 128)
"""Widths of the four convolutions in ReBias' ``SimpleConvNet``."""
DEFAULT_STRIDES = (1, 2, 2, 1)
"""Our speed default (see the module docstring); the reference is ``(1, 1, 1, 1)``."""


class SimpleConvNet(nn.Module):
    """``features`` (conv-BN-ReLU x 4) -> global average pool -> ``fc``; returns logits."""

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        channels: Sequence[int],
        kernel_size: int,
        strides: Sequence[int],
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        strides = [int(s) for s in strides]
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"simple-conv: channels must be 4 positive widths, got {channels}")
        if len(strides) != 4 or min(strides) < 1:
            raise ValueError(f"simple-conv: strides must be 4 positive ints, got {strides}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"simple-conv: kernel_size must be odd and positive, {kernel_size}")
        in_channels, height, width = input_shape
        # As for the other backbones, the side must be at least the total stride (below that
        # the last layers mostly convolve padding) and larger than the padding (a side of at
        # most 3 makes every 7x7 window mostly zeros).
        minimum = max(kernel_size // 2 + 1, math.prod(strides))
        if min(height, width) < minimum:
            raise ValueError(
                f"simple-conv needs inputs of at least {minimum}x{minimum} pixels "
                f"(kernel {kernel_size}, strides {strides}), got {tuple(input_shape)}"
            )
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (width_out, stride) in enumerate(zip(channels, strides, strict=True), start=1):
            layers[f"conv{i}"] = nn.Conv2d(
                in_channels, width_out, kernel_size, stride=stride, padding=kernel_size // 2
            )
            layers[f"bn{i}"] = nn.BatchNorm2d(width_out)
            layers[f"relu{i}"] = nn.ReLU()
            in_channels = width_out
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], num_classes)
        kaiming_conv_bn_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build_simple_conv(
    num_classes: int,
    input_shape: tuple[int, int, int],
    channels: FourInts = DEFAULT_CHANNELS,
    kernel_size: PositiveInt = 7,
    strides: FourInts = DEFAULT_STRIDES,
) -> SimpleConvNet:
    """Model factory: SimpleConvNet for ``input_shape`` ``(C, H, W)`` and ``num_classes``;
    ``kernel_size`` must be odd."""
    return SimpleConvNet(num_classes, tuple(input_shape), channels, kernel_size, strides)


DESCRIPTION = "ReBias/LfF SimpleConvNet: 4 conv k7 + BN + ReLU (16-128), GAP, linear"


def specs() -> list[ModelSpec]:
    """``simple-conv``, for ``plugins.models`` to register."""
    return [
        backbone_spec("simple-conv", build_simple_conv, "features.conv4", DESCRIPTION),
    ]
