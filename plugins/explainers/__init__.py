"""Built-in explainers: captum's attribution methods plus a few written here, and two controls.

Every factory follows the explainer contract of ``benchmark.specs`` and runs its batch in
chunks of at most ``batch_size`` model evaluations (:mod:`plugins.explainers.batching`). A
spec's ``params`` are read from its factory's keyword defaults, so the two cannot drift apart.

Capability tags required from the model:

* ``differentiable``: anything that back-propagates to the input.
* ``conv`` (with ``ModelSpec.target_layer``): the CAM family.
* ``lrp``: every nonlinearity is its own, unshared module of a type captum's LRP and
  DeepLIFT have rules for (``lrp``, ``excitation-backprop``, ``deep-shap``).

Perturbation methods (occlusion, KernelSHAP, LIME) only call the model, and the controls
(``random``, ``sobel``) do not even do that, so they require nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from benchmark.hookspecs import hookimpl
from benchmark.specs import ExplainerSpec
from plugins.explainers.cam import grad_cam, grad_cam_plus_plus, guided_grad_cam
from plugins.explainers.controls import random_attributions, sobel
from plugins.explainers.gradients import gradient, input_x_gradient, integrated_gradients
from plugins.explainers.noise_tunnel import smoothgrad, smoothgrad_sq, vargrad
from plugins.explainers.occlusion import occlusion
from plugins.explainers.propagation import deconvnet, excitation_backprop, guided_backprop, lrp
from plugins.explainers.shapley import deep_shap, gradient_shap
from plugins.explainers.surrogates import kernel_shap, lime

GRADIENT = frozenset({"differentiable"})
CAM = frozenset({"differentiable", "conv"})
RULES = frozenset({"differentiable", "lrp"})
NOTHING: frozenset[str] = frozenset()

# name, factory, requires, description (one line, with the paper)
EXPLAINERS: tuple[tuple[str, Callable[..., Any], frozenset[str], str], ...] = (
    ("gradient", gradient, GRADIENT, "signed input gradient of the target logit (Simonyan+ 2014)"),
    ("input-x-gradient", input_x_gradient, GRADIENT, "input times gradient (Shrikumar+ 2016)"),
    ("deconvnet", deconvnet, GRADIENT, "deconvnet backward through ReLUs (Zeiler & Fergus 2014)"),
    (
        "guided-backprop",
        guided_backprop,
        GRADIENT,
        "guided backpropagation (Springenberg+ 2015)",
    ),
    ("grad-cam", grad_cam, CAM, "Grad-CAM, ReLU, bilinear upsampling (Selvaraju+ 2017)"),
    ("grad-cam++", grad_cam_plus_plus, CAM, "Grad-CAM++ (Chattopadhay+ 2018), bilinear"),
    ("guided-grad-cam", guided_grad_cam, CAM, "guided backprop x Grad-CAM (Selvaraju+ 2017)"),
    (
        "integrated-gradients",
        integrated_gradients,
        GRADIENT,
        "integrated gradients from a black baseline (Sundararajan+ 2017)",
    ),
    ("smoothgrad", smoothgrad, GRADIENT, "gradient averaged over noisy copies (Smilkov+ 2017)"),
    (
        "smoothgrad-sq",
        smoothgrad_sq,
        GRADIENT,
        "mean squared gradient over noisy copies, SG-SQ (Hooker+ 2019)",
    ),
    ("vargrad", vargrad, GRADIENT, "variance of gradients over noisy copies (Adebayo+ 2018)"),
    (
        "deep-shap",
        deep_shap,
        RULES,
        "DeepLIFT averaged over black + blurred references (Lundberg & Lee 2017)",
    ),
    (
        "gradient-shap",
        gradient_shap,
        GRADIENT,
        "expected gradients over black + blurred references (Lundberg & Lee 2017)",
    ),
    (
        "kernel-shap",
        kernel_shap,
        NOTHING,
        "KernelSHAP on a 7x7 superpixel grid, batched (Lundberg & Lee 2017)",
    ),
    ("lime", lime, NOTHING, "LIME on a 7x7 superpixel grid, batched (Ribeiro+ 2016)"),
    (
        "occlusion",
        occlusion,
        NOTHING,
        "logit drop under a sliding black patch (Zeiler & Fergus 2014)",
    ),
    ("lrp", lrp, RULES, "layer-wise relevance propagation, epsilon rule (Bach+ 2015)"),
    (
        "excitation-backprop",
        excitation_backprop,
        RULES,
        "excitation backprop = LRP z+ / alpha1-beta0 (Zhang+ 2016)",
    ),
    (
        "random",
        random_attributions,
        NOTHING,
        "control: Gaussian noise seeded per image (Hooker+ 2019)",
    ),
    ("sobel", sobel, NOTHING, "control: Sobel edge magnitude of the image (Adebayo+ 2018)"),
)


def keyword_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's keyword parameters that have defaults: the spec's ``params``. Tuple
    defaults (immutable in a signature) become lists, as a suite's YAML would write them."""
    return {
        name: list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
        for name, parameter in inspect.signature(factory).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and parameter.default is not inspect.Parameter.empty
    }


def uses_target_layer(factory: Callable[..., Any]) -> bool:
    """Whether the factory takes the model's CAM layer as ``target_layer``."""
    return "target_layer" in inspect.signature(factory).parameters


@hookimpl
def bench_register_explainers(register: Callable[[ExplainerSpec], None]) -> None:
    for name, factory, requires, description in EXPLAINERS:
        register(
            ExplainerSpec(
                name=name,
                factory=factory,
                version="1",
                description=description,
                params=keyword_defaults(factory),
                requires=requires,
                uses_target_layer=uses_target_layer(factory),
            )
        )
