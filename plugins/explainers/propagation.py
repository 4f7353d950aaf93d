"""Methods that replace the backward pass by a relevance-propagation rule (captum).

* ``deconvnet``: ReLUs pass the output gradient through its own ReLU instead of the forward
  mask (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks";
  captum ``Deconvolution``).
* ``guided-backprop``: ReLUs pass only positive gradients where the input was positive
  (Springenberg et al. 2015, "Striving for simplicity"; captum ``GuidedBackprop``).
* ``lrp``: layer-wise relevance propagation with the epsilon rule on every layer (Bach et al.
  2015, "On pixel-wise explanations ... by layer-wise relevance propagation", eq. 58;
  captum ``LRP`` with ``EpsilonRule``). With a vanishing epsilon it coincides with input x
  gradient on ReLU nets (Ancona et al. 2018); the default 0.1 absorbs the relevance of weak
  activations, which is the point of the rule (Montavon et al. 2019, "LRP: an overview").
* ``excitation-backprop``: marginal winning probabilities (Zhang et al. 2016/2018,
  "Top-down neural attention by excitation backprop"), which the authors show equal LRP's
  z+ rule, i.e. alpha1-beta0 without biases, on ReLU nets. Computed with captum's ``LRP`` and
  ``Alpha1_Beta0_Rule(set_bias_to_zero=True)`` on convolutions and linear layers (max pools
  keep the winner-take-all epsilon rule), started from a unit mass on the target class: captum
  starts from the logit, so the relevance is divided by it.

Captum hooks ``nn.ReLU`` modules and gives every leaf layer a rule, so these methods need a
model whose nonlinearities are distinct, unshared modules of the types captum knows (ReLU,
Conv2d, Linear, pooling, dropout, batch norm). Models declare that with the ``lrp`` tag;
deconvnet and guided backprop only need ReLU modules and check for them at run time, because a
model with functional ReLUs would silently yield the plain gradient. The two differ only in the
captum class, so they are :func:`relu_backward` with ``method`` bound (``functools.partial``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch
from captum.attr import LRP, Deconvolution, GuidedBackprop
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, PropagationRule
from pydantic import NonNegativeFloat, PositiveInt
from torch import nn

from benchmark.kit.batching import attribute_in_chunks, images_per_chunk, in_chunks, target_logits
from benchmark.specs import ExplainerSpec
from plugins.explainers.capabilities import GRADIENT, RULES, explainer_spec

RELU_BACKWARD = {"deconvnet": Deconvolution, "guided-backprop": GuidedBackprop}
"""Captum's class for each modified ReLU backward pass."""


def require_relu_modules(model: nn.Module, method: str) -> None:
    """Fail clearly when the model has no ``nn.ReLU`` module for captum to hook."""
    if not any(isinstance(module, nn.ReLU) for module in model.modules()):
        raise ValueError(
            f"{method}: the model has no nn.ReLU module; captum's modified backward pass hooks "
            "ReLU modules and would silently return the plain gradient"
        )


def relu_backward(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    method: Literal["deconvnet", "guided-backprop"],
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """Deconvnet or guided backpropagation attributions, ``(N, C, H, W)``."""
    require_relu_modules(model, method)
    return attribute_in_chunks(RELU_BACKWARD[method](model), x, target, batch_size=batch_size)


deconvnet = functools.partial(relu_backward, method="deconvnet")
guided_backprop = functools.partial(relu_backward, method="guided-backprop")


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    epsilon: NonNegativeFloat = 0.1,
    batch_size: PositiveInt = 512,
) -> torch.Tensor:
    """LRP-epsilon relevance of the target logit, ``(N, C, H, W)``."""
    if not float(epsilon) >= 0.0:
        raise ValueError(f"lrp: epsilon must be >= 0, got {epsilon!r}")

    def rule(_layer: nn.Module) -> EpsilonRule:
        return EpsilonRule(epsilon=float(epsilon))

    return _with_rules(model, x, target, rule, batch_size=batch_size, unit_start=False)


def excitation_backprop(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: PositiveInt = 512
) -> torch.Tensor:
    """Excitation backprop (LRP z+ from a unit mass on the target), ``(N, C, H, W)``."""

    def rule(layer: nn.Module) -> EpsilonRule | Alpha1_Beta0_Rule:
        if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            return Alpha1_Beta0_Rule(set_bias_to_zero=True)
        return EpsilonRule()  # captum's default for max pooling: the winner takes it all

    return _with_rules(model, x, target, rule, batch_size=batch_size, unit_start=True)


def _leaves(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if not list(module.children())]


def _with_rules(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    rule_for: Callable[[nn.Module], PropagationRule],
    *,
    batch_size: int,
    unit_start: bool,
) -> torch.Tensor:
    """Captum ``LRP`` with ``rule_for(layer)`` on each weighted or pooling leaf layer.

    Captum reads a rule from a ``rule`` attribute on each layer and deletes it afterwards; we
    delete ours too if captum fails before it gets there, so the caller's model is left as it
    was (captum also restores the weights it modifies during the pass).
    """
    ruled = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
    ruled += (nn.AvgPool2d, nn.AdaptiveAvgPool2d)

    def attribute(xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        layers = [layer for layer in _leaves(model) if isinstance(layer, ruled)]
        try:
            for layer in layers:
                layer.rule = rule_for(layer)
            relevance = LRP(model).attribute(xs, target=ts)
        finally:
            for layer in layers:
                if hasattr(layer, "rule"):
                    del layer.rule
        if not unit_start:
            return relevance
        with torch.no_grad():
            logit = target_logits(model, xs, ts)
        logit = torch.where(logit != 0, logit, torch.ones_like(logit))
        return relevance / logit.reshape(-1, *[1] * (relevance.dim() - 1))

    return in_chunks(
        attribute, x, target, chunk=images_per_chunk(batch_size, 1), channels=x.shape[1]
    )


def specs() -> list[ExplainerSpec]:
    """The propagation-rule methods, for ``plugins.explainers`` to register."""
    return [
        explainer_spec(
            "deconvnet",
            deconvnet,
            GRADIENT,
            "deconvnet backward through ReLUs (Zeiler & Fergus 2014)",
        ),
        explainer_spec(
            "guided-backprop",
            guided_backprop,
            GRADIENT,
            "guided backpropagation (Springenberg+ 2015)",
        ),
        explainer_spec(
            "lrp", lrp, RULES, "layer-wise relevance propagation, epsilon rule (Bach+ 2015)"
        ),
        explainer_spec(
            "excitation-backprop",
            excitation_backprop,
            RULES,
            "excitation backprop = LRP z+ / alpha1-beta0 (Zhang+ 2016)",
        ),
    ]
