"""The small Keras CNN of the counterfactual-explanation report (``shared/seeds/002``, "Model
details": 98.6 % on MNIST, 88.71 % on Fashion-MNIST in its TensorFlow 2 version).

Layers, as the report's Keras summary lists them: Conv2D 64 (kernel 2, padding ``same``) +
ReLU, max-pool 2, dropout, Conv2D 32 (kernel 2, ``same``) + ReLU, max-pool 2, dropout,
flatten, Dense 256 + ReLU, dropout, Dense ``num_classes``; 412,778 parameters on 1x28x28 with
10 classes (``tests/test_keras_cnn.py`` counts them). PyTorch's ``padding="same"`` pads an even
kernel as TensorFlow does (the extra row and column at the bottom and right). Deliberate
differences:

* no final softmax: the model returns logits, like every model here (``cross_entropy`` and
  the attribution methods want them);
* flatten is ``torch.flatten`` over ``(C, H, W)``, not Keras' channels-last order: the same
  layer up to a fixed permutation of the dense layer's inputs, which a fresh model never sees;
* it adapts to the data: input channels, height and width (the dense layer's width follows
  ``32 * (H // 4) * (W // 4)``) and the class count; ``dropout`` is one rate for all three
  dropout layers (the report does not give its rates; 0.3 by default).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from benchmark.specs import ModelSpec
from plugins.models.bottleneck import LINEAR_HEAD


class KerasCNN(nn.Module):
    """``features`` (two conv-ReLU-pool-dropout blocks) -> ``classifier`` (dense-ReLU-dropout,
    dense); the Grad-CAM target is the second convolution, ``features.4``."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], dropout: float) -> None:
        super().__init__()
        channels, height, width = input_shape
        if height < 4 or width < 4:
            raise ValueError(f"keras-cnn needs inputs of at least 4x4 pixels, got {input_shape}")
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, kernel_size=2, padding="same"),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(64, 32, kernel_size=2, padding="same"),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
        )
        flat = 32 * (height // 4) * (width // 4)
        self.classifier = nn.Sequential(
            nn.Linear(flat, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def build_keras_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.3,
) -> KerasCNN:
    """Model factory: the report's Keras CNN for ``input_shape`` ``(C, H, W)``."""
    return KerasCNN(num_classes, tuple(input_shape), dropout=dropout)


DESCRIPTION = "Keras CNN of the counterfactual report: conv 64 / 32 (k2, same) + pool, fc 256"
# lrp: every nonlinearity is its own nn.ReLU / nn.MaxPool2d module, used once, and every leaf
# layer has a captum LRP / DeepLIFT rule (torch.flatten has no weights); linear-head: the
# last nn.Linear is the classifier, applied last to the flat features.
PROVIDES = frozenset({"differentiable", "conv", "lrp", LINEAR_HEAD})


def specs() -> list[ModelSpec]:
    """``keras-cnn``, for ``plugins.models`` to register."""
    return [
        ModelSpec(
            "keras-cnn",
            build_keras_cnn,
            DESCRIPTION,
            version="1",
            provides=PROVIDES,
            target_layer="features.4",
        )
    ]
