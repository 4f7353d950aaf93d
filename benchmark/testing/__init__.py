"""Testing a plugin: contract checks, a context in one line, a real suite through the CLI.

::

    from benchmark.testing import check_explainer, check_evaluator, make_context

    def test_my_explainer():
        check_explainer("my-explainer")          # shape, dtype, determinism, batch independence

    def test_my_evaluator():
        check_evaluator("my-evaluator", params={"n_images": 16})

    def test_a_tiny_suite(bench_run):            # the pytest fixture, installed with the package
        result = bench_run(SUITE_YAML)
        assert result.returncode == 0, result.stderr

See ``docs/plugins.md`` ("Testing your plugin").
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "BenchResult": "pytest_plugin",
    "run_suite": "pytest_plugin",
    "check_dataset": "checks",
    "check_debiaser": "checks",
    "check_evaluator": "checks",
    "check_explainer": "checks",
    "check_model": "checks",
    "check_plugin": "checks",
    "component": "context",
    "make_context": "context",
}


def __getattr__(name: str) -> Any:
    # lazy: pytest loads the fixture module of this package in every session (pytest11), and
    # that must not import torch
    if name in _HOMES:
        return getattr(importlib.import_module(f"benchmark.testing.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'benchmark.testing' has no attribute {name!r}")


__all__ = [
    "BenchResult",
    "check_dataset",
    "check_debiaser",
    "check_evaluator",
    "check_explainer",
    "check_model",
    "check_plugin",
    "component",
    "make_context",
    "run_suite",
]
