"""YAML suite -> validated ``Suite`` whose components are resolved against the registry.

A suite file looks like::

    name: smoke
    version: 1
    datasets: [mnist, digits]            # by name ...
    models: ["tag:differentiable"]       # ... or every component providing a tag
    debiasers:
      - name: none
        params: {epochs: 10}             # overrides the spec's defaults (and only those)
    evaluators: [classification]
    seeds: [0, 1, 2]
    leaderboard: {metric: accuracy}

Validation happens in two steps: pydantic (``extra="forbid"``) checks the shape, then
``resolve`` checks names, tags and parameter names against the registry. Both raise one
``BenchInputError`` naming the file, the line (read from the YAML node marks, which pydantic
does not know) and the field, with a did-you-mean suggestion where one exists.

Beside it: ``suite_errors`` (lines, fields, pydantic's errors as messages), ``suite_parameters``
(``parameters:`` and ``${name}`` references), ``suite_metrics`` (the metric columns and the
``leaderboard`` section's check) and ``exclusions`` (the ``exclude`` rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark import yaml_input
from benchmark.errors import BenchInputError
from benchmark.exclusions import check_exclusions
from benchmark.kinds import SUITE_FIELDS as COMPONENT_FIELDS
from benchmark.params import MAX_SEED, check_params
from benchmark.records import digest, identity
from benchmark.registry import Registry, suggest
from benchmark.specs import ComponentSpec
from benchmark.suite_errors import dotted as _dotted
from benchmark.suite_errors import explain_validation
from benchmark.suite_errors import line_of as _line_of
from benchmark.suite_metrics import check_leaderboard
from benchmark.suite_metrics import declared_metrics as declared_metrics  # re-exported
from benchmark.suite_metrics import shared_metrics as shared_metrics  # re-exported
from benchmark.suite_parameters import Binding, Dropped, Parameters

SUITE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A suite's name becomes a folder under ``leaderboards/``: a slug, never a path (``..``,
``a/b``, an absolute path, a NUL byte) and at most 64 characters."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ComponentRef(_Strict):
    """One entry of a component list: a name or a ``tag:`` selector, with parameters."""

    name: str | None = None
    """A registered component name."""
    tag: str | None = None
    """Select every registered component that provides this tag."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the component's default parameters."""
    label: str | None = None
    """Display name, to tell apart two entries of one component with different params."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Time limit in seconds for jobs with this component (the longest of a job's
    components wins; ``bench run --job-timeout`` overrides)."""
    validation: int | None = Field(default=None, gt=0)
    """Datasets only: hold this many training images out of training (stratified by label,
    the same images for every seed) as a validation split, on which model-set evaluators
    choose their Rashomon set; the test split is never used for it."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"tag": value[4:].strip()} if value.startswith("tag:") else {"name": value}
        return value

    @model_validator(mode="after")
    def _one_selector(self) -> ComponentRef:
        if (self.name is None) == (self.tag is None):
            raise ValueError("give exactly one of 'name' or 'tag'")
        if self.tag is not None and self.label is not None:
            raise ValueError("'label' names one component; it cannot go with a 'tag' selector")
        return self


class LeaderboardDef(_Strict):
    """How the leaderboard ranks rows."""

    metric: str
    """Primary metric that ranks rows (a metric name an evaluator returns)."""
    direction: Literal["higher", "lower"] | None = None
    """Which way is better for ``metric``; default: what the evaluator declares for it. A
    ``metric_by_dataset`` metric always takes its evaluator's direction."""
    metric_by_dataset: dict[str, str] = Field(default_factory=dict)
    """Per-dataset primary metric, where one metric does not fit every dataset."""
    columns: list[str] = Field(default_factory=list)
    """Metrics to show, in order; default: every scalar metric of the suite's evaluators."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Column header per metric, where the name alone would hide how the value was computed
    (``degree_of_bias: "degree_of_bias (std, ddof=0)"``); the metric name stays the key."""


