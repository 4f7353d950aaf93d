"""Occlusion: how much the target logit drops when a square patch is greyed out.

Zeiler & Fergus 2014 ("Visualizing and understanding convolutional networks", section 4.2)
slide a grey square over the image and record the classifier's response; captum's
``Occlusion`` does exactly that, with every pixel's attribution the mean drop over the
windows that cover it. The window spans all channels; ``baseline`` is the fill value (black
by default, MNIST's background). Windows that would not fit at the right or bottom edge are
not evaluated by captum, so with the default window 4 / stride 2 on 28x28 images every pixel
is covered (``(28 - 4) / 2 + 1 = 13`` positions per side, 169 forward passes per image).
"""

from __future__ import annotations

import torch
from captum.attr import Occlusion
from pydantic import PositiveInt
from torch import nn

from benchmark.kit.batching import attribute_in_chunks, images_per_chunk
from benchmark.specs import ExplainerSpec
from plugins.explainers.capabilities import NOTHING, explainer_spec


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    window: PositiveInt = 4,
    stride: PositiveInt = 2,
    baseline: float = 0.0,
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """Occlusion attributions (drop of the target logit), ``(N, C, H, W)``."""
    _, c, h, w = x.shape
    window, stride = int(window), int(stride)
    if not 1 <= window <= min(h, w) or stride < 1:
        raise ValueError(
            f"occlusion: need 1 <= window <= min(H, W) = {min(h, w)} and stride >= 1, "
            f"got window={window}, stride={stride}"
        )
    positions = ((h - window) // stride + 1) * ((w - window) // stride + 1)
    # Whole images per chunk and few windows per pass: captum builds each window's masked batch
    # in a Python loop, so fewer, larger chunks keep that loop short.
    chunk = min(max(1, x.shape[0]), images_per_chunk(batch_size, 1))
    return attribute_in_chunks(
        Occlusion(model),
        x,
        target,
        batch_size=batch_size,
        grad=False,
        sliding_window_shapes=(c, window, window),
        strides=(c, stride, stride),
        baselines=float(baseline),
        perturbations_per_eval=max(1, min(positions, batch_size // chunk)),
    )


def specs() -> list[ExplainerSpec]:
    """Occlusion, for ``plugins.explainers`` to register."""
    return [
        explainer_spec(
            "occlusion",
            occlusion,
            NOTHING,
            "logit drop under a sliding black patch (Zeiler & Fergus 2014)",
        )
    ]
