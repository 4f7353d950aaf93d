"""Any Quantus metric as an evaluator: ``quantus`` with ``metric: <Quantus class name>``.

Quantus (Hedstroem et al., "Quantus: An Explainable AI Toolkit for Responsible Evaluation of
Neural Network Explanations and Beyond", JMLR 24(34), 2023) implements some forty metrics of
explanation quality (faithfulness, robustness, localisation, complexity, randomisation,
axiomatic). Writing each again would be slow and would drift from the reference, so this one
evaluator exposes every Quantus metric class by name, its constructor parameters given in the
suite::

    evaluators:
      - name: quantus
        label: quantus-faithfulness
        params: {metric: FaithfulnessCorrelation, metric_params: {nr_runs: 50}}

Per job: the first ``n_images`` test images, the target (the model's prediction or the label),
the job's attributions from ``context.explain`` (cached and contract-checked by the runner),
then ``getattr(quantus, metric)(**metric_params)`` called once on all images as numpy, on the
model's device. Metrics that explain again (robustness, randomisation, input invariance) get
``explain_func``: ``context.explain`` behind Quantus's ``(model, inputs, targets)`` signature.
Callable parameters (``similarity_func``, ``perturb_func``, ``normalise_func``, ...) may be
given by the name of a Quantus function (``similarity_func: correlation_spearman``).

Metric name and value. The metric is the snake_case class name (``faithfulness_correlation``,
``road``, ``efficient_mprt``; ``region_perturbation_lerf`` / ``_random`` for the orders whose
direction differs from MoRF). Its value is the mean over images of one score per image, taken
from what Quantus returns:

* a score per image (a float, an int count or a bool) is the image's score;
* a curve per image (PixelFlipping, Selectivity, RegionPerturbation, ROAD) is reduced by
  ``curve_reduction``: ``auc`` (default) is the trapezoid area with unit spacing between
  steps, exactly Quantus's ``helpers.utils.calculate_auc`` / ``get_auc_score``, or ``mean``,
  the mean height (comparable across step counts);
* a dict of per-image lists by layer (MPRT) is the mean over the randomised layers, the
  ``original`` entry excluded (or the last layer with ``return_last_correlation: true``);
* SensitivityN correlates over images (one correlation per number of removed features), so it
  has no per-image score: its value is the mean of that curve, as Quantus aggregates it.

Anything else raises a ``ValueError`` naming the metric and the shape it returned. Images
whose score is NaN or infinite (a constant map under a correlation, a changed prediction with
``return_nan_when_prediction_changes``) are left out of the mean and counted in
``arrays["n_undefined"]``; if none is left the job fails. ``arrays`` holds the per-image
scores, Quantus's raw output (JSON-ready), the reduction used and the Quantus version.

Directions come from each class's ``score_direction`` in Quantus 0.6.0 (``QUANTUS_DIRECTIONS``,
checked against the installed classes by the tests), with two corrections (see 9 below). A
metric of a newer Quantus missing from the table still runs; the leaderboard then reads it as
"higher is better" until it is added here.

Quantus 0.6.0 defects this adapter protects against, each confirmed in the installed source
(paths under ``quantus/``) and, where it changes numbers, by ``tests/test_quantus_adapter.py``:

1. Inputs modified in place. ``metrics/complexity/sparseness.py`` ``Sparseness.evaluate_batch``
   (``a_batch += 1e-07``) and ``metrics/complexity/complexity.py`` ``Complexity.evaluate_batch``
   (``a_batch /= ...``) work on views of the caller's array when ``abs`` and ``normalise``
   are off (or the batch is all zeros, which ``normalise_by_max`` returns unchanged);
   ``functions/normalise_func.py`` ``normalise_by_average_second_moment_estimate`` divides in
   place (``a /= ...``), so the Relative*Stability metrics with ``normalise: true`` rewrite the
   caller's attributions. An attribution tensor's ``.numpy()`` shares memory with the runner's
   tensor, so Quantus only ever gets private copies of images, targets and attributions.
2. Batch-coupled normalisation. ``metrics/base.py`` ``Metric.__init__`` defaults
   ``normalise_func`` to ``normalise_by_max`` whose ``normalise_axes=None`` means every axis,
   the batch axis included: each map is divided by the largest value in the whole batch, so an
   image's score (EffectiveComplexity, NonSensitivity, Infidelity or LocalLipschitzEstimate
   with normalisation, ...) depends on which images share its batch. The adapter wraps the
   metric's own normalisation function (whatever it is, with its kwargs) to run on one image
   at a time (Sufficiency keeps Quantus's: it normalises a distance matrix between images).
   Sufficiency, Consistency and SensitivityN compare images with each other by design: they
   stay batch-level metrics, computed over all ``n_images`` together.
3. First batch only. ``metrics/faithfulness/road.py`` ``ROAD.custom_postprocess`` averages
   ``self.evaluation_scores[0]``, and ``evaluate_batch`` returns one element per batch, so with
   the default ``batch_size=64`` only the first 64 images count (``SensitivityN`` in
   ``sensitivity_n.py`` does the same). The adapter passes all images as one batch and reads
   the per-image ROAD curves from the batch results before that post-processing.
4. NumPy 2 removals. ``helpers/utils.py`` ``calculate_auc`` calls ``np.trapz``, removed in
   NumPy 2.4, so ``IROF`` and ``PixelFlipping(return_auc_per_sample=True)`` crash;
   ``metrics/robustness/continuity.py`` ``Continuity.evaluate_batch`` assigns ``np.NaN``
   (removed in 2.0) when ``return_nan_when_prediction_changes`` is on. For the duration of a
   Quantus call only, and only when missing, ``np.trapz`` is ``np.trapezoid`` and ``np.NaN``
   is ``np.nan``; both are removed again afterwards. The adapter's own areas use
   ``np.trapezoid``.
5. Unseeded and global randomness. FaithfulnessCorrelation (``np.random.choice``),
   RegionPerturbation's random order and the noise perturbations (``functions/perturb_func.py``,
   ROAD's noisy imputation) draw from NumPy's global generator without a seed;
   ``RandomLogit.evaluate_batch`` calls ``np.random.seed(self.seed)`` and
   ``helpers/model/pytorch_model.py`` ``PyTorchModel.get_random_layer_generator`` calls
   ``torch.manual_seed(seed + 1)``, resetting the caller's global generators. Each call runs
   with NumPy's global state and torch's generator seeded from ``seed`` and restored
   afterwards; Quantus's own ``seed`` parameters (MPRT, EfficientMPRT, RandomLogit) are set from
   ``seed`` too. Reruns give identical numbers. Draws are made image by image in batch order, so
   for these metrics an image's noise (not its normalisation) depends on its position.
6. MPRT's average. ``metrics/randomisation/mprt.py``
   ``MPRT.recompute_average_correlation_per_sample`` skips a layer called ``orig``, but the
   key is ``original``: the average includes the explanation's similarity with itself (about
   1) and is biased towards failing the test. The adapter averages the layers itself.
7. Aggregates by default. FaithfulnessCorrelation, IROF and SensitivityN default to
   ``return_aggregate=True`` (one number for the batch); the adapter always asks for
   per-image scores and aggregates itself.
8. Training mode. ``PyTorchModel.predict`` raises for a model in training mode; the model is
   put in eval mode for the call and restored.
9. Two directions. ``Consistency`` is the probability that images with the same explanation
   share a prediction (Dasgupta et al., ICML 2022), higher is better, as for Sufficiency, but
   Quantus declares "lower". ``RegionPerturbation`` returns the prediction drop
   ``y - y_perturbed``, whose area (AOPC, Samek et al., IEEE TNNLS 2017, eq. 12) is higher for a
   better MoRF ranking, but Quantus declares "lower"; with ``order: lerf`` lower is better.
10. Noise. ``disable_warnings`` does not silence everything (``warn_absolute_operation`` and
    deprecation notices print unconditionally; ``warn_perturbation_caused_no_change`` warns per
    image): Python warnings and stdout are silenced during construction and the call.
11. Defaults that ignore the data. ``RandomLogit`` draws off-target classes from
    ``num_classes=1000``, outside a 10-class model; the adapter fills in the dataset's class
    count unless the suite sets it.
12. Refused. ``SmoothMPRT.explain_smooth_batch_numpy`` calls ``quantus.explain`` instead of the
    given ``explain_func``, so it would score Quantus's default explainer, not the job's;
    ``BatchSufficiency.custom_batch_preprocess`` reshapes the batch to one image's shape and
    crashes for more than one image (``Sufficiency`` computes the same scores); ``Focus`` needs
    mosaic images and their positions, which no dataset here provides. Localisation metrics
    need ground-truth masks (the dataset's ``object_mask`` extra).
13. Crashes turned into clear errors before any work: ``NonSensitivity.evaluate_batch`` with
    ``features_in_step`` other than 1 (it compares one prediction per step with one attribution
    per feature); ``InputInvariance`` through ``PyTorchModel.add_mean_shift_to_first_layer``,
    which takes the model's first submodule to be a convolution (seed-cnn's is a
    ``Sequential``).

Kept as Quantus defines it, worth knowing: ``Completeness`` tests exact float equality of the
attribution sum and the output difference, on normalised maps by default, so it is 0 for
practically every image; ``Continuity`` with a small ``nr_steps`` translates past the image
border and raises an ``IndexError`` (the default 28 works on 28x28 images).

Limits: all ``n_images`` go through Quantus as one batch (memory grows with it); metrics that
explain again do so through the runner's attribution cache, so a robustness metric stores
``nr_samples`` perturbed maps per image (and a rerun reuses them); the NumPy aliases and the
silenced stdout are process-wide while a metric runs, so two metrics must not run in threads of
one process at once.

Reference implementation: Quantus itself; ``tests/test_quantus_adapter.py`` checks the adapter
against direct Quantus calls where Quantus is right, and shows each protection where it is not.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import io
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import numpy as np
import torch

from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.predictions import predict_logits

QUANTUS_DIRECTIONS: dict[str, Direction] = {
    # Quantus 0.6.0 ``score_direction`` of every metric class, except the two corrections
    # marked (defect 9).
    "AUC": "higher",
    "AttributionLocalisation": "higher",
    "AvgSensitivity": "lower",
    "BatchSufficiency": "higher",
    "Completeness": "higher",
    "Complexity": "lower",
    "Consistency": "higher",  # corrected: Quantus says lower
    "Continuity": "lower",
    "EffectiveComplexity": "lower",
    "EfficientMPRT": "higher",
    "FaithfulnessCorrelation": "higher",
    "FaithfulnessEstimate": "higher",
    "Focus": "higher",
    "IROF": "higher",
    "Infidelity": "lower",
    "InputInvariance": "higher",
    "LocalLipschitzEstimate": "lower",
    "MPRT": "lower",
    "MaxSensitivity": "lower",
    "ModelParameterRandomisation": "lower",
    "Monotonicity": "higher",
    "MonotonicityCorrelation": "higher",
    "NonSensitivity": "lower",
    "PixelFlipping": "lower",
    "PointingGame": "higher",
    "ROAD": "lower",
    "RandomLogit": "lower",
    "RegionPerturbation": "higher",  # corrected: Quantus says lower (MoRF drop curve)
    "RelativeInputStability": "lower",
    "RelativeOutputStability": "lower",
    "RelativeRepresentationStability": "lower",
    "RelevanceMassAccuracy": "higher",
    "RelevanceRankAccuracy": "higher",
    "Selectivity": "lower",
    "SensitivityN": "higher",
    "SmoothMPRT": "lower",
    "Sparseness": "higher",
    "Sufficiency": "higher",
    "TopKIntersection": "higher",
}
"""Which way is better, by Quantus class name."""

DIRECTION_CORRECTIONS: dict[str, Direction] = {
    "Consistency": "higher",
    "RegionPerturbation": "higher",
}
"""Where ``QUANTUS_DIRECTIONS`` deliberately differs from Quantus's ``score_direction``."""

