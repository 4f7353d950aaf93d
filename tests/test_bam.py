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
    spec,
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
    bam = spec()
    assert {"explainer", "bam"} <= bam.requires
    assert bam.directions["mcs"] == bam.directions["idr"] == bam.directions["iir"] == "higher"
