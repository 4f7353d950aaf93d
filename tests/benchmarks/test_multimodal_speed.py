"""Throughput of the multimodal evaluator's parts against the forward-pass limit of the model.

The modality ablation (``plugins.evaluators.multimodal``) is four batched forward passes over
the test split (image and caption, shuffled and blanked), so its floor is four times the limit
row (``forward``: one pass of the LSTM-CNN over the batch); the heads pass is one more. The
attribution share is captum's ``IntegratedGradients`` (``ig_steps`` forward+backward passes
per image, plus the untrained control's as many), measured as the library runs it; captum's
``FeatureAblation`` with one feature per modality is the field's way to ablate a whole input,
timed on the same inputs as the comparison row. ``pytest
tests/benchmarks/test_multimodal_speed.py --benchmark-enable`` prints the table; nothing here
asserts a time.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.kit.evaluation import predict_logits
from benchmark.modalities import TEXT_KEY
from plugins.datasets.caption_mnist import load_caption_mnist
from plugins.evaluators.multimodal import (
    ABLATIONS,
    MODALITIES,
    ablate,
    attribution_shares,
    derangement,
)
from plugins.models.lstm_cnn import build_lstm_cnn

N_IMAGES = 256
IG_STEPS = 8


@pytest.fixture(scope="module")
def setup():
    data = load_caption_mnist(train_limit=100, test_limit=N_IMAGES)
    torch.manual_seed(0)
    model = build_lstm_cnn(10, (1, 28, 28), len(data.vocabulary), "resnet18").eval()
    return model, data.test.x, data.test.extras[TEXT_KEY]


def test_forward_limit(benchmark, setup):
    model, x, text = setup
    benchmark.extra_info["passes"] = 1
    logits = benchmark(predict_logits, model, x, 512, text)
    assert logits.shape == (len(x), 10)


def test_modality_ablation(benchmark, setup):
    model, x, text = setup
    partner = derangement(len(x), torch.Generator().manual_seed(0))
    benchmark.extra_info["passes"] = 4

    def run():
        out = []
        for how in ABLATIONS:
            for modality in MODALITIES:
                images, captions = ablate(x, text, modality, how, partner)
                out.append(predict_logits(model, images, 512, captions))
        return out

    assert len(benchmark(run)) == 4


def test_captum_feature_ablation_same_inputs(benchmark, setup):
    from captum.attr import FeatureAblation

    model, x, text = setup
    with torch.no_grad():
        embedded = model.embed(text)
        target = model(x, text).argmax(1)
    masks = (torch.zeros_like(x, dtype=torch.long), torch.ones_like(embedded, dtype=torch.long))
    ablation = FeatureAblation(model.fused_from_embeddings)
    benchmark.extra_info["passes"] = "1 + one per modality"

    def run():
        with torch.no_grad():
            return ablation.attribute(
                (x, embedded), target=target, additional_forward_args=(text,), feature_mask=masks
            )

    image, words = benchmark(run)
    assert image.shape == x.shape and words.shape == embedded.shape


def test_integrated_gradients_share(benchmark, setup):
    model, x, text = setup
    benchmark.extra_info["passes"] = f"{IG_STEPS} forward+backward"
    share, gap = benchmark(attribution_shares, model, x[:64], text[:64], IG_STEPS, 512)
    assert share.shape == (64,) and (share >= 0).all() and (share <= 1).all()
    assert gap.shape == (64,)
