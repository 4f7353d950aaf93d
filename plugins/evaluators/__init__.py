"""Built-in evaluators."""

from __future__ import annotations

from benchmark.kit.registration import register_specs_of
from plugins.evaluators import (
    bam,
    bias_localisation,
    classification,
    completeness_soundness,
    counterfactual,
    data_randomisation,
    explanation_disagreement,
    fairness,
    faithfulness,
    gradient_alignment,
    meta_evaluation,
    model_randomisation,
    multimodal,
    prediction_multiplicity,
    quantus,
    road,
    roar,
    robustness,
)

MODULES = (
    classification,
    roar,
    model_randomisation,
    data_randomisation,
    completeness_soundness,
    bam,
    bias_localisation,
    fairness,
    faithfulness,
    road,
    quantus,
    gradient_alignment,
    robustness,
    prediction_multiplicity,
    explanation_disagreement,
    counterfactual,
    meta_evaluation,
    multimodal,
)
"""Every evaluator module, each exposing ``specs()``; registered in this order."""

bench_register_evaluators = register_specs_of(MODULES)
