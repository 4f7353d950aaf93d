"""The counterfactual metrics against their definitions, and a miniature counterfactual suite
run end to end (real training, the three searches, the grid figure, the Rashomon set)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.kit import counterfactual_metrics as cm
from benchmark.kit.seeding import generator
from benchmark.testing import run_suite
from plugins.evaluators.counterfactual import choose_targets


def test_proximity_is_the_true_l1_and_l2_not_the_squared_distance():
    x = torch.zeros(1, 1, 2, 2)
    cf = torch.tensor([[[[0.3, 0.0], [0.4, 0.0]]]])
    l1, l2 = cm.proximity(x, cf)
    assert l1.item() == pytest.approx(0.7)
    assert l2.item() == pytest.approx(0.5)  # CARLA would report 0.25
    assert cm.changed_share(x, cf, 0.35).item() == pytest.approx(0.25)


def test_ynn_equals_the_two_class_definition_on_binary_data():
    gen = torch.Generator().manual_seed(0)
    cf_class = torch.randint(0, 2, (50,), generator=gen)
    neighbours = torch.randint(0, 2, (50, 5), generator=gen)
    carla = 1 - (cf_class.view(-1, 1) - neighbours).abs().double().mean(1)
    assert torch.allclose(cm.ynn(cf_class, neighbours), carla)


def test_ynn_counts_a_third_class_neighbour_as_one_disagreement():
    # CARLA's |f(x') - f(x_j)| would give |7 - 9| = 2 for the 9
    assert cm.ynn(torch.tensor([7]), torch.tensor([[7, 9, 7, 7]])).item() == pytest.approx(0.75)


def test_nearest_and_class_distances_match_a_direct_computation():
    gen = torch.Generator().manual_seed(1)
    train_x, train_y = torch.rand(30, 1, 3, 3, generator=gen), torch.arange(30) % 3
    cf = torch.rand(4, 1, 3, 3, generator=gen)
    cls = torch.tensor([0, 1, 2, 1])
    got = cm.class_knn_distance(cf, cls, train_x, train_y, k=3)
    for i in range(4):
        d = (train_x[train_y == cls[i]] - cf[i]).flatten(1).norm(dim=1).sort().values[:3]
        assert got[i].item() == pytest.approx(d.mean().item(), rel=1e-5)


def test_stability_is_high_deep_inside_a_class_and_low_on_the_boundary():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0] * 4, [10.0, 10.0, 10.0, 10.0]]))
        model[1].bias.copy_(torch.tensor([0.0, -20.0]))
    deep = torch.full((1, 1, 2, 2), 0.95)  # logit 18: class 1 with probability ~1
    edge = torch.full((1, 1, 2, 2), 0.5)  # logit 0: on the boundary
    cls = torch.tensor([1])
    s_deep, kept_deep = cm.noise_stability(model, deep, cls, 0.05, 32, generator(0))
    s_edge, kept_edge = cm.noise_stability(model, edge, cls, 0.05, 32, generator(0))
    assert s_deep.item() > 0.95 and kept_deep.item() == 1.0
    assert s_edge.item() < 0.5 and 0.1 < kept_edge.item() < 0.9


class Constant(nn.Module):
    def __init__(self, value: float | None) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone() if self.value is None else torch.full_like(x, self.value)


def test_im1_and_im2_follow_van_looveren_and_klaise():
    cf = torch.full((1, 1, 2, 2), 0.5)
    # the target class's autoencoder reconstructs it perfectly, the original class's not at all
    per_class = [Constant(0.0), Constant(None)]
    im1, im2 = cm.interpretability_scores(
        cf, torch.tensor([1]), torch.tensor([0]), per_class, Constant(0.25)
    )
    assert im1.item() == pytest.approx(0.0)
    # ||AE_1(x') - AE(x')||^2 / ||x'||_1 = 4 * 0.25^2 / 2
    assert im2.item() == pytest.approx(0.125)
    swapped, _ = cm.interpretability_scores(
        cf, torch.tensor([0]), torch.tensor([1]), per_class, Constant(0.25)
    )
    assert swapped.item() > 1e6  # its new class reconstructs it far worse than its old one


def test_targets_are_never_the_prediction_and_are_seeded():
    predicted = torch.arange(100) % 10
    random = choose_targets(predicted, 10, "random", seed=0)
    assert (random != predicted).all() and random.unique().numel() == 10
    assert torch.equal(random, choose_targets(predicted, 10, "random", seed=0))
    assert torch.equal(choose_targets(predicted, 10, "next", 0), (predicted + 1) % 10)
    assert (choose_targets(predicted, 10, "other", 0) == -1).all()


MINI_SUITE = """\
name: mini-counterfactuals
datasets:
  - {name: mnist, params: {train_limit: 600, test_limit: 100}, validation: 100}
