"""Entry point of the example plugin: registers one model and one evaluator.

This module is what ``[project.entry-points.bench] example = "bench_example_plugin"`` names, so
it is all the core imports. It keeps to the hooks and the spec types of ``benchmark``, the public
contract, and leaves ``version`` empty so every component carries this distribution's version
(part of each cache key: releasing 0.3.2 retrains and re-evaluates nothing stale). Parameters
are read from the factories' signatures (``bins``, ``batch_size``, ``bias``), annotations and
ranges included, so a suite's ``bins: 0`` is refused by ``bench plan``.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmark import EvaluatorSpec, ModelSpec, hookimpl

from bench_example_plugin.calibration import DIRECTIONS, evaluate_calibration
from bench_example_plugin.logistic import build_logistic_regression


@hookimpl
def bench_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            name="logistic-regression",
            factory=build_logistic_regression,
            description="multinomial logistic regression on raw pixels (one linear layer)",
            provides=frozenset({"differentiable", "linear-head"}),
        )
    )


@hookimpl
def bench_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    register(
        EvaluatorSpec(
            name="calibration",
            factory=evaluate_calibration,
            description="ECE / MCE (equal-width bins), NLL and Brier score on the test split",
            directions=DIRECTIONS,
        )
    )
