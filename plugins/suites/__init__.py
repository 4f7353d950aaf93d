"""Built-in suites, shipped as YAML files next to this module and registered by name."""

from __future__ import annotations

from importlib import resources

from benchmark.hookspecs import hookimpl
from benchmark.specs import SuiteSpec

SUITES = {
    "smoke": "Real training on real MNIST and scikit-learn digits: the first end-to-end slice.",
    "explainability": "Every explainer x ROAR/KAR, ROAD, perturbation and Quantus metrics (MNIST).",
    "sanity": "Every explainer x sanity checks, completeness/soundness and BAM (bam-mnist).",
    "fairness": "colored-mnist and MNIST x five models x ERM and 11 debiasers x fairness metrics.",
    "bias-localisation": "Does an explanation show the shortcut? Attribution mass on the "
    "spurious region (colored-mnist background, bam-mnist scene) next to fairness metrics.",
    "robustness": "Adversarial training (PGD, FGSM-RS, TRADES) x robust accuracy under five "
    "attacks with reliability flags x gradient alignment with the input (MNIST, block-mnist).",
    "multiplicity": "Rashomon sets of ten seeds x prediction multiplicity and explanation "
    "disagreement with permutation controls (MNIST, colored-mnist; standard vs robust).",
    "counterfactuals": "Four counterfactual explainers (Wachter, prototypes, nearest image, "
    "targeted PGD) x validity, proximity, plausibility, stability and invalidation across "
    "equally good models (MNIST; Fashion-MNIST with -p fashion_mnist_root=DIR).",
    "multimodal": "Image + caption: the seed's LSTM-CNN (ResNet-18, ShuffleNet) single-head vs "
    "MTL x per-head accuracy, modality utilisation and fairness over text groups (caption-mnist).",
}


@hookimpl
def bench_register_suites(register) -> None:
    for name, description in SUITES.items():
        resource = resources.files(__package__) / f"{name}.yaml"
        register(
            SuiteSpec(
                name=name,
                yaml_text=resource.read_text(encoding="utf-8"),
                source=f"{__package__}/{name}.yaml",
                description=description,
            )
        )
