"""The data a plugin hands to the core, and the data the core hands back to plugins.

A plugin never subclasses a core class: it calls ``register(SomeSpec(...))`` with a frozen
dataclass that says what the component is, what it provides and requires (capability tags
the planner reasons over) and a factory the runner calls. Keeping these types in one small
module means a plugin author reads one page to know every contract.

Factory contracts (the runner checks what it can and fails the job, never the run):

* dataset:   ``factory(**params) -> Dataset``
* model:     ``factory(num_classes, input_shape, **params) -> torch.nn.Module`` returning logits
  (one taking text: ``benchmark.modalities``)
* debiaser:  ``factory(model, data: Split, *, seed: int, **params) -> torch.nn.Module``; it
  trains ``model`` (or what ``prepare`` built) and returns it
* explainer: ``factory(model, x, target, **params) -> Tensor`` of shape ``(N, 1 or C, H, W)``;
  a counterfactual explainer (``ExplainerSpec.output``) returns ``(N, C, H, W)`` images instead,
  an all-NaN image where it found none, for ``target`` classes (``-1``: any other class)
* evaluator: ``factory(context: EvaluationContext, **params) -> Evaluation``
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import torch

Direction = Literal["higher", "lower", "neither"]
"""Which way a metric is better; ``neither`` marks a count or a size shown beside a score
(the number of cells a minimum was taken over), never ranked."""
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "neither")


class FrozenDict(dict):
    """A read-only dict that pickles (``MappingProxyType`` does not, and specs travel to worker
    processes): a plugin's default parameters cannot be changed behind the cache's back."""

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("spec mappings are read-only; pass changed values in the suite instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        return (type(self), (dict(self),))


def _freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return FrozenDict(mapping or {})


@dataclass(frozen=True)
class ComponentSpec:
    """What every component declares. Subclasses only fix ``kind`` and add kind-specific fields."""

    kind: ClassVar[str] = ""

    name: str
    """Unique name within its kind; what a suite refers to (``seed-cnn``, ``mnist``)."""
    factory: Callable[..., Any]
    """Builds the component; its signature depends on the kind (see the module docstring)."""
    description: str = ""
    """One line shown by ``bench plugins``."""
    version: str = ""
    """Component version; part of every cache key. Empty means the providing distribution's."""
    params: Mapping[str, Any] | None = None
    """Default parameters; a suite may override any of them, and only them. Leave it out and
    they are read from the factory's signature (every parameter with a default that the runner
    does not pass itself, see ``benchmark.params``): one place, no drift, and the annotations
    check a suite's values at plan time. Give it only for a factory taking ``**kwargs``."""
    provides: frozenset[str] = frozenset()
    """Capability tags this component brings to a combination (``conv``, ``groups``, ...)."""
    requires: frozenset[str] = frozenset()
    """Tags some other component of the combination must provide for this one to run."""
    modalities: frozenset[str] = frozenset({"image"})
    """Input modalities (``image``, ``text``) a dataset provides, a model takes, or another
    component can feed a model; the planner's rule is in ``benchmark.modalities``."""
    plugin: str = ""
    """Name of the plugin that registered the spec; stamped by the registry."""
    distribution: str = ""
    """Distribution (``pip`` package) that ships the plugin; stamped by the registry."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"{self.kind} spec needs a non-empty string name, got {self.name!r}")
        if not callable(self.factory):
            raise TypeError(f"{self.kind} '{self.name}': factory must be callable")
        object.__setattr__(self, "params", _freeze(self._derived_params()))
        object.__setattr__(self, "provides", frozenset(self.provides))
        object.__setattr__(self, "requires", frozenset(self.requires))
        object.__setattr__(self, "modalities", frozenset(self.modalities))
        if not self.modalities or not all(isinstance(m, str) and m for m in self.modalities):
            raise ValueError(f"{self.kind} '{self.name}': modalities must be non-empty names")

    def _derived_params(self) -> dict[str, Any]:
        from benchmark import params as params_module

        found = params_module.signature_params(self.factory, self.kind)
        if self.params is None:
            return {name: default for name, (default, _) in found.items()}
        if not params_module.accepts_any_keyword(self.factory):
            unknown = sorted(set(self.params) - set(found))
            if unknown:
                raise ValueError(
                    f"{self.kind} '{self.name}': params name {unknown[0]!r}, which the factory "
                    f"does not accept (it takes: {', '.join(found) or 'no parameters'}); leave "
                    "params out to read them from the factory's signature"
                )
        return dict(self.params)

    def param_types(self) -> dict[str, Any]:
        """``name -> annotation`` of every suite parameter, for plan-time checks."""
        from benchmark import params as params_module

        found = params_module.signature_params(self.factory, self.kind)
        return {name: annotation for name, (_, annotation) in found.items()}


@dataclass(frozen=True)
class DatasetSpec(ComponentSpec):
    """A dataset. Typical tags provided: ``images``, ``groups``, ``object_mask``, ``bam``."""

    kind: ClassVar[str] = "dataset"


@dataclass(frozen=True)
class ModelSpec(ComponentSpec):
    """A model architecture. Typical tags provided: ``differentiable``, ``conv``."""

    kind: ClassVar[str] = "model"
    target_layer: str = ""
    """Name (``model.get_submodule`` path) of the last conv layer, for CAM explainers."""


@dataclass(frozen=True)
class DebiaserSpec(ComponentSpec):
    """A training procedure; ``none`` is plain ERM. Supervised ones require ``groups``."""

    kind: ClassVar[str] = "debiaser"
    prepare: Callable[..., Any] | None = None
    """Optional ``prepare(model, num_classes, **params) -> nn.Module``: the architecture the
    debiaser trains when it is not the bare model (extra heads, a bias branch). The runner calls
    it both before training and before loading cached weights, so the weights always fit."""
    training: Any = None
    """Optional ``benchmark.kit.training.TrainingParams``: the shared training parameters
    (optimiser, lr, epochs, ...) with this debiaser's defaults. The factory takes them as
    ``**training`` and passes them on to ``benchmark.kit.training.train_loop``, so a debiaser
    states them once; they join ``params`` and are checked like its own."""

    def _derived_params(self) -> dict[str, Any]:
        own = super()._derived_params()
        if self.training is None:
            return own
        from dataclasses import asdict

        # explicit params (a ``dataclasses.replace`` of a registered spec) keep their values
        training = asdict(self.training)
        return {**own, **{name: v for name, v in training.items() if name not in own}}

    def param_types(self) -> dict[str, Any]:
        types = super().param_types()
        if self.training is not None:
            import typing

            types |= typing.get_type_hints(type(self.training), include_extras=True)
        return types


ExplainerOutput = Literal["attribution", "counterfactual"]
EXPLAINER_TAGS: dict[str, str] = {"attribution": "explainer", "counterfactual": "counterfactual"}
"""The tag each kind of explainer provides implicitly, and that evaluators require."""
ANY_OTHER_CLASS = -1
"""A counterfactual target meaning: any class but the one the model predicts for the image."""


@dataclass(frozen=True)
class ExplainerSpec(ComponentSpec):
    """An explanation method. An attribution method (the default) provides ``explainer``
    implicitly, a counterfactual one ``counterfactual`` (see ``all_provides``): an evaluator
    requiring one is only paired with explainers of that output, so attribution evaluators
    never receive images and the counterfactual evaluator never receives maps."""

    kind: ClassVar[str] = "explainer"
    output: ExplainerOutput = "attribution"
    """``attribution``: one relevance map per image. ``counterfactual``: per image, a changed
    image the model assigns to ``target[i]`` (any other class for ``ANY_OTHER_CLASS``), or an
    all-NaN image where the method found none (not finding one is a result, not an error)."""
    uses_target_layer: bool = False
    """When true the runner passes ``target_layer=<ModelSpec.target_layer>`` (a
    ``model.get_submodule`` path) to the factory, so CAM-style methods hook the layer the model
    author chose instead of guessing. Such explainers should also require ``conv``."""
    batch_independent: bool = True
    """Whether an image's map is the same whatever else is in its batch (and where). The
    contract expects it; an explainer that draws one noise stream per batch (captum's
    ``NoiseTunnel``) must say ``False``, so ``benchmark.testing.check_explainer`` checks only
    that it is deterministic for a given batch, and a reader knows its maps depend on it."""

    uses_training_data: bool = False
    """When true the runner also passes ``data=<the job's training split>`` (on the job's
    device) and ``cache_dir=<artifact cache directory>``: for methods that search the training
    images (nearest neighbours, class prototypes) or fit a helper model to them (an
    autoencoder), cached by content there."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output not in EXPLAINER_TAGS:
            raise ValueError(
                f"explainer '{self.name}': output must be one of {sorted(EXPLAINER_TAGS)}, "
                f"got {self.output!r}"
            )


