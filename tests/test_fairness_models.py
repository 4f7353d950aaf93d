"""The fairness backbones: simple-conv, resnet18, shufflenet and pyramidnet.

Checked against hand-computed shapes, parameter counts and widths, against torchvision's own
ResNet-18, against the reference PyramidNet's width loop, and through the real entry points,
the bottleneck helper, the project's training loop and the Grad-CAM explainer.
"""

import inspect
import textwrap
import types
from fractions import Fraction

import pytest
import torch
import torchvision
from torch import nn

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.hookspecs import hookimpl
from benchmark.kit.training import train_loop
from benchmark.registry import Registry
from benchmark.specs import Evaluation, EvaluatorSpec, ModelSpec, Split
from plugins import models as models_plugin
from plugins.explainers.cam import grad_cam
from plugins.explainers.propagation import guided_backprop
from plugins.models.bottleneck import classifier_path, forward_with_features
from plugins.models.pyramidnet import PyramidBlock, build_pyramidnet, pyramid_widths
from plugins.models.simple_conv import build_simple_conv
from plugins.models.torchvision_nets import build_resnet18, build_shufflenet

FACTORIES = {
    "simple-conv": build_simple_conv,
    "resnet18": build_resnet18,
    "shufflenet": build_shufflenet,
    "pyramidnet": build_pyramidnet,
}
NAMES = list(FACTORIES)
SHAPES = [(1, 28, 28), (3, 28, 28), (3, 32, 32)]
# Side of the Grad-CAM map (the target layer's output) for 28x28 / 32x32 inputs, by hand:
# simple-conv strides 1,2,2,1: 28 -> 14 -> 7; resnet18 stem 2 + stages 1,2,2,2: 28 -> 14 -> 14
# -> 7 -> 4 -> 2; shufflenet stem 2 + stages 2,2,2: 28 -> 14 -> 7 -> 4 -> 2; pyramidnet stem 2 +
# stages 1,2,2: 28 -> 14 -> 7 -> 4. Padded stride-2 layers round up: ceil(n / 2).
CAM_SIDE = {
    "simple-conv": {28: 7, 32: 8},
    "resnet18": {28: 2, 32: 2},
    "shufflenet": {28: 2, 32: 2},
    "pyramidnet": {28: 4, 32: 4},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on the 2 cores shared with other jobs, two OpenMP threads made this
    module 25x slower (138 s against 5.6 s, measured), each waiting for a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def specs() -> dict:
    registered = []
    models_plugin.bench_register_models(register=registered.append)
    return {spec.name: spec for spec in registered}


def build(name: str, shape=(3, 28, 28), classes: int = 10) -> nn.Module:
    spec = specs()[name]
    torch.manual_seed(0)
    return spec.factory(classes, shape, **spec.params)


def test_registered_through_the_real_entry_points_with_factory_defaults():
    registry = Registry.load()
    for name, factory in FACTORIES.items():
        spec = registry.get("model", name)
        assert spec.factory is factory
        assert spec.plugin == "builtin_models" and spec.version == "1"
        assert spec.provides == {"differentiable", "conv", "linear-head"}
        assert spec.requires == frozenset()
        # the suite-overridable params are exactly the factory's keyword defaults, and YAML-able
        defaults = {
            p.name: p.default
            for p in inspect.signature(factory).parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        params = dict(spec.params)
        assert set(params) == set(defaults)
        for key, value in params.items():
            expected = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
            assert value == expected and not isinstance(value, tuple), (name, key)
    assert {"seed-cnn", "mlp"} <= set(registry.names("model"))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_logits_target_layer_and_bottleneck(name, shape):
    model = build(name, shape).eval()
    x = torch.rand(4, *shape)
    # the target layer is the last convolution in module order, and it keeps a spatial map
    target = model.get_submodule(specs()[name].target_layer)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert isinstance(target, nn.Conv2d) and target is convs[-1]
    maps = []
    handle = target.register_forward_hook(lambda _m, _i, out: maps.append(out))
    with torch.no_grad():
        logits, features = forward_with_features(model, x)
    handle.remove()
    side = CAM_SIDE[name][shape[1]]
    assert maps[0].shape == (4, target.out_channels, side, side)
    assert logits.shape == (4, 10) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # bottleneck contract: ``fc`` is the last linear layer, applied last to the flat features
    assert classifier_path(model) == "fc"
    assert features.shape == (4, model.fc.in_features)
    with torch.no_grad():
        torch.testing.assert_close(model.fc(features), logits, rtol=0, atol=0)
    # the stem takes the dataset's channels
    assert convs[0].in_channels == shape[0]


@pytest.mark.parametrize("classes", [2, 7])
@pytest.mark.parametrize("name", NAMES)
def test_class_count_sets_the_classifier(name, classes):
    model = build(name, (1, 28, 28), classes).eval()
    assert model.fc.out_features == classes
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, classes)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adam_steps_of_the_training_loop_reduce_the_loss(name):
    generator = torch.Generator().manual_seed(0)
    data = Split(
        x=torch.rand(32, 3, 28, 28, generator=generator),
        y=torch.randint(0, 10, (32,), generator=generator),
    )
    model = build(name)

    def loss() -> float:
        model.train()  # batch statistics, as during training (no dropout in these nets)
        with torch.no_grad():
            return nn.functional.cross_entropy(model(data.x), data.y).item()

    before = loss()
    train_loop(
        model,
        data,
        lambda batch: nn.functional.cross_entropy(model(batch.x), batch.y),
        seed=0,
        epochs=8,
        batch_size=32,
        lr=1e-3,
    )
    after = loss()
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_grad_cam_and_guided_backprop_run_on_the_declared_layer(name):
    model = build(name).eval()
    x, target = torch.rand(3, 3, 28, 28), torch.tensor([0, 4, 9])
    cam = grad_cam(model, x, target, target_layer=specs()[name].target_layer)
    assert cam.shape == (3, 1, 28, 28) and torch.isfinite(cam).all() and (cam >= 0).all()
    guided = guided_backprop(model, x, target)
    assert guided.shape == (3, 3, 28, 28) and torch.isfinite(guided).all()
    assert guided.abs().sum() > 0


@pytest.mark.parametrize(
    ("name", "shape", "params", "smallest"),
    [
        ("simple-conv", (1, 3, 3), {}, 4),  # strides 1,2,2,1 -> total 4; kernel 7 -> side >= 4
        ("simple-conv", (1, 3, 3), {"strides": [1, 1, 1, 1]}, 4),
        ("resnet18", (1, 8, 8), {}, 16),  # stem 2 x stages 8
        ("resnet18", (3, 28, 28), {"maxpool": True}, 32),  # 28x28 would end as a 1x1 map
        ("shufflenet", (1, 15, 15), {}, 16),
        ("pyramidnet", (1, 7, 7), {}, 8),
        ("pyramidnet", (1, 3, 3), {"stem_stride": 1}, 4),
    ],
)
def test_inputs_too_small_fail_clearly(name, shape, params, smallest):
    with pytest.raises(ValueError, match=f"{name} .*at least {smallest}x{smallest} pixels"):
        FACTORIES[name](10, shape, **params)
    ok = (shape[0], smallest, smallest)
    assert FACTORIES[name](10, ok, **params).eval()(torch.rand(1, *ok)).shape == (1, 10)


@pytest.mark.parametrize(
    ("factory", "params", "message"),
    [
        (build_simple_conv, {"channels": [16, 32, 64]}, "channels"),
        (build_simple_conv, {"strides": [1, 0, 1, 1]}, "strides"),
        (build_simple_conv, {"kernel_size": 4}, "kernel_size"),
        (build_resnet18, {"stem_stride": 3}, "stem_stride"),
        (build_resnet18, {"width": 0}, "width"),
        (build_shufflenet, {"width": 0.75}, "width"),
        (build_pyramidnet, {"alpha": -1}, "alpha"),
        (build_pyramidnet, {"stem_stride": 4}, "stem_stride"),
    ],
)
def test_bad_parameters_fail_clearly(factory, params, message):
    with pytest.raises(ValueError, match=message):
        factory(10, (3, 28, 28), **params)


def test_simple_conv_is_the_rebias_network():
    # strides [1, 1, 1, 1] is ReBias' SimpleConvNet exactly (on 3-channel input)
    model = build_simple_conv(10, (3, 28, 28), strides=[1, 1, 1, 1])
    layers = list(model.features)
    assert [type(m) for m in layers] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 4
    convs = layers[::3]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 16),
        (16, 32),
        (32, 64),
        (64, 128),
    ]
    assert all(c.kernel_size == (7, 7) and c.padding == (3, 3) for c in convs)
    assert all(c.stride == (1, 1) for c in convs)
    assert (model.fc.in_features, model.fc.out_features) == (128, 10)
    # conv weights+biases, BN affine, fc: (3*49+1)*16 + (16*49+1)*32 + (32*49+1)*64
    # + (64*49+1)*128 + 2*(16+32+64+128) + 129*10
    expected = 2368 + 25120 + 100416 + 401536 + 480 + 1290
    assert sum(p.numel() for p in model.parameters()) == expected == 531_210
    # the default only changes the strides of conv2 and conv3
    fast = build_simple_conv(10, (3, 28, 28))
    assert [c.stride for c in list(fast.features)[::3]] == [(1, 1), (2, 2), (2, 2), (1, 1)]
    assert sum(p.numel() for p in fast.parameters()) == expected


