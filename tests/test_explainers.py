"""Built-in explainers: the contract for every registered method, and each method checked
against its reference (captum, scikit-image, the paper's formula or hand-computed values).

Tolerances are stated where they are used: 1e-5 relative for the same computation done two
ways in float32, looser only where a quadrature or a Monte Carlo estimate is compared with its
limit (and then with a fixed seed, so nothing here is flaky).
"""

from __future__ import annotations

import copy
import functools
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.filters import sobel as skimage_sobel
from torch import nn

from benchmark.params import check_value
from benchmark.registry import Registry
from benchmark.runner import check_attributions
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.explainers import MODULES
from plugins.explainers.cam import grad_cam, grad_cam_plus_plus, guided_grad_cam
from plugins.explainers.controls import random_attributions, sobel
from plugins.explainers.gradients import gradient, input_x_gradient, integrated_gradients
from plugins.explainers.occlusion import occlusion
from plugins.explainers.propagation import (
    deconvnet,
    excitation_backprop,
    guided_backprop,
    lrp,
)
from plugins.explainers.shapley import deep_shap
from plugins.models.mlp import build_mlp
from plugins.models.seed_cnn import build_seed_cnn

NAMES = {s.name for module in MODULES for s in module.specs() if s.output == "attribution"}
CAM_NAMES = {"grad-cam", "grad-cam++", "guided-grad-cam"}
LAYER = "conv_layers.3"


REGISTRY = Registry.load()


def keyword_defaults(factory) -> dict:
    """The keyword-only parameters with defaults that a ``functools.partial`` leaves open, tuples
    as lists: what a spec read from the factory's signature must hold as ``params``."""
    bound = factory.keywords if isinstance(factory, functools.partial) else {}
    return {
        name: list(p.default) if isinstance(p.default, tuple) else p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        and p.default is not inspect.Parameter.empty
        and name not in bound
    }


def run(name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor, **params):
    """Call a registered explainer the way the runner does (layer for CAM methods)."""
    spec = REGISTRY.get("explainer", name)
    merged = {**spec.params, **params}
    if spec.uses_target_layer:
        merged.setdefault("target_layer", LAYER)
    return spec.factory(model, x, target, **merged)


@pytest.fixture(scope="module", name="mnist")
def trained_mnist():
    """A seed-cnn trained for one epoch on 512 MNIST images, and 4 test images."""
    data = load_mnist(train_limit=512, test_limit=16)
    torch.manual_seed(0)
    model = train_erm(build_seed_cnn(10, (1, 28, 28)), data.train, seed=0, epochs=1)
    return model.eval(), data.test.x[:4].clone(), data.test.y[:4].clone()


# -- registry and contract --------------------------------------------------------------------


def test_registry_lists_every_explainer_through_the_entry_point():
    assert REGISTRY.plugins["builtin_explainers"].status == "loaded"
    attribution = {s.name for s in REGISTRY.specs("explainer") if s.output == "attribution"}
    assert attribution == NAMES
    assert {
        "gradient", "input-x-gradient", "deconvnet", "guided-backprop", "grad-cam",
        "grad-cam++", "guided-grad-cam", "integrated-gradients", "smoothgrad", "smoothgrad-sq",
        "vargrad", "deep-shap", "gradient-shap", "kernel-shap", "lime", "occlusion", "lrp",
        "excitation-backprop", "random", "sobel",
    } == NAMES  # fmt: skip
    for spec in REGISTRY.specs("explainer"):
        assert spec.version == "1" and spec.description and "\n" not in spec.description
        assert dict(spec.params) == keyword_defaults(spec.factory)
        # every keyword the factory takes is either a default param or the runner's layer
        bound = spec.factory.keywords if isinstance(spec.factory, functools.partial) else {}
        keywords = {
            p.name
            for p in inspect.signature(spec.factory).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in bound
        }
        assert keywords == set(spec.params) | (
            {"target_layer"} if spec.uses_target_layer else set()
        ) | ({"data", "cache_dir"} if spec.uses_training_data else set())
        assert spec.uses_target_layer == (spec.name in CAM_NAMES)
        if spec.uses_target_layer:
            assert {"conv", "differentiable"} <= spec.requires
        if spec.name in {"lrp", "excitation-backprop", "deep-shap"}:
            assert "lrp" in spec.requires
        if spec.name in {"random", "sobel", "occlusion", "kernel-shap", "lime"}:
            assert spec.requires == frozenset()
    cnn = REGISTRY.get("model", "seed-cnn")
    assert {"differentiable", "conv", "lrp"} <= cnn.provides


