"""The built-in models: the source slides' CNN, layer for layer, and the MLP baseline."""

import pytest
import torch
from torch import nn

from benchmark.specs import ModelSpec
from plugins import models as models_plugin
from plugins.models.mlp import build_mlp
from plugins.models.seed_cnn import build_seed_cnn

SHAPES = [(1, 28, 28), (1, 8, 8), (3, 32, 32)]


def registered() -> dict[str, ModelSpec]:
    specs: list[ModelSpec] = []
    models_plugin.bench_register_models(register=specs.append)
    return {spec.name: spec for spec in specs}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_models_are_registered_with_yaml_friendly_params_and_tags():
    specs = registered()
    assert {"seed-cnn", "mlp"} <= set(specs)
    cnn, mlp = specs["seed-cnn"], specs["mlp"]
    assert cnn.factory is build_seed_cnn and mlp.factory is build_mlp
    assert dict(cnn.params) == {"dropout": 0.5}
    assert dict(mlp.params) == {"hidden": [256, 128], "dropout": 0.2}
    assert cnn.provides == {"differentiable", "conv", "lrp", "linear-head"}
    assert mlp.provides == {"differentiable", "linear-head"}
    assert mlp.target_layer == ""
    # the CAM target is the last convolution of the model the factory builds
    model = cnn.factory(10, (1, 28, 28), **cnn.params)
    target = model.get_submodule(cnn.target_layer)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert target is convs[-1]


def test_seed_cnn_is_the_source_architecture_layer_for_layer():
    model = build_seed_cnn(10, (1, 28, 28))
    conv, fc = model.conv_layers, model.fc_layers
    assert isinstance(conv, nn.Sequential) and isinstance(fc, nn.Sequential)
    assert [type(m) for m in conv] == [
        nn.Conv2d,
        nn.MaxPool2d,
        nn.ReLU,
        nn.Conv2d,
        nn.Dropout,  # plain Dropout as in the source, not Dropout2d
        nn.MaxPool2d,
        nn.ReLU,
    ]
    assert [type(m) for m in fc] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    for layer, (c_in, c_out) in ((conv[0], (1, 10)), (conv[3], (10, 20))):
        assert (layer.in_channels, layer.out_channels) == (c_in, c_out)
        assert layer.kernel_size == (5, 5) and layer.padding == (0, 0) and layer.stride == (1, 1)
    assert conv[1].kernel_size == 2 and conv[5].kernel_size == 2
    assert (fc[0].in_features, fc[0].out_features) == (320, 50)
    assert (fc[3].in_features, fc[3].out_features) == (50, 10)
    assert conv[4].p == 0.5 and fc[2].p == 0.5
    assert not any(isinstance(m, nn.Softmax | nn.LogSoftmax) for m in model.modules())
    # (1*25*10 + 10) + (10*25*20 + 20) + (320*50 + 50) + (50*10 + 10)
    assert n_params(model) == 260 + 5020 + 16050 + 510 == 21_840


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("classes", [2, 10])
@pytest.mark.parametrize("build", [build_seed_cnn, build_mlp])
def test_models_adapt_to_the_input_shape_and_class_count(build, shape, classes):
    torch.manual_seed(0)
    model = build(classes, shape).eval()
    logits = model(torch.rand(5, *shape))
    assert logits.shape == (5, classes) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # logits, not probabilities: rows do not sum to one
    assert not torch.allclose(logits.sum(1), torch.ones(5))
    logits.sum().backward()  # differentiable end to end
    assert all(p.grad is not None for p in model.parameters())


def test_seed_cnn_pads_inputs_too_small_for_the_unpadded_path():
    digits = build_seed_cnn(10, (1, 8, 8))
    assert digits.conv_layers[0].padding == (2, 2) and digits.conv_layers[3].padding == (2, 2)
    assert digits.fc_layers[0].in_features == 20 * 2 * 2
    rgb = build_seed_cnn(2, (3, 32, 32))
    assert rgb.conv_layers[0].in_channels == 3 and rgb.conv_layers[0].padding == (0, 0)
    assert rgb.fc_layers[0].in_features == 20 * 5 * 5
    assert rgb.fc_layers[-1].out_features == 2
    with pytest.raises(ValueError, match="at least 4x4"):
        build_seed_cnn(10, (1, 3, 3))


@pytest.mark.parametrize("build", [build_seed_cnn, build_mlp])
def test_dropout_is_active_in_training_only_and_configurable(build):
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(0)
    model = build(10, (1, 28, 28), dropout=0.5)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    no_dropout = build(10, (1, 28, 28), dropout=0.0).train()
    assert torch.equal(no_dropout(x), no_dropout(x))


def test_mlp_layers_follow_the_hidden_widths():
    model = build_mlp(10, (1, 28, 28))
    assert [type(m) for m in model] == [
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
    ]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 256), (256, 128), (128, 10)]
    assert all(m.p == 0.2 for m in model if isinstance(m, nn.Dropout))
    one = build_mlp(3, (3, 8, 8), hidden=[32], dropout=0.1)
    assert [(m.in_features, m.out_features) for m in one if isinstance(m, nn.Linear)] == [
        (192, 32),
        (32, 3),
    ]


@pytest.mark.parametrize("hidden", [[], [64, 0], [-1]])
def test_mlp_rejects_empty_or_non_positive_widths(hidden):
    with pytest.raises(ValueError, match="hidden"):
        build_mlp(10, (1, 8, 8), hidden=hidden)