REGION_ORDER_DIRECTIONS: dict[str, Direction] = {"lerf": "lower", "random": "higher"}
"""RegionPerturbation orders other than ``morf``, scored under their own names. Least relevant
first, a small drop is good; ``random`` is the baseline, read the same way as MoRF."""

UNSUPPORTED: dict[str, str] = {
    "SmoothMPRT": "Quantus 0.6.0 ignores explain_func in SmoothMPRT.explain_smooth_batch_numpy "
    "(it calls quantus.explain), so it would score Quantus's default explainer, not the job's",
    "Focus": "Focus needs mosaic images and their positions (custom_batch), which the "
    "benchmark's datasets do not provide",
    "BatchSufficiency": "Quantus 0.6.0 crashes on any batch of more than one image "
    "(BatchSufficiency.custom_batch_preprocess reshapes the batch to one image's shape); "
    "use Sufficiency, which computes the same scores",
}
"""Metric classes refused with the reason."""

NEEDS_EXPLAIN: frozenset[str] = frozenset(
    {
        "AvgSensitivity",
        "Continuity",
        "EfficientMPRT",
        "InputInvariance",
        "LocalLipschitzEstimate",
        "MPRT",
        "MaxSensitivity",
        "ModelParameterRandomisation",
        "RandomLogit",
        "RelativeInputStability",
        "RelativeOutputStability",
        "RelativeRepresentationStability",
    }
)
"""Metrics that explain perturbed inputs or randomised models again, so get ``explain_func``."""

