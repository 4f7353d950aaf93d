"""Built-in models: the CNN of the source slides and an MLP baseline."""

from __future__ import annotations

from collections.abc import Callable

from benchmark.hookspecs import hookimpl
from benchmark.specs import ModelSpec
from plugins.models.mlp import build_mlp
from plugins.models.seed_cnn import build_seed_cnn


@hookimpl
def bench_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            name="seed-cnn",
            factory=build_seed_cnn,
            version="1",
            description="CNN of the source slides: 2 conv (k5) + 2 fc, dropout; logits out",
            params={"dropout": 0.5},
            # lrp: every nonlinearity is its own nn.ReLU / nn.MaxPool2d module, used once, and
            # every leaf layer has a captum LRP / DeepLIFT rule (torch.flatten has no weights).
            provides=frozenset({"differentiable", "conv", "lrp"}),
            target_layer="conv_layers.3",
        )
    )
    register(
        ModelSpec(
            name="mlp",
            factory=build_mlp,
            version="1",
            description="multilayer perceptron (ReLU, dropout); no convolutions",
            params={"hidden": [256, 128], "dropout": 0.2},
            provides=frozenset({"differentiable"}),
        )
    )
