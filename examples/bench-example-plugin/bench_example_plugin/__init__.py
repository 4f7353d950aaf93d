"""Entry point of the example plugin: registers one model and one evaluator."""

from __future__ import annotations

from bench_example_plugin.calibration import DIRECTIONS, evaluate_calibration
from bench_example_plugin.logistic import build_logistic_regression
from benchmark import EvaluatorSpec, ModelSpec, hookimpl


@hookimpl
def bench_register_models(register) -> None:
    register(
        ModelSpec(
            name="logistic-regression",
            factory=build_logistic_regression,
            description="multinomial logistic regression on raw pixels",
            provides=frozenset({"differentiable"}),
        )
    )


@hookimpl
def bench_register_evaluators(register) -> None:
    register(
        EvaluatorSpec(
            name="calibration",
            factory=evaluate_calibration,
            description="ECE / MCE (equal-width bins), NLL and Brier score on the test split",
            params={"bins": 15, "batch_size": 512},
            directions=DIRECTIONS,
        )
    )
