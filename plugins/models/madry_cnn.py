"""The MNIST network of Madry, Makelov, Schmidt, Tsipras & Vladu (ICLR 2018), the model behind
the last frozen MNIST robustness table (the AutoAttack README at Linf eps 0.3: 98.53 % clean,
89.62 % reported, 88.50 % under AutoAttack).

Reference: ``MadryLab/mnist_challenge`` ``model.py``: conv 5x5 with 32 filters (SAME padding),
ReLU, max-pool 2; conv 5x5 with 64 filters, ReLU, max-pool 2; fully connected 1024, ReLU;
linear to 10 logits. ``widths`` gives the two convolutions' filters and the hidden layer's
units; the default is the reference's ``(32, 64, 1024)``. The robustness suite trains it at
half width ``(16, 32, 512)`` to fit adversarial training on two CPU cores, and says so; the
layer structure, the SAME padding and the 7x7 map before the classifier are the reference's
on 28x28 inputs (and it adapts to other sizes: 56x28 block-mnist gives a 14x7 map).

It is the suite's "larger model" beside the 21,840-parameter seed-cnn: Madry et al. report
that capacity is what lets adversarial training succeed at eps 0.3 (their Fig. 4), so the two
models side by side test that claim at this scale.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, PositiveInt
from torch import nn

from benchmark.specs import ModelSpec
from plugins.models.bottleneck import LINEAR_HEAD

Widths = Annotated[tuple[PositiveInt, ...], Field(min_length=3, max_length=3)]
REFERENCE_WIDTHS = (32, 64, 1024)


class MadryCNN(nn.Module):
    """``features`` (conv-ReLU-pool x 2) -> ``hidden`` (fc-ReLU) -> ``fc``; returns logits."""

    def __init__(
        self, num_classes: int, input_shape: tuple[int, int, int], widths: tuple[int, ...]
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        if height < 4 or width < 4:
            raise ValueError(f"madry-cnn needs inputs of at least 4x4 pixels, got {input_shape}")
        first, second, hidden = widths
        self.features = nn.Sequential(
            nn.Conv2d(channels, first, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = second * (height // 4) * (width // 4)
        self.hidden = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU())
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(torch.flatten(self.features(x), 1)))


def build_madry_cnn(
    num_classes: int,
    input_shape: tuple[int, int, int],
    widths: Widths = REFERENCE_WIDTHS,
) -> MadryCNN:
    """Model factory: Madry et al.'s MNIST network with ``widths`` (conv1, conv2, hidden)."""
    return MadryCNN(num_classes, tuple(input_shape), tuple(widths))


DESCRIPTION = "Madry et al. 2018's MNIST CNN: conv 32 / 64 (k5, SAME) + pool, fc 1024; logits out"
# lrp: every nonlinearity is its own module, used once; every leaf layer has a captum rule
PROVIDES = frozenset({"differentiable", "conv", "lrp", LINEAR_HEAD})


def specs() -> list[ModelSpec]:
    """``madry-cnn``, for ``plugins.models`` to register."""
    return [
        ModelSpec(
            "madry-cnn",
            build_madry_cnn,
            DESCRIPTION,
            version="1",
            provides=PROVIDES,
            target_layer="features.3",
        )
    ]
