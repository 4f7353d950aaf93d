"""ROAR / KAR: ranking, replacement, area and test formulas by hand; real retraining on a toy
task whose informative pixels are known; retrains go through the runner's model cache."""

import textwrap
import types

import numpy as np
import pytest
import torch
from rich.console import Console
from scipy import stats

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.cache import ArtifactCache
from benchmark.kit.ranking import normalised_auc, pixel_importance
from benchmark.kit.registration import register_specs_of
from benchmark.registry import Registry
from benchmark.runner import Runner
from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from benchmark.store import Store
from plugins.evaluators import roar
from tests import toy_plugin


def test_removal_order_puts_important_first_and_breaks_ties_the_same_everywhere():
    importance = torch.zeros(3, 1, 4, 4)  # one channel: every aggregate keeps the order
    importance[0, 0, 1, 2] = 5.0
    importance[0, 0, 3, 3] = 2.0
    order = roar.removal_order(importance, "signed")
    assert order.shape == (3, 16)
    assert order[0, 0].item() == 1 * 4 + 2 and order[0, 1].item() == 3 * 4 + 3
    # all-zero maps: one fixed priority, identical for every image and every call
    assert torch.equal(order[1], order[2])
    assert torch.equal(order[1], roar.removal_order(torch.zeros(1, 1, 4, 4))[0])
    assert sorted(order[1].tolist()) == list(range(16))
    # the priority is not the raster order (no bias towards the top-left corner)
    assert order[1].tolist() != list(range(16))


def test_pixel_importance_aggregates_channels():
    a = torch.tensor([[[[1.0, -2.0]], [[3.0, 1.0]]]])  # (1, 2, 1, 2)
    expected = {"square": [[10.0, 5.0]], "abs": [[4.0, 3.0]], "signed": [[4.0, -1.0]]}
    for aggregate, values in expected.items():
        got = pixel_importance(a, aggregate)
        assert torch.equal(got, torch.tensor(values, dtype=torch.float64)), aggregate
    with pytest.raises(ValueError, match="aggregate"):
        pixel_importance(a, "max")


def test_replace_pixels_sets_exactly_k_pixels_in_every_channel_and_copies():
    x = torch.rand(2, 3, 4, 4)
    before = x.clone()
    order = torch.stack([torch.arange(16), torch.arange(16).flip(0)])
    fill = torch.tensor([0.1, 0.2, 0.3])
    out = roar.replace_pixels(x, order, 5, fill)
    assert torch.equal(x, before)  # input untouched
    flat = out.view(2, 3, 16)
    for c in range(3):
        assert torch.all(flat[0, c, :5] == fill[c]) and torch.equal(
            flat[0, c, 5:], x.view(2, 3, 16)[0, c, 5:]
        )
        assert torch.all(flat[1, c, 11:] == fill[c]) and torch.equal(
            flat[1, c, :11], x.view(2, 3, 16)[1, c, :11]
        )
    kar = roar.replace_pixels(x, order, 5, fill, from_end=True).view(2, 3, 16)
    assert torch.all(kar[0, :, 11:] == fill[:, None]) and torch.all(kar[1, :, :5] == fill[:, None])


def test_curve_area_is_the_mean_height_by_trapezoid():
    fractions = [0.1, 0.3, 0.9]
    acc = np.array([[1.0, 0.5, 0.5], [0.2, 0.2, 0.2]])
    # first: (1+0.5)/2*0.2 + (0.5+0.5)/2*0.6 = 0.15 + 0.3 = 0.45, over a span of 0.8
    assert np.allclose(normalised_auc(acc, fractions), [0.45 / 0.8, 0.2])


def test_paired_p_value_matches_scipy_and_handles_constant_differences():
    method, base = np.array([0.5, 0.6, 0.55]), np.array([0.7, 0.72, 0.8])
    expected = stats.ttest_rel(method, base, alternative="less").pvalue
    assert roar.paired_p_value(method, base, "less") == pytest.approx(expected)
    assert roar.paired_p_value(base, method, "greater") == pytest.approx(expected)
    assert roar.paired_p_value(base - 0.1, base, "less") == 0.0  # always lower: exact
    assert roar.paired_p_value(base, base, "less") == 1.0  # identical: never significant
    assert roar.paired_p_value(base + 0.1, base, "less") == 1.0


# --------------------------------------------------------------------------------------------
# Real retraining on a task whose informative pixels are known.

SIZE = 8


