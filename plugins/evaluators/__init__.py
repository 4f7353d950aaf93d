"""Built-in evaluators."""

from __future__ import annotations

from collections.abc import Callable

from benchmark.hookspecs import hookimpl
from benchmark.specs import EvaluatorSpec
from plugins.evaluators import (
    bam,
    completeness_soundness,
    data_randomisation,
    fairness,
    faithfulness,
    model_randomisation,
    road,
    roar,
)
from plugins.evaluators.classification import DIRECTIONS, evaluate_classification
from plugins.evaluators.quantus_adapter import register_quantus


@hookimpl
def bench_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    register(
        EvaluatorSpec(
            name="classification",
            factory=evaluate_classification,
            version="1",
            description="accuracy, macro P/R/F1, macro OvR AUROC, confusion matrix (test split)",
            params={"batch_size": 512},
            directions=DIRECTIONS,
        )
    )
    for spec in roar.specs():
        register(spec)
    register(model_randomisation.spec())
    register(data_randomisation.spec())
    register(completeness_soundness.spec())
    register(bam.spec())
    register(fairness.spec())
    for spec in faithfulness.specs():
        register(spec)
    register(road.spec())
    register_quantus(register)
