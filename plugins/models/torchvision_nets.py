"""torchvision's ResNet-18 and ShuffleNet V2, randomly initialised, with a stem for small images.

Both architectures were designed for 224x224 ImageNet crops: a strided stem (ResNet: 7x7 conv
stride 2 + max-pool; ShuffleNet: 3x3 conv stride 2 + max-pool) divides the side by 4 before the
first stage and the stages by 8 more, so a 28x28 digit would reach the last stage as a single
pixel (useless for Grad-CAM) or less. We replace only the stem, as CIFAR versions of these
networks do: the first convolution becomes a 3x3 convolution over the dataset's channels (1 or
3) with stride ``stem_stride``, and the max-pool is kept only if ``maxpool`` is true. The rest is
torchvision's: ShuffleNet is torchvision's model (``weights=None``: nothing is downloaded) with
the new stem; ResNet-18 is torchvision's ``BasicBlock`` in torchvision's layout, names and
initialisation, assembled here only to add a width parameter (see below). Random init, and
``fc`` stays the last ``nn.Linear``, applied last to the pooled feature vector (the bottleneck
contract of ``plugins.models.bottleneck``).

Defaults and measured speed: one epoch of ``benchmark.kit.training.train_loop`` (4,000 images
of 3x28x28, batch 64, Adam, cross-entropy) on one thread of the benchmark's 2-core CPU shared
with other jobs (two threads were 3-7x slower there); seed-cnn, for reference: 0.7 s.

* ``resnet18``: ``width=32`` (half the paper's 64-128-256-512, so 32-64-128-256),
  ``stem_stride=2``, no max-pool: 28 -> 14 (stage 1) -> 7 -> 4 -> 2 (stage 4), a 2x2 map for
  Grad-CAM; 31 MMAC per image, 9.4 to 12.9 s per epoch over three runs. The full width costs
  4x (122 MMAC, 34 s) and the CIFAR stem (``stem_stride=1``, as in He et al. 2016's CIFAR
  nets) another 4x (0.46 GMAC at width 64): faithful but unaffordable for ~300 trainings.
  ``width: 16`` takes 4.1 s, ``width: 24`` 7.0 s. torchvision's ``resnet18`` hard-codes the
  widths, so :class:`ResNet18` assembles torchvision's ``BasicBlock`` in its layout.
* ``shufflenet``: ``shufflenet_v2_x0_5`` (Ma et al., ECCV 2018), ``stem_stride=2``, no max-pool:
  28 -> 14 -> 7 -> 4 -> 2, a 2x2 map at ``conv5``; 2.5 MMAC per image, 4.5 s per epoch. We pick
  the 0.5x width because ShuffleNet's role in a fairness suite is "a different, light
  architecture", not ImageNet accuracy, and x1.0 costs twice as much (10.5 MMAC, 9.9 s) for
  digit-sized inputs that do not need it. ShuffleNet's depthwise convolutions and channel
  shuffles run far below the CPU's peak, so the resolution matters more than the MACs: the
  ``stem_stride=1`` stem (a 4x4 CAM map) takes 12 to 15 s, ``stem_stride=1, maxpool=true``
  5.9 s. ``width`` selects 0.5, 1.0, 1.5 or 2.0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import PositiveInt
from torch import nn

from benchmark.specs import ModelSpec
from plugins.models.backbones import backbone_spec, kaiming_conv_bn_

if TYPE_CHECKING:
    import torchvision

# torchvision is imported where a network is built, not here: importing it pulls in
# torch._dynamo, seconds that every `bench` command and every worker process would pay

SHUFFLENET_WIDTHS = {
    0.5: "shufflenet_v2_x0_5",
    1.0: "shufflenet_v2_x1_0",
    1.5: "shufflenet_v2_x1_5",
    2.0: "shufflenet_v2_x2_0",
}
"""ShuffleNet V2 width multipliers torchvision builds (stage widths 48/116/176/244 at stage 2)."""


def _check_stem(
    name: str,
    input_shape: tuple[int, int, int],
    stem_stride: int,
    maxpool: bool,
    stages_stride: int,
) -> None:
    """Clear errors for a bad stem or an input too small for the network's total stride.

    Padded stride-2 layers never produce an empty map (a 1x1 map stays 1x1), so "too small" is
    a choice: the input side must be at least the network's total stride, i.e. the last map is
    at least 1 pixel before rounding up; below that the last stages mostly convolve padding.
    """
    if stem_stride not in (1, 2):
        raise ValueError(f"{name}: stem_stride must be 1 or 2, got {stem_stride!r}")
    channels, height, width = input_shape
    if channels < 1:
        raise ValueError(f"{name}: input needs at least one channel, got {tuple(input_shape)}")
    total = stem_stride * (2 if maxpool else 1) * stages_stride
    if min(height, width) < total:
        raise ValueError(
            f"{name} (stem_stride={stem_stride}, maxpool={maxpool}) needs inputs of at least "
            f"{total}x{total} pixels, got {tuple(input_shape)}"
        )


def _small_stem_conv(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d:
    """3x3 convolution, no bias (a BatchNorm follows), Kaiming-normal as torchvision's ResNet."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ResNet18(nn.Module):
    """torchvision's ResNet-18, layer for layer, with a small-image stem and a width parameter.

    The attribute names, the forward pass and the initialisation are those of
    ``torchvision.models.ResNet`` and the residual units are torchvision's own ``BasicBlock``;
    at ``width=64`` every weight has the shape of ``torchvision.models.resnet18`` except the stem
    convolution (a test checks this). We assemble the stages ourselves only because torchvision
    hard-codes the 64-128-256-512 widths.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        width: int,
        stem_stride: int,
        maxpool: bool,
    ) -> None:
        super().__init__()
        self.conv1 = _small_stem_conv(input_shape[0], width, stem_stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if maxpool else nn.Identity()
        self.layer1 = _resnet_stage(width, width, stride=1)
        self.layer2 = _resnet_stage(width, 2 * width, stride=2)
        self.layer3 = _resnet_stage(2 * width, 4 * width, stride=2)
        self.layer4 = _resnet_stage(4 * width, 8 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)
        kaiming_conv_bn_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet_stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Two ``BasicBlock``s; the first projects the shortcut (1x1 conv + BN) when the shape
    changes, as torchvision's ``ResNet._make_layer`` does."""
    from torchvision.models.resnet import BasicBlock

    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride, downsample),
        BasicBlock(out_channels, out_channels),
    )


