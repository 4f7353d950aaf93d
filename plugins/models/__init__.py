"""Built-in models: the CNN of the source slides, the Keras CNN of the counterfactual report,
Madry et al.'s MNIST network, an MLP baseline, the fairness backbones and the seed report's
multimodal LSTM-CNN (image + caption: ``benchmark.modalities``).

The fairness backbones (``simple-conv``, ``resnet18``, ``shufflenet``, ``pyramidnet``) are
randomly initialised, take 1- or 3-channel 28x28 / 32x32 images, end in a linear classifier
applied to a flat feature vector (``plugins.models.bottleneck``) and name their last
convolution for Grad-CAM. Their defaults are sized so one ERM epoch on 4,000 images takes at
most about 10 s on a 2-core CPU (measured numbers in each module's docstring). Every built-in
model ends in such a classifier and so provides ``linear-head``. Each model module exposes
``specs()``; this module only lists them.
"""

from __future__ import annotations

from benchmark.kit.registration import register_specs_of
from plugins.models import (
    keras_cnn,
    lstm_cnn,
    madry_cnn,
    mlp,
    pyramidnet,
    seed_cnn,
    simple_conv,
    torchvision_nets,
)

MODULES = (
    seed_cnn,
    mlp,
    simple_conv,
    torchvision_nets,
    pyramidnet,
    madry_cnn,
    keras_cnn,
    lstm_cnn,
)

bench_register_models = register_specs_of(MODULES)