def test_defaults_fit_their_annotations_and_ranges_are_checked_at_plan_time():
    """A suite's values are checked against the factories' annotations before any job runs."""
    for spec in REGISTRY.specs("explainer"):
        types = spec.param_types()
        assert set(types) == set(spec.params)
        for name, value in spec.params.items():
            assert check_value(types[name], value) == "", (spec.name, name)

    def problem(name: str, param: str, value: object) -> str:
        return check_value(REGISTRY.get("explainer", name).param_types()[param], value)

    assert problem("smoothgrad", "samples", 0) and problem("smoothgrad", "samples", "5")
    assert problem("smoothgrad", "noise_std", -0.1) and not problem("smoothgrad", "noise_std", 0)
    assert problem("kernel-shap", "samples", 1) and not problem("kernel-shap", "samples", 2)
    assert problem("lime", "kernel_width", 0) and problem("lrp", "epsilon", -1)
    assert problem("integrated-gradients", "method", "simpson")
    assert problem("deep-shap", "blur_sigmas", [2.0, 0]) and not problem(
        "deep-shap", "blur_sigmas", [1]
    )
    assert problem("occlusion", "window", 0) and problem("grad-cam", "batch_size", 0)


def _check_contract(name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> None:
    before = x.clone()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    with torch.no_grad():  # explainers must work inside an outer no_grad
        out = run(name, model, x, target)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    n, c, h, w = x.shape
    assert out.shape in {(n, 1, h, w), (n, c, h, w)}
    assert torch.isfinite(out).all()
    assert torch.equal(check_attributions(out, x, name), out)
    assert torch.equal(x, before), "the caller's x was modified"
    assert not x.requires_grad
    assert torch.equal(torch.get_rng_state(), torch_state), "global torch RNG disturbed"
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )
    assert out.abs().sum() > 0, f"{name} returned an all-zero map"


@pytest.mark.parametrize("name", sorted(NAMES))
def test_contract_on_seed_cnn_mnist(mnist, name):
    model, x, y = mnist
    params = [p.detach().clone() for p in model.parameters()]
    _check_contract(name, model, x, y)
    # the model comes back as it was: weights, no rules or hooks left behind
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    for module in model.modules():
        assert not hasattr(module, "rule")
        assert not module._forward_hooks and not module._backward_hooks
        assert not module._forward_pre_hooks


@pytest.mark.parametrize("name", sorted(NAMES))
def test_contract_on_three_channel_input(name):
    torch.manual_seed(1)
    model = build_seed_cnn(5, (3, 32, 32), dropout=0.0).eval()
    x = torch.rand(3, 3, 32, 32)
    _check_contract(name, model, x, torch.tensor([0, 3, 4]))


MLP_OK = sorted(
    spec.name
    for spec in REGISTRY.specs("explainer")
    if spec.requires <= REGISTRY.get("model", "mlp").provides and spec.output == "attribution"
)