models: [seed-cnn]
debiasers:
  - {name: none, label: erm, params: {epochs: 2}}
explainers:
  - {name: cf-wachter, params: {steps: 30, search_steps: 3}}
  - {name: cf-pgd, params: {steps: 10}}
  - {name: cf-proto, params: {steps: 40, search_steps: 3, c: 10, gamma: 0, autoencoder_steps: 20}}
  - cf-nearest
  - gradient
evaluators:
  - {name: counterfactual, params: {images: 20, noise_samples: 4, autoencoder_steps: 20}}
  - {name: counterfactual-invalidation, params: {images: 20, rashomon_eps: 0.5}}
seeds: [0, 1]
leaderboard:
  metric: validity
"""


@pytest.mark.slow
def test_mini_counterfactual_suite_through_the_cli(tmp_path):
    result = run_suite(MINI_SUITE, tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr
    assert "0 failed" in result.stderr, result.stderr
    cells = result.leaderboard("mini-counterfactuals").fillna({"explainer": ""})
    value = cells.set_index(["evaluator", "explainer", "metric"])["mean"]
    # attribution methods are never paired with the counterfactual evaluators
    explainers = ("cf-nearest", "cf-pgd", "cf-proto", "cf-wachter")
    assert set(cells["explainer"]) == set(explainers)
    for explainer in explainers:
        assert 0 < value["counterfactual", explainer, "validity"] <= 1
        assert value["counterfactual-invalidation", explainer, "set_size"] == 2
        assert 0 <= value["counterfactual-invalidation", explainer, "invalidation"] <= 1
    # a nearest training image is a real image: its distance to the data is that of real ones
    assert (
        value["counterfactual", "cf-nearest", "knn_distance"]
        < 1.5 * (value["counterfactual", "cf-nearest", "real_knn_distance"])
    )
    # Wachter minimises L1: its counterfactuals are closer in L1 than real neighbours
    wachter_l1 = value["counterfactual", "cf-wachter", "l1"]
    assert wachter_l1 < value["counterfactual", "cf-nearest", "l1"]
    figures = sorted(
        p.name
        for p in (result.folder / "leaderboards" / "mini-counterfactuals" / "figures").iterdir()
    )
    assert [f for f in figures if "cf-grid" in f] == [
        f"counterfactual-cf-grid-mnist-seed-cnn-erm-{e}.png" for e in explainers
    ]
    # IM1 and its real-image reference are computed with the same autoencoders
    assert value["counterfactual", "cf-nearest", "im1"] > 0
    assert value["counterfactual", "cf-nearest", "real_im1"] > 0


def test_masked_median_is_robust_to_one_huge_ratio():
    values = torch.tensor([0.5, 0.8, 1.0, 200.0])
    assert cm.masked_median(values, torch.ones(4, dtype=torch.bool)) == pytest.approx(0.9)
    assert cm.masked_mean(values, torch.ones(4, dtype=torch.bool)) > 50
    assert cm.masked_median(values, torch.zeros(4, dtype=torch.bool)) != 0  # NaN when empty


class _Template(nn.Module):
    """An "autoencoder" that returns the same image whatever it is given."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = image

    def forward(self, x):
        return self.image.expand_as(x)


def test_autoencoder_specificity_by_hand():
    templates = torch.eye(3).view(3, 1, 1, 3)  # class c: a bright pixel at column c
    x = templates.repeat(2, 1, 1, 1) * 0.9
    y = torch.arange(3).repeat(2)
    specific = [_Template(t) for t in templates]
    assert cm.autoencoder_specificity(x, y, specific) == 1.0
    # interchangeable autoencoders: every image goes to the first class, right for a third
    same = [_Template(templates[0]) for _ in range(3)]
    assert cm.autoencoder_specificity(x, y, same) == pytest.approx(1 / 3)
    # a class without an autoencoder is never chosen
    assert cm.autoencoder_specificity(x, y, [None, *specific[1:]]) == pytest.approx(2 / 3)
