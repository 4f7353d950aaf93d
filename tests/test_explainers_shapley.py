"""Shapley-value explainers: DeepSHAP and GradientSHAP against captum and exact values,
KernelSHAP and LIME against captum on the same coalitions and against exhaustive Shapley values
where the coalitions can be enumerated. Split from ``test_explainers.py`` (which holds the
contract tests and the other families) to keep each file readable."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import DeepLiftShap, KernelShap, Lime
from scipy.ndimage import gaussian_filter
from torch import nn

from plugins.explainers.gradients import integrated_gradients
from plugins.explainers.shapley import deep_shap, gaussian_blur, gradient_shap, references
from plugins.explainers.surrogates import (
    grid_cells,
    kernel_shap,
    lime,
    lime_coalitions,
    lime_weights,
    shapley_kernel_coalitions,
)
from tests.test_explainers import run, trained_mnist  # noqa: F401 - the "mnist" fixture

# -- Shapley methods -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks:UserWarning")
def test_deep_shap_equals_captum_deep_lift_shap_on_each_images_references(mnist):
    """Per image, captum's DeepLiftShap with that image's reference set (zeros + blurs) gives
    the same map as our batched expansion (1e-5 relative)."""
    model, x, y = mnist
    ours = deep_shap(model, x, y)
    for i in range(x.shape[0]):
        refs = references(x[i : i + 1], (2.0, 4.0, 8.0))[0]
        expected = DeepLiftShap(model).attribute(x[i : i + 1].clone(), refs, target=y[i : i + 1])
        torch.testing.assert_close(ours[i : i + 1], expected, rtol=1e-5, atol=1e-7)


def test_blur_is_scipy_gaussian_filter():
    """scipy.ndimage.gaussian_filter(mode="nearest"), per image and channel, to 1e-5."""
    x = torch.rand(2, 3, 12, 9, dtype=torch.float64)
    for sigma in (0.3, 1.0, 2.5, 8.0):
        expected = np.stack(
            [[gaussian_filter(x[n, c].numpy(), sigma, mode="nearest") for c in range(3)]
             for n in range(2)]
        )  # fmt: skip
        np.testing.assert_allclose(gaussian_blur(x, sigma).numpy(), expected, rtol=1e-5, atol=1e-9)


def test_references_are_black_then_blurs_that_keep_the_mass():
    x = torch.rand(2, 1, 28, 28)
    refs = references(x, (1.0, 8.0))
    assert refs.shape == (2, 3, 1, 28, 28) and refs[:, 0].abs().sum() == 0
    # a normalised blur keeps the mean intensity (edges replicated: close, not equal)
    torch.testing.assert_close(
        refs[:, 1].mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=2e-2, rtol=0
    )
    assert refs[:, 2].std() < refs[:, 1].std() < x.std()


def test_gradient_shap_on_a_linear_model_is_exact():
    """For f = w.x the gradient is constant, so E[w * (x - b)] over the references cycled
    evenly (samples a multiple of their count) is w * (x - mean(b)) exactly."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x, target = torch.rand(3, 1, 28, 28), torch.tensor([2, 5, 7])
    weights = model[1].weight.detach().view(10, 1, 28, 28)[target]
    expected = weights * (x - references(x, (2.0, 4.0, 8.0)).mean(dim=1))
    torch.testing.assert_close(gradient_shap(model, x, target, samples=8), expected)


def test_gradient_shap_with_a_black_reference_converges_to_integrated_gradients(mnist):
    """With the black reference only and no noise, GradientSHAP is integrated gradients with
    random interpolation points: 2,000 samples bring it within 5 % of the IG map's scale."""
    model, x, y = mnist
    ours = gradient_shap(model, x[:2], y[:2], blur_sigmas=(), samples=2000)
    ig = integrated_gradients(model, x[:2], y[:2])
    assert (ours - ig).abs().max() <= 0.05 * ig.abs().max()


# -- surrogates: KernelSHAP and LIME ------------------------------------------------------------


def exact_shapley(model, x, target, cells, baseline=0.0):
    """Shapley values of the superpixels by the definition (all coalitions), for one image."""
    m = int(cells.max()) + 1
    value = {}
    with torch.no_grad():
        for bits in itertools.product([0, 1], repeat=m):
            keep = torch.tensor(bits)[cells].float()
            image = x * keep + baseline * (1 - keep)
            value[bits] = float(model(image[None])[0, target])
    phi = torch.zeros(m, dtype=torch.float64)
    for j in range(m):
        for bits in value:
            if bits[j]:
                continue
            k = sum(bits)
            with_j = tuple(1 if i == j else b for i, b in enumerate(bits))
            weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
            phi[j] += weight * (value[with_j] - value[bits])
    return phi.float()


