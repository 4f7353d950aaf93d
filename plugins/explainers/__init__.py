"""Built-in explainers: captum's attribution methods plus a few written here, and two controls.

Every factory follows the explainer contract of ``benchmark.specs`` and runs its batch in
chunks of at most ``batch_size`` model evaluations (:mod:`benchmark.kit.batching`). Each module
lists the explainers it defines in ``specs()`` (:mod:`plugins.explainers.capabilities`); a
spec's ``params`` are read from its factory's signature, so the two cannot drift apart.

Capability tags required from the model:

* ``differentiable``: anything that back-propagates to the input.
* ``conv`` (with ``ModelSpec.target_layer``): the CAM family.
* ``lrp``: every nonlinearity is its own, unshared module of a type captum's LRP and
  DeepLIFT have rules for (``lrp``, ``excitation-backprop``, ``deep-shap``).

Perturbation methods (occlusion, KernelSHAP, LIME) only call the model, and the controls
(``random``, ``sobel``) do not even do that, so they require nothing. The counterfactual
explainers (``cf-*``, :mod:`plugins.explainers.counterfactuals`) return changed images, not
maps, and are paired only with the ``counterfactual`` evaluator.
"""

from __future__ import annotations

from benchmark.kit.registration import register_specs_of
from plugins.explainers import (
    cam,
    controls,
    counterfactuals,
    gradients,
    noise_tunnel,
    occlusion,
    propagation,
    shapley,
    surrogates,
)

MODULES = (
    gradients,
    propagation,
    cam,
    noise_tunnel,
    shapley,
    surrogates,
    occlusion,
    controls,
    counterfactuals,
)

bench_register_explainers = register_specs_of(MODULES)
