"""The one way a built-in evaluator module declares its spec.

Every built-in evaluator is version 1 and nearly all of them score attributions, so they need
the job's explainer; stating that in each of ten modules let the copies drift apart (and made
every ``specs()`` the same dozen lines). :func:`evaluator_spec` states it once, and a module's
``specs()`` names only what differs: the name, the factory (whose signature gives the
parameters and their types), one line of description, the directions, and the optional
figures and retraining count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from benchmark.modalities import IMAGE, TEXT
from benchmark.specs import Direction, EvaluatorSpec

VERSION = "1"
"""The version of every built-in evaluator (part of every cache key: bump it with the numbers)."""
EXPLAINER = frozenset({"explainer"})
"""What an attribution metric requires of a combination: the job's explainer."""
IMAGE_AND_TEXT = frozenset({IMAGE, TEXT})
"""``modalities`` of an evaluator that scores through ``kit.evaluation.split_logits``, so it
also scores a model that reads captions (``benchmark.modalities``)."""


REFERENCES = {
    "bam": "Yang & Kim 2019, Benchmarking Attribution Methods with Relative Feature Importance",
    "bias-localisation": "Zhang et al. 2018, Top-down Neural Attention by Excitation "
    "Backprop (IJCV; the pointing game's mass-in-region), on Bahng et al. 2020's colored-mnist",
    "classification": "scikit-learn's metrics (accuracy, macro P/R/F1, one-vs-rest AUROC)",
    "completeness-soundness": "Gupta & Arora 2022, A Simple and Effective Method to "
    "Evaluate Saliency Maps (completeness and soundness)",
    "deletion": "Petsiuk, Das & Saenko 2018, RISE (BMVC)",
    "insertion": "Petsiuk, Das & Saenko 2018, RISE (BMVC)",
    "fairness": "Sagawa et al. 2020 (Group DRO, ICLR), Bahng et al. 2020 (ReBias, ICML), "
    "Feldman et al. 2015 (disparate impact), Hardt et al. 2016 (equalized odds)",
    "gradient-alignment": "Etmann, Lunz, Maass & Schönlieb 2019, On the Connection Between "
    "Adversarial Robustness and Saliency Map Interpretability (ICML; alignment); Shah, Jain & "
    "Netrapalli 2021, Do Input Gradients Highlight Discriminative Features? (NeurIPS; DiffROAR, "
    "BlockMNIST)",
    "kar": "Hooker, Erhan, Kindermans & Kim 2019, A Benchmark for Interpretability Methods "
    "in Deep Neural Networks (NeurIPS)",
    "roar": "Hooker, Erhan, Kindermans & Kim 2019, A Benchmark for Interpretability Methods "
    "in Deep Neural Networks (NeurIPS)",
    "pixel-flipping": "Bach et al. 2015, On Pixel-Wise Explanations by Layer-Wise Relevance "
    "Propagation (PLOS ONE)",
    "quantus": "Hedström et al. 2023, Quantus (JMLR), and each metric's own paper",
    "region-perturbation": "Samek et al. 2017, Evaluating the Visualization of What a Deep "
    "Neural Network Has Learned (IEEE TNNLS)",
    "road": "Rong, Leemann, Borisov, Kasneci & Kasneci 2022, A Consistent and Efficient "
    "Evaluation Strategy for Attribution Methods (ICML)",
    "sanity-data": "Adebayo et al. 2018, Sanity Checks for Saliency Maps (NeurIPS)",
    "sanity-model": "Adebayo et al. 2018, Sanity Checks for Saliency Maps (NeurIPS)",
}
"""The paper behind each built-in evaluator, for the published glossary."""


def evaluator_spec(
    name: str,
    factory: Callable[..., Any],
    description: str,
    directions: Mapping[str, Direction],
    *,
    requires: frozenset[str] = EXPLAINER,
    version: str = VERSION,
    figures: Callable[[Any], dict[str, Any]] | None = None,
    retrains: Callable[[Mapping[str, Any]], int] | None = None,
    metrics: Callable[[Mapping[str, Any]], list[str]] | None = None,
    glossary: Mapping[str, str] | None = None,
    reference: str = "",
    model_set: bool = False,
    modalities: frozenset[str] = frozenset({"image"}),
) -> EvaluatorSpec:
    """The spec of a built-in evaluator; ``description`` is one line naming the paper."""
    return EvaluatorSpec(
        name=name,
        factory=factory,
        version=version,
        description=description,
        requires=requires,
        directions=directions,
        figures=figures,
        retrains=retrains,
        metrics=metrics,
        glossary=glossary or {},
        reference=reference or REFERENCES.get(name, ""),
        model_set=model_set,
        modalities=modalities,
    )
