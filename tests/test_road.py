"""ROAD (Rong et al. 2022; plugins/evaluators/road.py): the batched conjugate-gradient noisy
linear imputation against a direct ``scipy.sparse`` solve of the same system and against
Quantus 0.6.0's ``noisy_linear_imputation``; the MoRF accuracy curve against Quantus's ``ROAD``
(noise off, so both are deterministic); hand-computed systems and curves; the noise's standard
deviation; per-image determinism; untouched inputs; the spec.

Tolerances: with the default ``cg_tol = 1e-8`` the imputed pixels are within 1e-6 of
``spsolve`` (measured about 1e-7), with ``cg_tol = 1e-12`` within 1e-10.
"""

import inspect

import numpy as np
import pytest
import quantus
import torch
from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation
from scipy import sparse
from scipy.sparse.linalg import spsolve

from benchmark.kit import ranking as rk
from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from benchmark.testing import make_context
from plugins.evaluators import road
from plugins.models.seed_cnn import build_seed_cnn

N = 48
WEIGHTS = {(-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6, (0, 1): 1 / 6}
WEIGHTS |= {(1, -1): 1 / 12, (1, 0): 1 / 6, (1, 1): 1 / 12}
JOB = {
    "dataset": "mnist",
    "dataset_params": {"train_limit": 1000, "test_limit": N},
    "debiaser_params": {"epochs": 3},
    "explainer": "gradient",
}
"""``make_context`` of the job the tests score: seed-cnn by ERM, 3 epochs on 1,000 MNIST images,
N test images, the built-in gradient explainer."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The job's explainer, model, test images, labels and tie-free maps of the label (Quantus's
    ROAD scores against the label)."""
    job = make_context(**JOB, cache_dir=str(tmp_path_factory.mktemp("cache")))
    x, y = job.dataset.test.x, job.dataset.test.y
    jitter = 1e-9 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    maps = job.explain(job.model, x, y) + jitter
    assert all(m.flatten().unique().numel() == m.numel() for m in maps)
    return job.explain, job.model, x, y, maps


def direct_solve(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's system written out pixel by pixel (one equation per removed pixel: its value
    times the sum of its in-image neighbour weights minus the weighted removed neighbours
    equals the weighted kept neighbours) and solved by ``scipy.sparse.linalg.spsolve``."""
    h, w = removed.shape
    unknown = {p: k for k, p in enumerate(zip(*np.nonzero(removed), strict=True))}
    a = sparse.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros(len(unknown))
    for (i, j), k in unknown.items():
        for (di, dj), weight in WEIGHTS.items():
            ni, nj = i + di, j + dj
            if not (0 <= ni < h and 0 <= nj < w):
                continue
            a[k, k] += weight
            if (ni, nj) in unknown:
                a[k, unknown[(ni, nj)]] -= weight
            else:
                b[k] += weight * image[ni, nj]
    out = image.astype(np.float64).copy()
    out[removed] = spsolve(a.tocsc(), b)
    return out


def morf_masks(maps: torch.Tensor, percentages) -> torch.Tensor:
    """``(N * P, H, W)``: for each image and percentage, its top pixels removed."""
    h, w = maps.shape[-2:]
    rank = rk.positions(rk.ranking(rk.pixel_importance(maps)))
    counts = torch.tensor([int(h * w * p / 100) for p in percentages])
    return (rank[:, None, :] < counts[None, :, None]).view(-1, h, w)


# --------------------------------------------------------------------------------------------
# The imputation.


def test_neighbour_sum_is_the_weighted_sum_of_the_8_neighbours():
    u = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.zeros_like(u)
    for i in range(5):
        for j in range(7):
            for (di, dj), weight in WEIGHTS.items():
                if 0 <= i + di < 5 and 0 <= j + dj < 7:
                    expected[:, i, j] += weight * u[:, i + di, j + dj]
    assert torch.allclose(road.neighbour_sum(u), expected, rtol=0, atol=1e-15)
    # in-image weights: 1 inside, 5/12 in a corner, 2/3 on an edge
    sums = road.neighbour_sum(torch.ones(1, 4, 4, dtype=torch.float64))[0]
    assert torch.allclose(sums[1:3, 1:3], torch.ones(2, 2, dtype=torch.float64))
    assert float(sums[0, 0]) == pytest.approx(5 / 12) and float(sums[0, 1]) == pytest.approx(2 / 3)


def test_imputation_by_hand():
    image = torch.tensor([[1.0, 2, 3], [4, 9, 6], [7, 8, 9]]).view(1, 1, 3, 3)
    centre = torch.zeros(1, 3, 3, dtype=torch.bool)
    centre[0, 1, 1] = True
    # (1 + 3 + 7 + 9) / 12 + (2 + 4 + 6 + 8) / 6 = 5
    out = road.linear_imputation(image, centre)
    assert float(out[0, 0, 1, 1]) == pytest.approx(5.0, abs=1e-9)
    assert torch.equal(out[~centre[:, None]], image.double()[~centre[:, None]])
    # a corner keeps 3 neighbours, weights 1/6, 1/6, 1/12: (2/6 + 4/6 + 9/12) / (5/12) = 4.2
    corner = torch.zeros(1, 3, 3, dtype=torch.bool)
    corner[0, 0, 0] = True
    assert float(road.linear_imputation(image, corner)[0, 0, 0, 0]) == pytest.approx(4.2)
    # two coupled unknowns a = (0, 0), b = (0, 1) of [[1, 2, 3], [4, 5, 6], [7, 8, 9]]:
    # 5a - 2b = 13 and -2a + 8b = 26 (times 12), so a = b = 13 / 3
    ramp = torch.arange(1.0, 10).view(1, 1, 3, 3)
    pair = torch.zeros(1, 3, 3, dtype=torch.bool)
    pair[0, 0, :2] = True
    out = road.linear_imputation(ramp, pair)
    assert out[0, 0, 0, :2].tolist() == pytest.approx([13 / 3, 13 / 3], abs=1e-9)
    # a constant image is its own imputation whatever is removed
    flat = torch.full((1, 2, 6, 6), 0.25)
    holes = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.8
    assert torch.allclose(road.linear_imputation(flat, holes), flat.double(), atol=1e-9)
    # channels share the mask and are solved alike: the system is linear in the image
    two = torch.cat([ramp, 2 * ramp, ramp.flip(-1)], 1)
    out = road.linear_imputation(two, pair)
    assert torch.allclose(out[:, 1], 2 * out[:, 0]) and torch.allclose(
        out[:, :1], road.linear_imputation(ramp, pair)
    )
    assert torch.allclose(out[:, 2:], road.linear_imputation(ramp.flip(-1), pair))


def test_imputation_equals_a_direct_sparse_solve(trained):
    _, _, x, _, maps = trained
    percentages = (10, 50, 90)
    images = x[:4].repeat_interleave(len(percentages), 0)
    masks = morf_masks(maps[:4], percentages)
    ours = road.linear_imputation(images, masks)
    tight = road.linear_imputation(images, masks, cg_tol=1e-12)
    for k in range(len(images)):
        expected = direct_solve(images[k, 0].double().numpy(), masks[k].numpy())
        assert np.abs(ours[k, 0].numpy() - expected).max() < 1e-6
        assert np.abs(tight[k, 0].numpy() - expected).max() < 1e-10


def test_imputation_equals_quantus_without_noise(trained):
    _, _, x, _, maps = trained
    masks = morf_masks(maps[:3], (30, 70))
    images = x[:3].repeat_interleave(2, 0)
    ours = road.linear_imputation(images, masks)
    for k in range(len(images)):
        arr = images[k].double().numpy()
        indices = np.flatnonzero(masks[k].numpy())
        theirs = quantus_imputation(arr=arr.copy(), indices=indices, noise=0.0)
        assert np.abs(ours[k].numpy() - theirs).max() < 1e-6


def test_noise_has_standard_deviation_0_01_on_removed_pixels_only(trained):
    _, _, x, _, maps = trained
    masks = morf_masks(maps, (50,))
    clean = road.linear_imputation(x, masks)
    noisy = road.noisy_linear_imputation(x, masks, noise=0.01, seed=0)
    diff = (noisy - clean)[:, 0]
    assert torch.equal(diff[~masks], torch.zeros_like(diff[~masks]))
    removed = diff[masks]
    assert len(removed) == N * 392
    assert abs(float(removed.mean())) < 5e-4
    assert float(removed.std()) == pytest.approx(0.01, rel=0.03)
    again = road.noisy_linear_imputation(x, masks, noise=0.01, seed=0)
    assert torch.equal(noisy, again)
    assert not torch.equal(noisy, road.noisy_linear_imputation(x, masks, noise=0.01, seed=1))


def test_imputation_is_per_image(trained):
    """Bit-identical alone, in a batch and reordered: converged systems leave the CG batch,
    and the noise is keyed by the image."""
    _, _, x, _, maps = trained
    masks = morf_masks(maps, (80,))
    together = road.noisy_linear_imputation(x, masks, seed=3)
    reverse = torch.arange(N - 1, -1, -1)
    assert torch.equal(
        road.noisy_linear_imputation(x[reverse], masks[reverse], seed=3), together[reverse]
    )
    for i in (0, 5, 31):
        alone = road.noisy_linear_imputation(x[i : i + 1], masks[i : i + 1], seed=3)
        assert torch.equal(alone[0], together[i])


def test_every_pixel_removed_is_refused():
    with pytest.raises(ValueError, match="kept pixel"):
        road.linear_imputation(torch.rand(2, 1, 3, 3), torch.ones(2, 3, 3, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# Curves and the evaluator.


class CentreModel(torch.nn.Module):
    """Class 0 when the centre pixel exceeds 7: logits (centre - 7, 0)."""

    def forward(self, x):
        centre = x[:, 0, 1, 1] - 7
        return torch.stack([centre, torch.zeros_like(centre)], 1)


def sigmoid(v: float) -> float:
    return 1 / (1 + np.exp(-v))


def test_road_curves_by_hand():
    image = torch.tensor([[1.0, 2, 3], [4, 9, 6], [7, 8, 9]]).view(1, 1, 3, 3)
    relevance = torch.tensor([[0.0, 1, 2], [3, 9, 4], [5, 6, 7]]).view(1, 1, 3, 3)
    split = Split(image, torch.zeros(1, dtype=torch.long))
    data = Dataset(split, split, 2)
    context = EvaluationContext(
        data,
        CentreModel(),
        ModelSpec("centre", CentreModel),
        0,
        None,
        lambda m, xs, t: relevance,
    )
    # 20 % of 9 pixels is 1: MoRF removes the centre (imputed 5, so 5 - 7 < 0: class 1),
    # LeRF the corner (imputed 4.2), which leaves the centre and the class alone
    result = road.evaluate_road(context, n_images=1, percentages=[20], noise=0.0)
    assert result.metrics["morf_auc"] == 0.0 and result.metrics["lerf_auc"] == 1.0
    assert result.metrics["lerf_minus_morf"] == 1.0
    assert result.metrics["morf_prob_auc"] == pytest.approx(sigmoid(-2.0))
    assert result.metrics["lerf_prob_auc"] == pytest.approx(sigmoid(2.0))
    assert result.metrics["lerf_minus_morf_prob"] == pytest.approx(sigmoid(2.0) - sigmoid(-2.0))
    # two points: the area is the trapezoid over 0.2..0.4 divided by 0.2, the mean height
    two = road.evaluate_road(context, n_images=1, percentages=[20, 40], noise=0.0)
    curve = two.arrays["morf_probability"]
    assert two.metrics["morf_prob_auc"] == pytest.approx((curve[0] + curve[1]) / 2)


def test_morf_accuracy_equals_quantus_road(trained):
    _, model, x, y, maps = trained
    percentages = [10, 30, 50, 70, 90]
    correct, _ = road.road_curves(model, x, maps, y, percentages=percentages, noise=0.0)
    ours = correct[:, 0].mean(0).numpy()
    metric = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)
    arguments = dict(model=model, x_batch=x.numpy().copy(), y_batch=y.numpy().copy(), device="cpu")
    theirs = metric(a_batch=maps.numpy().copy(), batch_size=N, **arguments)
    assert list(theirs) == percentages
    assert np.array_equal(ours, np.array([theirs[p] for p in percentages]))
    assert ours[0] > ours[-1]  # removing the most relevant pixels hurts
    # Quantus's defect: with batches of 16 it reports the first batch's 16 images only
    first = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)
    partial = first(a_batch=maps.numpy().copy(), batch_size=16, **arguments)
    assert np.array_equal(
        np.array([partial[p] for p in percentages]), correct[:16, 0].mean(0).numpy()
    )


def context_for(model, x, y, explain, seed=0):
    data = Dataset(Split(x, y), Split(x, y), 10)
    return EvaluationContext(
        data, model, ModelSpec("seed-cnn", build_seed_cnn), seed, None, explain
    )


def test_scores_are_per_image(trained):
    """Alone, in the batch, reordered: accuracy curves identical, probabilities to 1e-6 (the
    imputed images are bit-identical; the model's float32 products may round differently for
    different batch sizes)."""
    gradient, model, x, y, _ = trained
    whole = road.evaluate_road(context_for(model, x, y, gradient), n_images=N, batch_size=200)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(4))
    shuffled = road.evaluate_road(
        context_for(model, x[perm], y[perm], gradient), n_images=N, batch_size=77
    )
    for key in ("morf_auc", "lerf_auc", "lerf_minus_morf"):
        assert np.array_equal(np.array(shuffled.arrays[key]), np.array(whole.arrays[key])[perm])
    for key in ("morf_prob_auc", "lerf_prob_auc"):
        expected = np.array(whole.arrays[key])[perm]
        assert np.allclose(np.array(shuffled.arrays[key]), expected, rtol=0, atol=1e-6)
    for i in (0, 9):
        alone = road.evaluate_road(
            context_for(model, x[i : i + 1], y[i : i + 1], gradient), n_images=1
        )
        assert alone.arrays["morf_auc"][0] == whole.arrays["morf_auc"][i]
        assert alone.arrays["lerf_prob_auc"][0] == pytest.approx(
            whole.arrays["lerf_prob_auc"][i], abs=1e-6
        )
    assert whole.metrics["lerf_minus_morf"] > 0  # gradient maps beat their own reverse
    assert len(whole.arrays["morf_accuracy"]) == 9


def test_inputs_and_attributions_are_not_modified(trained):
    _, model, x, y, maps = trained
    images, labels, given = x.clone(), y.clone(), maps.clone()
    context = context_for(model, images, labels, lambda m, xs, t: given)
    road.evaluate_road(context, n_images=N, percentages=[40, 80])
    assert torch.equal(images, x) and torch.equal(labels, y) and torch.equal(given, maps)
    assert not model.training


def test_spec_and_bad_parameters(trained):
    (spec,) = road.specs()
    assert spec.requires == frozenset({"explainer"})
    signature = inspect.signature(spec.factory)
    defaults = {k: p.default for k, p in signature.parameters.items() if k != "context"}
    assert {k: v for k, v in spec.params.items() if k != "percentages"} == {
        k: v for k, v in defaults.items() if k != "percentages"
    }
    assert (
        list(spec.params["percentages"])
        == list(defaults["percentages"])
        == list(range(10, 100, 10))
    )
    # MoRF areas should fall, LeRF areas and the gap between them rise, on both curves
    for suffix in ("", "_prob"):
        assert spec.directions[f"morf{suffix}_auc"] == "lower"
        assert spec.directions[f"lerf{suffix}_auc"] == "higher"
        assert spec.directions[f"lerf_minus_morf{suffix}"] == "higher"
    assert len(spec.directions) == 6
    gradient, model, x, y, _ = trained
    context = context_for(model, x, y, gradient)
    for bad in ([100], [50, 20], []):
        with pytest.raises(ValueError, match="percentages"):
            road.evaluate_road(context, n_images=2, percentages=bad)
    with pytest.raises(ValueError, match="noise"):
        road.evaluate_road(context, n_images=2, noise=-0.1)


def test_figure_shows_morf_and_lerf_per_explainer(trained):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    _, model, x, y, maps = trained
    rows = []
    for name, sign in (("gradient", 1), ("reversed", -1)):
        context = context_for(model, x[:8], y[:8], lambda m, xs, t, s=sign: s * maps[:8])
        arrays = road.evaluate_road(context, n_images=8, percentages=[20, 60]).arrays
        rows.append(
            {
                "dataset": "mnist",
                "model": "seed-cnn",
                "debiaser": "none",
                "explainer": name,
                "seed": 0,
                "arrays": arrays,
            }
        )
    figures = road.specs()[0].figures(pd.DataFrame(rows))
    morf, lerf = figures["curves-mnist-seed-cnn-none"].axes[:2]
    assert [line.get_label() for line in morf.get_lines()] == ["gradient", "reversed"]
    assert list(morf.get_lines()[0].get_xdata()) == [20.0, 60.0]
    assert len(lerf.get_lines()) == 2
    matplotlib.pyplot.close("all")
