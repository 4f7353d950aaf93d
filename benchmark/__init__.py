"""dependable-bench: plan, run and rank every compatible model x debiaser x explainer x evaluator.

Plugin authors need only ``hookimpl`` and the spec types re-exported here.
"""

from benchmark.hookspecs import hookimpl
from benchmark.specs import (
    ANY_OTHER_CLASS,
    Counterfactuals,
    Dataset,
    DatasetSpec,
    DebiaserSpec,
    Evaluation,
    EvaluationContext,
    EvaluatorSpec,
    ExplainerSpec,
    ModelSpec,
    Split,
    SuiteSpec,
)

__all__ = [
    "ANY_OTHER_CLASS",
    "Counterfactuals",
    "Dataset",
    "DatasetSpec",
    "DebiaserSpec",
    "Evaluation",
    "EvaluationContext",
    "EvaluatorSpec",
    "ExplainerSpec",
    "ModelSpec",
    "Split",
    "SuiteSpec",
    "hookimpl",
]
