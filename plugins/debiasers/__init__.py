"""Built-in debiasers (training procedures)."""

from __future__ import annotations

from collections.abc import Callable

from benchmark.hookspecs import hookimpl
from benchmark.specs import DebiaserSpec
from plugins.debiasers.erm import train_erm


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