NEEDS_MASKS: frozenset[str] = frozenset(
    {
        "AUC",
        "AttributionLocalisation",
        "PointingGame",
        "RelevanceMassAccuracy",
        "RelevanceRankAccuracy",
        "TopKIntersection",
    }
)
"""Localisation metrics: they compare maps with ground-truth masks (``s_batch``)."""

BATCH_LEVEL: frozenset[str] = frozenset({"Consistency", "SensitivityN", "Sufficiency"})
"""Metrics that compare images with each other by definition: an image's score depends on the
other images, whatever the normalisation."""

_LAYER_DICT: frozenset[str] = frozenset({"MPRT", "ModelParameterRandomisation"})
_RETURN_FLAGS = (
    "return_average_correlation",
    "return_last_correlation",
    "return_sample_correlation",
)

MANAGED: dict[str, str] = {
    "return_aggregate": "the adapter needs per-image scores and takes their mean itself",
    "aggregate_func": "the adapter takes the mean over images itself",
    "disable_warnings": "Quantus's warnings and prints are always silenced",
    "display_progressbar": "progress bars are always off",
    "default_plot_func": "figures come from stored arrays, not from Quantus",
    "seed": "set the evaluator's 'seed' parameter instead; it seeds Quantus too",
}
"""Constructor parameters the adapter sets itself, with the reason."""

