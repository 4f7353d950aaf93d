"""The ``quantus`` evaluator against Quantus 0.6.0 itself: the same numbers where Quantus is
right, and each protection shown against raw Quantus where it is not.

A seed-cnn with fixed random weights on real MNIST test images, explained by the plain input
gradient of the target logit: enough for every metric to have something to score, and fast.
Tolerances: Quantus computes in float32, so "the same number" means ``rtol=1e-5`` unless the
adapter's only difference (per-image instead of batch-wide normalisation) can move a result by
one of Quantus's tiny epsilons, which is said where it applies.
"""

from __future__ import annotations

import inspect
import json
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import quantus
import torch

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.kit.registration import register_specs_of
from benchmark.registry import Registry
from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from plugins.datasets.mnist import load_mnist
from plugins.evaluators import quantus as quantus_evaluator
from plugins.evaluators.quantus import catalogue as qc
from plugins.evaluators.quantus.evaluator import evaluate_quantus
from plugins.models.seed_cnn import build_seed_cnn
from tests import toy_plugin
from tests.conftest import run_plan


def gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        model(x).gather(1, target[:, None]).sum().backward()
    return x.grad


def abs_gradient(model, x, target):
    return gradient(model, x, target).abs()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches of a few 28x28 images gain nothing from intra-op threads, and on a busy shared
    machine two spinning threads made each forward pass ~100x slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_mnist(train_limit=100, test_limit=80)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_seed_cnn(10, (1, 28, 28)).eval()


def make_context(data, model, explain=gradient, test: Split | None = None) -> EvaluationContext:
    if test is not None:
        data = Dataset(train=data.train, test=test, num_classes=data.num_classes)
    return EvaluationContext(
        dataset=data,
        model=model,
        model_spec=ModelSpec("seed-cnn", build_seed_cnn, target_layer="conv_layers.3"),
        seed=0,
        train=lambda *a, **k: None,
        explain=explain,
    )


def inputs(data, model, n, explain=gradient, target="prediction"):
    """What the adapter hands Quantus, built independently: numpy images, targets, maps."""
    x = data.test.x[:n]
    with torch.no_grad():
        y = model(x).argmax(1) if target == "prediction" else data.test.y[:n]
    return x.numpy().copy(), y.numpy().copy(), explain(model, x, y).numpy().copy()


def quantus_explain(model, inputs, targets, **_):
    x = torch.as_tensor(inputs, dtype=torch.float32)
    return gradient(model, x, torch.as_tensor(targets).long()).numpy()


def per_image(evaluation) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in evaluation.arrays["per_image"]])


# -- the same numbers as Quantus where Quantus is right ---------------------------------------


def test_faithfulness_correlation_equals_quantus_and_is_reproducible(data, model):
    params = {"nr_runs": 10, "subset_size": 100}
    torch.manual_seed(11)
    np.random.seed(11)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    ev = evaluate_quantus(make_context(data, model), metric_params=params, n_images=8, seed=3)
    ev.check()
    # the caller's generators are untouched (Quantus draws from numpy's global one)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)

    x, y, a = inputs(data, model, 8)
    np.random.seed(3)
    direct = quantus.FaithfulnessCorrelation(**params, return_aggregate=False)(
        model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu"
    )
    # Pearson correlation ignores the scale, so batch-wide vs per-image max changes nothing
    assert np.allclose(per_image(ev), direct, rtol=1e-5, atol=1e-6)
    assert ev.metrics["faithfulness_correlation"] == pytest.approx(np.mean(direct), abs=1e-6)
    assert ev.arrays["raw"] == pytest.approx(direct, abs=1e-6)
    again = evaluate_quantus(make_context(data, model), metric_params=params, n_images=8, seed=3)
    assert again.metrics == ev.metrics
    other = evaluate_quantus(make_context(data, model), metric_params=params, n_images=8, seed=4)
    assert other.metrics != ev.metrics
    json.dumps(ev.arrays)


@pytest.mark.parametrize("metric", ["Sparseness", "Complexity"])
def test_sparseness_and_complexity_equal_quantus(data, model, metric):
    ev = evaluate_quantus(make_context(data, model), metric=metric, n_images=8)
    x, y, a = inputs(data, model, 8)
    direct = getattr(quantus, metric)()(model=model, x_batch=x, y_batch=y, a_batch=a)
    # Gini index and entropy are scale-free but for Quantus's +1e-7 / +1e-12 epsilons, the only
    # place where dividing by the image's own maximum instead of the batch's can show
    assert np.allclose(per_image(ev), direct, rtol=1e-5)


