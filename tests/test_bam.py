"""BAM metrics (Yang & Kim 2019): the region score against the reference formula, MCS / IDR /
IIR on hand-computed toys, the insignificant patch, and the evaluator on bam-mnist."""

import numpy as np
import pytest
import torch
from torch import nn

from plugins.evaluators.bam import (
    input_dependence,
    input_independence,
    insignificant_patch,
    model_contrast,
    region_scores,
    specs,
)


def reference_region_score(map_3d: np.ndarray, mask: np.ndarray) -> float:
    """The reference code's formula (bim/attributions.py), channels last, binary mask."""
    image_2d = np.sum(map_3d.clip(min=0), axis=2)
    vmax = np.percentile(image_2d, 99)
    vmin = np.min(image_2d)
    scaled = np.clip((image_2d - vmin) / (vmax - vmin), 0, 1)
    return float(np.sum(scaled * mask) / np.count_nonzero(mask))


def test_region_score_by_hand():
    values = torch.arange(100, dtype=torch.float32).view(1, 1, 10, 10)  # min 0, p99 = 98.01
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 9, 9] = True  # values 0 and 99 (clipped to 1)
    assert region_scores(values, mask).item() == pytest.approx(0.5)
    mask[0, 0, 0] = False
    mask[0, 4, 9] = True  # 49 / 98.01 and 1
    assert region_scores(values, mask).item() == pytest.approx((49 / 98.01 + 1) / 2)


def test_region_score_matches_the_reference_formula_per_image():
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 3, 16, 16, generator=gen)  # negatives are dropped before summing
    mask = torch.rand(6, 16, 16, generator=gen) > 0.7
    ours = region_scores(maps, mask)
    for i in range(6):
        expected = reference_region_score(
            maps[i].permute(1, 2, 0).double().numpy(), mask[i].numpy()
        )
        assert ours[i].item() == pytest.approx(expected, abs=1e-9)
    # per image: the same image scores the same in any company, and the maps are not modified
    before = maps.clone()
    assert region_scores(maps[2:3], mask[2:3]).item() == pytest.approx(ours[2].item(), abs=1e-12)
    assert torch.equal(maps, before)


def test_region_score_edge_cases():
    flat = torch.full((1, 1, 4, 4), 3.0)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    assert region_scores(flat, mask).item() == 0.0  # a constant map points at nothing
    assert region_scores(-flat, mask).item() == 0.0  # only positive evidence counts
    with pytest.raises(ValueError, match="non-empty"):
        region_scores(flat, torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not fit"):
        region_scores(flat, torch.ones(2, 4, 4, dtype=torch.bool))


def test_mcs_idr_iir_by_hand():
    g_object = torch.tensor([0.9, 0.5, 0.4], dtype=torch.float64)
    g_scene = torch.tensor([0.1, 0.5, 0.6], dtype=torch.float64)
    assert model_contrast(g_object, g_scene) == pytest.approx((0.8 + 0.0 - 0.2) / 3)
    # IDR: the region scores higher without the object in 2 of 4 images (ties do not count)
    with_object = torch.tensor([0.2, 0.5, 0.7, 0.1], dtype=torch.float64)
    scene_only = torch.tensor([0.3, 0.5, 0.6, 0.4], dtype=torch.float64)
    assert input_dependence(with_object, scene_only) == pytest.approx(0.5)
    # IIR: |change| < 0.1 * plain: 0.5 -> 0.54 yes, 0.5 -> 0.56 no, 0.2 -> 0.2 yes, 0 -> 0 no
    plain = torch.tensor([0.5, 0.5, 0.2, 0.0], dtype=torch.float64)
    patched = torch.tensor([0.54, 0.56, 0.2, 0.0], dtype=torch.float64)
    assert input_independence(plain, patched, tau=0.1) == pytest.approx(0.5)
    assert input_independence(plain, patched, tau=0.2) == pytest.approx(0.75)
    empty = torch.zeros(0, dtype=torch.float64)
    assert np.isnan(model_contrast(empty, empty)) and np.isnan(input_dependence(empty, empty))


def test_insignificant_patch_stays_in_the_mask_and_keeps_the_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4))
    scene = torch.rand(5, 3, 8, 8)
    start = torch.rand(5, 3, 8, 8)
    mask = torch.zeros(5, 8, 8, dtype=torch.bool)
    mask[:, 2:6, 2:6] = True
    weights = [p.detach().clone() for p in model.parameters()]
    patched, change = insignificant_patch(model, scene, start, mask, steps=200, lr=0.02)
    outside = ~mask[:, None].expand_as(scene)
    assert torch.equal(patched[outside], scene[outside])  # nothing outside the object region
    assert (patched - scene).abs().amax() > 0.05  # ... but a real patch inside it
    assert patched.min() >= 0 and patched.max() <= 1
    with torch.no_grad():
        pasted = (model(torch.where(outside, scene, start)) - model(scene)).norm(dim=1)
        relative_start = pasted / model(scene).norm(dim=1)
    assert (change < relative_start).all()  # the optimisation moved the logits back
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_spec_declares_bam_requirements_and_directions():
    (bam,) = specs()
    assert {"explainer", "bam"} <= bam.requires
    assert bam.directions["mcs"] == bam.directions["idr"] == bam.directions["iir"] == "higher"


