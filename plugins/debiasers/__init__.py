"""Built-in debiasers (training procedures): ERM and eleven ways to fight a spurious correlation.

Each debiaser module exposes ``spec()``; this module only registers them, so adding one is a
new module plus one line here. Supervised debiasers (``reweight``, ``resample``,
``group-dro``, ``end``, ``irene``) require ``groups``; unsupervised ones (``lff``, ``jtt``,
``bottleneck-reweight``) never read them, which ``tests/test_debiasers_unsupervised.py``
checks.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmark.hookspecs import hookimpl
from benchmark.specs import DebiaserSpec
from plugins.debiasers import (
    augment,
    bottleneck_reweight,
    end,
    group_dro,
    irene,
    jtt,
    lff,
    mtl_heads,
    padain,
    resample,
    reweight,
)
from plugins.debiasers.erm import train_erm

MODULES = (
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


@hookimpl
def bench_register_debiasers(register: Callable[[DebiaserSpec], None]) -> None:
    register(
        DebiaserSpec(
            name="none",
            factory=train_erm,
            version="1",
            description="plain ERM: cross-entropy, mini-batch SGD with momentum (or Adam)",
            params={
                "optimizer": "sgd",
                "lr": 0.05,
                "momentum": 0.9,
                "weight_decay": 0.0,
                "epochs": 15,
                "batch_size": 64,
            },
        )
    )
    for module in MODULES:
        register(module.spec())
