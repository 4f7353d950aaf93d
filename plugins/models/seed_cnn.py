"""The small CNN of the source slides (``shared/seeds/002``), the MNIST model of the thesis.

Layers, exactly as in the source: conv 1->10 (k5), max-pool 2, ReLU, conv 10->20 (k5),
dropout, max-pool 2, ReLU, then fc 320->50, ReLU, dropout, fc 50->10; 21,840 parameters on
1x28x28 inputs. Two deliberate differences:

* the final ``Softmax`` of the source is dropped: the model returns logits, which is what
  ``cross_entropy`` expects and what attribution methods (gradients, Grad-CAM, SHAP) explain;
* it adapts to the dataset: input channels and class count come from the data, and inputs too
  small for two unpadded 5x5 convolutions (scikit-learn's 8x8 digits) get padding 2.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from benchmark.specs import ModelSpec
from plugins.models.bottleneck import LINEAR_HEAD


def _spatial(size: int, padding: int) -> int:
    """Side length after (conv k5 -> pool 2) twice."""
    for _ in range(2):
        size = (size + 2 * padding - 4) // 2
    return size


class SeedCNN(nn.Module):
    """``conv_layers`` then ``fc_layers``, named as in the source so checkpoints and the CAM
    target path (``conv_layers.3``, the second convolution) read the same."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], dropout: float) -> None:
        super().__init__()
        channels, height, width = input_shape
        padding = 0 if min(_spatial(height, 0), _spatial(width, 0)) >= 1 else 2
        if min(_spatial(height, padding), _spatial(width, padding)) < 1:
            raise ValueError(f"seed-cnn needs inputs of at least 4x4 pixels, got {input_shape}")
        self.conv_layers = nn.Sequential(
            nn.Conv2d(channels, 10, kernel_size=5, padding=padding),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=5, padding=padding),
            nn.Dropout(dropout),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        flat = 20 * _spatial(height, padding) * _spatial(width, padding)
        self.fc_layers = nn.Sequential(
            nn.Linear(flat, 50),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(50, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers(torch.flatten(self.conv_layers(x), 1))


def build_seed_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5,
) -> SeedCNN:
    """Model factory: the source CNN for ``input_shape`` ``(C, H, W)`` and ``num_classes``."""
    return SeedCNN(num_classes, tuple(input_shape), dropout=dropout)


DESCRIPTION = "CNN of the source slides: 2 conv (k5) + 2 fc, dropout; logits out"
# lrp: every nonlinearity is its own nn.ReLU / nn.MaxPool2d module, used once, and
# every leaf layer has a captum LRP / DeepLIFT rule (torch.flatten has no weights).
PROVIDES = frozenset({"differentiable", "conv", "lrp", LINEAR_HEAD})


def specs() -> list[ModelSpec]:
    """``seed-cnn``, for ``plugins.models`` to register."""
    return [
        ModelSpec(
            "seed-cnn",
            build_seed_cnn,
            DESCRIPTION,
            version="1",
            provides=PROVIDES,
            target_layer="conv_layers.3",
        )
    ]