@dataclass(frozen=True)
class EvaluatorSpec(ComponentSpec):
    """Something that turns a trained model (and maybe an explainer) into numbers."""

    kind: ClassVar[str] = "evaluator"
    directions: Mapping[str, Direction] = field(default_factory=dict)
    """``metric -> "higher" | "lower" | "neither"``: which way is better, for ranking and table
    headers (``neither``: a count shown beside a score, not ranked)."""
    figures: Callable[[Any], dict[str, Any]] | None = None
    """Optional ``figures(results) -> {file stem: matplotlib Figure}``, drawn when a leaderboard
    is written. ``results`` is a pandas DataFrame with one row per successful job of this
    evaluator: the component labels (``dataset``, ``model``, ``debiaser``, ``explainer``,
    ``evaluator``), ``seed`` and ``arrays`` (the job's stored arrays). Figures are thus
    regenerated from stored records only, like the tables, and can compare every row of the
    leaderboard in one plot (ROAR curves of all explainers against the random baseline)."""
    retrains: Callable[[Mapping[str, Any]], int] | None = None
    """Optional ``retrains(params) -> int``: how many models one job of this evaluator trains
    through ``context.train`` (ROAR: thresholds x retrain seeds). ``bench plan`` shows it, so
    a suite's real cost is visible before it runs. A module-level function: specs travel."""

    glossary: Mapping[str, str] = field(default_factory=dict)
    """Optional ``metric -> one sentence``: what the metric measures, for the published
    glossary (a metric without an entry is described by the evaluator's ``description``)."""
    reference: str = ""
    """The paper the evaluator implements (authors, year, title or venue), for the glossary."""
    metrics: Callable[[Mapping[str, Any]], list[str]] | None = None
    """Optional ``metrics(params) -> names``: the metrics one job with these params returns,
    for an evaluator whose ``directions`` is a catalogue (``quantus``: one metric per job).
    Default: every metric in ``directions``. The suite's leaderboard section is checked against
    it, and it decides which names two evaluators share (shown as ``label.metric``)."""
    model_set: bool = False
    """A model-set evaluator: one job receives a set of trained models (``context.members``)
    instead of one, planned once per set after the models it needs. Its factory takes two
    suite parameters the core reads as well: ``across`` (``seeds``, ``models``, ``debiasers``
    or ``models+debiasers``: what the set's members may differ in) and ``rashomon_eps`` (the
    set keeps the members whose validation accuracy is within it of the best; ``None`` keeps
    all)."""

    def returns(self, params: Mapping[str, Any]) -> list[str]:
        """The metric names a job with ``params`` returns (see ``metrics``)."""
        return list(self.metrics(params)) if self.metrics is not None else list(self.directions)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.directions:
            raise ValueError(
                f"evaluator '{self.name}': declare every metric it returns in directions "
                "({metric: 'higher' | 'lower'}); without them no leaderboard can rank it"
            )
        bad = {m: d for m, d in self.directions.items() if d not in DIRECTIONS}
        if bad:
            raise ValueError(
                f"evaluator '{self.name}': directions must be higher/lower/neither: {bad}"
            )
        object.__setattr__(self, "directions", _freeze(self.directions))
        object.__setattr__(self, "glossary", _freeze(self.glossary))


