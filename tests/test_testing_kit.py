"""``benchmark.testing`` catches what it promises to catch: each check passes on a built-in and
fails, naming the component, on a component broken in exactly one way."""

import types

import pytest
import torch

from benchmark import EvaluatorSpec, ExplainerSpec, ModelSpec, hookimpl
from benchmark.executors.worker import ContractError
from benchmark.registry import Registry
from benchmark.specs import Evaluation
from benchmark.testing import (
    check_dataset,
    check_debiaser,
    check_evaluator,
    check_explainer,
    check_model,
    check_plugin,
    make_context,
)
from tests import toy_plugin


def _gradient(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return grad


def batch_normalised(model, x, target):
    return _gradient(model, x, target) / _gradient(model, x, target).abs().max()  # whole batch


def in_place(model, x, target):
    x.mul_(1.0)
    x.add_(1e-3)
    return _gradient(model, x, target)


def double_precision(model, x, target):
    return _gradient(model, x, target).double()


def rng_user(model, x, target):
    return _gradient(model, x, target) + 0 * torch.rand(1)


def undeclared_metric(context):
    return Evaluation({"accuracy": 0.5, "surprise": 1.0})


def broken_layer_model(num_classes, input_shape):
    return toy_plugin.linear(num_classes, input_shape)


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def test_built_ins_pass_their_checks(registry, cache):
    maps = check_explainer("gradient", registry=registry, cache_dir=cache)
    assert maps.shape[1:] == (1, 28, 28)
    check_explainer("smoothgrad", params={"samples": 4}, registry=registry, cache_dir=cache)
    evaluation = check_evaluator(
        "pixel-flipping", params={"n_images": 8}, registry=registry, cache_dir=cache
    )
    assert set(evaluation.metrics) == {"auc"}
    assert (1, 28, 28) in check_model("seed-cnn", registry=registry)
    check_dataset("digits", params={"train_limit": 100, "test_limit": 50}, registry=registry)
    check_debiaser("none", registry=registry)


@pytest.mark.parametrize(
    ("factory", "error", "fragment"),
    [
        (batch_normalised, AssertionError, "depends on the batch"),
        (in_place, AssertionError, "modified its input x in place"),
        (double_precision, ContractError, "torch.float64 attributions"),
        (rng_user, AssertionError, "disturbed torch's global random state"),
    ],
)
def test_check_explainer_names_each_broken_contract(registry, cache, factory, error, fragment):
    spec = ExplainerSpec(f"broken-{factory.__name__}", factory)
    with pytest.raises(error, match=fragment):
        check_explainer(spec, registry=registry, cache_dir=cache)


def test_check_evaluator_refuses_an_undeclared_metric(registry, cache):
    spec = EvaluatorSpec("sloppy", undeclared_metric, directions={"accuracy": "higher"})
    with pytest.raises(AssertionError, match=r"without a direction: \['surprise'\]"):
        check_evaluator(spec, registry=registry, cache_dir=cache)


def test_check_model_refuses_a_missing_cam_layer(registry):
    spec = ModelSpec("no-layer", broken_layer_model, target_layer="features.conv9")
    with pytest.raises(AssertionError, match=r"target_layer 'features\.conv9'"):
        check_model(spec, registry=registry)


def test_make_context_trains_once_per_cache_and_wraps_the_explainer(registry, tmp_path):
    options = dict(
        dataset="mnist",
        explainer="gradient",
        dataset_params={"train_limit": 200, "test_limit": 32},
        debiaser_params={"epochs": 1},
        registry=registry,
        cache_dir=str(tmp_path),
    )
    first = make_context(**options)
    again = make_context(**options)  # from the cache: the very same weights
    for a, b in zip(
        first.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    x, y = first.dataset.test.x[:4], first.dataset.test.y[:4]
    maps = first.explain(first.model, x, y)
    assert maps.shape == (4, 1, 28, 28) and maps.dtype == torch.float32
    assert first.model_spec.name == "seed-cnn" and first.explainer_spec.name == "gradient"
    assert len(first.dataset.train) == 200


def test_make_context_checks_parameter_values(registry):
    from benchmark.suite import ParamError

    with pytest.raises(ParamError, match="train_limit"):
        make_context(dataset="mnist", dataset_params={"train_limit": 0}, registry=registry)


def test_check_plugin_passes_a_clean_plugin_and_names_a_misspelt_hook():
    record = check_plugin(toy_plugin, "toy")
    assert record.components > 0
    typo = types.SimpleNamespace(bench_register_dataset=hookimpl(lambda register: None))
    with pytest.raises(AssertionError, match="unknown hooks: \\['bench_register_dataset'\\]"):
        check_plugin(typo, "typo")


SMALL = {"samples": 4, "n_steps": 8, "steps": 10, "search_steps": 2, "autoencoder_steps": 10}


@pytest.mark.parametrize("name", Registry.load().names("explainer"))
def test_every_built_in_explainer_keeps_the_contract_it_declares(registry, cache, name):
    """Including the declaration itself: a built-in that says its maps depend on the batch
    really does (so the flag is not a way around the check)."""
    spec = registry.get("explainer", name)
    params = {k: v for k, v in SMALL.items() if k in spec.params}
    if name in ("kernel-shap", "lime"):
        params["samples"] = 16
    maps = check_explainer(spec, params=params, registry=registry, cache_dir=cache)
    if not spec.batch_independent:
        context = make_context(
            dataset="mnist",
            dataset_params={"train_limit": 300, "test_limit": 64},
            debiaser_params={"epochs": 1},
            registry=registry,
            cache_dir=cache,
        )
        x, y = context.dataset.test.x[:6], context.dataset.test.y[:6]
        call = {**spec.params, **params}
        flipped = spec.factory(context.model, x.flip(0), y.flip(0), **call).flip(0)
        assert not torch.allclose(flipped, maps), f"{name} declares a batch dependence it lacks"