def test_resnet18_at_width_64_has_torchvision_weights_but_the_stem():
    ours = build_resnet18(10, (1, 28, 28), width=64, stem_stride=1)
    reference = torchvision.models.resnet18(weights=None, num_classes=10)
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    reference_shapes = {k: v.shape for k, v in reference.state_dict().items()}
    assert ours_shapes.keys() == reference_shapes.keys()
    differ = {k for k in ours_shapes if ours_shapes[k] != reference_shapes[k]}
    assert differ == {"conv1.weight"}
    assert ours_shapes["conv1.weight"] == (64, 1, 3, 3)
    assert reference_shapes["conv1.weight"] == (64, 3, 7, 7)
    assert isinstance(ours.layer3[0], torchvision.models.resnet.BasicBlock)
    # the default is half width: 32-64-128-256, stem stride 2, no max-pool
    default = build("resnet18")
    assert [default.get_submodule(f"layer{i}.1.conv2").out_channels for i in range(1, 5)] == [
        32,
        64,
        128,
        256,
    ]
    assert default.conv1.stride == (2, 2) and isinstance(default.maxpool, nn.Identity)


def test_shufflenet_is_torchvisions_x0_5_with_a_small_stem():
    model = build("shufflenet", (1, 28, 28))
    assert isinstance(model, torchvision.models.ShuffleNetV2)
    assert model._stage_out_channels == [24, 48, 96, 192, 1024]
    stem = model.conv1[0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (
        1,
        24,
        (3, 3),
        (2, 2),
    )
    assert isinstance(model.maxpool, nn.Identity)
    wide = build_shufflenet(10, (3, 32, 32), width=1.0, stem_stride=1, maxpool=True)
    assert wide._stage_out_channels == [24, 116, 232, 464, 1024]
    assert wide.conv1[0].stride == (1, 1) and isinstance(wide.maxpool, nn.MaxPool2d)


def reference_widths(depth: int, alpha: float) -> list[int]:
    """The width loop of dyhan0920/PyramidNet-PyTorch (running float, rounded per unit)."""
    n = (depth - 2) // 6
    addrate = alpha / (3 * n * 1.0)
    running = 16.0
    widths = []
    for _ in range(3 * n):
        running += addrate
        widths.append(round(running))
    return widths


def test_pyramid_widths_follow_the_additive_rule():
    # depth 20: n = 3 units per stage, 9 units, + 48/9 = 5.33 channels per unit
    assert pyramid_widths(20, 48) == [21, 27, 32, 37, 43, 48, 53, 59, 64]
    assert pyramid_widths(14, 48) == [24, 32, 40, 48, 56, 64]
    assert pyramid_widths(8, 0) == [16, 16, 16]  # alpha 0: a plain pre-activation ResNet
    for depth in (8, 14, 20, 26, 32, 110):
        for alpha in (12, 48, 84, 270):
            widths = pyramid_widths(depth, alpha)
            units = 3 * ((depth - 2) // 6)
            assert len(widths) == units and widths[-1] == 16 + alpha
            assert widths == [round(16 + Fraction(alpha) * k / units) for k in range(1, units + 1)]
            assert widths == reference_widths(depth, alpha), (depth, alpha)


@pytest.mark.parametrize(("depth", "alpha"), [(20, 48), (14, 30), (8, 48)])
def test_pyramidnet_blocks_have_the_additive_widths_and_strides(depth, alpha):
    model = build_pyramidnet(10, (3, 32, 32), depth=depth, alpha=alpha, stem_stride=1)
    units = [*model.blocks, model.last_block]
    n = (depth - 2) // 6
    assert len(units) == 3 * n and all(isinstance(u, PyramidBlock) for u in units)
    widths = [round(16 + Fraction(alpha) * k / (3 * n)) for k in range(1, 3 * n + 1)]
    assert [u.conv1.out_channels for u in units] == widths
    assert [u.conv2.out_channels for u in units] == widths
    assert [u.conv1.in_channels for u in units] == [16, *widths[:-1]]
    assert [u.bn1.num_features for u in units] == [16, *widths[:-1]]
    strides = [u.conv1.stride[0] for u in units]
    assert strides == [1] * n + [2] + [1] * (n - 1) + [2] + [1] * (n - 1)
    assert model.fc.in_features == model.bn_final.num_features == widths[-1]
    # depth counts the weighted layers: stem conv + 2 convs per unit + fc
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth
    assert not any(isinstance(m, nn.Linear) for m in units)


def test_pyramid_block_shortcut_is_pooled_and_zero_padded():
    torch.manual_seed(0)
    block = PyramidBlock(2, 5, stride=2).eval()
    nn.init.zeros_(block.bn3.weight)  # residual branch -> exactly zero
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(1, 2, 3, 3)
    out = block(x)
    assert out.shape == (1, 5, 2, 2)  # ceil(3 / 2) = 2, matching the strided convolution
    # 2x2 average pool with ceil_mode: edge windows average only the pixels inside
    first = torch.tensor([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]])
    torch.testing.assert_close(out[0, 0], first)
    torch.testing.assert_close(out[0, 1], first + 9)
    assert torch.equal(out[0, 2:], torch.zeros(3, 2, 2))  # appended channels are zero
    same = PyramidBlock(3, 3, stride=1).eval()
    nn.init.zeros_(same.bn3.weight)
    y = torch.rand(2, 3, 5, 5)
    assert torch.equal(same(y), y)  # identity shortcut, no ReLU after the addition


@pytest.mark.parametrize("depth", [7, 10, 21, 2, 0, 20.0, True])
def test_pyramidnet_rejects_depths_that_are_not_6n_plus_2(depth):
    with pytest.raises(ValueError, match=r"6n \+ 2"):
        build_pyramidnet(10, (3, 28, 28), depth=depth)


# --- models without a linear head --------------------------------------------------------

NEEDS_LINEAR_HEAD = {"mtl-heads", "end", "irene", "bottleneck-reweight"}
"""The debiasers that read the input of the final linear layer or replace that layer."""


def build_pooled_conv(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """A third party's model that ends in a 1x1 convolution and global pooling: no nn.Linear."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, num_classes, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def accuracy_of(context) -> Evaluation:
    """An evaluator of the third-party plugin, so the plan does not hang on the built-in ones."""
    with torch.no_grad():
        predicted = context.model(context.dataset.test.x).argmax(1)
    return Evaluation({"accuracy": float((predicted == context.dataset.test.y).float().mean())})


@pytest.fixture(scope="module")
def with_pooled_conv() -> Registry:
    """The real plugins plus a third party's model that does not provide ``linear-head``."""
    model = ModelSpec(
        "pooled-conv",
        build_pooled_conv,
        version="1",
        provides=frozenset({"differentiable", "conv"}),
        target_layer="2",
    )
    evaluator = EvaluatorSpec("test-accuracy", accuracy_of, directions={"accuracy": "higher"})
    plugin = types.SimpleNamespace(
        bench_register_models=hookimpl(lambda register: register(model)),
        bench_register_evaluators=hookimpl(lambda register: register(evaluator)),
    )
    return Registry.load(extra_plugins=[("third-party", plugin)])


def builtin_debiasers(registry: Registry) -> list[str]:
    """The built-in debiasers of image-only models (``mtl-multimodal`` trains caption models:
    ``tests/test_multimodal.py``)."""
    names = registry.names("debiaser")
    return sorted(
        n
        for n in names
        if registry.get("debiaser", n).plugin == "builtin_debiasers"
        and registry.get("debiaser", n).modalities == {"image"}
    )


def test_every_built_in_model_provides_a_linear_head():
    registry = Registry.load()
    for name in registry.names("model"):
        spec = registry.get("model", name)
        if spec.plugin == "builtin_models":
            assert "linear-head" in spec.provides, name
            torch.manual_seed(0)
            text = {"vocabulary_size": 40} if "text" in spec.modalities else {}
            model = spec.factory(10, (3, 28, 28), **text, **spec.params)
            assert isinstance(model.get_submodule(classifier_path(model)), nn.Linear)


def test_planner_skips_the_bottleneck_debiasers_for_a_model_without_a_linear_head(
    with_pooled_conv,
):
    debiasers = builtin_debiasers(with_pooled_conv)
    suite = suite_module.parse(
        textwrap.dedent(
            f"""\
            name: no-head
            datasets: [colored-mnist]
            models: [seed-cnn, pooled-conv]
            debiasers: [{", ".join(debiasers)}]
            evaluators: [test-accuracy]
            seeds: [0]
            leaderboard: {{metric: accuracy}}
            """
        ),
        "no-head.yaml",
        with_pooled_conv,
    )
    plan = planner.expand(suite)
    ran = {(job.model.name, job.debiaser.name) for job in plan.jobs}
    assert {d for m, d in ran if m == "seed-cnn"} == set(debiasers)
    assert {d for m, d in ran if m == "pooled-conv"} == set(debiasers) - NEEDS_LINEAR_HEAD
    skipped = {
        next(c.spec.name for c in skip.components if c.kind == "debiaser"): skip.reason
        for skip in plan.skipped
    }
    assert skipped.keys() == NEEDS_LINEAR_HEAD
    for name, reason in skipped.items():
        assert f"debiaser '{name}' requires 'linear-head'" in reason


def test_the_linear_head_requirement_is_exactly_what_the_debiasers_need(with_pooled_conv):
    """Every debiaser trains the headless model for one short epoch, except those that require
    ``linear-head``, which cannot: the tag is neither missing nor one too many."""
    generator = torch.Generator().manual_seed(0)
    data = Split(
        x=torch.rand(48, 3, 8, 8, generator=generator),
        y=torch.arange(48) % 2,
        groups=(torch.arange(48) // 2) % 2,
    )
    fast = {"epochs": 1, "batch_size": 16, "first_epochs": 1, "warmup_epochs": 0}
    for name in builtin_debiasers(with_pooled_conv):
        spec = with_pooled_conv.get("debiaser", name)
        params = {k: v for k, v in {**spec.params, **fast}.items() if k in spec.params}
        torch.manual_seed(0)
        model = build_pooled_conv(2, (3, 8, 8))
        if name in NEEDS_LINEAR_HEAD:
            with pytest.raises(ValueError, match=r"has no nn\.Linear layer"):
                if spec.prepare is not None:
                    model = spec.prepare(model, 2, **params)
                spec.factory(model, data, seed=0, **params)
            assert "linear-head" in spec.requires
        else:
            if spec.prepare is not None:  # adv-fgsm-rs: its guard's record buffers, no head
                model = spec.prepare(model, 2, **params)
            trained = spec.factory(model, data, seed=0, **params)
            assert not trained.training, name
            assert "linear-head" not in spec.requires