_CALLABLE_PARAM = re.compile(r"(_func|^norm_numerator|^norm_denominator)$")

CURVE_REDUCTIONS = ("auc", "mean")

DEFAULTS: dict[str, Any] = {
    "metric": "FaithfulnessCorrelation",
    "metric_params": {},
    "n_images": 256,
    "target": "prediction",
    "seed": 0,
    "curve_reduction": "auc",
}


def snake_case(class_name: str) -> str:
    """``FaithfulnessCorrelation`` -> ``faithfulness_correlation``; acronyms stay one word
    (``ROAD`` -> ``road``, ``EfficientMPRT`` -> ``efficient_mprt``, ``TopKIntersection`` ->
    ``top_k_intersection``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()


def metric_name(class_name: str, metric_params: Mapping[str, Any] | None = None) -> str:
    """The name the job's metric is stored under; RegionPerturbation orders other than MoRF
    get their own name because their direction differs."""
    name = snake_case(class_name)
    if class_name == "RegionPerturbation":
        order = str((metric_params or {}).get("order", "morf")).lower()
        if order != "morf":
            name = f"{name}_{order}"
    return name


def directions() -> dict[str, Direction]:
    """``metric name -> direction`` for every supported metric (the EvaluatorSpec's table)."""
    table: dict[str, Direction] = {
        snake_case(cls): d for cls, d in QUANTUS_DIRECTIONS.items() if cls not in UNSUPPORTED
    }
    for order, direction in REGION_ORDER_DIRECTIONS.items():
        table[f"region_perturbation_{order}"] = direction
    return table


def quantus_version() -> str:
    """The installed Quantus version, without importing it (importing takes seconds)."""
    try:
        return metadata.version("quantus")
    except metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------
# Looking up the metric and its parameters.


def _quantus() -> Any:
    import quantus  # lazy: a 1-2 s import that `bench plugins` / `bench plan` never need

    return quantus


def metric_classes() -> dict[str, type]:
    """Every metric class Quantus exports, by class name."""
    quantus = _quantus()
    return {
        name: obj
        for name, obj in vars(quantus).items()
        if inspect.isclass(obj) and issubclass(obj, quantus.Metric) and obj is not quantus.Metric
    }


def _suggest(name: str, candidates: list[str]) -> str:
    """Close matches, also across spellings (``faithfulness_correlation`` finds the class)."""
    by_key = {c.lower().replace("_", ""): c for c in candidates}
    key = name.lower().replace("_", "")
    close = [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=3, cutoff=0.6)]
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return "known: " + ", ".join(sorted(candidates))


