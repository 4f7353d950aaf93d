"""Run an attribution method over a large batch in bounded chunks, without side effects.

Every built-in explainer goes through :func:`in_chunks` (or :func:`attribute_in_chunks`, the
same for a captum method) so the explainer contract of ``benchmark.specs`` holds the same way
everywhere, and a third-party explainer gets it by using them too: the caller's ``x`` is never
modified (each chunk is a detached copy, because captum flips ``requires_grad`` on the tensors
it receives), gradients are enabled even inside an outer ``torch.no_grad()`` (an evaluator may
call us from one), and memory is bounded by ``batch_size`` model evaluations per pass whatever
the method multiplies the batch by (integration steps, noise samples, coalitions, occlusion
windows). Small passes are faster on CPU (the activations stay in cache), hence the built-ins'
default of 512 evaluations per pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

Attribute = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``attribute(x_chunk, target_chunk) -> attributions of the chunk``."""

FAST_LAYOUT = torch.channels_last
"""Memory layout of the copies handed to the model. oneDNN convolutions on CPU run about twice
as fast, forward and backward, on channels-last inputs; values are the same up to float
rounding, so a method that builds its own batches (references, perturbed copies) should lay
them out this way too, to get the numbers :func:`in_chunks` would."""


class CaptumMethod(Protocol):
    """Anything with captum's ``attribute(inputs, target=..., **options)`` (``Saliency``,
    ``IntegratedGradients``, ``NoiseTunnel``, ``Occlusion``, ``GuidedGradCam``, ...)."""

    def attribute(self, inputs: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor: ...


def images_per_chunk(batch_size: int, evaluations_per_image: int) -> int:
    """How many images fit in one pass of ``batch_size`` model evaluations."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return max(1, int(batch_size) // max(1, int(evaluations_per_image)))


def in_chunks(
    attribute: Attribute,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    chunk: int,
    channels: int,
    grad: bool = True,
) -> torch.Tensor:
    """``attribute(x_chunk, target_chunk)`` over ``x`` in chunks of ``chunk`` images.

    ``channels`` is the number of attribution channels (1 or C), only needed to shape the
    answer for an empty batch. ``grad=False`` runs under ``torch.no_grad()`` (perturbation
    methods); otherwise gradients are enabled. Captum's warnings about the hooks it sets and
    removes on the model, and about setting ``requires_grad`` on our private copies, are
    silenced: they are expected and say nothing about the result.
    """
    n, _, height, width = x.shape
    if n == 0:
        return x.new_zeros((0, channels, height, width), dtype=torch.float32)
    target = torch.as_tensor(target, device=x.device).long().reshape(-1)
    if target.shape[0] != n:
        raise ValueError(f"target has {target.shape[0]} entries for a batch of {n} images")
    pieces = []
    with warnings.catch_warnings(), torch.set_grad_enabled(grad):
        for message in (".*did not already require gradients.*", ".*hooks.*", ".*non-linear.*"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        for start in range(0, n, chunk):
            piece = x[start : start + chunk].detach().clone(memory_format=FAST_LAYOUT)
            out = attribute(piece, target[start : start + chunk])
            pieces.append(out.detach().to(torch.float32).contiguous())
    return torch.cat(pieces)


def attribute_in_chunks(
    method: CaptumMethod,
    x: torch.Tensor,
    target: torch.Tensor,
    /,
    *,
    batch_size: int,
    per_image: int = 1,
    channels: int | None = None,
    grad: bool = True,
    **options: Any,
) -> torch.Tensor:
    """``method.attribute(x_chunk, target=target_chunk, **options)`` through :func:`in_chunks`.

    Most captum methods are used exactly this way, so an explainer says only what differs:
    the method, its options, and how many model evaluations it spends on one image
    (``per_image``: integration steps, noise samples), which sets the chunk size from
    ``batch_size``. ``channels`` defaults to the input's (captum keeps the input's shape).
    The first three are positional-only, so an option may be called ``method`` (integrated
    gradients' quadrature rule).
    """
    return in_chunks(
        lambda xs, ts: method.attribute(xs, target=ts, **options),
        x,
        target,
        chunk=images_per_chunk(batch_size, per_image),
        channels=x.shape[1] if channels is None else channels,
        grad=grad,
    )


def target_logits(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The logit of each image's target class, ``(N,)``."""
    return model(x).gather(1, target.reshape(-1, 1)).squeeze(1)
