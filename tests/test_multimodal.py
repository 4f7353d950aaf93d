"""Image + text: the planner's modality rule, the LSTM-CNN's heads and loss, ablation and
utilisation on toy models whose answers are computed by hand, and a mini suite end to end."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import torch
from torch import nn

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.kit.training import train_loop
from benchmark.modalities import PAD, TEXT_KEY
from benchmark.registry import Registry
from benchmark.specs import Dataset, EvaluationContext, ModelSpec, Split
from benchmark.testing import run_suite
from benchmark.testing.checks import check_model
from plugins.datasets.caption_mnist import load_caption_mnist
from plugins.debiasers.mtl_multimodal import train_mtl_multimodal
from plugins.evaluators.multimodal import (
    ablate,
    derangement,
    evaluate_multimodal,
    untrained_copy,
    utilisation,
)
from plugins.models.lstm_cnn import build_lstm_cnn


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def _plan(registry, body: str):
    text = "name: t\nseeds: [0]\nleaderboard: {metric: accuracy}\n" + textwrap.dedent(body)
    return planner.expand(suite_module.parse(text, "t.yaml", registry))


def test_image_only_components_are_skipped_for_a_caption_model_with_the_reason(registry):
    plan = _plan(
        registry,
        """
        datasets: [caption-mnist, mnist]
        models: [{name: lstm-cnn, params: {backbone: seed-cnn}}, seed-cnn]
        debiasers: [mtl-multimodal, none]
        explainers: [gradient]
        evaluators: [fairness, sanity-model, multimodal]
        """,
    )
    run = {(j.dataset.label, j.model.label, j.debiaser.label, j.evaluator.label) for j in plan.jobs}
    assert ("caption-mnist", "lstm-cnn", "mtl-multimodal", "fairness") in run
    assert ("caption-mnist", "lstm-cnn", "mtl-multimodal", "multimodal") in run
    # an image-only model runs on the captioned dataset: it never sees the caption
    assert ("caption-mnist", "seed-cnn", "none", "sanity-model") in run
    assert not any(j.model.label == "lstm-cnn" and j.explainer is not None for j in plan.jobs)
    reasons = [s.reason for s in plan.skipped]
    assert any(
        "explainer 'gradient' handles image inputs only; model 'lstm-cnn' takes image + text" in r
        for r in reasons
    )
    assert any("debiaser 'none' handles image inputs only" in r for r in reasons)
    assert any(
        "model 'lstm-cnn' takes image + text, but dataset 'mnist' provides no text" in r
        for r in reasons
    )


def test_the_built_in_suite_plans_the_design(registry):
    suite = suite_module.load("multimodal", registry)
    plan = planner.expand(suite)
    cells = {(j.dataset.label, j.model.label, j.debiaser.label) for j in plan.jobs}
    procedures = {"single-head", "mtl", "mtl-a1x3"}
    for dataset in ("caption-mnist-tag95", "caption-mnist-tag10"):
        for backbone in ("resnet18", "shufflenet"):
            for procedure in procedures:
                assert (dataset, f"lstm-cnn-{backbone}", procedure) in cells
            assert (dataset, backbone, "erm") in cells  # the image-only control
    assert len(cells) == 2 * (2 * 3 + 2)
    assert plan.trainings()[0] == len(cells) * 3


def _captioned(n: int = 64, seed: int = 0) -> Split:
    data = load_caption_mnist(train_limit=200, test_limit=100)
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(data.train), generator=g)[:n]
    t = data.train
    return Split(t.x[rows], t.y[rows], t.groups[rows], {TEXT_KEY: t.extras[TEXT_KEY][rows]})


def _model(seed: int = 0, backbone: str = "seed-cnn") -> nn.Module:
    torch.manual_seed(seed)
    return build_lstm_cnn(10, (1, 28, 28), 40, backbone)


def test_lstm_cnn_heads_and_missing_captions():
    split = _captioned(8)
    model = _model().eval()
    text = split.extras[TEXT_KEY].clone()
    text[0] = PAD  # a missing caption
    logits = model.branch_logits(split.x, text)
    assert set(logits) == {"fusion", "image", "text"}
    assert all(v.shape == (8, 10) and torch.isfinite(v).all() for v in logits.values())
    assert torch.equal(model(split.x, text), logits["fusion"])
    # the image head reads the image only, the text head the caption only
    other = text.roll(1, 0)
    assert torch.equal(model.branch_logits(split.x, other)["image"], logits["image"])
    assert torch.equal(model.branch_logits(split.x.flip(0), text)["text"], logits["text"])
    embedded = model.embed(text)
    assert torch.allclose(model.fused_from_embeddings(split.x, embedded, text), logits["fusion"])


@pytest.mark.parametrize("backbone", ["resnet18", "shufflenet", "seed-cnn"])
def test_the_plugin_kit_checks_a_caption_model(backbone):
    built = check_model("lstm-cnn", params={"backbone": backbone})
    assert (1, 28, 28) in built


def test_a_backbone_that_is_not_an_image_classifier_is_refused():
    with pytest.raises(ValueError, match="image-only model that provides 'linear-head'"):
        build_lstm_cnn(10, (1, 28, 28), 40, backbone="lstm-cnn")


def test_single_head_training_is_plain_fusion_training_bit_for_bit():
    split = _captioned()
    text = split.extras[TEXT_KEY]
    ours = train_mtl_multimodal(_model(), split, seed=3, a1=0, a2=0, epochs=2, batch_size=16)

    plain = _model()

    def step(batch):
        return nn.functional.cross_entropy(plain(batch.x, text[batch.index]), batch.y)

    plain = train_loop(plain, split, step, seed=3, epochs=2, batch_size=16)
    mine, theirs = ours.state_dict(), plain.state_dict()
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == []
    # the branch heads never got a gradient: they are still their initial weights
    initial = _model().state_dict()
    assert torch.equal(mine["image_head.weight"], initial["image_head.weight"])
    assert torch.equal(mine["text_head.weight"], initial["text_head.weight"])
    assert ours.head_weights.tolist() == [1.0, 0.0, 0.0]


def test_mtl_weights_train_the_branch_heads_and_are_saved():
    split = _captioned()
    model = train_mtl_multimodal(_model(), split, seed=0, a1=2.0, a2=0.5, epochs=1, batch_size=16)
    initial = _model().state_dict()
    assert not torch.equal(model.state_dict()["image_head.weight"], initial["image_head.weight"])
    assert not torch.equal(model.state_dict()["text_head.weight"], initial["text_head.weight"])
    assert model.state_dict()["head_weights"].tolist() == [1.0, 2.0, 0.5]


def test_derangement_is_a_permutation_without_fixed_points():
    for n in (2, 3, 10, 101):
        partner = derangement(n, torch.Generator().manual_seed(n))
        assert sorted(partner.tolist()) == list(range(n))
        assert (partner != torch.arange(n)).all()
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, torch.Generator())


def test_ablate_and_utilisation_by_hand():
    x = torch.arange(3.0).view(3, 1, 1, 1)
    text = torch.tensor([[5, 6], [7, 0], [8, 9]])
    partner = torch.tensor([1, 2, 0])
    images, captions = ablate(x, text, "image", "shuffle", partner)
    assert images.flatten().tolist() == [1.0, 2.0, 0.0] and torch.equal(captions, text)
    images, captions = ablate(x, text, "text", "shuffle", partner)
    assert captions.tolist() == [[7, 0], [8, 9], [5, 6]] and torch.equal(images, x)
    assert (ablate(x, text, "image", "blank", partner)[0] == 0).all()
    assert (ablate(x, text, "text", "blank", partner)[1] == PAD).all()
    assert utilisation(0.8, 0.2) == pytest.approx(0.75)
    assert utilisation(0.5, 0.6) == pytest.approx(-0.2)  # ablation helped
    with pytest.raises(ValueError):
        utilisation(0.0, 0.0)


class TextOnly(nn.Module):
    """Predicts the class named by the caption's first token (token t -> class t - 1; padding ->
    class 9); the image is read with weight 0. Every head is this rule."""

    image_target_layer = ""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("head_weights", torch.tensor([1.0, 1.0, 1.0]))

    def embed(self, text):
        return nn.functional.one_hot((text - 1) % 10, 10).float() * 10

    def fused_from_embeddings(self, x, embedded, text):
        return embedded[:, 0] + 0.0 * x.flatten(1).sum(1, keepdim=True)

    def forward(self, x, text):
        return self.fused_from_embeddings(x, self.embed(text), text)

    def branch_logits(self, x, text):
        out = self(x, text)
        return {"fusion": out, "image": out, "text": out}


def test_evaluator_on_a_model_that_reads_only_the_caption():
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    text = torch.stack([y + 1, torch.zeros_like(y)], 1)  # every caption names its class
    test = Split(torch.rand(6, 1, 4, 4), y, y.clone(), {TEXT_KEY: text, "named_digit": y})
    data = Dataset(test, test, num_classes=10, vocabulary=tuple(str(i) for i in range(11)))
    context = EvaluationContext(data, TextOnly(), ModelSpec("toy", TextOnly), 0, lambda *a: None)
    evaluation = evaluate_multimodal(context, attribution_images=6, ig_steps=4, cam_images=0)
    m = evaluation.metrics
    assert m["fusion_accuracy"] == 1.0 and m["ensemble_accuracy"] == 1.0
    assert m["image_utilisation"] == 0.0 and m["image_utilisation_blank"] == 0.0
    # shuffled captions: right only where the partner has the same class
    partner = derangement(6, torch.Generator().manual_seed(0))
    expected = float((y[partner] == y).double().mean())
    assert m["shuffle_text_accuracy"] == pytest.approx(expected)
    assert m["text_utilisation"] == pytest.approx(1 - expected)
    # missing captions all read as class 9, which no test image is
    assert m["blank_text_accuracy"] == 0.0 and m["text_utilisation_blank"] == 1.0
    assert m["image_attribution_share"] == 0.0  # no gradient reaches the image
    assert m["named_share"] == 1.0 and m["text_ceiling"] == 1.0
    assert m["fusion_accuracy_named"] == 1.0 and "fusion_accuracy_unnamed" not in m
    assert m["text_head_accuracy_named"] == 1.0 and m["image_head_accuracy_named"] == 1.0
    assert m["ig_completeness_gap"] < 1e-6  # linear in the embeddings: IG is exact


def test_single_head_models_report_no_branch_or_ensemble_accuracy():
    data = load_caption_mnist(train_limit=100, test_limit=50)
    model = _model().eval()  # head_weights [1, 0, 0]: the single-head network
    spec = ModelSpec("lstm-cnn", build_lstm_cnn)
    context = EvaluationContext(data, model, spec, 0, lambda *a: None)
    m = evaluate_multimodal(context, attribution_images=4, ig_steps=4, cam_images=2)
    assert "image_head_accuracy" not in m.metrics and "ensemble_accuracy" not in m.metrics
    assert 0 <= m.metrics["untrained_image_attribution_share"] <= 1
    assert len(m.arrays["cam_maps"]) == 2 and len(m.arrays["cam_maps"][0]) == 28


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: trains and scores the LSTM-CNN on the GPU against the CPU",
)


@needs_cuda
def test_the_multimodal_path_on_cuda_matches_the_cpu():
    cuda = torch.device("cuda")
    split = _captioned()
    on_gpu = Split(
        split.x.to(cuda),
        split.y.to(cuda),
        split.groups.to(cuda),
        {TEXT_KEY: split.extras[TEXT_KEY].to(cuda)},
    )
    expected = train_mtl_multimodal(_model(), split, seed=0, epochs=1, batch_size=16)
    got = train_mtl_multimodal(_model().to(cuda), on_gpu, seed=0, epochs=1, batch_size=16)
    text = split.extras[TEXT_KEY]
    with torch.no_grad():
        a, b = expected(split.x, text), got(on_gpu.x, on_gpu.extras[TEXT_KEY]).cpu()
    assert float((a - b).abs().max()) <= 1e-2 * float(a.abs().max())
    data = load_caption_mnist(train_limit=100, test_limit=50)
    gpu_data = dataclasses.replace(
        data,
        test=Split(
            data.test.x.to(cuda),
            data.test.y.to(cuda),
            data.test.groups.to(cuda),
            {k: v.to(cuda) for k, v in data.test.extras.items()},
        ),
    )
    spec = ModelSpec("lstm-cnn", build_lstm_cnn)
    params = {"attribution_images": 8, "ig_steps": 4, "cam_images": 2}
    cpu = evaluate_multimodal(EvaluationContext(data, expected, spec, 0, None), **params)
    gpu = evaluate_multimodal(
        EvaluationContext(gpu_data, got, spec, 0, None, device=cuda), **params
    )
    for name in ("fusion_accuracy", "image_head_accuracy", "text_utilisation"):
        assert abs(cpu.metrics[name] - gpu.metrics[name]) <= 0.05, name


MINI = """
name: mini-multimodal
datasets:
  - {name: caption-mnist, params: {spurious_rate: 0.1, train_limit: 600, test_limit: 200}}
