"""The counterfactual searches and the core's counterfactual contract, on models whose answer is
known: a linear model's minimal L2 counterfactual is the projection onto its decision boundary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.executors.contracts import ContractError, check_counterfactuals
from benchmark.kit.autoencoders import cached_autoencoder
from benchmark.kit.counterfactual_search import (
    accepted,
    nearest_of_target,
    predictions,
    targeted_pgd,
    wachter,
)
from benchmark.kit.prototypes import prototype_counterfactuals
from benchmark.registry import Registry
from benchmark.specs import ANY_OTHER_CLASS


def linear_model(dim: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Two classes, logit of class 1 = w.x + b (class 0's logit is 0)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=gen) * 0.5
    model = nn.Sequential(nn.Flatten(), nn.Linear(dim, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(dim), w]))
        model[1].bias.copy_(torch.tensor([0.0, -0.5 * float(w.sum()) - 0.3]))
    return model.eval(), w, model[1].bias[1].detach()


def class_zero_points(model: nn.Module, n: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = 0.4 + 0.2 * torch.rand(4 * n, 1, 4, 5, generator=gen)
    return x[predictions(model, x) == 0][:n]


def test_wachter_l2_on_a_linear_model_is_the_projection_onto_the_boundary():
    model, w, b = linear_model(20)
    x = class_zero_points(model, 3)
    cf = wachter(model, x, torch.ones(3, dtype=torch.long), norm="l2", steps=150,
                 search_steps=10, lr=0.005)  # fmt: skip
    delta = (cf - x).flatten(1)
    margin = x.flatten(1) @ w + b
    projection = -margin / w.norm()  # distance to the hyperplane w.x + b = 0
    assert (predictions(model, cf) == 1).all()
    assert torch.allclose(delta.norm(dim=1), projection, rtol=0.03)
    cosine = (delta @ w) / (delta.norm(dim=1) * w.norm())
    assert (cosine > 0.995).all()


def proto(model, x, target, **kwargs):
    train = torch.rand(40, *x.shape[1:], generator=torch.Generator().manual_seed(9))
    autoencoder = cached_autoencoder(train, "", steps=3)
    return prototype_counterfactuals(model, x, target, autoencoder, train, k=3, **kwargs)


@pytest.mark.parametrize("method", ["wachter", "pgd", "nearest", "proto"])
def test_an_image_already_of_its_target_class_is_its_own_counterfactual(method):
    model, _, _ = linear_model(20)
    x = class_zero_points(model, 2)
    target = torch.zeros(2, dtype=torch.long)
    if method == "wachter":
        cf = wachter(model, x, target, steps=5, search_steps=2)
    elif method == "pgd":
        cf = targeted_pgd(model, x, target, steps=5)
    elif method == "proto":
        cf = proto(model, x, target, steps=3, search_steps=1)
    else:
        cf = nearest_of_target(model, x, target, torch.rand(30, 1, 4, 5))
    assert torch.equal(cf, x)


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).eval()


@pytest.mark.parametrize("method", ["wachter", "pgd", "nearest", "proto"])
def test_a_batch_gives_what_each_image_gives_alone(method):
    model = small_cnn()
    torch.manual_seed(3)
    x = torch.rand(5, 1, 8, 8)
    train = torch.rand(40, 1, 8, 8)
    target = torch.tensor([0, 1, 2, ANY_OTHER_CLASS, 1])

    def run(xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        if method == "wachter":
            return wachter(model, xs, ts, steps=20, search_steps=3)
        if method == "pgd":
            return targeted_pgd(model, xs, ts, steps=10)
        if method == "proto":
            return proto(model, xs, ts, steps=10, search_steps=2)
        return nearest_of_target(model, xs, ts, train)

    batched = run(x, target)
    alone = torch.cat([run(x[i : i + 1], target[i : i + 1]) for i in range(len(x))])
    assert torch.allclose(batched, alone, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("method", ["wachter", "pgd", "nearest", "proto"])
def test_what_is_found_is_accepted_by_the_model_and_the_rest_is_nan(method):
    model = small_cnn(1)
    torch.manual_seed(4)
    x, train = torch.rand(6, 1, 8, 8), torch.rand(60, 1, 8, 8)
    target = torch.tensor([0, 1, 2, 0, 1, ANY_OTHER_CLASS])
    if method == "wachter":
        cf = wachter(model, x, target, steps=30, search_steps=3)
    elif method == "pgd":
        cf = targeted_pgd(model, x, target, steps=10, eps_ladder=(0.01, 0.3))
    elif method == "proto":
        cf = proto(model, x, target, steps=30, search_steps=3)
    else:
        cf = nearest_of_target(model, x, target, train)
    found = ~torch.isnan(cf.flatten(1)).any(1)
    assert found.any()
    assert torch.isnan(cf[~found]).all()
    ok = accepted(predictions(model, cf[found]), target[found], predictions(model, x[found]))
    assert ok.all()
    assert cf[found].min() >= 0 and cf[found].max() <= 1


def test_nearest_is_a_training_image_and_the_closest_accepted_one():
    model = small_cnn(2)
    torch.manual_seed(5)
    x, train = torch.rand(4, 1, 8, 8), torch.rand(50, 1, 8, 8)
    train_pred = predictions(model, train)
    target = train_pred[:4].flip(0)
    cf = nearest_of_target(model, x, target, train)
    for i in range(4):
        if predictions(model, x[i : i + 1]) == target[i]:
            continue
        candidates = train[train_pred == target[i]]
        d = (candidates - x[i]).flatten(1).norm(dim=1)
        assert torch.equal(cf[i], candidates[d.argmin()])


def test_a_target_no_training_image_reaches_is_not_found():
    model, _, _ = linear_model(20)
    train = class_zero_points(model, 5, seed=7)
    x = class_zero_points(model, 2, seed=8)
    cf = nearest_of_target(model, x, torch.ones(2, dtype=torch.long), train)
    assert torch.isnan(cf).all()


def test_the_contract_marks_nan_images_not_found_and_refuses_broken_ones():
    x = torch.rand(3, 1, 4, 4)
    images = x.clone()
    images[1] = float("nan")
    checked = check_counterfactuals(images, x, "toy", seconds=0.5)
    assert checked.found.tolist() == [True, False, True]
    assert torch.equal(checked.images[1], x[1]) and checked.seconds == 0.5
    half = x.clone()
    half[0, 0, 0] = float("nan")
    with pytest.raises(ContractError, match="partly NaN"):
        check_counterfactuals(half, x, "toy")
    with pytest.raises(ContractError, match="outside"):
        check_counterfactuals(x + 2, x, "toy")
    with pytest.raises(ContractError, match="shape"):
        check_counterfactuals(x[:2], x, "toy")


def test_counterfactual_explainers_are_registered_with_their_output():
    registry = Registry.load()
    for name in ("cf-wachter", "cf-pgd", "cf-nearest", "cf-proto"):
        spec = registry.get("explainer", name)
        assert spec.output == "counterfactual"
    assert registry.get("explainer", "cf-nearest").uses_training_data
    assert set(registry.get("explainer", "cf-wachter").params) >= {"norm", "lam", "steps"}
    assert "data" not in registry.get("explainer", "cf-nearest").params