@pytest.mark.parametrize("name", MLP_OK)
def test_contract_on_the_mlp_where_the_planner_allows_it(name):
    torch.manual_seed(2)
    model = build_mlp(10, (1, 28, 28), hidden=[32]).eval()
    _check_contract(name, model, torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("name", ["gradient", "grad-cam", "kernel-shap", "occlusion", "random"])
def test_empty_batch(mnist, name):
    model, x, _ = mnist
    out = run(name, model, x[:0], torch.zeros(0, dtype=torch.long))
    assert out.shape[0] == 0 and out.shape[2:] == x.shape[2:]


def test_chunking_does_not_change_deterministic_methods(mnist):
    model, x, y = mnist
    for factory in (gradient, integrated_gradients, grad_cam_plus_plus, deep_shap, lrp):
        kwargs = {"target_layer": LAYER} if factory is grad_cam_plus_plus else {}
        whole = factory(model, x, y, **kwargs)
        chunked = factory(model, x, y, batch_size=1, **kwargs)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


# -- gradient family ---------------------------------------------------------------------------


def test_gradient_of_a_linear_model_is_the_weight_row():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x, target = torch.rand(5, 1, 28, 28), torch.tensor([0, 1, 9, 9, 4])
    weights = model[1].weight.detach().view(10, 1, 28, 28)
    torch.testing.assert_close(gradient(model, x, target), weights[target])
    # occlusion of single pixels with a black baseline drops the logit by w * x, exactly
    torch.testing.assert_close(
        occlusion(model, x[:2], target[:2], window=1, stride=1), weights[target[:2]] * x[:2]
    )


def test_input_x_gradient_is_x_times_gradient(mnist):
    model, x, y = mnist
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg).gather(1, y[:, None]).sum(), xg)
    torch.testing.assert_close(input_x_gradient(model, x, y), x * grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gradient(model, x, y), grad, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_completeness():
    """Sundararajan et al. 2017, prop. 1: attributions sum to f(x) - f(baseline). On a smooth
    (tanh) net 50 Gauss-Legendre points are exact to 1e-4; on the ReLU seed-cnn the integrand
    is piecewise constant and the quadrature error is a few percent of |f(x) - f(0)|."""
    torch.manual_seed(4)
    smooth = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    x, target = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        gap = (
            smooth(x).gather(1, target[:, None])[:, 0] - smooth(torch.zeros_like(x))[target, target]
        )
    sums = integrated_gradients(smooth, x, target).sum(dim=(1, 2, 3))
    torch.testing.assert_close(sums, gap, rtol=0, atol=1e-4)


def test_integrated_gradients_completeness_on_seed_cnn(mnist):
    model, x, y = mnist
    with torch.no_grad():
        gap = model(x).gather(1, y[:, None])[:, 0] - model(torch.zeros_like(x))[0, y]
    sums = integrated_gradients(model, x, y, n_steps=200).sum(dim=(1, 2, 3))
    assert torch.all((sums - gap).abs() <= 0.05 * gap.abs() + 1e-3), (sums, gap)


# -- seeded methods and controls ---------------------------------------------------------------

SEEDED = ["smoothgrad", "smoothgrad-sq", "vargrad", "gradient-shap", "kernel-shap", "lime"]


@pytest.mark.parametrize("name", SEEDED)
def test_seeded_methods_are_deterministic_and_ignore_the_global_rng(mnist, name):
    model, x, y = mnist
    params = {"samples": 16}
    if name == "gradient-shap":
        params["noise_std"] = 0.1
    torch.manual_seed(123)
    np.random.seed(123)
    first = run(name, model, x, y, **params)
    torch.manual_seed(999)
    np.random.seed(999)
    again = run(name, model, x, y, **params)
    other = run(name, model, x, y, seed=1, **params)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_random_control_is_seeded_per_image_and_ignores_the_model():
    x = torch.rand(5, 1, 28, 28)
    target = torch.zeros(5, dtype=torch.long)
    a = random_attributions(build_seed_cnn(10, (1, 28, 28)), x, target, seed=7)
    b = random_attributions(build_mlp(10, (1, 28, 28)), x, target, seed=7)
    assert torch.equal(a, b)
    assert not torch.allclose(a, random_attributions(None, x, target, seed=8))
    # the same image gets the same map whatever batch or position it comes in
    order = torch.tensor([3, 0, 4])
    torch.testing.assert_close(random_attributions(None, x[order], target[order], seed=7), a[order])
    # and different images get different maps
    assert not torch.allclose(a[0], a[1])
    assert abs(float(a.mean())) < 0.1 and abs(float(a.std()) - 1) < 0.1  # standard normal


def test_sobel_ignores_the_model_and_matches_scikit_image():
    """scikit-image's ``filters.sobel`` per channel, to float32 rounding (atol 1e-6)."""
    torch.manual_seed(5)
    x = torch.rand(3, 3, 16, 20)
    target = torch.zeros(3, dtype=torch.long)
    one = sobel(build_seed_cnn(10, (3, 16, 20)), x, target)
    two = sobel(build_mlp(10, (3, 16, 20)), x, target)
    assert torch.equal(one, two)
    expected = np.stack(
        [[skimage_sobel(x[n, c].double().numpy()) for c in range(3)] for n in range(3)]
    )
    np.testing.assert_allclose(one.numpy(), expected, rtol=0, atol=1e-6)


# -- CAM family ----------------------------------------------------------------------------------


class CamToy(nn.Module):
    """The target layer is the identity, so its activations are the input; the logits are
    linear in the spatial sums, so the gradients are the constant weights."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.5, -1.0], [1.0, 1.0], [-1.0, 2.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).sum(dim=(2, 3)))


def test_grad_cam_and_grad_cam_plus_plus_on_hand_computed_values():
    """A = [[1, 2], [3, 4]] and [[0, 1], [0, 1]], class 0 weights (0.5, -1).

    Grad-CAM: weights = mean gradient = (0.5, -1), map relu(0.5 A0 - A1) = [[.5, 0], [1.5, 1]].
    Grad-CAM++ (eq. 19): g constant per channel, alpha = g^2 / (2 g^2 + sum(A) g^3)
    = 1 / (2 + sum(A) g): channel 0: 1 / (2 + 10 * 0.5) = 1/7, w0 = 4 * 1/7 * 0.5 = 2/7;
    channel 1: relu(-1) = 0, w1 = 0; map relu(2/7 A0)."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    target = torch.tensor([0])
    cam = grad_cam(CamToy(), x, target, target_layer="features")
    torch.testing.assert_close(cam, torch.tensor([[[[0.5, 0.0], [1.5, 1.0]]]]))
    campp = grad_cam_plus_plus(CamToy(), x, target, target_layer="features")
    torch.testing.assert_close(campp, (2 / 7) * x[:, :1])


def reference_grad_cam_plus_plus(
    activations: np.ndarray, grads: np.ndarray, eps: float
) -> np.ndarray:
    """``pytorch-grad-cam``'s ``GradCAMPlusPlus.get_cam_weights`` (v1.5), transcribed, then
    the weighted sum and ReLU of its ``BaseCAM`` (without its min-max rescaling). The
    reference adds ``eps = 1e-6`` to the denominator; the paper (eq. 19) has none."""
    grads_power_2 = grads**2
    grads_power_3 = grads_power_2 * grads
    sum_activations = np.sum(activations, axis=(2, 3))
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 where grads == 0, masked
        aij = grads_power_2 / (
            2 * grads_power_2 + sum_activations[:, :, None, None] * grads_power_3 + eps
        )
    aij = np.where(grads != 0, aij, 0)
    weights = np.maximum(grads, 0) * aij
    weights = np.sum(weights, axis=(2, 3))
    cam = (weights[:, :, None, None] * activations).sum(axis=1, keepdims=True)
    return np.maximum(cam, 0)


def test_grad_cam_plus_plus_matches_the_reference_formula(mnist):
    """Against the pytorch-grad-cam transcription on seed-cnn's second conv layer, upsampled
    the same way: 1e-4 relative with the paper's formula (eps 0). The reference's eps = 1e-6
    is not negligible here (gradients ~1e-3, so g^2 ~ eps): with it the maps still agree in
    where they point (correlation > 0.99) but not in value."""
    model, x, y = mnist
    layer = model.get_submodule(LAYER)
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.update(a=o))
    xg = x.clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(model(xg).gather(1, y[:, None]).sum(), store["a"])
    handle.remove()
    activations, grads = store["a"].detach().double().numpy(), grads.double().numpy()
    ours = grad_cam_plus_plus(model, x, y, target_layer=LAYER)
    for eps in (0.0, 1e-6):
        cam = reference_grad_cam_plus_plus(activations, grads, eps)
        expected = F.interpolate(torch.from_numpy(cam).float(), size=(28, 28), mode="bilinear")
        assert expected.abs().sum() > 0
        if eps == 0:
            torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-7)
        else:
            for a, b in zip(ours, expected, strict=True):
                assert np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1] > 0.99