@pytest.fixture(scope="module")
def bam_context_parts():
    from plugins.datasets.bam_mnist import load_bam_mnist
    from plugins.debiasers.erm import train_erm
    from plugins.models.seed_cnn import build_seed_cnn

    data = load_bam_mnist(test_limit=200)
    trained_splits = []

    def train(split, *, seed):  # what the runner's cached trainer does, uncached
        trained_splits.append(split)
        torch.manual_seed(seed)
        model = build_seed_cnn(10, data.input_shape)
        return train_erm(model, split, seed=seed, epochs=8, lr=0.001, optimizer="adam")

    model = train(data.train, seed=0)
    trained_splits.clear()
    return data, model, train, trained_splits


def run_bam(parts, explain, **params):
    from benchmark.specs import EvaluationContext, ModelSpec
    from plugins.evaluators.bam import evaluate_bam
    from plugins.models.seed_cnn import build_seed_cnn

    data, model, train, _ = parts
    context = EvaluationContext(
        dataset=data,
        model=model,
        model_spec=ModelSpec("seed-cnn", build_seed_cnn),
        seed=0,
        train=train,
        explain=explain,
    )
    return evaluate_bam(context, n_images=200, patch_steps=30, **params)


@pytest.mark.slow
def test_bam_on_bam_mnist_controls_and_a_real_explainer(bam_context_parts):
    from plugins.explainers.controls import random_attributions, sobel

    def gradient(model, x, target):
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            model(x).gather(1, target[:, None]).sum().backward()
        return x.grad.detach()

    noise = run_bam(bam_context_parts, random_attributions)
    # the object model is the job's model (object labels); scene and scene-only are trained
    trained = bam_context_parts[3]
    assert len(trained) == 2 and all(not s.extras for s in trained)
    assert torch.equal(trained[0].y, bam_context_parts[0].train.extras["scene_labels"])
    assert torch.equal(trained[1].x, bam_context_parts[0].train.extras["scene_only"])
    m = noise.metrics
    assert m["object_model_accuracy"] > 0.2 and m["scene_model_accuracy"] > 0.5  # chance 0.1
    assert m["n_mcs"] > 10 and m["n_idr"] > 20 and m["n_iir"] > 0
    assert m["mcs"] == 0.0  # a map that ignores the model cannot tell the models apart
    edges = run_bam(bam_context_parts, sobel).metrics
    assert edges["mcs"] == 0.0
    # noise maps drawn afresh for the twin: higher without the object about half the time
    assert 0.3 < m["idr"] < 0.7
    grad = run_bam(bam_context_parts, gradient).metrics
    assert grad["mcs"] > 0.05  # the object model's gradient concentrates on the digit
    assert 0.0 <= grad["idr"] <= 1.0 and 0.0 <= grad["iir"] <= 1.0
    assert grad["patch_logit_change"] < 1.0


def test_bam_refuses_a_dataset_without_bam_metadata(bam_context_parts):
    import dataclasses

    from benchmark.specs import EvaluationContext, ModelSpec
    from plugins.evaluators.bam import evaluate_bam
    from plugins.models.seed_cnn import build_seed_cnn

    data, model, train, _ = bam_context_parts
    plain = dataclasses.replace(data, train=dataclasses.replace(data.train, extras={}))
    context = EvaluationContext(
        plain, model, ModelSpec("seed-cnn", build_seed_cnn), 0, train, lambda m, x, t: x
    )
    with pytest.raises(ValueError, match="train split has no object_labels"):
        evaluate_bam(context)
