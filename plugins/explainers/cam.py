"""Class activation maps of a convolutional layer: Grad-CAM, Grad-CAM++, Guided Grad-CAM.

The layer is the one the model author declared (``ModelSpec.target_layer``, a
``model.get_submodule`` path); the runner passes it as ``target_layer``. Maps are ReLU-ed at
the layer's resolution and upsampled bilinearly to the input size, as in the papers, and have
one channel.

* ``grad-cam``: channel weights are the spatial mean of the target logit's gradient
  (Selvaraju et al. 2017, "Grad-CAM", eqs. 1-2; captum ``LayerGradCam``).
* ``grad-cam++``: channel weights are a positively-weighted sum of gradients, with the
  closed-form coefficients of Chattopadhay et al. 2018 ("Grad-CAM++", eqs. 10 and 19, for an
  exponential of the score, which turns the higher derivatives into powers of the first):
  ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)``, ``w_k = sum_ij alpha_ij relu(g_ij)``. Captum
  does not implement it, so it is written here (the same formula as the reference
  ``pytorch-grad-cam``'s ``GradCAMPlusPlus``); ``tests/test_explainers.py`` checks it against
  a NumPy transcription of that reference and against hand-computed values.
* ``guided-grad-cam``: guided backpropagation times the upsampled Grad-CAM map (Selvaraju et
  al. 2017, section 3; captum ``GuidedGradCam``); it has the input's channels.

The three share their parameters and the layer look-up, so they are one function,
:func:`class_activation_map`, with ``method`` bound (``functools.partial``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from pydantic import PositiveInt
from torch import nn

from benchmark.kit.batching import attribute_in_chunks, images_per_chunk, in_chunks, target_logits
from benchmark.specs import ExplainerSpec
from plugins.explainers.capabilities import CAM, explainer_spec

CamMethod = Literal["grad-cam", "grad-cam++", "guided-grad-cam"]

LayerMap = Callable[[nn.Module, nn.Module, torch.Tensor, torch.Tensor, str], torch.Tensor]
"""``map(model, layer, x_chunk, target_chunk, layer_path) -> (n, 1, h, w)``: a one-channel
CAM at the layer's resolution, before upsampling."""


def resolve_layer(model: nn.Module, target_layer: str, method: str) -> nn.Module:
    """``model.get_submodule(target_layer)``, or a ``ValueError`` naming the missing path."""
    if not target_layer:
        raise ValueError(f"{method}: needs a target_layer (the model declares none)")
    try:
        return model.get_submodule(target_layer)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name]
        raise ValueError(
            f"{method}: target layer '{target_layer}' does not exist in "
            f"{type(model).__name__}; its submodules are {names}"
        ) from None


def _check_feature_maps(output: torch.Tensor, layer_path: str) -> None:
    if output.dim() != 4:
        raise ValueError(
            f"target layer '{layer_path}' must output feature maps (N, K, h, w), "
            f"got shape {tuple(output.shape)}"
        )


def _upsample(cam: torch.Tensor, size: tuple[int, int], layer_path: str) -> torch.Tensor:
    """Bilinear upsampling to the input size (captum's ``LayerAttribution.interpolate``)."""
    _check_feature_maps(cam, layer_path)
    return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")


def grad_cam_map(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor, layer_path: str
) -> torch.Tensor:
    """Grad-CAM at the layer's resolution, ReLU-ed (captum ``LayerGradCam``)."""
    return LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)


def layer_activations_and_gradients(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's output ``A`` and ``d logit_target / dA`` for a batch (gradients enabled)."""
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured.append(output)

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # so the graph reaches the layer's output
            score = target_logits(model, x, target).sum()
            if len(captured) != 1:
                raise ValueError(
                    f"the target layer ran {len(captured)} times in one forward pass; "
                    "CAM methods need a layer that runs exactly once"
                )
            (grads,) = torch.autograd.grad(score, captured[0])
    finally:
        handle.remove()
    return captured[0].detach(), grads.detach()


def grad_cam_plus_plus_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights ``(N, K, 1, 1)`` (Chattopadhay et al. 2018, eq. 19).

    Where the gradient is zero the coefficient is zero, as in the reference implementation;
    a zero denominator (a measure-zero coincidence) also gives zero instead of a NaN.
    """
    g2 = grads.pow(2)
    g3 = g2 * grads
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where((grads != 0) & (denominator != 0), g2 / safe, torch.zeros_like(g2))
    return (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)


def grad_cam_plus_plus_map(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor, layer_path: str
) -> torch.Tensor:
    """Grad-CAM++ at the layer's resolution, ReLU-ed."""
    activations, grads = layer_activations_and_gradients(model, layer, x, target)
    _check_feature_maps(activations, layer_path)
    weights = grad_cam_plus_plus_weights(activations, grads)
    return torch.relu((weights * activations).sum(dim=1, keepdim=True))


LAYER_MAPS: dict[str, LayerMap] = {"grad-cam": grad_cam_map, "grad-cam++": grad_cam_plus_plus_map}


def class_activation_map(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    method: CamMethod,
    target_layer: str,
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """The CAM ``method`` of ``target_layer``: Grad-CAM and Grad-CAM++ upsampled to
    ``(N, 1, H, W)``, Guided Grad-CAM ``(N, C, H, W)``."""
    layer = resolve_layer(model, target_layer, method)
    if method == "guided-grad-cam":
        return attribute_in_chunks(
            GuidedGradCam(model, layer),
            x,
            target,
            batch_size=batch_size,
            interpolate_mode="bilinear",
        )
    layer_map = LAYER_MAPS[method]
    size = tuple(x.shape[2:])

    def attribute(xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        return _upsample(layer_map(model, layer, xs, ts, target_layer), size, target_layer)

    return in_chunks(attribute, x, target, chunk=images_per_chunk(batch_size, 1), channels=1)


grad_cam = functools.partial(class_activation_map, method="grad-cam")
grad_cam_plus_plus = functools.partial(class_activation_map, method="grad-cam++")
guided_grad_cam = functools.partial(class_activation_map, method="guided-grad-cam")


def specs() -> list[ExplainerSpec]:
    """The CAM family, for ``plugins.explainers`` to register."""
    return [
        explainer_spec(
            "grad-cam", grad_cam, CAM, "Grad-CAM, ReLU, bilinear upsampling (Selvaraju+ 2017)"
        ),
        explainer_spec(
            "grad-cam++", grad_cam_plus_plus, CAM, "Grad-CAM++ (Chattopadhay+ 2018), bilinear"
        ),
        explainer_spec(
            "guided-grad-cam", guided_grad_cam, CAM, "guided backprop x Grad-CAM (Selvaraju+ 2017)"
        ),
    ]
