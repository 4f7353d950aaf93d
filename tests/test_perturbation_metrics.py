"""Pixel flipping, RISE insertion / deletion and region perturbation (plugins/evaluators/
faithfulness.py on the perturbation.py engine).

* against Quantus 0.6.0 on a briefly trained seed-cnn and real MNIST images: PixelFlipping and
  RegionPerturbation curves (softmax outputs) equal to 1e-6, Quantus's area recomputed with
  ``np.trapezoid`` because its ``calculate_auc`` calls ``np.trapz`` (gone in NumPy 2.4);
  insertion as Quantus PixelFlipping run from the blurred image with a perturbation that puts
  the original pixels back; deletion's curve after step 0 is PixelFlipping's;
* against a direct re-run of RISE's ``CausalMetric.single_run`` loop (one pixel block and one
  model call at a time) and RISE's blur kernel;
* hand-computed toy cases (a "model" whose logit is the sum of the pixels);
* per-image determinism (alone, in the batch, reordered), inputs left untouched, the specs.

The gradient maps get a 1e-9 jitter so they have no ties: Quantus's unstable ``argsort``
orders ties arbitrarily, which is the one place the two may legitimately differ.
"""

import inspect

import numpy as np
import pytest
import quantus
import torch

from benchmark.kit import ranking as rk
from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from benchmark.testing import make_context
from plugins.evaluators import faithfulness as fa
from plugins.evaluators import perturbation as pt
from plugins.models.seed_cnn import build_seed_cnn

N = 48
STEPS = 28
QUANTUS_ATOL = 1e-6  # float32 softmax in Quantus vs float64 here; measured about 1e-7


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> EvaluationContext:
    """What a job gets: seed-cnn trained by ERM for 3 epochs on 1,000 MNIST images (about 80 %
    test accuracy), N test images, the built-in ``gradient`` explainer (cached, checked)."""
    return make_context(
        dataset="mnist",
        dataset_params={"train_limit": 1000, "test_limit": N},
        debiaser_params={"epochs": 3},
        explainer="gradient",
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )


@pytest.fixture(scope="module")
def trained(job):
    """The job's data, model, test images, predicted classes and tie-free gradient maps."""
    model, x = job.model, job.dataset.test.x
    with torch.no_grad():
        target = model(x).argmax(1)
    jitter = 1e-9 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    maps = job.explain(model, x, target) + jitter
    assert all(m.flatten().unique().numel() == m.numel() for m in maps)  # no ties
    return job.dataset, model, x, target, maps


def quantus_call(metric, model, x, target, maps):
    """A Quantus metric on private copies, all images in one batch, softmax outputs."""
    return np.asarray(
        metric(
            model=model,
            x_batch=x.numpy().copy(),
            y_batch=target.numpy().copy(),
            a_batch=maps.numpy().copy(),
            device="cpu",
            batch_size=len(x),
            softmax=True,
        )
    )


# --------------------------------------------------------------------------------------------
# Against Quantus 0.6.0 and RISE.


def test_pixel_flipping_equals_quantus(trained):
    _, model, x, target, maps = trained
    assert float(x.amin(dim=(1, 2, 3)).max()) == 0.0  # Quantus's "black" (image min) is 0 here
    metric = quantus.PixelFlipping(
        features_in_step=28 * 28 // STEPS, perturb_baseline="black", disable_warnings=True
    )
    theirs = quantus_call(metric, model, x, target, maps)
    ours = fa.pixel_flipping_curve(model, x, maps, target, torch.zeros_like(x), steps=STEPS)
    assert theirs.shape == (N, STEPS)
    assert np.allclose(ours.numpy(), theirs, rtol=0, atol=QUANTUS_ATOL)
    # our area is Quantus's unit-spaced trapezoid (calculate_auc) divided by the step count
    ours_auc = np.trapezoid(ours.numpy(), dx=1 / STEPS, axis=1)
    assert np.allclose(ours_auc, np.trapezoid(theirs, dx=1, axis=1) / STEPS, atol=QUANTUS_ATOL)