def stripes(n: int, seed: int) -> Split:
    """Class 0 lights row 0, class 1 lights row 7 (16 of 64 pixels carry the label)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 * torch.rand(n, 1, SIZE, SIZE, generator=g)
    x[y == 0, 0, 0, :] = 1.0
    x[y == 1, 0, SIZE - 1, :] = 1.0
    return Split(x, y)


def train_linear(split: Split, *, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(split.x), split.y).backward()
        opt.step()
    return model.eval()


def informative(anti: bool = False):
    """An oracle explainer: rows 0 and 7 matter (or, for ``anti``, everything but them)."""

    def explain(model, x, target):
        a = torch.zeros_like(x)
        a[:, :, [0, SIZE - 1], :] = 1.0
        return 1.0 - a if anti else a

    return explain


def context(explain) -> EvaluationContext:
    data = Dataset(stripes(200, 0), stripes(100, 1), 2)
    return EvaluationContext(
        dataset=data,
        model=train_linear(data.train, seed=0),
        model_spec=ModelSpec("linear", lambda *a: None),
        seed=0,
        train=train_linear,
        explain=explain,
    )


def test_roar_with_the_true_ranking_destroys_the_signal_and_beats_random():
    result = roar.evaluate_roar(context(informative()), thresholds=[30, 50], retrain_seeds=3)
    m = result.metrics
    # 30 % = 19 pixels >= the 16 informative ones: nothing is left to learn from
    assert m["accuracy_30"] < 0.7 and m["accuracy_50"] < 0.7
    # a random 30 % leaves most of the two stripes: still separable
    assert np.mean(np.asarray(result.arrays["random_accuracy"])[:, 0]) > 0.9
    assert m["auc"] < m["random_auc"] and m["auc_vs_random"] < 0
    assert m["verdict"] == 1.0 and m["p_value"] < 0.05
    assert len(result.arrays["accuracy"]) == 3  # one curve per retrain seed
    per_seed = np.asarray(result.arrays["auc_per_seed"])
    assert m["auc_std"] == pytest.approx(per_seed.std(ddof=1)) and m["auc"] == pytest.approx(
        per_seed.mean()
    )


def test_roar_with_an_inverted_ranking_fails_and_kar_passes_with_the_true_one():
    bad = roar.evaluate_roar(context(informative(anti=True)), thresholds=[30, 50], retrain_seeds=2)
    assert bad.metrics["verdict"] == 0.0 and bad.metrics["auc"] > 0.9
    kar = roar.evaluate_kar(context(informative()), thresholds=[75, 90], retrain_seeds=3)
    # KAR at 75 % keeps exactly the 16 informative pixels
    assert kar.metrics["accuracy_75"] > 0.95
    assert kar.metrics["auc"] >= kar.metrics["random_auc"]


def test_bad_parameters_are_refused():
    ctx = context(informative())
    with pytest.raises(ValueError, match="thresholds"):
        roar.evaluate_roar(ctx, thresholds=[0, 50])
    with pytest.raises(ValueError, match="retrain_seeds"):
        roar.evaluate_roar(ctx, retrain_seeds=1)
    with pytest.raises(ValueError, match="target"):
        roar.evaluate_roar(ctx, target="guess", retrain_seeds=2)


# --------------------------------------------------------------------------------------------
# Through the runner: retrained models are cached like any other.

roar_plugin = types.ModuleType("roar_plugin")
roar_plugin.bench_register_evaluators = register_specs_of([roar])


def test_retrains_go_through_the_model_cache(tmp_path):
    registry = Registry.load(extra_plugins=[("toy", toy_plugin), ("roar-test", roar_plugin)])
    text = """\
    name: roar-test
    datasets: [toy-bars]
    models: [toy-linear]
    debiasers: [toy-sgd]
    explainers: [toy-gradient]
    evaluators:
      - {name: roar, params: {thresholds: [30, 70], retrain_seeds: 2}}
      - {name: kar, params: {thresholds: [30, 70], retrain_seeds: 2}}
    seeds: [0]
    leaderboard: {metric: roar.auc}
    """
    plan = planner.expand(suite_module.parse(textwrap.dedent(text), "s.yaml", registry))

    def run(rerun: bool):
        runner = Runner(
            registry,
            Store(tmp_path / "r.sqlite"),
            ArtifactCache(tmp_path / "cache"),
            rerun=rerun,
            show_progress=False,
            executor="serial",
            console=Console(quiet=True),
        )
        return runner.run(plan)

    cold = run(rerun=False)
    assert cold.failed == 0, cold.failures
    # 1 main model + ROAR 2x2 + KAR 2x2 + the random baseline 2x2, shared by ROAR and KAR,
    # + mask-only models (one leakage seed, 2 thresholds): ROAR's 2, KAR's 2, random's 2 shared
    assert cold.models_trained == 1 + 4 + 4 + 4 + 2 + 2 + 2
    warm = run(rerun=True)
    assert warm.failed == 0 and warm.models_trained == 0
    stored = Store(tmp_path / "r.sqlite").results()
    assert set(stored["evaluator"]) == {"roar", "kar"}
    assert {"auc", "random_auc", "verdict", "accuracy_30"} <= set(stored["metric"])


def test_figure_shows_each_explainer_against_the_random_baseline():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    arrays = {
        "thresholds": [30.0, 70.0],
        "accuracy": [[0.9, 0.5], [0.8, 0.4]],  # one curve per retrain seed
        "random_accuracy": [[0.95, 0.9], [0.85, 0.8]],
    }
    job = {"dataset": "d", "model": "m", "debiaser": "none", "seed": 0, "arrays": arrays}
    rows = [{**job, "explainer": explainer} for explainer in ("b", "a")]
    (spec,) = [s for s in roar.specs() if s.name == "roar"]
    (axis,) = spec.figures(pd.DataFrame(rows))["curves-d-m-none"].axes
    lines = axis.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b", "random baseline"]
    assert list(lines[0].get_ydata()) == pytest.approx([0.85, 0.45])  # mean over retrains
    assert list(lines[2].get_ydata()) == pytest.approx([0.9, 0.85])
    matplotlib.pyplot.close("all")


# --------------------------------------------------------------------------------------------
# Mask leakage (Rong et al. 2022): what a model learns from the removal mask alone.


def label_shaped(model, x, target):
    """A ranking that encodes the class in *where* it points: class 0's top pixels are the
    left half, class 1's the right half, whatever the image shows."""
    a = torch.zeros_like(x)
    left = target == 0
    a[left, :, :, : SIZE // 2] = 1.0
    a[~left, :, :, SIZE // 2 :] = 1.0
    return a


def test_the_leakage_diagnostic_finds_a_mask_that_encodes_the_label():
    result = roar.evaluate_roar(
        context(label_shaped), thresholds=[25, 50], retrain_seeds=2, leakage_seeds=2
    )
    m = result.metrics
    # the mask alone tells the class: a model trained on it is (almost) always right
    assert m["mask_accuracy_25"] > 0.95 and m["mask_accuracy_50"] > 0.95
    # random masks carry nothing: about chance on two balanced classes
    assert abs(m["random_mask_accuracy"] - 0.5) < 0.15
    # so the retrained "after removal" accuracy cannot be read as information left in pixels
    assert m["mask_accuracy"] > m["random_mask_accuracy"] + 0.3
    assert result.arrays["mask_accuracy"] == [m["mask_accuracy_25"], m["mask_accuracy_50"]]


def test_the_leakage_diagnostic_finds_nothing_in_a_label_blind_ranking():
    result = roar.evaluate_roar(
        context(informative()), thresholds=[25, 50], retrain_seeds=2, leakage_seeds=1
    )
    m = result.metrics
    # the same rows for every image: the mask is constant, a model on it is at chance
    assert m["mask_accuracy"] == pytest.approx(0.5, abs=0.1)
    assert abs(m["random_mask_accuracy"] - 0.5) < 0.15


def test_no_leakage_models_when_switched_off():
    result = roar.evaluate_roar(
        context(informative()), thresholds=[50], retrain_seeds=2, leakage_seeds=0
    )
    assert "mask_accuracy" not in result.metrics and result.arrays["mask_accuracy"] == []
    with pytest.raises(ValueError, match="leakage_seeds"):
        roar.evaluate_roar(context(informative()), retrain_seeds=2, leakage_seeds=3)


def test_foreground_share_counts_removed_non_background_pixels():
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, :] = 1.0  # 4 foreground pixels
    x[1, 0, :, 0] = 1.0
    removed = torch.zeros(2, 4, 4, dtype=torch.bool)
    removed[0, 0, :2] = True  # half of image 0's foreground
    removed[1, 3, 3] = True  # background only
    assert roar.foreground_share(x, removed) == pytest.approx((0.5 + 0.0) / 2)


def test_noisy_linear_fill_blends_removed_pixels_into_their_neighbours():
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    removed = torch.zeros(3, 8, 8, dtype=torch.bool)
    removed[:, 3:5, 3:5] = True
    mean = x.double().mean(dim=(0, 2, 3))
    filled = roar.fill_removed(x, removed, "noisy-linear", mean)
    assert torch.equal(filled[:, :, ~removed[0]], x[:, :, ~removed[0]])  # kept pixels untouched
    from plugins.evaluators.road import linear_imputation

    exact = linear_imputation(x, removed).float()
    # the imputation plus N(0, 0.01^2) noise: close to the noise-free solution, not equal
    gap = (filled - exact)[:, :, removed[0]]
    assert 0 < gap.abs().max() < 0.06 and gap.std() == pytest.approx(0.01, rel=0.5)
    # a row's fill does not depend on the other rows of the batch
    assert torch.equal(roar.fill_removed(x[1:2], removed[1:2], "noisy-linear", mean), filled[1:2])
    with pytest.raises(ValueError, match="fill"):
        roar.fill_removed(x, removed, "zeros", mean)


def test_roar_with_imputed_fill_runs_the_same_protocol():
    result = roar.evaluate_roar(
        context(informative()), thresholds=[30, 50], retrain_seeds=2, fill="noisy-linear"
    )
    m = result.metrics
    assert result.arrays["fill"] == "noisy-linear"
    # the stripes carry the label; imputing them from the noise around still removes it
    assert m["accuracy_30"] < 0.75 and m["auc"] < m["random_auc"]