@dataclass(frozen=True)
class SuiteSpec:
    """A built-in suite: YAML text a plugin ships (usually read with importlib.resources)."""

    kind: ClassVar[str] = "suite"
    name: str
    yaml_text: str
    source: str = ""
    """Where the text came from, for error messages (a path or ``package:resource``)."""
    description: str = ""
    plugin: str = ""
    distribution: str = ""


@dataclass(frozen=True)
class ExecutorSpec:
    """A way to run jobs (``serial``, ``process``, ``ray``, or a third party's Slurm).

    ``factory(settings: ExecutorSettings, registry: Registry) -> Executor`` (both in
    ``benchmark.executors``);
    see ``benchmark/executors/base.py`` for what an executor must guarantee.
    """

    kind: ClassVar[str] = "executor"
    name: str
    factory: Callable[..., Any]
    description: str = ""
    isolated: bool = True
    """Whether jobs run outside the coordinator's process, so a time limit and a dying job
    become failed rows. Only an isolated executor may be the default."""
    plugin: str = ""
    distribution: str = ""


def all_provides(spec: ComponentSpec) -> frozenset[str]:
    """Tags a spec provides, plus the implicit one for explainers (so evaluators can ask)."""
    if isinstance(spec, ExplainerSpec):
        return spec.provides | {EXPLAINER_TAGS[spec.output]}
    return spec.provides


# --------------------------------------------------------------------------------------------
# What flows between stages at run time.