# -- protections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        ("Sparseness", {"abs": False, "normalise": False}),
        ("Complexity", {"abs": False, "normalise": False}),
        ("RelativeInputStability", {"nr_samples": 1, "normalise": True}),
    ],
)
def test_callers_attributions_are_never_modified(data, model, metric, params):
    x, y, a = inputs(data, model, 4, explain=abs_gradient)
    changed = a.copy()
    kwargs = {"explain_func": quantus_explain} if metric == "RelativeInputStability" else {}
    getattr(quantus, metric)(**params)(model=model, x_batch=x, y_batch=y, a_batch=changed, **kwargs)
    assert not np.array_equal(changed, a)  # raw Quantus writes into the caller's array

    maps = abs_gradient(model, data.test.x[:4], torch.as_tensor(y))
    before = maps.clone()

    def cached(model_, x_, target_):  # like the runner's cache: the same tensor every time
        return maps if torch.equal(x_, data.test.x[:4]) else abs_gradient(model_, x_, target_)

    ev = evaluate_quantus(
        make_context(data, model, cached), metric=metric, metric_params=params, n_images=4
    )
    assert torch.equal(maps, before)
    if metric != "RelativeInputStability":
        direct = getattr(quantus, metric)(**params)(
            model=model, x_batch=x, y_batch=y, a_batch=a.copy()
        )
        assert np.allclose(per_image(ev), direct, rtol=1e-5)


def test_an_images_score_does_not_depend_on_the_rest_of_the_batch(data, model):
    # EffectiveComplexity counts pixels above eps after normalisation: scale-sensitive
    params = {"eps": 0.5}
    n = 6
    together = evaluate_quantus(
        make_context(data, model), metric="EffectiveComplexity", metric_params=params, n_images=n
    )
    alone = []
    for i in range(n):
        one = Split(x=data.test.x[i : i + 1], y=data.test.y[i : i + 1])
        ev = evaluate_quantus(
            make_context(data, model, test=one),
            metric="EffectiveComplexity",
            metric_params=params,
        )
        alone.extend(per_image(ev))
    assert np.array_equal(per_image(together), alone)

    # raw Quantus divides every map by the largest value in the whole batch
    x, y, a = inputs(data, model, n)
    batch = quantus.EffectiveComplexity(**params)(model=model, x_batch=x, y_batch=y, a_batch=a)
    single = [
        quantus.EffectiveComplexity(**params)(
            model=model, x_batch=x[i : i + 1], y_batch=y[i : i + 1], a_batch=a[i : i + 1]
        )[0]
        for i in range(n)
    ]
    assert single == alone
    assert batch != single


def test_road_scores_every_image_not_only_the_first_batch(data, model):
    # noise 0 makes the imputation deterministic, so raw Quantus can be compared image by image
    params = {"percentages": [10, 50, 90], "noise": 0.0}
    ev = evaluate_quantus(
        make_context(data, model), metric="ROAD", metric_params=params, n_images=70, target="label"
    )
    curves = np.array(ev.arrays["curves"])
    assert curves.shape == (70, 3) and len(ev.arrays["per_image"]) == 70
    assert np.allclose(per_image(ev), np.trapezoid(curves, axis=1))
    assert ev.arrays["raw"] == {
        str(p): pytest.approx(m) for p, m in zip([10, 50, 90], curves.mean(0), strict=True)
    }

    x, y, a = inputs(data, model, 70, target="label")
    direct = quantus.ROAD(**params)(model=model, x_batch=x, y_batch=y, a_batch=a)  # batch 64
    assert list(direct.values()) == pytest.approx(curves[:64].mean(0))
    assert not np.allclose(list(direct.values()), curves.mean(0))


def test_curve_areas_work_on_numpy_2_and_the_shim_does_not_leak(data, model):
    had_trapz = hasattr(np, "trapz")
    context = make_context(data, model)
    pf = evaluate_quantus(
        context, metric="PixelFlipping", metric_params={"features_in_step": 56}, n_images=6
    )
    curves = np.array(pf.arrays["raw"])
    assert curves.shape == (6, 14)
    assert np.allclose(per_image(pf), np.trapezoid(curves, dx=1, axis=1))
    mean = evaluate_quantus(
        context,
        metric="PixelFlipping",
        metric_params={"features_in_step": 56},
        n_images=6,
        curve_reduction="mean",
    )
    assert np.allclose(per_image(mean), curves.mean(1))
    # Quantus's own AUC (np.trapz through the shim) gives the same per-image areas
    own = evaluate_quantus(
        context,
        metric="PixelFlipping",
        metric_params={"features_in_step": 56, "return_auc_per_sample": True},
        n_images=6,
    )
    assert np.allclose(per_image(own), per_image(pf), rtol=1e-5)
    irof = evaluate_quantus(context, metric="IROF", n_images=4)
    assert np.isfinite(irof.metrics["irof"])
    assert hasattr(np, "trapz") == had_trapz
    if not had_trapz:  # NumPy >= 2.4: raw Quantus cannot compute an area at all
        x, y, a = inputs(data, model, 4)
        with pytest.raises(AttributeError, match="trapz"):
            quantus.IROF(return_aggregate=False)(model=model, x_batch=x, y_batch=y, a_batch=a)


