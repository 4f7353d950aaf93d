"""Meta-evaluation (MetaQuantus): is a scoring function a reliable instrument for this explainer?

Hedström, Bommer, Wickstrøm, Samek, Lapuschkin & Höhne, "The Meta-Evaluation Problem in
Explainable AI: Identifying Reliable Estimators with MetaQuantus", TMLR 2023 (reference code:
annahedstroem/MetaQuantus, ``meta_evaluation.py``, ``perturbation_tests/mpt.py`` and
``ipt.py``). A quality estimator (pixel flipping, sparseness, ...) should show two properties:

* **resilience to noise**: a *minor* perturbation, one that leaves the model's behaviour as
  it is, should not change the distribution of its scores;
* **reactivity to adversary**: a *disruptive* perturbation, one that changes the model's
  answers, should.

For ``K = perturbations`` draws of each kind and each test, the evaluator explains the first
``n_images`` test images for the class the *unperturbed* model predicts (MetaQuantus's
``y_batch``), under the perturbed model or input, and scores the maps there. Per scoring
function ``fn``, with ``q`` the unperturbed per-image scores, ``q_k`` those of draw ``k`` and
``I_k`` the images MetaQuantus keeps for it (minor: the perturbed model still predicts the
class; disruptive: it no longer does):

* ``p_k``: two-sided Wilcoxon signed-rank p-value of ``q[I_k]`` vs ``q_k[I_k]``
  (``scipy.stats.wilcoxon``, ``zero_method="zsplit"``, MetaQuantus's ``compute_iac_score``);
  1 when every difference is zero (scipy has no p-value then; the scores are the same);
* ``<fn>.resilience`` = IAC_NR = mean over minor draws of ``p_k``;
* ``<fn>.reactivity`` = IAC_AR = mean over disruptive draws of ``1 - p_k``;
* ``<fn>.worse_under_disruption`` = IEC_AR = mean over disruptive draws of the share of
  ``I_k`` whose score got worse (``q_k < q`` when higher is better, ``q_k > q`` when lower is),
  MetaQuantus's ``compute_iec_adversary`` for one explainer;
* ``<fn>.meta_consistency`` = the mean of those three. MetaQuantus's MC also averages IEC_NR,
  whether the *ranking of explainers* survives minor noise; one job has one explainer, so
  ``benchmark.reliability`` computes it across the jobs of a suite (from the stored
  ``mean_scores``) and the full four-term MC with it.

Each of the three is first computed per test (``model``, ``input``) and then averaged over the
tests run. All are in [0, 1], higher is better.

Perturbations (defaults from MetaQuantus's MNIST set-up where it has one):

* model, minor: every parameter (weights and biases, not buffers) times ``1 + N(0, s^2)``
  with ``s = model_minor_std`` (MetaQuantus: 0.001). The evaluator *verifies* that each draw
  changes test accuracy (whole test split) by less than ``accuracy_tolerance`` (1 percentage
  point) and halves ``s`` until it does (at most ``MAX_HALVINGS`` times, else it fails); the
  ``s`` used and the largest change are returned;
* model, disruptive: the same with ``model_disruptive_std`` (MetaQuantus: 2.0); the mean
  accuracy drop is returned;
* input, minor / disruptive: ``x + N(0, s^2)`` clipped to [0, 1], with ``input_minor_std``
  (verified and halved like the model's) and ``input_disruptive_std``.

Scoring functions (each a function of ``(model, x, attributions, target)`` returning one score
per image; faithfulness ones from ``plugins.evaluators.faithfulness``, with the defaults of
those evaluators): ``pixel-flipping`` (AUC, black baseline, lower is better), ``deletion``
(RISE, black, lower), ``insertion`` (RISE, blurred start, higher), ``sparseness`` (Gini index
of ``|a|``, Chalasani et al. 2020, Quantus's ``Sparseness``, higher) and ``complexity``
(entropy of ``|a| / sum |a|``, Bhatt et al. 2020, Quantus's ``Complexity``, lower). The last two
are written here as batched torch (Quantus's are numpy on float copies) and
``tests/test_meta_evaluation.py`` holds them to Quantus 0.6.0; a map that is zero everywhere is
treated as uniform (Gini 0, entropy ``log n``) where Quantus divides by zero.

Deliberate deviations from MetaQuantus: input noise is Gaussian (MetaQuantus: uniform on
``[-0.001, 0.001]`` and ``[-5, 5]``), and the input test explains the *perturbed* input
(MetaQuantus's ``ipt.py`` scores the perturbed input with the maps of the clean one, which
makes every explanation-only metric trivially resilient and never reactive); one iteration of
``K`` draws (MetaQuantus repeats them ``iterations`` times); minor accuracy is checked and the
noise scaled down, where MetaQuantus fixes it by hand per dataset.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import PositiveFloat, PositiveInt
from scipy import stats
from torch import nn

from benchmark.kit.evaluation import Target, evaluation_seed, explained_images, predict_logits
from benchmark.kit.ranking import normalised_auc
from benchmark.kit.seeding import generator, stream_seed
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.faithfulness import insertion_deletion_curve, pixel_flipping_curve
from plugins.evaluators.perturbation import rise_blur

Score = Literal["pixel-flipping", "deletion", "insertion", "sparseness", "complexity"]
SCORES: tuple[Score, ...] = ("pixel-flipping", "deletion", "insertion", "sparseness", "complexity")
SCORE_DIRECTIONS: Mapping[str, Direction] = {
    "pixel-flipping": "lower",
    "deletion": "lower",
    "insertion": "higher",
    "sparseness": "higher",
    "complexity": "lower",
}
"""Which way each scoring function is better (what "worse under disruption" means)."""
Test = Literal["model", "input"]
TESTS: tuple[Test, ...] = ("model", "input")
STRENGTHS = ("minor", "disruptive")
PARTS = ("resilience", "reactivity", "worse_under_disruption", "meta_consistency")
MAX_HALVINGS = 10
"""How often a minor noise level is halved before the evaluator gives up."""
_STREAMS = {("model", "minor"): 1, ("model", "disruptive"): 2}
_STREAMS |= {("input", "minor"): 3, ("input", "disruptive"): 4}
"""Noise stream of each (test, strength); draw ``k`` uses ``stream * 1000 + k``."""


# --------------------------------------------------------------------------------------------
# Scoring functions: (model, x, attributions, target) -> one score per image.


def _magnitudes(attributions: torch.Tensor) -> torch.Tensor:
    """``|a|`` flattened per image and divided by its maximum (zero maps stay zero)."""
    a = attributions.detach().double().abs().flatten(1)
    peak = a.amax(dim=1, keepdim=True)
    return torch.where(peak > 0, a / peak.clamp_min(torch.finfo(a.dtype).tiny), a)


def sparseness(attributions: torch.Tensor) -> np.ndarray:
    """Gini index of ``|a|`` per image (Chalasani et al. 2020; Quantus ``Sparseness``, which
    adds 1e-7 before sorting): ``sum_k (2k - n - 1) a_(k) / (n sum_k a_(k))``."""
    a = torch.sort(_magnitudes(attributions) + 1e-7, dim=1).values
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    return ((2 * k - n - 1) * a).sum(1).div(n * a.sum(1)).cpu().numpy()


def complexity(attributions: torch.Tensor) -> np.ndarray:
    """Entropy of ``|a| / sum |a|`` per image (Bhatt et al. 2020; Quantus ``Complexity``, with
    its 1e-12 inside the logarithm); a zero map counts as uniform."""
    a = _magnitudes(attributions)
    total = a.sum(1, keepdim=True)
    share = torch.where(total > 0, a / total.clamp_min(1e-300), torch.full_like(a, 1 / a.shape[1]))
    return (-(share * torch.log(share + 1e-12)).sum(1)).cpu().numpy()


def score_images(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int = 28,
    batch_size: int = 1024,
) -> np.ndarray:
    """``(N,)`` float64 scores of scoring function ``name`` (see the module docstring)."""
    if name == "sparseness":
        return sparseness(attributions)
    if name == "complexity":
        return complexity(attributions)
    black = torch.zeros_like(x)
    if name == "pixel-flipping":
        curve = pixel_flipping_curve(
            model, x, attributions, target, black, steps=steps, batch_size=batch_size
        )
        return np.trapezoid(curve.numpy(), dx=1.0 / steps, axis=1)
    if name in ("deletion", "insertion"):
        substrate = black if name == "deletion" else rise_blur(x)
        curve = insertion_deletion_curve(
            model, x, attributions, target, substrate, mode=name, steps=steps, batch_size=batch_size
        )
        return normalised_auc(curve, np.arange(steps + 1) / steps)
    raise ValueError(f"unknown scoring function {name!r}; choose from {', '.join(SCORES)}")


# --------------------------------------------------------------------------------------------
# Perturbations.


@dataclass
class Draw:
    """One perturbed evaluation problem: the model and images to explain and score."""

    model: nn.Module
    x: torch.Tensor
    accuracy: float
    """Test accuracy (whole test split) under this perturbation."""


def noisy_model(model: nn.Module, noise: Sequence[torch.Tensor], std: float) -> nn.Module:
    """A copy of ``model`` whose every parameter is multiplied by ``1 + std * noise``."""
    perturbed = copy.deepcopy(model).eval()
    with torch.no_grad():
        for parameter, z in zip(perturbed.parameters(), noise, strict=True):
            parameter.mul_(1 + std * z.to(device=parameter.device, dtype=parameter.dtype))
    return perturbed


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    return float((predict_logits(model, x, batch_size).argmax(1) == y).double().mean())


def perturbations(
    context: EvaluationContext,
    test: str,
    strength: str,
    std: float,
    count: int,
    n_images: int,
    *,
    seed: int,
    batch_size: int,
) -> list[Draw]:
    """``count`` seeded draws of one kind of perturbation at noise level ``std``; the noise is
    drawn on the CPU (the same on every device) and does not depend on ``std``."""
    model, test_split = context.model, context.dataset.test
    draws = []
    for k in range(count):
        g = generator(stream_seed(seed, _STREAMS[(test, strength)] * 1000 + k))
        if test == "model":
            noise = [torch.randn(p.shape, generator=g) for p in model.parameters()]
            perturbed = noisy_model(model, noise, std)
            accuracy = _accuracy(perturbed, test_split.x, test_split.y, batch_size)
            draws.append(Draw(perturbed, test_split.x[:n_images], accuracy))
        elif test == "input":
            z = torch.randn(test_split.x.shape, generator=g).to(test_split.x)
            noisy = (test_split.x + std * z).clamp(0.0, 1.0)
            accuracy = _accuracy(model, noisy, test_split.y, batch_size)
            draws.append(Draw(model, noisy[:n_images], accuracy))
        else:
            raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    return draws


def minor_perturbations(
    context: EvaluationContext,
    test: str,
    std: float,
    count: int,
    n_images: int,
    tolerance: float,
    clean_accuracy: float,
    *,
    seed: int,
    batch_size: int,
) -> tuple[list[Draw], float]:
    """Minor draws whose accuracy is within ``tolerance`` of ``clean_accuracy``, and the noise
    level used: ``std``, halved until every draw passes."""
    for _ in range(MAX_HALVINGS + 1):
        draws = perturbations(
            context, test, "minor", std, count, n_images, seed=seed, batch_size=batch_size
        )
        if max(abs(d.accuracy - clean_accuracy) for d in draws) < tolerance:
            return draws, std
        std /= 2
    raise ValueError(
        f"meta-evaluation: {test} noise still changes test accuracy by {tolerance:.2%} or more "
        f"after {MAX_HALVINGS} halvings (std {std * 2:.3g}); lower {test}_minor_std"
    )


# --------------------------------------------------------------------------------------------
# The statistics of one scoring function.


def wilcoxon_p(q: np.ndarray, q_hat: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value with MetaQuantus's ``zero_method="zsplit"``; 1
    when every difference is zero."""
    if np.all(q == q_hat):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(q, q_hat, zero_method="zsplit").pvalue)


