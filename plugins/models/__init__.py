"""Built-in models: the CNN of the source slides, an MLP baseline and the fairness backbones.

The fairness backbones (``simple-conv``, ``resnet18``, ``shufflenet``, ``pyramidnet``) are
randomly initialised, take 1- or 3-channel 28x28 / 32x32 images, end in a linear classifier
applied to a flat feature vector (``plugins.models.bottleneck``) and name their last
convolution for Grad-CAM. Their defaults are sized so one ERM epoch on 4,000 images takes at
most about 10 s on a 2-core CPU (measured numbers in each module's docstring).
"""

from __future__ import annotations

from collections.abc import Callable

from benchmark.hookspecs import hookimpl
from benchmark.specs import ModelSpec
from plugins.models.mlp import build_mlp
from plugins.models.pyramidnet import build_pyramidnet
from plugins.models.seed_cnn import build_seed_cnn
from plugins.models.simple_conv import build_simple_conv
from plugins.models.torchvision_nets import build_resnet18, build_shufflenet

CONV = frozenset({"differentiable", "conv"})


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
    register(
        ModelSpec(
            name="simple-conv",
            factory=build_simple_conv,
            version="1",
            description="ReBias/LfF SimpleConvNet: 4 conv k7 + BN + ReLU (16-128), GAP, linear",
            params={"channels": [16, 32, 64, 128], "kernel_size": 7, "strides": [1, 2, 2, 1]},
            provides=CONV,
            target_layer="features.conv4",
        )
    )
    register(
        ModelSpec(
            name="resnet18",
            factory=build_resnet18,
            version="1",
            description="ResNet-18 (torchvision BasicBlock), half width, 3x3 stem; random init",
            params={"width": 32, "stem_stride": 2, "maxpool": False},
            provides=CONV,
            target_layer="layer4.1.conv2",
        )
    )
    register(
        ModelSpec(
            name="shufflenet",
            factory=build_shufflenet,
            version="1",
            description="torchvision ShuffleNet V2 x0.5, 3x3 stem without max-pool; random init",
            params={"width": 0.5, "stem_stride": 2, "maxpool": False},
            provides=CONV,
            target_layer="conv5.0",
        )
    )
    register(
        ModelSpec(
            name="pyramidnet",
            factory=build_pyramidnet,
            version="1",
            description="additive PyramidNet (Han+ 2017), basic blocks, depth 20, alpha 48",
            params={"depth": 20, "alpha": 48, "stem_stride": 2},
            provides=CONV,
            target_layer="last_block.conv2",
        )
    )