@dataclass(frozen=True)
class Split:
    """One split of a dataset: images in [0, 1], labels, and optional per-sample metadata."""

    x: torch.Tensor
    """``float32 (N, C, H, W)`` in [0, 1]."""
    y: torch.Tensor
    """``int64 (N,)`` class indices."""
    groups: torch.Tensor | None = None
    """``int64 (N,)`` bias / sensitive attribute per sample, if the dataset provides ``groups``."""
    extras: Mapping[str, Any] = field(default_factory=dict)
    """Further per-sample metadata by capability (``object_mask``, ``bam`` labels, ...)."""

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: fixed train / test splits plus what models need to adapt to it."""

    train: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()
    """The tokens of a dataset that provides ``text``: row ``i`` of ``Split.extras["text"]``
    holds indices into it, ``0`` being the padding token (``benchmark.modalities``)."""
    validation: Split | None = None
    """Training images held out of ``train`` for model selection (the Rashomon filter of
    model-set jobs): set by the core when the suite gives the dataset ``validation: N``,
    never part of the test split."""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image: what a model factory needs to adapt its layers."""
        c, h, w = self.train.x.shape[1:]
        return (int(c), int(h), int(w))


@dataclass
class Evaluation:
    """What an evaluator returns: scalar metrics, plus optional arrays.

    ``metrics`` must be finite floats: a NaN or inf fails the job rather than reaching a
    leaderboard. ``arrays`` (confusion matrices, per-class values, curves) are stored as JSON
    beside the metrics. Figures are not returned per job: they are drawn from the stored arrays
    of all jobs when a leaderboard is written (``EvaluatorSpec.figures``), so a published figure
    never shows something the store does not hold.
    """

    metrics: dict[str, float]
    arrays: dict[str, Any] = field(default_factory=dict)
    per_image: dict[str, Any] = field(default_factory=dict)
    """``name -> array`` whose first axis is the evaluated image (a per-image score, or a
    per-image curve ``(N, T)``). Too large for the results store, they are kept in the artifact
    cache (``benchmark.api`` reads them back); the store keeps each one's spread over images, so
    a leaderboard can tell a metric that measures the model from one that measures the image."""

    def check(self) -> None:
        """Raise ``ValueError`` naming the first metric that is not a finite number."""
        if not self.metrics:
            raise ValueError("evaluator returned no metrics")
        for name, value in self.metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"metric '{name}' is {type(value).__name__}, not a number")
            if not math.isfinite(value):
                raise ValueError(f"metric '{name}' is not finite ({value})")


@dataclass(frozen=True)
class EvaluationContext:
    """Everything an evaluator may use for one job.

    ``train`` retrains the job's model with its debiaser on other data (ROAR/KAR, data
    randomisation) through the same content-addressed cache as the main training, so a rerun
    retrains nothing. ``explain`` is ``None`` unless the evaluator requires ``explainer``.
    """

    dataset: Dataset
    model: torch.nn.Module
    model_spec: ModelSpec
    seed: int
    train: Callable[..., torch.nn.Module]
    """``train(split, *, seed) -> trained model`` for the job's model + debiaser."""
    explain: Callable[..., torch.Tensor] | None = None
    """``explain(model, x, target) -> attributions``, validated, for the job's explainer."""
    explainer_spec: ExplainerSpec | None = None
    cache_dir: str = ""
    """A directory evaluators may use for their own content-addressed artifacts."""
    device: Any = "cpu"
    """The job's ``torch.device``: ``model`` and the dataset's tensors are already on it; put
    anything you create there too, and bring numbers back with ``.cpu()``."""
    members: tuple[SetMember, ...] = ()
    """A model-set job's models, those of its Rashomon set (``model`` is the one with the best
    validation accuracy, ``members[0]``); empty for every other job."""


@dataclass(frozen=True)
class Counterfactuals:
    """What ``context.explain`` returns for a counterfactual explainer: the contract-checked
    images, which of them the method found, and how long it took to make them."""

    images: torch.Tensor
    """``float32 (N, C, H, W)`` in [0, 1]; where none was found, the input image itself (so
    arithmetic on the batch stays finite: mask with ``found``)."""
    found: torch.Tensor
    """``bool (N,)``: whether the method returned a counterfactual for the image (whether the
    model accepts it is the evaluator's to check)."""
    seconds: float
    """Wall-clock seconds of the explainer call that computed the batch, on the job's device,
    recorded when it was computed (a cached batch reports the original time)."""


@dataclass(frozen=True)
class SetMember:
    """One trained model of a model-set job, with what tells it apart from the others."""

    label: str
    """``model / debiaser / seed N``: how figures and arrays name it."""
    model: torch.nn.Module
    model_spec: ModelSpec
    seed: int
    validation_accuracy: float
    explain: Callable[..., torch.Tensor] | None = None
    """The job's explainer for this member's architecture (its own target layer)."""
