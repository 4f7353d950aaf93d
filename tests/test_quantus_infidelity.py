"""Infidelity (Yeh et al., NeurIPS 2019, Definition 2.1) through the ``quantus`` evaluator
against ``captum.metrics.infidelity`` fed the same perturbations, and raw Quantus 0.6.0's
cumulative version shown for what it is (defect 14 of ``plugins.evaluators.quantus.guards``).

Models: a small conv net with fixed random weights on random 8x8 images (to count the pixels
each call of Quantus's ``perturb_func`` receives already perturbed) and seed-cnn with fixed
random weights on real MNIST test images, explained by the input gradient or integrated
gradients. Both libraries get the perturbations Quantus's default builds: Quantus's patch grid
(``utils.get_block_indices``: non-overlapping squares, row-major) with each patch set to the
baseline (``black`` is the image's minimum, ``mean`` its mean). Captum gets one patch per
Monte-Carlo sample, so its ``n_perturb_samples`` is the number of patches; its ``perturb_func``
is built here from masks, independently of Quantus's indices. Tolerance: both compute in
float32 with batches of different sizes, so "equal" is ``rtol=1e-5`` (with ``atol=1e-9`` for
scores near zero).

If a Quantus release stops accumulating patches, ``test_raw_quantus_accumulates_patches``
fails and the guard can go; if it changes how ``perturb_func`` is called, the Captum
comparisons fail.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import quantus
import torch
from captum.attr import IntegratedGradients
from captum.metrics import infidelity
from quantus.functions.perturb_func import batch_baseline_replacement_by_indices

from benchmark.specs import Dataset, Split
from plugins.datasets.mnist import load_mnist
from plugins.evaluators.quantus.evaluator import evaluate_quantus
from plugins.evaluators.quantus.guards import quiet, single_perturbations
from plugins.models.seed_cnn import build_seed_cnn
from tests.test_quantus_adapter import (  # the adapter tests' helpers, not copies of them
    gradient,
    inputs,
    make_context,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread for these small batches)
)

RTOL, ATOL = 1e-5, 1e-9


def grid_masks(height: int, width: int, patch: int) -> torch.Tensor:
    """``(K, H, W)`` masks of Quantus's patch grid, in ``get_block_indices``'s order."""
    cols = width // patch
    k = torch.arange((height // patch) * cols)
    rows_of = torch.arange(height)[None, :, None] // patch
    cols_of = torch.arange(width)[None, None, :] // patch
    return (rows_of == (k // cols)[:, None, None]) & (cols_of == (k % cols)[:, None, None])


def patch_perturbations(masks: torch.Tensor, baseline: str = "black", cumulative: bool = False):
    """A Captum ``perturb_func``: sample ``k`` of each image replaces patch ``k`` of the original
    (``cumulative``: patches ``0..k``, what Quantus 0.6.0 does) by the image's baseline."""
    if cumulative:
        masks = masks.int().cumsum(0) > 0
    per_image = len(masks)

    def perturb(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.flatten(1)
        value = flat.min(1).values if baseline == "black" else flat.mean(1)
        where = masks.repeat(len(x) // per_image, 1, 1)[:, None]  # row n*K + k -> patch k
        perturbed = torch.where(where, value[:, None, None, None], x)
        return x - perturbed, perturbed

    return perturb


def captum_infidelity(model, x, y, a, patch: int, baseline="black", cumulative=False):
    masks = grid_masks(*x.shape[-2:], patch)
    perturb = patch_perturbations(masks, baseline, cumulative)
    a = torch.as_tensor(a).expand_as(x)
    values = infidelity(model, perturb, x, a, target=y, n_perturb_samples=len(masks))
    return values.numpy().astype(np.float64)


def integrated_gradients(model, x, target):
    with torch.enable_grad():
        return IntegratedGradients(model).attribute(x, target=target, n_steps=16).detach()


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, Dataset]:
    """A small conv net with fixed random weights on random 8x8 images."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.Tanh(),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 8 * 8, 3),
        ).eval()
        split = Split(x=torch.rand(6, 1, 8, 8), y=torch.zeros(6, dtype=torch.long))
    return model, Dataset(train=split, test=split, num_classes=3)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_mnist(train_limit=100, test_limit=40)


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    """seed-cnn with fixed random weights (a nonlinear model is all the comparison needs)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_seed_cnn(10, (1, 28, 28)).eval()


def raw_quantus(model, x, y, a, **params) -> np.ndarray:
    metric = quantus.Infidelity(disable_warnings=True, **params)
    with quiet():
        scores = metric(model=model, x_batch=x.copy(), y_batch=y, a_batch=a.copy(), device="cpu")
    return np.asarray(scores, dtype=np.float64)


# -- what Quantus 0.6.0 does ------------------------------------------------------------------


def test_raw_quantus_accumulates_patches(tiny):
    model, data = tiny
    x, y, a = inputs(data, model, 6)
    seen = []

    def recording(arr, indices, **kwargs):
        seen.append(arr.copy())
        return batch_baseline_replacement_by_indices(arr, indices, **kwargs)

    params = {"perturb_patch_sizes": [4], "n_perturb_samples": 1}
    raw = raw_quantus(model, x, y, a, perturb_func=recording, **params)
    # the k-th call gets images whose first k patches (16 pixels each) are already replaced
    changed = [(arr != x.reshape(6, -1)).sum(1) for arr in seen]
    assert len(changed) == 4
    for k, count in enumerate(changed):
        assert count.max() <= 16 * k and count.min() > 16 * (k - 1)

    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    cumulative = captum_infidelity(model, xt, yt, a, 4, cumulative=True)
    single = captum_infidelity(model, xt, yt, a, 4)
    assert np.allclose(raw, cumulative, rtol=RTOL, atol=ATOL)  # a deletion curve's MSE
    assert not np.allclose(raw, single, rtol=0.1)  # not Yeh et al.'s estimator


@pytest.mark.parametrize("explain", [gradient, integrated_gradients], ids=["grad", "ig"])
def test_raw_quantus_is_captums_infidelity_of_nested_deletions(mnist, cnn, explain):
    params = {"perturb_patch_sizes": [7], "n_perturb_samples": 1}
    x, y, a = inputs(mnist, cnn, 8, explain=explain)
    raw = raw_quantus(cnn, x, y, a, **params)
    cumulative = captum_infidelity(
        cnn, torch.as_tensor(x), torch.as_tensor(y), a, 7, cumulative=True
    )
    assert np.allclose(raw, cumulative, rtol=RTOL, atol=ATOL)
    ev = evaluate_quantus(
        make_context(mnist, cnn, explain), metric="Infidelity", metric_params=params, n_images=8
    )
    single = captum_infidelity(cnn, torch.as_tensor(x), torch.as_tensor(y), a, 7)
    assert np.allclose(ev.per_image["infidelity"], single, rtol=RTOL, atol=ATOL)
    assert not np.allclose(raw, single, rtol=0.1)


# -- the adapter: Yeh et al.'s estimator, equal to Captum's -----------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"perturb_patch_sizes": [4], "n_perturb_samples": 1},
        {"perturb_patch_sizes": [7], "n_perturb_samples": 3},  # identical passes: same mean
        {"perturb_patch_sizes": [7], "n_perturb_samples": 1, "perturb_baseline": "mean"},
        {"perturb_patch_sizes": [4, 14], "n_perturb_samples": 1},
    ],
)
def test_adapter_equals_captum_on_the_same_perturbations(mnist, cnn, params):
    n = 8
    ev = evaluate_quantus(
        make_context(mnist, cnn), metric="Infidelity", metric_params=params, n_images=n
    )
    ev.check()
    x, y, a = inputs(mnist, cnn, n)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    baseline = params.get("perturb_baseline", "black")
    # Quantus averages over patch sizes with equal weight, whatever their patch counts
    expected = np.mean(
        [captum_infidelity(cnn, xt, yt, a, s, baseline) for s in params["perturb_patch_sizes"]],
        axis=0,
    )
    scores = ev.per_image["infidelity"]
    assert scores.shape == (n,)
    assert np.allclose(scores, expected, rtol=RTOL, atol=ATOL)
    assert ev.metrics["infidelity"] == pytest.approx(scores.mean(), rel=1e-12)
    assert np.allclose(ev.arrays["per_image"], scores)
    cumulative = raw_quantus(cnn, x, y, a, **params)
    assert not np.allclose(scores, cumulative, rtol=0.1)