def test_deletion_after_step_zero_is_quantus_pixel_flipping(trained):
    _, model, x, target, maps = trained
    metric = quantus.PixelFlipping(
        features_in_step=28, perturb_baseline="black", disable_warnings=True
    )
    theirs = quantus_call(metric, model, x, target, maps)
    ours = fa.insertion_deletion_curve(
        model, x, maps, target, torch.zeros_like(x), mode="deletion", steps=STEPS
    )
    assert np.allclose(ours[:, 1:].numpy(), theirs, atol=QUANTUS_ATOL)
    with torch.no_grad():
        clean = model(x).double().softmax(1).gather(1, target[:, None]).squeeze(1)
    assert torch.allclose(ours[:, 0], clean)


def test_insertion_is_quantus_pixel_flipping_from_the_blurred_image(trained):
    _, model, x, target, maps = trained
    original = x.numpy().reshape(N, -1).copy()

    def put_back(arr, indices, **kwargs):  # Quantus's perturb_func protocol
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = original[rows, indices]
        return out

    blurred = pt.rise_blur(x)
    metric = quantus.PixelFlipping(
        features_in_step=28, perturb_func=put_back, disable_warnings=True
    )
    theirs = quantus_call(metric, model, blurred, target, maps)
    ours = fa.insertion_deletion_curve(
        model, x, maps, target, blurred, mode="insertion", steps=STEPS
    )
    assert np.allclose(ours[:, 1:].numpy(), theirs, atol=QUANTUS_ATOL)
    assert torch.allclose(
        ours[:, -1],
        fa.insertion_deletion_curve(model, x, maps, target, x, mode="insertion", steps=STEPS)[:, 0],
    )  # fully inserted = the clean image


def rise_single_run(model, image, saliency, substrate, mode, step):
    """RISE ``CausalMetric.single_run`` (eclique/RISE ``evaluation.py``), re-written for one
    CHW image: one block of ``step`` pixels and one model call at a time."""
    c, h, w = image.shape
    n_steps = (h * w + step - 1) // step
    start, finish = (image.clone(), substrate) if mode == "del" else (substrate.clone(), image)
    with torch.no_grad():
        cls = int(model(image[None]).argmax(1))
    order = np.flip(np.argsort(saliency.reshape(-1).numpy()), -1)
    scores = np.empty(n_steps + 1)
    for i in range(n_steps + 1):
        with torch.no_grad():
            scores[i] = float(model(start[None]).softmax(1)[0, cls])
        coords = torch.as_tensor(order[step * i : step * (i + 1)].copy())
        start.view(c, -1)[:, coords] = finish.reshape(c, -1)[:, coords]
    return scores


