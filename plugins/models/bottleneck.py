"""The bottleneck of any built-in (or third-party) classifier, without asking it for one.

Debiasers that act on the representation (EnD, IRENE, bottleneck re-weighting) and the
multi-head debiaser need the feature vector the classifier reads and the classifier itself.
The contract every built-in model keeps is simple: its *last* ``nn.Linear`` (in module order)
is the classifier and is applied last, to a flat feature vector. Rather than make every model
implement a ``features()`` method, we find that layer and read its input with a forward hook,
so any model that ends in a linear layer works, including torchvision architectures.

A model that keeps this contract says so with the capability tag ``LINEAR_HEAD``; the debiasers
that read the bottleneck or replace the classifier require it, so the planner skips them, with a
reason, for a model that ends otherwise (a global-pooled convolution, a transformer's token).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

LINEAR_HEAD = "linear-head"
"""Tag of a model whose last ``nn.Linear`` is its classifier, applied last to flat features."""


def classifier_path(model: nn.Module) -> str:
    """``get_submodule`` path of the model's final linear layer (the classifier)."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer: debiasers that act on the "
            "bottleneck need a model whose last layer is a linear classifier"
        )
    return linear[-1]


def replace_classifier(model: nn.Module, head: nn.Module) -> nn.Module:
    """Put ``head`` where the final linear layer was (in place) and return the model."""
    path = classifier_path(model)
    parent_path, _, attribute = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attribute, head)
    return model


@contextmanager
def capture_bottleneck(model: nn.Module, layer: str | None = None) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward of ``model`` appends the classifier's input (``(B, D)``,
    gradients kept) to the yielded list; ``layer`` names the module whose input is read
    (default: the final linear layer)."""
    module = model.get_submodule(layer if layer is not None else classifier_path(model))
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].flatten(1))

    handle = module.register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def forward_with_features(
    model: nn.Module, x: torch.Tensor, layer: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, bottleneck features)`` from one forward pass."""
    with capture_bottleneck(model, layer) as captured:
        logits = model(x)
    if not captured:
        raise ValueError(f"{type(model).__name__}: the classifier was not called in forward")
    return logits, captured[-1]