models:
  - {name: lstm-cnn, params: {backbone: seed-cnn}}
  - seed-cnn
debiasers:
  - {name: mtl-multimodal, label: single-head, params: {a1: 0, a2: 0, epochs: 3, lr: 0.003}}
  - {name: mtl-multimodal, label: mtl, params: {epochs: 3, lr: 0.003}}
  - {name: none, label: erm, params: {optimizer: adam, lr: 0.001, epochs: 2}}
evaluators:
  - fairness
  - {name: multimodal, params: {attribution_images: 10, ig_steps: 8, cam_images: 3}}
seeds: [0]
leaderboard:
  metric: accuracy
"""


@pytest.mark.slow
def test_mini_multimodal_suite_through_the_cli(tmp_path):
    result = run_suite(MINI, tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "0 failed" in result.stderr, result.stderr
    cells = result.leaderboard("mini-multimodal")
    value = cells.set_index(["model", "debiaser", "evaluator", "metric"])["mean"]
    assert value["lstm-cnn", "mtl", "multimodal", "text_head_accuracy"] > 0.3
    assert ("lstm-cnn", "single-head", "multimodal", "image_head_accuracy") not in value.index
    assert 0 <= value["seed-cnn", "erm", "fairness", "accuracy"] <= 1
    figures = {
        p.name for p in (result.folder / "leaderboards" / "mini-multimodal" / "figures").iterdir()
    }
    assert "multimodal-heads-caption-mnist.png" in figures
    assert "multimodal-gradcam-caption-mnist-lstm-cnn-mtl.png" in figures


def test_the_untrained_control_leaves_the_global_random_state_alone():
    model = _model()
    state = torch.get_rng_state()
    a, b = untrained_copy(model, 5), untrained_copy(model, 5)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["fusion.weight"], model.state_dict()["fusion.weight"])