def rise_auc(arr):
    """RISE's ``auc``: normalised area under the curve."""
    return (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (arr.shape[0] - 1)


def test_insertion_and_deletion_equal_the_rise_loop(trained):
    _, model, x, target, maps = trained
    blurred = pt.rise_blur(x)
    for mode, substrate in (("del", torch.zeros_like(x)), ("ins", blurred)):
        ours = fa.insertion_deletion_curve(
            model,
            x,
            maps,
            target,
            substrate,
            mode="deletion" if mode == "del" else "insertion",
            steps=STEPS,
        )
        for i in range(0, N, 12):
            theirs = rise_single_run(model, x[i], maps[i, 0], substrate[i], mode, step=28)
            assert np.allclose(ours[i].numpy(), theirs, atol=1e-6)
            auc = rk.normalised_auc(ours[i], np.arange(STEPS + 1) / STEPS)
            assert np.isclose(auc, rise_auc(theirs), atol=1e-6)


def test_rise_blur_kernel():
    from scipy import ndimage, signal

    kernel = pt.rise_kernel(11, 5.0).numpy()
    assert kernel.shape == (11, 11) and np.isclose(kernel.sum(), 1.0)
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1])
    # RISE's gkern: an impulse smoothed by gaussian_filter (reflecting edges), not a plain
    # truncated Gaussian: the corner is heavier than exp(-50/50) of the centre would be
    plain = np.exp(-(np.arange(-5, 6) ** 2) / 50)
    assert kernel[0, 0] / kernel[5, 5] > (plain[0] / plain[5]) ** 2
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    assert np.allclose(kernel, ndimage.gaussian_filter(impulse, 5.0))
    image = torch.rand(2, 3, 9, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    blurred = pt.rise_blur(image)
    for n in range(2):
        for c in range(3):
            expected = signal.convolve2d(image[n, c].numpy(), kernel, mode="same")  # zero pad
            assert np.allclose(blurred[n, c].numpy(), expected)


@pytest.mark.filterwarnings("ignore:The settings for perturbing input")  # black on black
@pytest.mark.parametrize("patch_size", [4, 8])  # 8 does not divide 28: Quantus pads (2, 2)
def test_region_perturbation_equals_quantus(trained, patch_size):
    _, model, x, target, maps = trained
    regions = (-(-28 // patch_size)) ** 2
    metric = quantus.RegionPerturbation(
        patch_size=patch_size,
        regions_evaluation=regions,
        perturb_baseline=0.0,
        disable_warnings=True,
    )
    theirs = quantus_call(metric, model, x, target, maps)  # f(x) - f(x_k), k = 1..L
    outputs = fa.region_perturbation_curve(
        model, x, maps, target, torch.zeros_like(x), patch_size=patch_size
    )
    assert outputs.shape == (N, regions + 1)
    drops = (outputs[:, :1] - outputs[:, 1:]).numpy()
    assert np.allclose(drops, theirs, atol=QUANTUS_ATOL)
    # AOPC (Samek eq. 12) from Quantus's curve: the k = 0 term is zero, L + 1 terms
    assert np.allclose(fa.aopc(outputs), theirs.sum(1) / (regions + 1), atol=QUANTUS_ATOL)


# --------------------------------------------------------------------------------------------
# Hand-computed toy cases.


class SumModel(torch.nn.Module):
    """Two logits: the sum of all pixels, and 0. Softmax of class 0 is sigmoid(sum)."""

    def forward(self, x):
        total = x.sum((1, 2, 3))
        return torch.stack([total, torch.zeros_like(total)], 1)


TOY = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])  # 1 image, 1 channel, 2x2
CLASS0 = torch.zeros(1, dtype=torch.long)


def sigmoid(v):
    return 1 / (1 + np.exp(-np.asarray(v, dtype=float)))


def test_pixel_flipping_by_hand():
    # attribution = the pixel itself: flip 4, then 3, 2, 1; the logit is what is left
    curve = fa.pixel_flipping_curve(
        SumModel(), TOY, TOY, CLASS0, torch.zeros_like(TOY), steps=4, output="logit"
    )
    assert curve.tolist() == [[6.0, 3.0, 1.0, 0.0]]
    # auc = 1/4 * (6/2 + 3 + 1 + 0/2) = 1.75
    assert np.isclose(np.trapezoid(curve.numpy()[0], dx=1 / 4), 1.75)
    # the opposite map flips 1 first: 9, 7, 4, 0
    curve = fa.pixel_flipping_curve(
        SumModel(), TOY, -TOY, CLASS0, torch.zeros_like(TOY), steps=2, output="logit"
    )
    assert curve.tolist() == [[7.0, 0.0]]
    probability = fa.pixel_flipping_curve(
        SumModel(), TOY, TOY, CLASS0, torch.zeros_like(TOY), steps=4
    )
    assert np.allclose(probability.numpy()[0], sigmoid([6, 3, 1, 0]))


def test_insertion_deletion_by_hand():
    deletion = fa.insertion_deletion_curve(
        SumModel(), TOY, TOY, CLASS0, torch.zeros_like(TOY), mode="deletion", steps=4
    )
    assert np.allclose(deletion.numpy()[0], sigmoid([10, 6, 3, 1, 0]))
    insertion = fa.insertion_deletion_curve(
        SumModel(), TOY, TOY, CLASS0, torch.zeros_like(TOY), mode="insertion", steps=2
    )
    assert np.allclose(insertion.numpy()[0], sigmoid([0, 7, 10]))
    # RISE's normalised AUC: trapezoid over x = 0, 1/2, 1
    s = sigmoid([0, 7, 10])
    expected = 0.5 * ((s[0] + s[1]) / 2 + (s[1] + s[2]) / 2)
    assert np.isclose(rk.normalised_auc(insertion[0], [0, 0.5, 1]), expected)


def test_region_perturbation_by_hand():
    image = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    # 2x2 regions: sums 0+1+4+5=10, 2+3+6+7=18, 8+9+12+13=42, 10+11+14+15=50
    outputs = fa.region_perturbation_curve(
        SumModel(), image, image, CLASS0, torch.zeros_like(image), patch_size=2, output="logit"
    )
    assert outputs.tolist() == [[120.0, 70.0, 28.0, 10.0, 0.0]]
    # AOPC = (0 + 50 + 92 + 110 + 120) / 5
    assert np.isclose(fa.aopc(outputs)[0], 372 / 5)
    two = fa.region_perturbation_curve(
        SumModel(),
        image,
        image,
        CLASS0,
        torch.full_like(image, 1.0),
        patch_size=2,
        regions=2,
        output="logit",
    )
    assert two.tolist() == [[120.0, 74.0, 36.0]]  # a region of 4 pixels becomes 4


def test_region_tiling_follows_quantus_padding():
    labels, count = fa.region_labels(5, 5, 2)  # padded to 6: 0 before, 1 after
    assert count == 9
    assert labels.view(5, 5).tolist() == [
        [0, 0, 1, 1, 2],
        [0, 0, 1, 1, 2],
        [3, 3, 4, 4, 5],
        [3, 3, 4, 4, 5],
        [6, 6, 7, 7, 8],
    ]
    labels, count = fa.region_labels(6, 4, 4)  # rows padded (1, 1), columns not at all
    assert count == 2
    assert labels.view(6, 4)[:, 0].tolist() == [0, 0, 0, 1, 1, 1]


def test_ranking_breaks_ties_by_one_fixed_priority():
    flat = torch.zeros(3, 10, dtype=torch.float64)
    order = rk.ranking(flat)
    assert torch.equal(order[0], order[1]) and torch.equal(order[1], order[2])
    assert sorted(order[0].tolist()) == list(range(10))
    assert order[0].tolist() != list(range(10))  # not raster order
    ranked = rk.ranking(torch.tensor([[0.0, 3.0, 1.0, 3.0]], dtype=torch.float64))
    assert ranked[0, 2:].tolist() == [2, 0] and set(ranked[0, :2].tolist()) == {1, 3}
    assert torch.equal(rk.ranking(flat), order)  # same every call
    rank = rk.positions(order)
    assert torch.equal(order.gather(1, rank), torch.arange(10).expand(3, -1))
    # another seed, another fixed priority (ROAR keeps its own); no seed: ties by index
    assert not torch.equal(rk.ranking(flat, tie_seed=20190101), order)
    assert rk.ranking(flat, tie_seed=None)[0].tolist() == list(range(10))
    by_index = rk.ranking(torch.tensor([[0.0, 3.0, 1.0, 3.0]], dtype=torch.float64), tie_seed=None)
    assert by_index[0].tolist() == [1, 3, 2, 0]
    assert pt.step_counts(10, 4).tolist() == [0, 2, 5, 7, 10]
    with pytest.raises(ValueError, match="steps"):
        pt.step_counts(10, 11)


def test_keyed_noise_depends_on_the_image_and_seed_only():
    x = torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    keys = rk.image_keys(x, seed=3)
    assert len(set(keys.tolist())) == 4
    assert np.array_equal(rk.image_keys(x[[2, 0]], 3), keys[[2, 0]])
    assert not np.array_equal(rk.image_keys(x, 4), keys)
    u = rk.keyed_uniform(keys, 7, (1, 5, 5))
    assert torch.equal(rk.keyed_uniform(keys[[3, 1]], 7, (1, 5, 5)), u[[3, 1]])
    assert not torch.equal(rk.keyed_uniform(keys, 8, (1, 5, 5)), u)
    big = rk.keyed_uniform(keys[:1], 0, (200_000,))
    assert float(big.min()) >= 0 and float(big.max()) < 1
    assert abs(float(big.mean()) - 0.5) < 0.005 and abs(float(big.var()) - 1 / 12) < 0.002
    normal = rk.keyed_normal(keys[:1], 0, (200_000,))
    assert abs(float(normal.mean())) < 0.01 and abs(float(normal.std()) - 1) < 0.01


# --------------------------------------------------------------------------------------------
# The evaluators: determinism, untouched inputs, specs.


def context_for(model, x, y, explain, seed=0):
    data = Dataset(Split(x, y), Split(x, y), 10)
    return EvaluationContext(
        data, model, ModelSpec("seed-cnn", build_seed_cnn), seed, None, explain
    )


EVALUATORS = {
    "pixel-flipping": (fa.evaluate_pixel_flipping, "auc"),
    "deletion": (fa.evaluate_deletion, "auc"),
    "insertion": (fa.evaluate_insertion, "auc"),
    "region-perturbation": (fa.evaluate_region_perturbation, "aopc"),
}


@pytest.mark.parametrize("name", EVALUATORS)
def test_scores_are_per_image(trained, job, name):
    """An image's score is the same alone, in the batch and after reordering (including the
    uniform noise of region perturbation, keyed by the image). Tolerance 1e-6: the model's
    float32 matrix products may round differently for different batch sizes."""
    data, model, x, _, _ = trained
    explain = job.explain
    evaluate, key = EVALUATORS[name]
    y = data.test.y
    whole = evaluate(context_for(model, x, y, explain), n_images=N, batch_size=100)
    scores = np.array(whole.arrays[key])
    assert scores.shape == (N,) and np.isclose(scores.mean(), whole.metrics[key])
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    shuffled = evaluate(context_for(model, x[perm], y[perm], explain), n_images=N, batch_size=37)
    assert np.allclose(np.array(shuffled.arrays[key]), scores[perm.numpy()], rtol=0, atol=1e-6)
    for i in (0, 17):
        alone = evaluate(context_for(model, x[i : i + 1], y[i : i + 1], explain), n_images=1)
        assert np.isclose(alone.arrays[key][0], scores[i], rtol=0, atol=1e-6)
    other_seed = evaluate(context_for(model, x, y, explain, seed=1), n_images=N)
    if name == "region-perturbation":  # uniform noise depends on the seed
        assert not np.allclose(np.array(other_seed.arrays[key]), scores)
    else:
        assert np.allclose(np.array(other_seed.arrays[key]), scores, atol=1e-6)


@pytest.mark.parametrize("name", EVALUATORS)
def test_inputs_and_attributions_are_not_modified(trained, name):
    data, model, x, _, maps = trained
    images, labels = x.clone(), data.test.y.clone()
    given = maps.clone()
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    def explain(m, xs, t):
        return given  # the very tensor the runner would hand out from its cache

    evaluate, _ = EVALUATORS[name]
    context = context_for(model, images, labels, explain)
    for baseline in (0.0, "mean", "uniform", "blur"):
        evaluate(context, n_images=N, baseline=baseline)
    assert torch.equal(given, maps) and torch.equal(images, x) and torch.equal(labels, data.test.y)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert not model.training


def test_evaluators_on_a_known_model():
    """Maps that tell the truth about SumModel beat maps that lie, in every metric."""
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.rand(6, 1, 8, 8, generator=g)  # sums near 3: the sigmoid is not flat
    y = torch.zeros(6, dtype=torch.long)
    truth = context_for(SumModel(), x, y, lambda m, xs, t: xs.clone())  # brighter = more
    liar = context_for(SumModel(), x, y, lambda m, xs, t: -xs)
    for name, (evaluate, key) in EVALUATORS.items():
        # from or to black: the truthful map moves the most mass first
        kwargs = {"target": "label", "n_images": 6, "baseline": 0.0}
        good, bad = evaluate(truth, **kwargs), evaluate(liar, **kwargs)
        better = good.metrics[key] > bad.metrics[key]
        assert better == (fa_directions()[name][key] == "higher"), name


def fa_directions():
    return {spec.name: dict(spec.directions) for spec in fa.specs()}


def test_specs_declare_every_parameter_and_direction():
    expected = {
        "pixel-flipping": {"auc": "lower"},
        "deletion": {"auc": "lower"},
        "insertion": {"auc": "higher"},
        "region-perturbation": {"aopc": "higher"},
    }
    assert fa_directions() == expected
    for spec in fa.specs():
        assert spec.requires == frozenset({"explainer"})
        signature = inspect.signature(spec.factory)
        defaults = {k: p.default for k, p in signature.parameters.items() if k != "context"}
        assert dict(spec.params) == defaults, spec.name


def test_bad_parameters_are_refused(trained, job):
    data, model, x, _, _ = trained
    context = context_for(model, x, data.test.y, job.explain)
    with pytest.raises(ValueError, match="baseline"):
        fa.evaluate_pixel_flipping(context, n_images=4, baseline="grey")
    with pytest.raises(ValueError, match="target"):
        fa.evaluate_deletion(context, n_images=4, target="truth")
    with pytest.raises(ValueError, match="steps"):
        fa.evaluate_insertion(context, n_images=4, steps=0)
    with pytest.raises(ValueError, match="regions"):
        fa.evaluate_region_perturbation(context, n_images=4, regions=50)
    with pytest.raises(ValueError, match="output"):
        fa.evaluate_pixel_flipping(context, n_images=4, output="odds")
    with pytest.raises(ValueError, match="attributions"):
        fa.evaluate_pixel_flipping(
            context_for(model, x, data.test.y, lambda m, xs, t: xs[:, :, :5]), n_images=4
        )
    no_explainer = EvaluationContext(
        data, model, ModelSpec("seed-cnn", build_seed_cnn), 0, None, None
    )
    with pytest.raises(ValueError, match="explainer"):
        fa.evaluate_deletion(no_explainer)


def test_figures_draw_one_line_per_explainer_from_stored_arrays():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.rand(4, 1, 8, 8, generator=g)
    y = torch.zeros(4, dtype=torch.long)
    maps = {"truth": lambda m, xs, t: xs.clone(), "liar": lambda m, xs, t: -xs}
    for spec in fa.specs():
        rows = [
            {
                "dataset": "d",
                "model": "m",
                "debiaser": "none",
                "explainer": name,
                "seed": seed,
                "arrays": spec.factory(context_for(SumModel(), x, y, explain), n_images=4).arrays,
            }
            for name, explain in maps.items()
            for seed in (0, 1)
        ]
        figures = spec.figures(pd.DataFrame(rows))
        assert list(figures) == ["curves-d-m-none"], spec.name
        (axis,) = figures["curves-d-m-none"].axes[:1]
        assert [line.get_label() for line in axis.get_lines()] == ["liar", "truth"]
        matplotlib.pyplot.close("all")