def test_mprt_average_leaves_out_the_unrandomised_entry(data, model):
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    torch_state = torch.random.get_rng_state()
    ev = evaluate_quantus(make_context(data, model), metric="MPRT", n_images=4, seed=5)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())
    raw = ev.arrays["raw"]
    layers = [k for k in raw if k != "original"]
    assert layers == ["fc_layers.3", "fc_layers.0", "conv_layers.3", "conv_layers.0"]
    assert np.allclose(per_image(ev), np.mean([raw[k] for k in layers], axis=0))

    x, y, a = inputs(data, model, 4)
    direct = quantus.MPRT(seed=5)(
        model=model, x_batch=x, y_batch=y, a_batch=a, explain_func=quantus_explain
    )
    assert all(np.allclose(direct[k], raw[k]) for k in raw)  # same layers, same seed
    buggy = quantus.MPRT(seed=5, return_average_correlation=True)(
        model=model, x_batch=x, y_batch=y, a_batch=a, explain_func=quantus_explain
    )
    assert np.allclose(buggy, np.mean([raw[k] for k in raw], axis=0))  # 'original' included
    assert np.all(np.array(buggy) > per_image(ev))
    last = evaluate_quantus(
        make_context(data, model),
        metric="MPRT",
        metric_params={"return_last_correlation": True},
        n_images=4,
        seed=5,
    )
    assert np.allclose(per_image(last), raw["conv_layers.0"])


def test_random_logit_uses_the_datasets_classes_and_leaves_numpy_alone(data, model):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    context = make_context(data, model)
    ev = evaluate_quantus(context, metric="RandomLogit", n_images=4, seed=1)
    assert np.random.rand() == expected  # raw Quantus would have reseeded it to 42
    assert evaluate_quantus(context, metric="RandomLogit", n_images=4, seed=1).metrics == (
        ev.metrics
    )
    x, y, a = inputs(data, model, 4)
    with pytest.raises((RuntimeError, IndexError)):  # off-target classes drawn from 1000
        quantus.RandomLogit()(
            model=model, x_batch=x, y_batch=y, a_batch=a, explain_func=quantus_explain
        )


def test_localisation_metrics_get_the_datasets_masks(data, model):
    n = 6
    masks = torch.zeros(n, 1, 28, 28)
    masks[:, :, 7:21, 7:21] = 1.0
    test = Split(x=data.test.x[:n], y=data.test.y[:n], extras={"object_mask": masks})
    ev = evaluate_quantus(
        make_context(data, model, test=test), metric="RelevanceMassAccuracy", n_images=n
    )
    x, y, a = inputs(data, model, n)
    direct = quantus.RelevanceMassAccuracy()(
        model=model, x_batch=x, y_batch=y, a_batch=a, s_batch=masks.numpy()
    )
    assert np.allclose(per_image(ev), direct, rtol=1e-5)


def test_undefined_scores_are_counted_not_averaged(data, model):
    def one_flat_map(model_, x_, target_):
        a = gradient(model_, x_, target_)
        a[0] = 0.0  # a constant map has no correlation with anything
        return a

    ev = evaluate_quantus(
        make_context(data, model, one_flat_map),
        metric_params={"nr_runs": 5, "subset_size": 50},
        n_images=4,
    )
    assert ev.arrays["per_image"][0] is None and ev.arrays["n_undefined"] == 1
    assert ev.metrics["faithfulness_correlation"] == pytest.approx(np.mean(per_image(ev)[1:]))

    def flat(model_, x_, target_):
        return torch.zeros_like(x_)

    with pytest.raises(ValueError, match="refused the inputs"):
        evaluate_quantus(make_context(data, model, flat), n_images=4)


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        ("Sparseness", {}),  # a score per image
        ("PixelFlipping", {"features_in_step": 56}),  # a curve per image, reduced to its area
        ("MPRT", {}),  # per-image lists by layer
        ("Sufficiency", {}),  # batch-level by design, but still one score per image
    ],
)
def test_per_image_scores_are_returned_and_their_mean_is_the_metric(data, model, metric, params):
    n = 5
    ev = evaluate_quantus(
        make_context(data, model), metric=metric, metric_params=params, n_images=n
    )
    ev.check()
    (name,) = ev.metrics
    assert list(ev.per_image) == [name]
    scores = ev.per_image[name]
    assert isinstance(scores, np.ndarray) and scores.shape == (n,) and scores.dtype == np.float64
    assert np.all(np.isfinite(scores))
    assert ev.metrics[name] == pytest.approx(scores.mean(), rel=1e-12)
    assert np.array_equal(scores, per_image(ev))  # the same numbers as the JSON copy