class SuiteModel(_Strict):
    """The schema of a suite file."""

    name: str = Field(pattern=SUITE_NAME)
    """A slug: letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit."""
    version: str = "1"
    """The suite's own version, stored with each run (a number is read as text)."""
    description: str = ""
    """What the suite asks; shown at the top of its leaderboard."""
    parameters: Parameters = Field(default_factory=dict)
    """Values the user may give at run time with ``-p name=value`` (names: lower-case letters,
    digits, ``_``), each ``name: default`` or ``name: {default: ..., description: ...}``. A
    string in a component's params that is exactly ``${name}`` becomes the value; an entry
    that uses a parameter whose value is null is left out (``benchmark.suite_parameters``)."""
    datasets: list[ComponentRef] = Field(min_length=1)
    """Datasets, by name or ``tag:``; every other list is combined with each."""
    models: list[ComponentRef] = Field(min_length=1)
    """Model architectures (untrained; each debiaser trains each)."""
    debiasers: list[ComponentRef] = Field(min_length=1)
    """Training procedures; ``none`` is plain ERM."""
    explainers: list[ComponentRef] = Field(default_factory=list)
    """Attribution methods; needed when an evaluator requires ``explainer``."""
    evaluators: list[ComponentRef] = Field(min_length=1)
    """What turns each trained model (and explainer) into metrics."""
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(min_length=1)
    """Training seeds, 0 to 2**63 - 1 (what torch, numpy and the store's integers all hold)."""
    leaderboard: LeaderboardDef
    """How rows are ranked and which columns are shown (required)."""
    job_timeout_s: float | None = Field(default=None, gt=0)
    """Default time limit of each job in seconds, training included (default 2 h)."""
    exclude: list[dict[Literal["dataset", "model", "debiaser", "explainer", "evaluator"], str]] = (
        Field(default_factory=list)
    )
    """Combinations not to plan: each entry maps kinds to labels of this suite
    (``{dataset: block-mnist, model: madry-cnn}``); a combination matching every label of an
    entry is skipped, and ``bench plan`` says which entry skipped it."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be unique")
        return seeds


@dataclass(frozen=True)
class Component:
    """A spec with its effective parameters: one concrete choice the planner combines."""

    spec: ComponentSpec
    params: dict[str, Any]
    label: str
    timeout_s: float | None = None
    validation: int = 0
    """Training images a dataset holds out as its validation split (0: none)."""

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.name

    def identity(self) -> dict[str, Any]:
        """What makes this component's output what it is: the content of every cache key."""
        return identity(self.spec.name, self.spec.version, self.params, self.validation)


@dataclass(frozen=True)
class Suite:
    """A validated suite with components resolved against a registry."""

    model: SuiteModel
    source: str
    components: dict[str, list[Component]]
    """Per kind (``dataset``, ``model``, ...), in the order the file lists them."""
    ref: str = ""
    """How the user named the suite (built-in name or path): what reproduces it, with
    ``parameters``."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """Every declared parameter's value, as used (given with ``-p``, else the default)."""
    dropped: tuple[Dropped, ...] = ()
    """Component entries left out because a parameter they use has no value, with why."""

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def seeds(self) -> list[int]:
        return self.model.seeds

    def config_hash(self) -> str:
        """Hash of everything that determines the suite's results (for the runs table)."""
        payload = {kind: [c.identity() for c in comps] for kind, comps in self.components.items()}
        payload["seeds"] = self.model.seeds
        if self.parameters:  # a suite without parameters keeps the hash it always had
            payload["parameters"] = self.parameters
        return digest(payload)


# ----------------------------------------------------------------------------------------------
# Loading


def load(ref: str, registry: Registry, *, parameters: Mapping[str, Any] | None = None) -> Suite:
    """A suite by built-in name or by path to a YAML file, validated and resolved with the
    values of its ``parameters`` given here (``benchmark.suite_parameters.from_command_line``)."""
    path = Path(ref)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise BenchInputError("suite file not found", where=str(path))
        text = yaml_input.read_text(path)
        return replace(parse(text, str(path), registry, parameters=parameters), ref=ref)
    names = registry.names("suite")
    if ref not in names:
        raise BenchInputError(
            f"unknown suite '{ref}'"
            + suggest(ref, names)
            + "; pass a built-in suite name or a path to a .yaml file"
        )
    spec = registry.get("suite", ref)
    source = spec.source or f"suite '{ref}' of plugin '{spec.plugin}'"
    return replace(parse(spec.yaml_text, source, registry, parameters=parameters), ref=ref)