def metric_class(name: str) -> type:
    """The Quantus metric class called ``name``; ``ValueError`` with close matches if none."""
    classes = metric_classes()
    if name not in classes:
        raise ValueError(f"unknown Quantus metric '{name}'; {_suggest(name, list(classes))}")
    if name in UNSUPPORTED:
        raise ValueError(f"Quantus metric '{name}' is not supported: {UNSUPPORTED[name]}")
    return classes[name]


def constructor_parameters(cls: type) -> list[str]:
    """Named parameters of the metric's constructor (the first ``__init__`` up the class tree
    that names them: ``ModelParameterRandomisation`` only forwards ``*args`` to ``MPRT``)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        names = [
            p.name
            for p in inspect.signature(init).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if names:
            return names
    return []


def _resolve_callable(metric: str, param: str, value: Any) -> Any:
    """A Quantus function given by name in the suite (``similarity_func: correlation_spearman``)."""
    if not isinstance(value, str) or not _CALLABLE_PARAM.search(param):
        return value
    quantus = _quantus()
    found = getattr(quantus, value, None)
    if callable(found) and not inspect.isclass(found):
        return found
    functions = [
        n for n, f in vars(quantus).items() if inspect.isfunction(f) and not n.startswith("_")
    ]
    raise ValueError(
        f"Quantus metric '{metric}': parameter '{param}' names no Quantus function '{value}'; "
        f"{_suggest(value, functions)}"
    )


def constructor_kwargs(
    cls: type, metric_params: Mapping[str, Any], *, seed: int, num_classes: int
) -> tuple[dict[str, Any], str]:
    """Validated constructor arguments, and how to reduce MPRT's per-layer scores.

    Unknown names and names the adapter manages are refused with the metric and parameter
    named; the adapter's own settings are added (defects 5, 7, 10, 11).
    """
    name = cls.__name__
    accepted = constructor_parameters(cls)
    kwargs: dict[str, Any] = {}
    for param, value in metric_params.items():
        if param in MANAGED and param in accepted:
            raise ValueError(
                f"Quantus metric '{name}': parameter '{param}' is set by the adapter "
                f"({MANAGED[param]})"
            )
        if param not in accepted:
            hint = difflib.get_close_matches(param, accepted, n=1, cutoff=0.6)
            raise ValueError(
                f"Quantus metric '{name}' has no constructor parameter '{param}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; its parameters: {', '.join(p for p in accepted if p not in MANAGED)}"
            )
        kwargs[param] = _resolve_callable(name, param, value)
    layer_reduction = "average"
    if name in _LAYER_DICT:
        if kwargs.get("return_last_correlation"):
            layer_reduction = "last"
        for flag in _RETURN_FLAGS:  # we reduce the per-layer dict ourselves (defect 6)
            kwargs.pop(flag, None)
    for param, value in (
        ("return_aggregate", False),
        ("disable_warnings", True),
        ("display_progressbar", False),
        ("seed", seed),
    ):
        if param in accepted:
            kwargs[param] = value
    if "num_classes" in accepted and "num_classes" not in kwargs:
        kwargs["num_classes"] = num_classes
    return kwargs, layer_reduction


# --------------------------------------------------------------------------------------------
# Calling Quantus safely.


class PerImageNormalisation:
    """A Quantus normalisation function applied to each image on its own (defect 2).

    Each image keeps a batch axis of length one, so Quantus's default ``normalise_axes`` (all
    axes) covers exactly that image; it gets a copy, so in-place normalisers touch nothing else
    (defect 1). Extra keyword arguments are passed through (EfficientMPRT passes its kwargs).
    """

    def __init__(self, function: Callable[..., np.ndarray]) -> None:
        self.function = function

    def __call__(self, a: np.ndarray, **kwargs: Any) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim < 2:
            return self.function(a.copy(), **kwargs)
        return np.concatenate([self.function(a[i : i + 1].copy(), **kwargs) for i in range(len(a))])


_NUMPY_ALIASES = {"trapz": "trapezoid", "NaN": "nan"}


@contextlib.contextmanager
def numpy_aliases() -> Iterator[None]:
    """``np.trapz`` and ``np.NaN`` for Quantus 0.6.0 on NumPy 2.x, only while Quantus runs and
    only when missing (defect 4). Not thread-safe: it patches the ``numpy`` module."""
    added = []
    for old, new in _NUMPY_ALIASES.items():
        if not hasattr(np, old):
            setattr(np, old, getattr(np, new))
            added.append(old)
    try:
        yield
    finally:
        for old in added:
            delattr(np, old)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """NumPy's global generator and torch's seeded from ``seed``, both restored on exit, so
    Quantus's unseeded draws are reproducible and its reseeding leaks nowhere (defect 5)."""
    state = np.random.get_state()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No Python warnings and no prints from Quantus (defect 10)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Quantus refuses a model in training mode (defect 8); restore the caller's mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def quantus_explain_func(
    explain: Callable[..., torch.Tensor], device: torch.device
) -> Callable[..., np.ndarray]:
    """``context.explain`` behind Quantus's ``explain_func(model, inputs, targets, **kwargs)``.

    Quantus hands numpy inputs (float64 after noise) and the model it wants explained (the
    job's, a randomised copy or a shifted one); the runner's ``explain`` checks the result and
    caches it. The map comes back as a private float32 copy (defect 1).
    """

    def explain_func(model: torch.nn.Module, inputs: Any, targets: Any, **_: Any) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
        target = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device).reshape(-1)
        a = explain(model, x, target)
        return a.detach().cpu().numpy().astype(np.float32, copy=True)

    return explain_func