def worse_share(q: np.ndarray, q_hat: np.ndarray, direction: str) -> float:
    """MetaQuantus's IEC_AR condition for one explainer: the share of images whose score got
    worse (strictly) under the perturbation."""
    return float(np.mean(q_hat < q if direction == "higher" else q_hat > q))


def evaluate_meta_evaluation(
    context: EvaluationContext,
    n_images: PositiveInt = 256,
    target: Target = "prediction",
    scores: Sequence[Score] = SCORES,
    tests: Sequence[Test] = TESTS,
    perturbations_per_test: PositiveInt = 5,
    model_minor_std: PositiveFloat = 0.001,
    model_disruptive_std: PositiveFloat = 2.0,
    input_minor_std: PositiveFloat = 0.001,
    input_disruptive_std: PositiveFloat = 1.0,
    accuracy_tolerance: PositiveFloat = 0.01,
    min_images: PositiveInt = 10,
    steps: PositiveInt = 28,
    seed: int | None = None,
    batch_size: PositiveInt = 1024,
) -> Evaluation:
    """Resilience, reactivity and meta-consistency of each scoring function in ``scores`` for
    the job's explainer, under the ``tests`` of the module docstring.

    A draw keeps the images MetaQuantus keeps (see the module docstring); one with fewer than
    ``min_images`` is left out of the statistics, and a kind of perturbation with no draw left
    fails the job, naming the noise level to change.
    """
    unknown = [s for s in scores if s not in SCORES] + [t for t in tests if t not in TESTS]
    if unknown or not scores or not tests:
        raise ValueError(
            f"meta-evaluation: scores must be among {', '.join(SCORES)} and tests among "
            f"{', '.join(TESTS)} (neither empty); got scores={list(scores)}, tests={list(tests)}"
        )
    x, classes, attributions = explained_images(
        context, n_images, target, batch_size, "meta-evaluation"
    )
    explain = context.explain
    assert explain is not None  # explained_images has checked it
    seed = evaluation_seed(context, seed)
    test_split = context.dataset.test
    clean_accuracy = _accuracy(context.model, test_split.x, test_split.y, batch_size)
    predicted = predict_logits(context.model, x, batch_size).argmax(1)
    settings = {"steps": steps, "batch_size": batch_size}
    q = {s: score_images(s, context.model, x, attributions, classes, **settings) for s in scores}
    stds = {
        ("model", "minor"): model_minor_std,
        ("model", "disruptive"): model_disruptive_std,
        ("input", "minor"): input_minor_std,
        ("input", "disruptive"): input_disruptive_std,
    }

    metrics: dict[str, float] = {"accuracy": clean_accuracy}
    per_test: dict[str, dict[str, dict[str, float]]] = {s: {} for s in scores}
    mean_scores: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in scores}
    details: dict[str, Any] = {}
    per_image: dict[str, Any] = {s: q[s] for s in scores}
    for test in tests:
        details[test] = {}
        for strength in STRENGTHS:
            std = stds[(test, strength)]
            if strength == "minor":
                draws, std = minor_perturbations(
                    context,
                    test,
                    std,
                    perturbations_per_test,
                    n_images,
                    accuracy_tolerance,
                    clean_accuracy,
                    seed=seed,
                    batch_size=batch_size,
                )
            else:
                draws = perturbations(
                    context,
                    test,
                    strength,
                    std,
                    perturbations_per_test,
                    n_images,
                    seed=seed,
                    batch_size=batch_size,
                )
            kept_counts, p_values = [], {s: [] for s in scores}
            worse = {s: [] for s in scores}
            means = {s: {"unperturbed": [], "perturbed": []} for s in scores}
            perturbed_scores = {s: np.full((len(x), len(draws)), np.nan) for s in scores}
            for k, draw in enumerate(draws):
                moved = predict_logits(draw.model, draw.x, batch_size).argmax(1) != predicted
                keep = (moved if strength == "disruptive" else ~moved).cpu().numpy()
                kept_counts.append(int(keep.sum()))
                maps = explain(draw.model, draw.x, classes)
                for s in scores:
                    q_hat = score_images(s, draw.model, draw.x, maps, classes, **settings)
                    perturbed_scores[s][:, k] = q_hat
                    if keep.sum() < min_images:
                        continue
                    p_values[s].append(wilcoxon_p(q[s][keep], q_hat[keep]))
                    worse[s].append(worse_share(q[s][keep], q_hat[keep], SCORE_DIRECTIONS[s]))
                    means[s]["unperturbed"].append(float(q[s][keep].mean()))
                    means[s]["perturbed"].append(float(q_hat[keep].mean()))
            if max(kept_counts) < min_images:
                which = "changed" if strength == "disruptive" else "kept"
                raise ValueError(
                    f"meta-evaluation: every {strength} {test} perturbation {which} the "
                    f"prediction of fewer than {min_images} of {len(x)} images; change "
                    f"{test}_{strength}_std (now {std:g}) or n_images"
                )
            accuracies = [d.accuracy for d in draws]
            if strength == "minor":
                metrics[f"{test}_minor_std"] = std
                metrics[f"{test}_minor_accuracy_change"] = max(
                    abs(a - clean_accuracy) for a in accuracies
                )
            else:
                metrics[f"{test}_disruptive_accuracy_drop"] = clean_accuracy - float(
                    np.mean(accuracies)
                )
            details[test][strength] = {
                "std": std,
                "accuracy": accuracies,
                "kept_images": kept_counts,
                "p_values": p_values,
            }
            for s in scores:
                per_image[f"{s}.{test}_{strength}"] = perturbed_scores[s]
                mean_scores[s].setdefault(test, {})[strength] = means[s]
                if strength == "minor":
                    per_test[s].setdefault(test, {})["resilience"] = float(np.mean(p_values[s]))
                else:
                    reactivity = 1.0 - float(np.mean(p_values[s]))
                    per_test[s].setdefault(test, {})["reactivity"] = reactivity
                    per_test[s][test]["worse_under_disruption"] = float(np.mean(worse[s]))
    for s in scores:
        for part in PARTS[:3]:
            metrics[f"{s}.{part}"] = float(np.mean([per_test[s][t][part] for t in tests]))
        metrics[f"{s}.meta_consistency"] = float(
            np.mean([metrics[f"{s}.{part}"] for part in PARTS[:3]])
        )
    arrays = {
        "clean_accuracy": clean_accuracy,
        "tests": details,
        "per_test": per_test,
        "mean_scores": mean_scores,
        "directions": {s: SCORE_DIRECTIONS[s] for s in scores},
        "n_images": len(x),
    }
    return Evaluation(metrics, arrays, per_image=per_image)


