"""The Quantus 0.6.0 defects the ``quantus`` evaluator protects against, and the protections.

Each defect is confirmed in the installed source (paths under ``quantus/``) and, where it
changes numbers, by ``tests/test_quantus_adapter.py`` (14: ``tests/test_quantus_infidelity.py``);
the rest of the package refers to them as "defect N". Where each protection lives: here, 2, 4,
10, 13 and 14 and the batch capture of 3; ``calls``, 5 to 8, 10, 11 and where 14 is installed
(the constructor arguments and the guarded call, seeded by ``benchmark.kit.seeding.seeded`` and
in ``benchmark.kit.evaluation.eval_mode``); ``scores``, 3 and 6; ``catalogue``, 9 and 12;
``evaluator`` and ``calls``, the private copies of 1.

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
    ``Sequential``); ``Infidelity.evaluate_batch`` with a ``perturb_patch_sizes`` entry that
    does not divide the image's height and width (it replaces patches of the unpadded image
    at indices of the edge-padded one, then reshapes the result to the padded shape).
14. Cumulative Infidelity. Yeh et al. ("On the (In)fidelity and Sensitivity of Explanations",
    NeurIPS 2019, Definition 2.1) define ``INFD = E_I[(I^T Phi(x) - (f(x) - f(x - I)))^2]``:
    each sample is one perturbation ``I`` of the original image. Their code
    (``chihkuanyeh/saliency_evaluation``, ``infid_sen_utils.py`` ``get_imageset``) zeroes one
    square per copy of the image; Captum's ``captum.metrics.infidelity`` takes one
    ``(I, x - I)`` per sample from its ``perturb_func``. Quantus 0.6.0
    ``metrics/faithfulness/infidelity.py`` ``Infidelity.evaluate_batch`` starts from
    ``x_perturbed = x_batch.copy()`` once per sample and patch size (line 357), then for each
    patch of ``utils.get_block_indices`` (a fixed row-major grid) calls
    ``perturb_func(arr=x_perturbed..., indices)`` on the already perturbed images and keeps the
    result (lines 369-381): the k-th term compares ``f(x) - f(x - I_k)`` with ``a . I_k`` where
    ``I_k`` has the first k patches replaced. That is a deletion curve, not Yeh's estimator,
    and it can rank explanations differently (the "Trust" issue found gradient and integrated
    gradients swapping places). The adapter gives Quantus's ``perturb_func`` the batch's
    original images at every call (``single_perturbations``), so every term replaces one patch
    of the original image and the loss is Yeh's, with ``I`` uniform over the grid's patches
    (each size in ``perturb_patch_sizes`` weighted equally, as Quantus averages them) and the
    baseline's own randomness. Every Infidelity parameter keeps its Quantus meaning; Quantus's
    cumulative quantity is not offered.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch


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
def quiet() -> Iterator[None]:
    """No Python warnings and no prints from Quantus (defect 10)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def check_known_crashes(
    metric: str,
    kwargs: Mapping[str, Any],
    model: torch.nn.Module,
    image_shape: tuple[int, ...],
) -> None:
    """A clear error, before any work, where Quantus 0.6.0 would crash with an obscure one
    (defect 13); ``image_shape`` is one image's ``(C, H, W)``."""
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
    if metric == "Infidelity":
        height, width = image_shape[-2:]
        sizes = kwargs.get("perturb_patch_sizes") or [4]  # Quantus's default
        bad = [int(s) for s in sizes if height % int(s) or width % int(s)]
        if bad:
            raise ValueError(
                f"Quantus metric 'Infidelity': perturb_patch_sizes {bad} do not divide the "
                f"{height}x{width} images; Quantus 0.6.0 crashes on padded patches "
                "(Infidelity.evaluate_batch reshapes the unpadded image to the padded shape)"
            )


def capture_batches(metric: Any) -> list[list[Any]]:
    """Per-batch results as ``evaluate_batch`` returned them, before ``custom_postprocess``
    replaces them with a summary (ROAD's per-image curves; defect 3)."""
    captured: list[list[Any]] = []
    postprocess = metric.custom_postprocess

    def custom_postprocess(**kwargs: Any) -> Any:
        captured.append(list(metric.evaluation_scores))
        return postprocess(**kwargs)

    metric.custom_postprocess = custom_postprocess
    return captured


def single_perturbations(metric: Any) -> None:
    """Make a Quantus ``Infidelity`` instance perturb the original images at every step (defect 14).

    ``evaluate_batch`` is wrapped so that, for that batch, ``perturb_func`` is called with the
    batch's unperturbed images instead of the images the previous patches already changed;
    Quantus keeps the rest of its arithmetic (patch grid, baseline, ``x - x_perturbed``, the
    loss, the means over patches, sizes and samples), which then is Yeh et al.'s estimator.

    Why this rather than the alternatives: no Quantus parameter turns the accumulation off, so a
    refusal would have to refuse Infidelity outright; a batched Infidelity of our own would
    duplicate Quantus's parameters (patch sizes, baselines, perturbation functions, loss) and be
    a second implementation to keep in step. Substituting the one input that is wrong keeps
    Quantus the reference and every parameter meaningful, and
    ``tests/test_quantus_infidelity.py`` holds the result to ``captum.metrics.infidelity`` fed
    the same perturbations. The original is taken from each batch as ``evaluate_batch`` gets it,
    so it holds for any ``batch_size``.
    """
    evaluate_batch = metric.evaluate_batch
    perturb = metric.perturb_func

    def evaluate_batch_from_originals(*args: Any, x_batch: np.ndarray, **kwargs: Any) -> Any:
        original = np.array(x_batch).reshape(len(x_batch), -1)

        def perturb_original(arr: np.ndarray, indices: np.ndarray, **perturb_kwargs: Any) -> Any:
            if arr.shape != original.shape:
                raise RuntimeError(
                    f"Infidelity perturbed an array of shape {arr.shape}, not the batch's "
                    f"{original.shape}: Quantus's evaluate_batch changed; see defect 14"
                )
            return perturb(arr=original.copy(), indices=indices, **perturb_kwargs)

        metric.perturb_func = perturb_original
        try:
            return evaluate_batch(*args, x_batch=x_batch, **kwargs)
        finally:
            metric.perturb_func = perturb

    metric.evaluate_batch = evaluate_batch_from_originals
