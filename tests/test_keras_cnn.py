"""keras-cnn, the report's Keras CNN layer for layer, and every built-in model's adaptation to
1x28x28 and 3x32x32 inputs, built through the real entry points."""

import pytest
import torch
from torch import nn

from benchmark.registry import Registry
from plugins.models.bottleneck import classifier_path
from plugins.models.keras_cnn import build_keras_cnn


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


def test_keras_cnn_is_the_reports_architecture_with_412778_parameters():
    model = build_keras_cnn(10, (1, 28, 28))
    assert [type(m) for m in model.features] == [
        nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Dropout,
        nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Dropout,
    ]  # fmt: skip
    assert [type(m) for m in model.classifier] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    first, second = model.features[0], model.features[4]
    assert (first.in_channels, first.out_channels, second.out_channels) == (1, 64, 32)
    assert first.kernel_size == second.kernel_size == (2, 2)
    assert first.padding == second.padding == "same"
    assert (model.classifier[0].in_features, model.classifier[0].out_features) == (1568, 256)
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, nn.Dropout))
    # the Keras summary: 320 + 8,224 + 401,664 + 2,570
    assert sum(p.numel() for p in model.parameters()) == 412_778
    assert not any(isinstance(m, nn.Softmax | nn.LogSoftmax) for m in model.modules())
    # every nonlinearity its own module, used once (what the lrp tag promises)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.MaxPool2d)]
    assert len({id(m) for m in relus}) == len(relus) == 5


def test_keras_cnn_spec_tags_target_layer_and_same_padding(registry):
    spec = registry.get("model", "keras-cnn")
    seed = registry.get("model", "seed-cnn")
    assert spec.provides == seed.provides == {"differentiable", "conv", "lrp", "linear-head"}
    assert dict(spec.params) == {"dropout": 0.3} and spec.version
    model = spec.factory(10, (3, 32, 32), **spec.params).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert model.get_submodule(spec.target_layer) is convs[1]
    assert classifier_path(model) == "classifier.3"  # linear-head: the last Linear, applied last
    # padding "same" with kernel 2 pads bottom and right, as TensorFlow does: a one-hot pixel
    # in the bottom-right corner reaches output (2, 2) through the kernel's top-left tap only
    conv = nn.Conv2d(1, 1, kernel_size=2, padding="same", bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        x = torch.zeros(1, 1, 3, 3)
        x[0, 0, 2, 2] = 1.0
        assert conv(x)[0, 0, 2, 2] == 1.0 and conv(x)[0, 0, 1, 1] == 4.0


@pytest.mark.parametrize("explainer", ["lrp", "grad-cam", "deep-shap"])
def test_keras_cnn_runs_the_explainers_its_tags_admit(registry, explainer):
    torch.manual_seed(0)
    model_spec = registry.get("model", "keras-cnn")
    model = model_spec.factory(10, (3, 32, 32), dropout=0.0).eval()
    spec = registry.get("explainer", explainer)
    params = dict(spec.params)
    if spec.uses_target_layer:
        params["target_layer"] = model_spec.target_layer
    x = torch.rand(2, 3, 32, 32)
    out = spec.factory(model, x, torch.tensor([1, 7]), **params)
    assert out.shape[0] == 2 and out.shape[2:] == (32, 32)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_every_built_in_model_adapts_to_the_input_shape(registry, shape):
    # the image-only ones (lstm-cnn, called with captions too, has tests/test_multimodal.py)
    built_in = [
        s
        for s in registry.specs("model")
        if s.distribution == "dependable-bench" and s.modalities == {"image"}
    ]
    assert {"seed-cnn", "keras-cnn", "madry-cnn", "mlp", "resnet18"} <= {s.name for s in built_in}
    torch.manual_seed(0)
    for spec in built_in:
        model = spec.factory(10, shape, **spec.params).eval()
        with torch.no_grad():
            logits = model(torch.rand(2, *shape))
        assert logits.shape == (2, 10), spec.name
        assert torch.isfinite(logits).all(), spec.name
