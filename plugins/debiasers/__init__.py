"""Built-in debiasers (training procedures): ERM and eleven ways to fight a spurious correlation.

Each debiaser module exposes ``specs()``; this module only lists them, so adding one is a new
module plus one line here. Supervised debiasers (``reweight``, ``resample``, ``group-dro``,
``end``, ``irene``) require ``groups``; unsupervised ones (``lff``, ``jtt``,
``bottleneck-reweight``) never read them, which ``tests/test_debiasers_unsupervised.py``
checks. Those that read the bottleneck or replace the classifier (``mtl-heads``, ``end``,
``irene``, ``bottleneck-reweight``) require ``linear-head``.
"""

from __future__ import annotations

from benchmark.kit.registration import register_specs_of
from plugins.debiasers import (
    augment,
    bottleneck_reweight,
    end,
    erm,
    group_dro,
    irene,
    jtt,
    lff,
    mtl_heads,
    padain,
    resample,
    reweight,
)

MODULES = (
    erm,
    augment,
    padain,
    mtl_heads,
    reweight,
    resample,
    group_dro,
    end,
    irene,
    lff,
    jtt,
    bottleneck_reweight,
)

bench_register_debiasers = register_specs_of(MODULES)