def test_per_image_keeps_undefined_images_as_nan_and_batch_curves_have_none(data, model):
    def one_flat_map(model_, x_, target_):
        a = gradient(model_, x_, target_)
        a[0] = 0.0  # a constant map has no correlation with anything
        return a

    ev = evaluate_quantus(
        make_context(data, model, one_flat_map),
        metric_params={"nr_runs": 5, "subset_size": 50},
        n_images=4,
    )
    scores = ev.per_image["faithfulness_correlation"]
    assert scores.shape == (4,) and np.isnan(scores[0]) and np.all(np.isfinite(scores[1:]))
    assert ev.metrics["faithfulness_correlation"] == pytest.approx(np.nanmean(scores), rel=1e-12)
    # SensitivityN correlates across images: no score belongs to one image
    sensitivity_n = evaluate_quantus(
        make_context(data, model),
        metric="SensitivityN",
        metric_params={"features_in_step": 56, "n_max_percentage": 0.5},
        n_images=6,
    )
    assert sensitivity_n.per_image == {} and np.isfinite(sensitivity_n.metrics["sensitivity_n"])


# -- names, errors, directions, registration --------------------------------------------------


def test_metric_names():
    assert qc.snake_case("FaithfulnessCorrelation") == "faithfulness_correlation"
    assert qc.snake_case("ROAD") == "road"
    assert qc.snake_case("EfficientMPRT") == "efficient_mprt"
    assert qc.snake_case("TopKIntersection") == "top_k_intersection"
    assert qc.snake_case("SensitivityN") == "sensitivity_n"
    assert qc.metric_name("RegionPerturbation", {"order": "LeRF"}) == "region_perturbation_lerf"
    assert qc.metric_name("RegionPerturbation", {}) == "region_perturbation"


@pytest.mark.parametrize(
    ("metric", "params", "message"),
    [
        ("FaithfulnesCorrelation", {}, "unknown Quantus metric.*'FaithfulnessCorrelation'"),
        ("faithfulness_correlation", {}, "did you mean 'FaithfulnessCorrelation'"),
        ("Sparseness", {"nr_runs": 3}, "'Sparseness' has no constructor parameter 'nr_runs'"),
        ("FaithfulnessCorrelation", {"nr_run": 3}, "'nr_run' \\(did you mean 'nr_runs'\\?\\)"),
        ("FaithfulnessCorrelation", {"return_aggregate": True}, "set by the adapter"),
        ("MPRT", {"seed": 1}, "evaluator's 'seed'"),
        ("MPRT", {"similarity_func": "correlation_spearmann"}, "'correlation_spearman'"),
        ("SmoothMPRT", {}, "ignores explain_func"),
        ("BatchSufficiency", {}, "not supported"),
        ("PointingGame", {}, "object_mask"),
        ("NonSensitivity", {"features_in_step": 2}, "features_in_step=1"),
        ("InputInvariance", {}, "first submodule"),
    ],
)
def test_bad_requests_get_clear_errors(data, model, metric, params, message):
    def explain_nothing(*_):
        raise AssertionError("explained before the request was checked")

    context = make_context(data, model, explain_nothing)
    with pytest.raises(ValueError, match=message):
        evaluate_quantus(context, metric=metric, metric_params=params)


def test_bad_evaluator_parameters(data, model):
    context = make_context(data, model)
    with pytest.raises(ValueError, match="target"):
        evaluate_quantus(context, target="random")
    with pytest.raises(ValueError, match="curve_reduction"):
        evaluate_quantus(context, curve_reduction="max")
    no_explainer = EvaluationContext(
        dataset=data, model=model, model_spec=context.model_spec, seed=0, train=context.train
    )
    with pytest.raises(ValueError, match="needs an explainer"):
        evaluate_quantus(no_explainer)


