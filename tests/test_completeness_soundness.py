"""Completeness / soundness (Gupta & Arora et al. 2022): formulas by hand, the insertion game
against a direct per-image loop, batch independence, inputs left untouched."""

import numpy as np
import pytest
import torch

from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from plugins.evaluators import completeness_soundness as cs


def test_formulas_by_hand():
    # completeness: min(max(eps1, AUC) / min(alpha, p), 1)
    auc, p = np.array([0.05, 0.3, 0.9]), np.array([0.6, 0.6, 0.6])
    assert np.allclose(cs.completeness(auc, p, alpha=1.0, eps1=0.1), [0.1 / 0.6, 0.5, 1.0])
    assert np.allclose(cs.completeness(auc, p, alpha=0.5, eps1=0.1), [0.2, 0.6, 1.0])
    # soundness: min(max(beta, p) / AUC, 1); AUC 0 is trivially sound
    auc, p = np.array([0.5, 0.05, 0.0, 0.2]), np.array([0.01, 0.01, 0.3, 0.4])
    assert np.allclose(cs.soundness(auc, p, beta=0.1), [0.2, 1.0, 1.0, 1.0])


class Linear(torch.nn.Module):
    """Two classes; logit 0 is the sum of the left half, logit 1 of the right half."""

    def forward(self, x):
        w = x.shape[-1] // 2
        return torch.stack([x[..., :w].sum((1, 2, 3)), x[..., w:].sum((1, 2, 3))], 1)


def naive(model, x, a, labels, fill, steps):
    out = np.zeros((len(x), steps))
    for i in range(len(x)):
        flat = a[i].sum(0).flatten()
        order = sorted(range(flat.numel()), key=lambda j: (-float(flat[j]), j))
        for s in range(1, steps + 1):
            k = round(s / steps * flat.numel())
            image = fill.view(-1, 1, 1).expand_as(x[i]).clone().flatten(1)
            image[:, order[:k]] = x[i].flatten(1)[:, order[:k]]
            with torch.no_grad():
                p = model(image.view(1, *x[i].shape)).softmax(1)[0, labels[i]]
            out[i, s - 1] = float(p)
    return out


def test_insertion_game_matches_a_direct_loop_and_is_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 4, 4, generator=g)
    a = torch.randn(5, 1, 4, 4, generator=g)
    a[0] = 0.0  # all ties
    labels = torch.tensor([0, 1, 0, 1, 1])
    fill = torch.tensor([0.2, 0.4])
    before = (x.clone(), a.clone())
    got = cs.insertion_probabilities(Linear(), x, a, labels, fill, steps=4, batch_size=6)
    assert np.allclose(got.numpy(), naive(Linear(), x, a, labels, fill, 4), atol=1e-6)
    assert torch.equal(x, before[0]) and torch.equal(a, before[1])
    alone = cs.insertion_probabilities(Linear(), x[2:3], a[2:3], labels[2:3], fill, steps=4)
    assert torch.allclose(alone[0], got[2])
    # the last step shows the whole image
    with torch.no_grad():
        full = Linear()(x).softmax(1).gather(1, labels[:, None]).squeeze(1).double()
    assert torch.allclose(got[:, -1], full)


def test_evaluator_on_a_model_whose_evidence_is_known():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 4, 4, generator=g)
    data = Dataset(
        Split(x, torch.zeros(8, dtype=torch.long)), Split(x, torch.zeros(8, dtype=torch.long)), 2
    )

    def truthful(model, xs, target):
        # the evidence for label c is the half of the image that feeds logit c
        a = torch.zeros_like(xs)
        a[..., :2] = (target == 0).view(-1, 1, 1, 1).float()
        a[..., 2:] = (target == 1).view(-1, 1, 1, 1).float()
        return a * xs

    context = EvaluationContext(
        dataset=data,
        model=Linear(),
        model_spec=ModelSpec("linear", Linear),
        seed=0,
        train=None,
        explain=truthful,
    )
    result = cs.evaluate_completeness_soundness(context, steps=8)
    m = result.metrics
    assert 0 < m["soundness_worst"] <= m["soundness"] <= 1
    assert 0 < m["completeness"] <= 1
    assert len(result.arrays["completeness"]) == 8
    assert m["soundness"] == pytest.approx(m["soundness_worst"])  # one other label: mean = min
    with pytest.raises(ValueError, match="alpha"):
        cs.evaluate_completeness_soundness(context, alpha=0.0)