def parse(
    text: str, source: str, registry: Registry, *, parameters: Mapping[str, Any] | None = None
) -> Suite:
    """Validate YAML text; ``source`` names it in error messages."""
    node, data = yaml_input.load(text, source)
    if not isinstance(data, dict):
        raise BenchInputError("a suite must be a YAML mapping (name, datasets, ...)", where=source)
    try:
        model = SuiteModel.model_validate(data)
    except ValidationError as exc:
        raise explain_validation(exc, node, source, SuiteModel) from None
    return resolve(model, node, source, registry, parameters)


class ParamError(ValueError):
    """A suite parameter the component does not have, or a value its annotation refuses."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def checked_params(spec: ComponentSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The spec's defaults updated by ``overrides``, checked: the component has each overridden
    parameter, and every value, defaults included, fits the factory's annotation (type and
    range). Defaults are checked too so a parameter the user must give (a dataset's ``root``,
    ``None`` by default) is refused at plan time; each check sees all the values (a ``csv``
    relative to the ``root``)."""
    for name in overrides:
        if name not in spec.params:
            raise ParamError(
                name,
                f"{spec.kind} '{spec.name}' has no parameter '{name}'" + suggest(name, spec.params),
            )
    params = {**spec.params, **overrides}
    wrong = check_params(spec.param_types(), params)
    if wrong:
        name, message = wrong
        raise ParamError(name, f"parameter '{name}' of {spec.kind} '{spec.name}': {message}")
    return params


def resolve(
    model: SuiteModel,
    node: yaml.Node,
    source: str,
    registry: Registry,
    parameters: Mapping[str, Any] | None = None,
) -> Suite:
    """Check names, tags and parameters against the registry; expand ``tag:`` selectors;
    put the suite parameters' values in (``benchmark.suite_parameters``)."""
    binding = Binding(model.parameters, parameters or {}, source, lambda loc: _line_of(node, loc))
    components: dict[str, list[Component]] = {}
    for field_name, kind in COMPONENT_FIELDS.items():
        resolved: list[Component] = []
        for index, ref in enumerate(getattr(model, field_name)):
            where_loc = [field_name, index]
            line = _line_of(node, where_loc)
            if ref.validation is not None and kind != "dataset":
                raise BenchInputError(
                    f"field '{_dotted([*where_loc, 'validation'])}': only a dataset holds out "
                    "a validation split",
                    where=source,
                    line=_line_of(node, [*where_loc, "validation"]),
                )
            if ref.name is not None:
                try:
                    specs = [registry.get(kind, ref.name)]
                except BenchInputError as exc:
                    raise BenchInputError(
                        f"field '{_dotted(where_loc)}': {exc.message}", where=source, line=line
                    ) from None
            else:
                specs = [s for s in registry.specs(kind) if ref.tag in s.provides]
                if not specs:
                    tags = {t for s in registry.specs(kind) for t in s.provides}
                    raise BenchInputError(
                        f"field '{_dotted(where_loc)}': no {kind} provides tag '{ref.tag}'"
                        + suggest(ref.tag or "", tags),
                        where=source,
                        line=line,
                    )
            ref = binding.entry(kind, ref, where_loc, [ref.label or s.name for s in specs])
            if ref is None:
                continue
            for spec in specs:
                try:
                    params = checked_params(spec, ref.params)
                except ParamError as exc:
                    raise BenchInputError(
                        f"field '{_dotted([*where_loc, 'params', exc.name])}': {exc.message}",
                        where=source,
                        line=_line_of(node, [*where_loc, "params", exc.name]),
                    ) from None
                resolved.append(
                    Component(
                        spec,
                        params,
                        ref.label or spec.name,
                        timeout_s=ref.timeout_s,
                        validation=ref.validation or 0,
                    )
                )
        labels = [c.label for c in resolved]
        duplicates = sorted({lbl for lbl in labels if labels.count(lbl) > 1})
        if duplicates:
            raise BenchInputError(
                f"field '{field_name}': '{duplicates[0]}' appears twice; give each entry a "
                "distinct 'label' to compare parameter settings",
                where=source,
                line=_line_of(node, [field_name]),
            )
        binding.check_left(field_name, kind, resolved, SuiteModel.model_fields[field_name])
        components[kind] = resolved
    suite = Suite(model, source, components, source, binding.values, tuple(binding.dropped))
    check_exclusions(model.exclude, binding.labels(components), source, binding.line_of)
    check_leaderboard(suite, node)
    return suite
