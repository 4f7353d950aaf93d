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
``arrays["n_undefined"]``; if none is left the job fails. ``Evaluation.per_image`` holds the
per-image scores under the metric's name (an ``(N,)`` array, NaN where undefined, so its
``nanmean`` is the metric; SensitivityN has none); ``arrays`` holds them too as JSON, with
Quantus's raw output, the reduction used and the Quantus version.

Directions come from each class's ``score_direction`` in Quantus 0.6.0 (``QUANTUS_DIRECTIONS``,
checked against the installed classes by the tests), with two corrections (defect 9). A
metric of a newer Quantus missing from the table still runs; the leaderboard then reads it as
"higher is better" until it is added here.

The package, in the order a call goes through it:

* ``catalogue``: which metrics exist, are refused, need masks or an explainer, and which way
  each is better (the spec's directions); metric names.
* ``calls``: a metric's constructor arguments checked and completed, the job's explainer behind
  Quantus's ``explain_func``, and the guarded call itself.
* ``guards``: the fourteen Quantus 0.6.0 defects the adapter protects against ("defect N"
  anywhere in the package is the N-th of that list), and the protections.
* ``scores``: from what Quantus returns to one score per image, and JSON for the store.
* ``evaluator``: ``evaluate_quantus`` and the ``quantus`` spec.

``Infidelity`` is Yeh et al.'s single-perturbation estimator, not Quantus 0.6.0's cumulative
one (defect 14): each term replaces one patch of the original image, checked against
``captum.metrics.infidelity`` on the same perturbations by ``tests/test_quantus_infidelity.py``.

Kept as Quantus defines it, worth knowing: Infidelity's patches are a fixed grid, not random
squares, so with a deterministic ``perturb_baseline`` (the default ``black``, the image's
minimum) its ``n_perturb_samples`` passes are identical and only cost time; ``Completeness``
tests exact float equality of the attribution sum and the output difference, on normalised
maps by default, so it is 0 for practically every image; ``Continuity`` with a small
``nr_steps`` translates past the image border and raises an ``IndexError`` (the default 28
works on 28x28 images).

Limits: all ``n_images`` go through Quantus as one batch (memory grows with it); metrics that
explain again do so through the runner's attribution cache, so a robustness metric stores
``nr_samples`` perturbed maps per image (and a rerun reuses them); the NumPy aliases and the
silenced stdout are process-wide while a metric runs, so two metrics must not run in threads of
one process at once.

Reference implementation: Quantus itself; ``tests/test_quantus_adapter.py`` checks the adapter
against direct Quantus calls where Quantus is right, and shows each protection where it is not.
"""

from __future__ import annotations

from plugins.evaluators.quantus.evaluator import evaluate_quantus, specs

__all__ = ["evaluate_quantus", "specs"]