def test_kernel_shap_is_exact_when_it_can_enumerate_coalitions(mnist):
    """A 2x2 grid has 4 superpixels: 14 non-trivial coalitions, enumerated with their kernel
    weights, give the Shapley values of the definition (1e-4 relative)."""
    model, x, y = mnist
    cells = grid_cells(28, 28, 2, x.device)
    maps = kernel_shap(model, x, y, grid=2, samples=14)
    for i in range(x.shape[0]):
        phi = exact_shapley(model, x[i], int(y[i]), cells)
        torch.testing.assert_close(maps[i, 0], phi[cells], rtol=1e-4, atol=1e-5)


def test_kernel_shap_sampling_converges_to_the_shapley_values(mnist):
    """3x3 grid (9 superpixels, 510 coalitions): 400 paired kernel samples stay within 10 %
    of the largest Shapley value; the constraint sum(phi) = f(x) - f(0) holds exactly."""
    model, x, y = mnist
    cells = grid_cells(28, 28, 3, x.device)
    maps = kernel_shap(model, x[:2], y[:2], grid=3, samples=400)
    with torch.no_grad():
        gap = model(x[:2]).gather(1, y[:2, None])[:, 0] - model(torch.zeros_like(x[:2]))[0, y[:2]]
    for i in range(2):
        phi = exact_shapley(model, x[i], int(y[i]), cells)
        estimate = maps[i, 0].reshape(-1)[_first_pixel_of_each_cell(cells)]
        assert (estimate - phi).abs().max() <= 0.1 * phi.abs().max()
        torch.testing.assert_close(estimate.sum(), gap[i], rtol=1e-4, atol=1e-5)


def _first_pixel_of_each_cell(cells: torch.Tensor) -> torch.Tensor:
    flat = cells.reshape(-1)
    return torch.tensor([int((flat == c).nonzero()[0]) for c in range(int(flat.max()) + 1)])


def _replay(coalitions: torch.Tensor):
    """A captum perturbation generator that yields our coalitions, one by one."""

    def generator(original_input, **kwargs):
        for z in coalitions:
            yield z.view(1, -1).long()

    return generator


def test_kernel_shap_matches_captum_on_the_same_coalitions(mnist):
    """Captum's KernelShap fed with our samples (all-on and all-off first, with its weight of
    1e6 standing for our exact constraint): equal to 1e-3 of the largest value."""
    model, x, y = mnist
    cells = grid_cells(28, 28, 7, x.device)
    samples = 128
    for i in range(2):
        gen = torch.Generator().manual_seed(0)
        coalitions, _ = shapley_kernel_coalitions(1, 49, samples, gen, x.device)
        ends = torch.stack([torch.ones(49), torch.zeros(49)]).long()
        captum_ks = KernelShap(model)
        captum_ks.perturb_func = _replay(torch.cat([ends, coalitions[0]]))
        expected = captum_ks.attribute(
            x[i : i + 1], baselines=0.0, target=int(y[i]), feature_mask=cells[None, None],
            n_samples=samples + 2,
        )  # fmt: skip
        ours = kernel_shap(model, x[i : i + 1], y[i : i + 1], samples=samples, seed=0)
        assert (ours - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_lime_matches_captum_on_the_same_samples(mnist):
    """Captum's Lime with the lime package's image kernel and Ridge(alpha=1), fed with our
    samples: equal to 1e-4 relative (float32 regression targets in captum)."""
    model, x, y = mnist
    cells = grid_cells(28, 28, 7, x.device)
    samples = 128

    def similarity(original, perturbed, interpretable, **kwargs):
        return lime_weights(interpretable.view(1, -1), 0.25).float()

    for i in range(2):
        gen = torch.Generator().manual_seed(0)
        coalitions = lime_coalitions(1, 49, samples, gen, x.device)[0]
        captum_lime = Lime(
            model,
            interpretable_model=SkLearnRidge(alpha=1.0),
            similarity_func=similarity,
            perturb_func=_replay(coalitions),
        )
        expected = captum_lime.attribute(
            x[i : i + 1], baselines=0.0, target=int(y[i]), feature_mask=cells[None, None],
            n_samples=samples,
        )  # fmt: skip
        ours = lime(model, x[i : i + 1], y[i : i + 1], samples=samples, seed=0)
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


def test_lime_kernel_is_the_lime_package_default():
    """``sqrt(exp(-d^2 / 0.25^2))`` with d the cosine distance to the all-on vector."""
    z = torch.tensor([[[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]]])
    d = torch.tensor([0.0, 1 - 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(lime_weights(z, 0.25)[0], torch.exp(-(d**2) / 0.0625).sqrt())


def test_grid_cells_partition_any_size():
    cells = grid_cells(28, 28, 7, torch.device("cpu"))
    assert cells.unique().numel() == 49
    assert torch.all(torch.bincount(cells.reshape(-1)) == 16)  # 4x4 cells on MNIST
    small = grid_cells(8, 5, 7, torch.device("cpu"))  # fewer cells along a short side
    assert small.unique().numel() == 7 * 5
