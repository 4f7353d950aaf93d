"""Built-in debiasers (training procedures): ERM, eleven ways to fight a spurious correlation,
and three adversarial training procedures.

Each debiaser module exposes ``specs()``; this module only lists them, so adding one is a new
module plus one line here. Supervised debiasers (``reweight``, ``resample``, ``group-dro``,
``end``, ``irene``) require ``groups``; unsupervised ones (``lff``, ``jtt``,
``bottleneck-reweight``) never read them, which ``tests/test_debiasers_unsupervised.py``
checks. Those that read the bottleneck or replace the classifier (``mtl-heads``, ``end``,
``irene``, ``bottleneck-reweight``) require ``linear-head``. The adversarial ones
(``adv-pgd``, ``adv-fgsm-rs``, ``trades``; ``adversarial``) train for robustness to small input
perturbations rather than to a bias attribute; they never read groups either
(``tests/test_debiasers_adversarial.py``) and require ``differentiable``. ``mtl-multimodal``
trains a model with per-modality heads on images and captions (``benchmark.modalities``);
every other debiaser handles image-only models.
"""

from __future__ import annotations

from benchmark.kit.registration import register_specs_of
from plugins.debiasers import (
    adversarial,
    augment,
    bottleneck_reweight,
    end,
    erm,
    group_dro,
    irene,
    jtt,
    lff,
    mtl_heads,
    mtl_multimodal,
    padain,
    resample,
    reweight,
)

MODULES = (
    erm,
    augment,
    padain,
    mtl_heads,
    mtl_multimodal,
    reweight,
    resample,
    group_dro,
    end,
    irene,
    lff,
    jtt,
    bottleneck_reweight,
    adversarial,
)

bench_register_debiasers = register_specs_of(MODULES)