def test_guided_grad_cam_is_guided_backprop_times_grad_cam(mnist):
    model, x, y = mnist
    expected = guided_backprop(model, x, y) * grad_cam(model, x, y, target_layer=LAYER)
    torch.testing.assert_close(guided_grad_cam(model, x, y, target_layer=LAYER), expected)


@pytest.mark.parametrize("name", sorted(CAM_NAMES))
def test_cam_methods_name_a_missing_layer(mnist, name):
    model, x, y = mnist
    with pytest.raises(ValueError, match=r"conv_layers\.9.*does not exist"):
        run(name, model, x, y, target_layer="conv_layers.9")


def test_modified_backward_methods_refuse_a_model_without_relu_modules():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x, target = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    for factory in (deconvnet, guided_backprop):
        with pytest.raises(ValueError, match=r"no nn\.ReLU module"):
            factory(model, x, target)


# -- propagation rules ---------------------------------------------------------------------------


def test_lrp_with_vanishing_epsilon_is_input_x_gradient(mnist):
    """Ancona et al. 2018: on ReLU nets epsilon-LRP tends to gradient x input as epsilon -> 0;
    a real epsilon absorbs relevance, so the maps differ."""
    model, x, y = mnist
    reference = input_x_gradient(model, x, y)
    torch.testing.assert_close(lrp(model, x, y, epsilon=1e-9), reference, rtol=1e-3, atol=1e-6)
    assert not torch.allclose(lrp(model, x, y, epsilon=0.5), reference, rtol=1e-2, atol=1e-4)


def test_excitation_backprop_is_a_conserved_non_negative_distribution(mnist):
    """Zhang et al. 2016: marginal winning probabilities start as a unit mass on the target and
    stay non-negative through the z+ rule (non-negative inputs). On a bias-free net the mass is
    conserved exactly; with biases, units excited by their bias alone keep their share, so the
    input receives at most the unit mass."""
    model, x, y = mnist
    maps = excitation_backprop(model, x, y)
    assert maps.min() >= -1e-6
    sums = maps.sum(dim=(1, 2, 3))
    assert torch.all((sums > 0.2) & (sums <= 1 + 1e-4)), sums
    bias_free = copy.deepcopy(model)
    with torch.no_grad():
        for module in bias_free.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.bias.zero_()
    sums = excitation_backprop(bias_free, x, y).sum(dim=(1, 2, 3))
    torch.testing.assert_close(sums, torch.ones(4), rtol=0, atol=1e-4)
    # not a rescaled LRP-epsilon: the z+ rule ignores negative evidence, LRP keeps it
    assert (lrp(model, x, y, epsilon=1e-9) < 0).any()
