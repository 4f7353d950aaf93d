"""Bias localisation: attribution mass on the spurious region, checked on images whose regions
are known by construction, and on real colored-mnist with a real trained model."""

import numpy as np
import pytest
import torch

from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from plugins.evaluators import bias_localisation as bl


def images(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Coloured backgrounds (one colour per image) with a white 2x2 'digit' in the middle."""
    x = torch.zeros(n, 3, 6, 6)
    colours = torch.rand(n, 3, generator=torch.Generator().manual_seed(0)) * 0.8
    x[:] = colours[:, :, None, None]
    x[:, :, 2:4, 2:4] = 1.0
    y = torch.arange(n) % 2
    return x, y


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 36, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


def context(explain, extras=None) -> EvaluationContext:
    x, y = images()
    split = Split(x, y, extras=extras or {})
    torch.manual_seed(0)
    return EvaluationContext(
        dataset=Dataset(split, split, 2),
        model=Linear().eval(),
        model_spec=ModelSpec("linear", Linear),
        seed=0,
        train=lambda split, *, seed: None,
        explain=explain,
    )


def on_background(model, x, target):
    a = torch.ones_like(x)
    a[:, :, 2:4, 2:4] = 0.0
    return a


def on_digit(model, x, target):
    a = torch.zeros_like(x)
    a[:, :, 2:4, 2:4] = 1.0
    return a


def uniform(model, x, target):
    return torch.ones_like(x)


def test_corner_background_is_the_uniform_colour_around_the_digit():
    x, _ = images()
    region = bl.corner_background(x)
    assert region.shape == (6, 6, 6)
    assert not region[:, 2:4, 2:4].any() and region.sum() == 6 * 32


def test_mass_shares_are_what_the_construction_says():
    area = 32 / 36
    back = bl.evaluate_bias_localisation(context(on_background), n_images=6).metrics
    assert back["background_mass"] == pytest.approx(1.0)
    assert back["background_area"] == pytest.approx(area)
    assert back["mass_over_area"] == pytest.approx(1 / area)
    digit = bl.evaluate_bias_localisation(context(on_digit), n_images=6).metrics
    assert digit["background_mass"] == pytest.approx(0.0) and digit["mass_over_area"] == 0.0
    flat = bl.evaluate_bias_localisation(context(uniform), n_images=6).metrics
    assert flat["mass_over_area"] == pytest.approx(1.0)  # the uniform control's value


def test_an_object_mask_defines_the_region_and_aligned_images_are_split():
    x, y = images()
    mask = torch.zeros(6, 6, 6, dtype=torch.bool)
    mask[:, :3, :] = True  # the 'object' is the top half: the scene is the bottom half
    aligned = torch.tensor([True, False, True, False, False, False])
    result = bl.evaluate_bias_localisation(
        context(uniform, {"object_mask": mask, "bias_aligned": aligned}), n_images=6
    )
    m = result.metrics
    assert m["background_area"] == pytest.approx(0.5) and m["background_mass"] == pytest.approx(0.5)
    model = context(uniform).model
    correct = (model(x).argmax(1) == y).numpy()
    assert m["accuracy"] == pytest.approx(correct.mean())
    assert m["accuracy_aligned"] == pytest.approx(correct[aligned.numpy()].mean())
    assert m["accuracy_conflicting"] == pytest.approx(correct[~aligned.numpy()].mean())
    assert m["mass_over_area_aligned"] == pytest.approx(1.0)
    assert result.per_image["background_mass"].shape == (6,)


def test_all_zero_maps_are_counted_and_an_all_zero_job_fails():
    def half_zero(model, x, target):
        a = torch.ones_like(x)
        a[:3] = 0.0
        return a

    m = bl.evaluate_bias_localisation(context(half_zero), n_images=6).metrics
    assert m["zero_maps"] == 3.0 and m["mass_over_area"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all zero"):
        bl.evaluate_bias_localisation(context(lambda m, x, t: torch.zeros_like(x)), n_images=6)


def test_on_colored_mnist_a_shortcut_model_is_measured_next_to_its_behaviour():
    """Real data, real ERM training: the model follows the colour (conflicting accuracy far
    below aligned) and the random control sits at mass_over_area 1."""
    from plugins.datasets.colored_mnist import load_colored_mnist
    from plugins.debiasers.erm import train_erm
    from plugins.explainers.controls import random_attributions
    from plugins.explainers.gradients import gradient
    from plugins.models.seed_cnn import build_seed_cnn

    data = load_colored_mnist(rho=0.99, train_limit=1000, test_limit=40)
    torch.manual_seed(0)
    model = train_erm(build_seed_cnn(10, (3, 28, 28)), data.train, seed=0, epochs=3).eval()
    spec = ModelSpec("seed-cnn", build_seed_cnn)

    def run(explain):
        ctx = EvaluationContext(data, model, spec, seed=0, train=None, explain=explain)
        return bl.evaluate_bias_localisation(ctx, n_images=400).metrics

    control = run(random_attributions)
    assert control["mass_over_area"] == pytest.approx(1.0, abs=0.05)
    assert control["accuracy_aligned"] > control["accuracy_conflicting"] + 0.3
    grad = run(gradient)
    assert 0.0 < grad["background_mass"] < 1.0 and np.isfinite(grad["mass_over_area"])
