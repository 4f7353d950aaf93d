"""Built-in evaluators."""

from __future__ import annotations

from collections.abc import Callable

from benchmark.hookspecs import hookimpl
from benchmark.specs import EvaluatorSpec
from plugins.evaluators.classification import DIRECTIONS, evaluate_classification


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