def test_functions_by_name_and_other_orders(data, model):
    ev = evaluate_quantus(
        make_context(data, model),
        metric="RegionPerturbation",
        metric_params={"patch_size": 7, "regions_evaluation": 3, "order": "lerf"},
        n_images=4,
    )
    assert list(ev.metrics) == ["region_perturbation_lerf"]
    assert qc.directions()["region_perturbation_lerf"] == "lower"
    spearman = evaluate_quantus(
        make_context(data, model),
        metric="FaithfulnessEstimate",
        metric_params={"features_in_step": 56, "similarity_func": "correlation_spearman"},
        n_images=4,
    )
    assert spearman.arrays["metric_params"]["similarity_func"] == "correlation_spearman"


def test_directions_follow_quantus_except_the_documented_corrections():
    classes = qc.metric_classes()
    assert set(classes) == set(qc.QUANTUS_DIRECTIONS)  # a new Quantus metric must be added
    for name, cls in classes.items():
        quantus_says = cls.score_direction.value
        if name in qc.DIRECTION_CORRECTIONS:
            assert quantus_says != qc.DIRECTION_CORRECTIONS[name] == qc.QUANTUS_DIRECTIONS[name]
        else:
            assert qc.QUANTUS_DIRECTIONS[name] == quantus_says, name
    table = qc.directions()
    assert table["faithfulness_correlation"] == "higher"
    assert table["sparseness"] == "higher"
    assert table["complexity"] == "lower"
    assert table["road"] == "lower" and table["region_perturbation"] == "higher"
    assert "smooth_mprt" not in table and "focus" not in table


def test_capability_tables_match_the_quantus_source():
    explains, masks = set(), set()
    for name, cls in qc.metric_classes().items():
        own = "".join(  # the metric's own modules, not the base class every metric shares
            Path(inspect.getfile(k)).read_text()
            for k in cls.__mro__
            if k.__module__.startswith("quantus.metrics.") and k is not quantus.Metric
        )
        if "explain_batch(" in own or "assert_explain_func" in own:
            explains.add(name)
        if "s_batch" in inspect.signature(cls.evaluate_batch).parameters:
            masks.add(name)
    assert explains - set(qc.UNSUPPORTED) == qc.NEEDS_EXPLAIN
    assert masks == qc.NEEDS_MASKS


def quantus_plugin() -> types.ModuleType:
    """A temporary plugin that registers the evaluator exactly as the built-ins will."""
    plugin = types.ModuleType("quantus_test_plugin")
    plugin.bench_register_evaluators = register_specs_of([quantus_evaluator])
    return plugin


def test_registers_through_a_plugin_and_runs_from_its_spec(data, model):
    registry = Registry.load(extra_plugins=[("quantus-test", quantus_plugin())], entry_points=False)
    spec = registry.get("evaluator", "quantus")
    assert spec.requires == frozenset({"explainer"})
    assert spec.directions["faithfulness_correlation"] == "higher"
    assert spec.version.endswith(f"quantus{quantus.__version__}")
    factory_params = set(inspect.signature(evaluate_quantus).parameters) - {"context"}
    assert set(spec.params) == factory_params  # a suite may override every parameter
    ev = spec.factory(
        make_context(data, model), **{**spec.params, "metric": "Sparseness", "n_images": 4}
    )
    ev.check()
    assert set(ev.metrics) <= set(spec.directions)


def test_a_suite_runs_quantus_metrics_through_the_runner(tmp_path):
    registry = Registry.load(
        extra_plugins=[("toy", toy_plugin), ("quantus-test", quantus_plugin())],
        entry_points=False,
    )
    text = """\
    name: quantus-test
    datasets: [toy-bars]
    models: [toy-linear]
    debiasers: [toy-sgd]
    explainers: [toy-gradient]
    evaluators:
      - {name: quantus, label: q-sparseness, params: {metric: Sparseness, n_images: 16}}
      - name: quantus
        label: q-max-sensitivity
        params: {metric: MaxSensitivity, metric_params: {nr_samples: 2}, n_images: 16}
    seeds: [0]
    leaderboard: {metric: sparseness}  # one entry returns it: the bare name
    """
    plan = planner.expand(suite_module.parse(textwrap.dedent(text), "s.yaml", registry))
    summary, store = run_plan(registry, tmp_path, plan)
    assert summary.failed == 0, summary.failures
    assert set(store.results()["metric"]) == {"sparseness", "max_sensitivity"}
    assert run_plan(registry, tmp_path, plan)[0].ran == 0  # a rerun computes nothing