def _numpy_copy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _capture_batches(metric: Any) -> list[list[Any]]:
    """Per-batch results as ``evaluate_batch`` returned them, before ``custom_postprocess``
    replaces them with a summary (ROAD's per-image curves; defect 3)."""
    captured: list[list[Any]] = []
    postprocess = metric.custom_postprocess

    def custom_postprocess(**kwargs: Any) -> Any:
        captured.append(list(metric.evaluation_scores))
        return postprocess(**kwargs)

    metric.custom_postprocess = custom_postprocess
    return captured


# --------------------------------------------------------------------------------------------
# From Quantus's output to one number per image.


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def reduce_curves(curves: np.ndarray, how: str) -> np.ndarray:
    """``(N, T)`` curves -> ``N`` numbers: unit-spaced trapezoid area (Quantus's
    ``calculate_auc``) or mean height."""
    curves = np.asarray(curves, dtype=float)
    if how == "auc":
        return np.trapezoid(curves, dx=1, axis=1)
    if how == "mean":
        return curves.mean(axis=1)
    raise ValueError(f"curve_reduction must be one of {', '.join(CURVE_REDUCTIONS)}, got {how!r}")


def per_image_scores(
    raw: Any, n: int, *, curve_reduction: str = "auc", layer_reduction: str = "average"
) -> tuple[np.ndarray, str]:
    """One float per image from a Quantus return value, and a sentence saying how.

    Raises ``ValueError`` for an output that is not a score, a curve or a per-layer dict per
    image, rather than guessing.
    """
    if isinstance(raw, Mapping):
        layers = {k: v for k, v in raw.items() if k != "original"}
        if layers and all(_is_sequence(v) and len(v) == n for v in layers.values()):
            table = np.array([np.asarray(v, dtype=float) for v in layers.values()])
            if table.ndim == 2:
                if layer_reduction == "last":
                    return table[-1], f"score at the last randomised layer ({list(layers)[-1]})"
                return table.mean(axis=0), (
                    "mean over the randomised layers, the 'original' entry excluded"
                )
        raise ValueError(
            f"a dict with keys {list(raw)[:5]} is not per-image lists by layer; "
            "cannot reduce it to one score per image"
        )
    if not _is_sequence(raw) or len(raw) != n:
        size = len(raw) if _is_sequence(raw) else "no"
        raise ValueError(
            f"{type(raw).__name__} with {size} entries for {n} images; "
            "cannot reduce it to one score per image"
        )
    rows = [np.asarray(v, dtype=float) for v in raw]
    if all(r.ndim == 0 for r in rows):
        return np.array(rows, dtype=float), "Quantus's score per image"
    if all(r.ndim == 1 for r in rows) and len({r.shape for r in rows}) == 1:
        return reduce_curves(np.stack(rows), curve_reduction), (
            f"{curve_reduction} of each image's curve of {rows[0].shape[0]} steps"
        )
    shapes = sorted({r.shape for r in rows})[:3]
    raise ValueError(f"per-image entries of shapes {shapes}; cannot reduce them to one score")


