"""gradient-alignment: Etmann's alignment and the signal-block mass by hand, DiffROAR against an
oracle ranking on a task whose informative pixels are known, and the whole evaluator on a real
seed-cnn trained on block-mnist with the ``gradient`` explainer (retrains cached)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from benchmark.testing import check_evaluator, make_context
from plugins.evaluators import gradient_alignment as ga


def test_alignment_of_the_image_itself_is_its_norm_and_the_cosine_one():
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    norms = x.double().flatten(1).norm(dim=1).numpy()
    for a in (x, -x, 3.0 * x):  # the sign and the scale of the map do not matter
        alpha, cosine = ga.alignment(x, a)
        assert alpha == pytest.approx(norms, rel=1e-12) and cosine == pytest.approx(1.0)


def test_an_orthogonal_map_has_zero_alignment_and_a_zero_map_none():
    x = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    other = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    flat, o = x.double().flatten(1), other.double().flatten(1)
    orthogonal = o - (o * flat).sum(1, keepdim=True) / (flat * flat).sum(1, keepdim=True) * flat
    alpha, cosine = ga.alignment(x, orthogonal.view_as(x).float())
    assert alpha == pytest.approx([0, 0], abs=1e-6) and cosine == pytest.approx([0, 0], abs=1e-6)
    alpha, cosine = ga.alignment(x, torch.zeros_like(x))
    assert np.isnan(alpha).all() and np.isnan(cosine).all()


def test_alignment_on_hand_computed_values():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    a = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])  # <x, a> = 1 - 4 = -3, ||a|| = sqrt 2
    alpha, cosine = ga.alignment(x, a)
    assert alpha[0] == pytest.approx(3 / math.sqrt(2))
    assert cosine[0] == pytest.approx(3 / (math.sqrt(2) * math.sqrt(30)))
    # a one-channel map of a three-channel image applies to every channel
    rgb = torch.tensor([[[[1.0, 0.0]], [[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 3, 1, 2)
    alpha, _ = ga.alignment(rgb, torch.tensor([[[[1.0, 1.0]]]]))
    assert alpha[0] == pytest.approx(4 / math.sqrt(6))  # <x, a> = 1+2+1, ||a|| = sqrt(3 * 2)


def test_signal_mass_of_the_mask_is_one_and_of_a_uniform_map_the_area():
    mask = torch.zeros(4, 1, 6, 3, dtype=torch.bool)
    mask[:2, :, :3] = True
    mask[2:, :, 3:] = True
    share, area = ga.signal_mass(mask.float(), mask)
    assert share == pytest.approx(1.0) and area == pytest.approx(0.5)
    share, _ = ga.signal_mass(torch.ones(4, 3, 6, 3), mask)  # channels summed
    assert share == pytest.approx(0.5)
    share, _ = ga.signal_mass(-3.0 * (~mask).float(), mask)  # all mass outside, any sign
    assert share == pytest.approx(0.0)
    small = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    small[0, 0, 0, :1] = True
    _, area = ga.signal_mass(torch.ones(1, 1, 4, 4), small[:, 0])  # (N, H, W) masks too
    assert area == pytest.approx([1 / 16])


def test_foreground_mass_separates_magnitude_on_the_strokes_from_signed_alignment():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, :] = 1.0  # a one-row "stroke": 4 of 16 pixels
    # a map on the stroke with alternating signs: all its mass on the foreground, yet its
    # signed inner product with the image cancels
    a = torch.zeros_like(x)
    a[0, 0, 1, :] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    share, area = ga.foreground_mass(x, a)
    assert share == pytest.approx([1.0]) and area == pytest.approx([0.25])
    _, cosine = ga.alignment(x, a)
    assert cosine == pytest.approx([0.0])
    share, _ = ga.foreground_mass(x, torch.ones_like(x))  # uniform map: the area share
    assert share == pytest.approx([0.25])
    # the foreground is relative to the image's own minimum (a grey background is background)
    share, area = ga.foreground_mass(x * 0.5 + 0.2, a)
    assert share == pytest.approx([1.0]) and area == pytest.approx([0.25])


def test_scores_of_a_batch_are_the_scores_of_its_images():
    g = torch.Generator().manual_seed(3)
    x, a = torch.rand(5, 1, 12, 10, generator=g), torch.randn(5, 1, 12, 10, generator=g)
    mask = torch.rand(5, 1, 12, 10, generator=g) > 0.5
    batch = [*ga.alignment(x, a), *ga.input_similarity(x, a), ga.signal_mass(a, mask)[0]]
    alone = [
        np.concatenate(parts)
        for parts in zip(
            *(
                [
                    *ga.alignment(x[i : i + 1], a[i : i + 1]),
                    *ga.input_similarity(x[i : i + 1], a[i : i + 1]),
                    ga.signal_mass(a[i : i + 1], mask[i : i + 1])[0],
                ]
                for i in range(5)
            ),
            strict=True,
        )
    ]
    for together, single in zip(batch, alone, strict=True):
        assert together == pytest.approx(single, rel=1e-12, abs=1e-12)


def test_input_similarity_is_high_for_the_image_and_low_for_its_negative_rank():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    rho, structural = ga.input_similarity(x, x.mean(1, keepdim=True))
    assert rho == pytest.approx(1.0) and structural == pytest.approx(1.0)
    rho, _ = ga.input_similarity(x, 1.0 - x.mean(1, keepdim=True))  # |a| ranks the other way
    assert rho == pytest.approx(-1.0)


def test_levels_must_be_whole_percentages_in_the_open_interval():
    assert ga.check_levels([0.1, 0.5]) == [10, 50]
    for bad in ([0.0], [1.0], [0.125], [0.5, 0.5]):
        with pytest.raises(ValueError, match="diffroar_k"):
            ga.check_levels(bad)
    assert ga.retrains({"diffroar_k": [0.1, 0.5]}) == 4 and ga.retrains({"diffroar_k": []}) == 0


# --------------------------------------------------------------------------------------------
# DiffROAR against an oracle: rows 0 and 7 of an 8x8 image (16 pixels, 25 %) carry the label.

SIZE = 8


def stripes(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 * torch.rand(n, 1, SIZE, SIZE, generator=g)
    x[y == 0, 0, 0, :] = 1.0
    x[y == 1, 0, SIZE - 1, :] = 1.0
    return Split(x, y)


def linear(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def oracle(anti: bool = False):
    def explain(model, x, target):
        a = torch.zeros_like(x)
        a[:, :, [0, SIZE - 1], :] = 1.0
        return 1.0 - a if anti else a

    return explain


def toy_context(explain, cache_dir: str) -> EvaluationContext:
    torch.manual_seed(0)
    return EvaluationContext(
        dataset=Dataset(stripes(200, 0), stripes(100, 1), 2),
        model=linear(2, (1, SIZE, SIZE)).eval(),
        model_spec=ModelSpec("toy-linear", linear, version="1"),
        seed=0,
        train=lambda split, *, seed: None,
        explain=explain,
        cache_dir=cache_dir,
    )


def test_diffroar_is_positive_for_the_true_ranking_and_negative_for_its_inverse(tmp_path):
    good = ga.evaluate_gradient_alignment(
        toy_context(oracle(), str(tmp_path)),
        n_images=20,
        target="label",
        diffroar_k=[0.25],
        diffroar_epochs=30,
    )
    # top 25 % = exactly the two stripes: learnable; bottom 25 %: noise only, chance
    assert good.arrays["top_accuracy"][0] > 0.95
    assert abs(good.arrays["bottom_accuracy"][0] - 0.5) < 0.15
    assert good.metrics["diffroar_25"] > 0.35
    bad = ga.evaluate_gradient_alignment(
        toy_context(oracle(anti=True), str(tmp_path)),
        n_images=20,
        target="label",
        diffroar_k=[0.25],
        diffroar_epochs=30,
    )
    assert bad.metrics["diffroar_25"] < -0.35
    # no signal mask on this dataset: the signal metrics are absent, everything else declared
    assert "signal_mass" not in good.metrics and set(good.metrics) <= set(ga.DIRECTIONS)


def test_all_zero_maps_are_refused_with_the_reason(tmp_path):
    context = toy_context(lambda model, x, target: torch.zeros_like(x), str(tmp_path))
    with pytest.raises(ValueError, match="all zero"):
        ga.evaluate_gradient_alignment(context, n_images=10, target="label")


# --------------------------------------------------------------------------------------------
# The whole evaluator on a real seed-cnn trained on block-mnist, through a real context.


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    context = make_context(
        dataset="block-mnist",
        model="seed-cnn",
        explainer="gradient",
        dataset_params={"train_limit": 300, "test_limit": 100},
        debiaser_params={"epochs": 1},
        cache_dir=str(cache),
    )
    result = ga.evaluate_gradient_alignment(
        context, n_images=40, diffroar_k=[0.5], diffroar_epochs=1
    )
    return context, result, cache


def test_end_to_end_on_block_mnist_with_the_gradient_explainer(real):
    context, result, _ = real
    m = result.metrics
    assert set(m) == {
        "alignment",
        "alignment_cosine",
        "spearman_input",
        "ssim_input",
        "zero_maps",
        "signal_mass",
        "signal_mass_random",
        "foreground_mass",
        "foreground_area",
        "diffroar_50",
    }
    assert set(m) <= set(ga.DIRECTIONS) and all(math.isfinite(v) for v in m.values())
    assert m["alignment"] > 0 and 0 < m["alignment_cosine"] <= 1
    assert 0 <= m["signal_mass"] <= 1 and m["signal_mass_random"] == pytest.approx(0.5)
    assert -1 <= m["diffroar_50"] <= 1 and m["zero_maps"] == 0
    assert 0 < m["foreground_area"] < m["foreground_mass"] <= 1  # the gradient favours strokes
    # for the gradient explainer the alignment is Etmann's: |<x, grad logit_pred>| / ||grad||
    x = context.dataset.test.x[:40].clone().requires_grad_(True)
    logits = context.model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), x)
    x, grad = x.detach().double().flatten(1), grad.double().flatten(1)
    etmann = ((x * grad).sum(1).abs() / grad.norm(dim=1)).numpy()
    # float32 gradients (the explainer runs channels-last): equal to about 1e-4 relative
    assert result.per_image["alignment"] == pytest.approx(etmann, rel=1e-4, abs=1e-7)
    assert m["alignment"] == pytest.approx(etmann.mean(), rel=1e-4)
    for name in ("alignment", "alignment_cosine", "spearman_input", "ssim_input", "signal_mass"):
        assert len(result.per_image[name]) == 40
    arrays = result.arrays
    assert np.asarray(arrays["sample_images"]).shape == (6, 1, 56, 28)
    maps = np.asarray(arrays["sample_maps"])
    assert maps.shape == (6, 56, 28) and np.allclose(maps.max(axis=(1, 2)), 1.0)
    assert arrays["sample_labels"] == context.dataset.test.y[:6].tolist()
    assert len(arrays["top_accuracy"]) == len(arrays["bottom_accuracy"]) == 1


def test_diffroar_retrains_go_through_the_cache(real, monkeypatch):
    context, result, cache = real
    assert len(list((cache / ga.CACHE_KIND).glob("*.pt"))) == 2  # top-k and bottom-k models

    def refuse(*args, **kwargs):
        raise AssertionError("a cached DiffROAR model was trained again")

    monkeypatch.setattr(ga, "train_loop", refuse)
    again = ga.evaluate_gradient_alignment(
        context, n_images=40, diffroar_k=[0.5], diffroar_epochs=1
    )
    assert again.metrics == result.metrics


def test_the_saliency_figure_draws_inputs_and_one_row_per_debiaser(real):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    _, result, _ = real
    arrays = result.arrays
    later = {**arrays, "sample_maps": np.zeros_like(arrays["sample_maps"]).tolist()}
    job = {"dataset": "block-mnist", "model": "seed-cnn", "explainer": "gradient"}
    rows = [
        {**job, "debiaser": "none", "seed": 1, "arrays": later},
        {**job, "debiaser": "none", "seed": 0, "arrays": arrays},
        {**job, "debiaser": "jtt", "seed": 0, "arrays": later},
        {**job, "explainer": "other", "debiaser": "none", "seed": 0, "arrays": {"n_images": 1}},
    ]
    spec = ga.specs()[0]
    figures = spec.figures(pd.DataFrame(rows).assign(evaluator="gradient-alignment"))
    assert list(figures) == ["saliency-block-mnist-seed-cnn-gradient"]  # no sample, no figure
    axes = np.asarray(figures["saliency-block-mnist-seed-cnn-gradient"].axes).reshape(3, 6)
    assert [axes[r][0].get_ylabel() for r in range(3)] == [
        "input",
        "none\n(seed 0)",
        "jtt\n(seed 0)",
    ]
    shown = axes[1][2].get_images()[0].get_array()
    assert np.allclose(shown, np.asarray(arrays["sample_maps"])[2])  # the smallest seed's map
    assert np.allclose(
        axes[0][2].get_images()[0].get_array(), np.asarray(arrays["sample_images"])[2, 0]
    )
    matplotlib.pyplot.close("all")


def test_the_contract_check_passes_on_plain_mnist_where_the_signal_metrics_are_absent(tmp_path):
    evaluation = check_evaluator(
        "gradient-alignment", params={"n_images": 16}, cache_dir=str(tmp_path)
    )
    assert "alignment" in evaluation.metrics and "signal_mass" not in evaluation.metrics
    assert not (tmp_path / ga.CACHE_KIND).exists()  # DiffROAR is off by default: no retrains