# --------------------------------------------------------------------------------------------
# Spec.


def directions() -> dict[str, Direction]:
    """Every metric the evaluator can return and which way is better."""
    table: dict[str, Direction] = {f"{s}.{part}": "higher" for s in SCORES for part in PARTS}
    table["accuracy"] = "neither"
    for test in TESTS:
        table[f"{test}_minor_std"] = "neither"
        table[f"{test}_minor_accuracy_change"] = "neither"
        table[f"{test}_disruptive_accuracy_drop"] = "neither"
    return table


def returned_metrics(params: Mapping[str, Any]) -> list[str]:
    """The metrics of one job with ``params`` (its ``scores`` and ``tests``)."""
    scores = params.get("scores", SCORES)
    tests = params.get("tests", TESTS)
    names = [f"{s}.{part}" for s in scores for part in PARTS]
    names.append("accuracy")
    for test in tests:
        names += [f"{test}_minor_std", f"{test}_minor_accuracy_change"]
        names.append(f"{test}_disruptive_accuracy_drop")
    return names


GLOSSARY = {
    **{
        f"{s}.resilience": f"MetaQuantus IAC_NR of {s}: mean Wilcoxon p-value between its scores "
        "with and without minor model / input noise (1: unchanged)"
        for s in SCORES
    },
    **{
        f"{s}.reactivity": f"MetaQuantus IAC_AR of {s}: mean 1 - Wilcoxon p-value between its "
        "scores with and without disruptive noise (1: clearly changed)"
        for s in SCORES
    },
    **{
        f"{s}.worse_under_disruption": f"MetaQuantus IEC_AR of {s}: share of images whose score "
        "got worse under disruptive noise"
        for s in SCORES
    },
    **{
        f"{s}.meta_consistency": f"mean of the resilience, reactivity and worse_under_disruption "
        f"of {s} (MetaQuantus's MC without the across-explainer IEC_NR)"
        for s in SCORES
    },
    "model_minor_std": "weight noise actually used for the minor model perturbation",
    "model_minor_accuracy_change": "largest test-accuracy change of a minor model perturbation",
    "model_disruptive_accuracy_drop": "mean test-accuracy drop of the disruptive weight noise",
    "input_minor_std": "input noise actually used for the minor input perturbation",
    "input_minor_accuracy_change": "largest test-accuracy change of a minor input perturbation",
    "input_disruptive_accuracy_drop": "mean test-accuracy drop of the disruptive input noise",
    "accuracy": "test accuracy of the unperturbed model",
}


def specs() -> list[EvaluatorSpec]:
    """The ``meta-evaluation`` evaluator."""
    return [
        evaluator_spec(
            "meta-evaluation",
            evaluate_meta_evaluation,
            "MetaQuantus (Hedström et al. 2023): resilience of each scoring function to minor "
            "model / input noise and its reactivity to disruptive noise",
            directions(),
            metrics=returned_metrics,
            glossary=GLOSSARY,
            reference="Hedström, Bommer, Wickstrøm, Samek, Lapuschkin & Höhne 2023, The "
            "Meta-Evaluation Problem in Explainable AI: Identifying Reliable Estimators with "
            "MetaQuantus (TMLR)",
        )
    ]