def jsonable(value: Any) -> Any:
    """Quantus output as JSON: lists, str keys, floats; NaN and inf become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return repr(value)


# --------------------------------------------------------------------------------------------
# The evaluator.


def _masks(context: EvaluationContext, metric: str, n: int) -> np.ndarray:
    masks = context.dataset.test.extras.get("object_mask")
    if masks is None:
        raise ValueError(
            f"Quantus metric '{metric}' compares maps with ground-truth masks, but the dataset "
            "provides no 'object_mask'"
        )
    return np.asarray(torch.as_tensor(masks[:n]).cpu(), dtype=float).copy()


def check_known_crashes(metric: str, kwargs: Mapping[str, Any], model: torch.nn.Module) -> None:
    """A clear error, before any work, where Quantus 0.6.0 would crash with an obscure one."""
    if metric == "NonSensitivity" and kwargs.get("features_in_step", 1) != 1:
        raise ValueError(
            "Quantus metric 'NonSensitivity' only works with features_in_step=1 in Quantus "
            "0.6.0 (NonSensitivity.evaluate_batch compares one prediction per step with one "
            "attribution per feature)"
        )
    if metric == "InputInvariance":
        first = next(iter(model.children()), None)
        if not hasattr(first, "out_channels"):
            raise ValueError(
                "Quantus metric 'InputInvariance' shifts the bias of the model's first "
                "submodule (PyTorchModel.add_mean_shift_to_first_layer), which must be a "
                f"convolution; this model's is {type(first).__name__}"
            )


def run_metric(
    cls: type, kwargs: Mapping[str, Any], call: Mapping[str, Any], *, seed: int
) -> tuple[Any, list[list[Any]]]:
    """Build and call the metric with every protection on; return its output and, for ROAD,
    the per-batch results before its summary."""
    metric = cls.__name__
    device = torch.device(call["device"])
    with quiet(), numpy_aliases(), seeded(seed, device), eval_mode(call["model"]):
        instance = cls(**kwargs)
        if metric != "Sufficiency":  # Sufficiency normalises a distance matrix between images
            instance.normalise_func = PerImageNormalisation(instance.normalise_func)
        captured = _capture_batches(instance) if metric == "ROAD" else []
        try:
            return instance(**call), captured
        except AssertionError as exc:  # Quantus reports bad inputs with bare asserts
            raise ValueError(f"Quantus metric '{metric}' refused the inputs: {exc}") from exc


def summarise(
    metric: str,
    raw: Any,
    captured: list[list[Any]],
    n: int,
    *,
    curve_reduction: str,
    layer_reduction: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-image scores (SensitivityN: its batch-level curve) and the arrays that explain them."""
    if metric == "SensitivityN":
        reduction = "mean over n of the correlation across images (batch-level, no per-image)"
        return np.asarray(raw, dtype=float), {"per_image": None, "reduction": reduction}
    arrays: dict[str, Any] = {}
    per_image_output = raw
    if metric == "ROAD":
        curves = np.concatenate([np.asarray(b, dtype=float) for b in captured[0]])
        arrays["curves"] = jsonable(curves)
        per_image_output = list(curves)
    try:
        scores, reduction = per_image_scores(
            per_image_output, n, curve_reduction=curve_reduction, layer_reduction=layer_reduction
        )
    except ValueError as exc:
        raise ValueError(f"Quantus metric '{metric}': {exc}") from None
    return scores, arrays | {"per_image": jsonable(scores), "reduction": reduction}