def test_the_guard_holds_for_any_batch_size(mnist, cnn):
    x, y, a = inputs(mnist, cnn, 6)
    metric = quantus.Infidelity(perturb_patch_sizes=[7], n_perturb_samples=1)
    single_perturbations(metric)
    with quiet():
        scores = metric(model=cnn, x_batch=x, y_batch=y, a_batch=a, batch_size=4)
    expected = captum_infidelity(cnn, torch.as_tensor(x), torch.as_tensor(y), a, 7)
    assert np.allclose(scores, expected, rtol=RTOL, atol=ATOL)


def test_every_perturbation_starts_from_the_original_images(tiny):
    model, data = tiny
    seen = []

    def recording(arr, indices, **kwargs):
        seen.append(arr.copy())
        return batch_baseline_replacement_by_indices(arr, indices, **kwargs)

    params = {"perturb_patch_sizes": [2, 4], "n_perturb_samples": 2, "perturb_func": recording}
    ev = evaluate_quantus(make_context(data, model), metric="Infidelity", metric_params=params)
    x = data.test.x.numpy().reshape(6, -1)
    assert len(seen) == 2 * (16 + 4)  # samples x (patches of size 2 + patches of size 4)
    assert all(np.array_equal(arr, x) for arr in seen)
    assert ev.arrays["metric_params"]["perturb_func"] == "recording"


@pytest.mark.parametrize("sizes", [[3], [4, 5]])
def test_patch_sizes_that_do_not_divide_the_image_are_refused_before_any_work(mnist, cnn, sizes):
    def explain_nothing(*_):
        raise AssertionError("explained before the request was checked")

    context = make_context(mnist, cnn, explain_nothing)
    bad = [s for s in sizes if 28 % s]
    with pytest.raises(ValueError, match=re.escape(f"perturb_patch_sizes {bad} do not divide")):
        evaluate_quantus(context, metric="Infidelity", metric_params={"perturb_patch_sizes": sizes})
    # raw Quantus crashes with an obscure reshape error instead
    x, y, a = inputs(mnist, cnn, 2)
    with pytest.raises(ValueError, match="cannot reshape"):
        raw_quantus(cnn, x, y, a, perturb_patch_sizes=sizes, n_perturb_samples=1)
