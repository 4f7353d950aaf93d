"""What the fairness backbones (simple-conv, resnet18, shufflenet, pyramidnet) share: their
capability tags and torchvision's ResNet initialisation.

torchvision's ``ResNet``, ReBias' ``SimpleConvNet`` and the reference PyramidNet all draw every
convolution Kaiming-normal (``fan_out``, ReLU gain, i.e. N(0, 2 / (k*k*out_channels))) and set
every BatchNorm to weight 1, bias 0. One function keeps the three identical: the same modules
visited in the same order draw the same numbers from the seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from benchmark.specs import ModelSpec
from plugins.models.bottleneck import LINEAR_HEAD

BACKBONE_TAGS = frozenset({"differentiable", "conv", LINEAR_HEAD})
"""Gradients flow, the last convolution is named for CAM, and a linear classifier ends it."""


def backbone_spec(
    name: str, factory: Callable[..., Any], target_layer: str, description: str
) -> ModelSpec:
    """The spec of a built-in fairness backbone: version 1, ``BACKBONE_TAGS``, params read
    from the factory's signature, ``target_layer`` its last convolution."""
    return ModelSpec(
        name=name,
        factory=factory,
        version="1",
        description=description,
        provides=BACKBONE_TAGS,
        target_layer=target_layer,
    )


def kaiming_conv_bn_(model: nn.Module) -> nn.Module:
    """Re-initialise ``model``'s ``Conv2d`` and ``BatchNorm2d`` layers in place (module order);
    other layers keep PyTorch's defaults. Returns the model."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model