def evaluate_quantus(
    context: EvaluationContext,
    metric: str = "FaithfulnessCorrelation",
    metric_params: Mapping[str, Any] | None = None,
    n_images: int = 256,
    target: str = "prediction",
    seed: int = 0,
    curve_reduction: str = "auc",
) -> Evaluation:
    """Score the job's explanations of the first ``n_images`` test images with one Quantus
    metric (see the module docstring for the reductions and the defects guarded against).

    ``target`` is ``prediction`` (explain what the model predicts) or ``label``; ``seed``
    seeds every random draw of the metric. Every request is checked before any work.
    """
    if context.explain is None:
        raise ValueError("the quantus evaluator needs an explainer")
    if target not in ("prediction", "label"):
        raise ValueError(f"target must be prediction or label, got {target!r}")
    if curve_reduction not in CURVE_REDUCTIONS:
        raise ValueError(
            f"curve_reduction must be one of {', '.join(CURVE_REDUCTIONS)}, got {curve_reduction!r}"
        )
    if int(n_images) < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    cls = metric_class(metric)
    params = dict(metric_params or {})
    kwargs, layer_reduction = constructor_kwargs(
        cls, params, seed=seed, num_classes=context.dataset.num_classes
    )
    model = context.model
    check_known_crashes(metric, kwargs, model)
    test = context.dataset.test
    x, labels = test.x[: int(n_images)], test.y[: int(n_images)]
    n = len(x)
    masks = _masks(context, metric, n) if metric in NEEDS_MASKS else None

    targets = labels if target == "label" else predict_logits(model, x).argmax(1)
    attributions = context.explain(model, x, targets)  # on the model's device; Quantus gets numpy
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    call: dict[str, Any] = {
        "model": model,
        "x_batch": _numpy_copy(x),
        "y_batch": _numpy_copy(targets),
        "a_batch": _numpy_copy(attributions),
        "channel_first": True,
        "device": str(device),
        "batch_size": n,  # one batch: no first-batch-only summaries (defect 3)
    }
    if masks is not None:
        call["s_batch"] = masks
    if metric in NEEDS_EXPLAIN:
        call["explain_func"] = quantus_explain_func(context.explain, device)
    raw, captured = run_metric(cls, kwargs, call, seed=seed)

    scores, arrays = summarise(
        metric,
        raw,
        captured,
        n,
        curve_reduction=curve_reduction,
        layer_reduction=layer_reduction,
    )
    finite = np.isfinite(scores)
    if not finite.any():
        raise ValueError(
            f"Quantus metric '{metric}' gave no finite score for any of the {n} images"
        )
    arrays |= {
        "metric": metric,
        "metric_params": jsonable(params),
        "n_images": n,
        "n_undefined": int((~finite).sum()),
        "target": target,
        "targets": targets.cpu().tolist(),
        "batch_level": metric in BATCH_LEVEL,
        "quantus_version": quantus_version(),
        "raw": jsonable(raw),
    }
    return Evaluation({metric_name(metric, params): float(scores[finite].mean())}, arrays)


def register_quantus(register: Callable[[EvaluatorSpec], None]) -> None:
    """Register the ``quantus`` evaluator (wired into ``bench_register_evaluators``)."""
    register(
        EvaluatorSpec(
            name="quantus",
            factory=evaluate_quantus,
            version=f"1+quantus{quantus_version()}",
            description="any Quantus metric by class name (metric, metric_params): "
            "per-image scores, batch-independent normalisation, seeded",
            params=DEFAULTS,
            requires=frozenset({"explainer"}),
            directions=directions(),
        )
    )