def build_resnet18(
    num_classes: int,
    input_shape: tuple[int, int, int],
    width: PositiveInt = 32,
    stem_stride: Literal[1, 2] = 2,
    maxpool: bool = False,
) -> ResNet18:
    """ResNet-18 (He et al., CVPR 2016), random init, 3x3 stem; Grad-CAM layer ``layer4.1.conv2``.

    Stage widths ``width * (1, 2, 4, 8)`` (64 in the paper), strides 1, 2, 2, 2, two basic
    blocks per stage.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"resnet18: width must be a positive integer, got {width!r}")
    _check_stem("resnet18", input_shape, stem_stride, maxpool, stages_stride=8)
    return ResNet18(num_classes, tuple(input_shape), width, stem_stride, maxpool)


def build_shufflenet(
    num_classes: int,
    input_shape: tuple[int, int, int],
    width: Literal[0.5, 1.0, 1.5, 2.0] = 0.5,
    stem_stride: Literal[1, 2] = 2,
    maxpool: bool = False,
) -> torchvision.models.ShuffleNetV2:
    """ShuffleNet V2 (Ma et al., ECCV 2018), random init, small-image stem; Grad-CAM ``conv5.0``.

    ``conv5`` is the 1x1 convolution to 1,024 channels after the last stage; its output is the
    map the global pooling averages, the usual CAM layer of this network.
    """
    if float(width) not in SHUFFLENET_WIDTHS:
        raise ValueError(f"shufflenet: width must be one of {sorted(SHUFFLENET_WIDTHS)}, {width!r}")
    _check_stem("shufflenet", input_shape, stem_stride, maxpool, stages_stride=8)
    import torchvision

    builder = getattr(torchvision.models, SHUFFLENET_WIDTHS[float(width)])
    model = builder(weights=None, num_classes=num_classes)
    stem: nn.Sequential = model.conv1
    stem[0] = _small_stem_conv(input_shape[0], stem[0].out_channels, stem_stride)
    if not maxpool:
        model.maxpool = nn.Identity()
    return model


RESNET18 = "ResNet-18 (torchvision BasicBlock), half width, 3x3 stem; random init"
SHUFFLENET = "torchvision ShuffleNet V2 x0.5, 3x3 stem without max-pool; random init"


def specs() -> list[ModelSpec]:
    """``resnet18`` and ``shufflenet``, for ``plugins.models`` to register."""
    return [
        backbone_spec("resnet18", build_resnet18, "layer4.1.conv2", RESNET18),
        backbone_spec("shufflenet", build_shufflenet, "conv5.0", SHUFFLENET),
    ]
