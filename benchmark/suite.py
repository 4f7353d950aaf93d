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
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark.errors import BenchInputError
from benchmark.kinds import SUITE_FIELDS as COMPONENT_FIELDS
from benchmark.records import digest
from benchmark.registry import Registry, suggest
from benchmark.specs import ComponentSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    name: str
    version: str = "1"
    description: str = ""
    datasets: list[ComponentRef] = Field(min_length=1)
    models: list[ComponentRef] = Field(min_length=1)
    debiasers: list[ComponentRef] = Field(min_length=1)
    explainers: list[ComponentRef] = Field(default_factory=list)
    evaluators: list[ComponentRef] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    leaderboard: LeaderboardDef
    job_timeout_s: float | None = Field(default=None, gt=0)
    """Default time limit of each job in seconds, training included (default 2 h)."""

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

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.name

    def identity(self) -> dict[str, Any]:
        """What makes this component's output what it is: the content of every cache key."""
        return {
            "name": self.spec.name,
            "version": self.spec.version,
            "params": self.params,
        }


@dataclass(frozen=True)
class Suite:
    """A validated suite with components resolved against a registry."""

    model: SuiteModel
    source: str
    components: dict[str, list[Component]]
    """Per kind (``dataset``, ``model``, ...), in the order the file lists them."""
    ref: str = ""
    """How the user named the suite (built-in name or path): what reproduces it."""

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
        return digest(payload)


# ----------------------------------------------------------------------------------------------
# Loading


def load(ref: str, registry: Registry) -> Suite:
    """A suite by built-in name or by path to a YAML file, validated and resolved."""
    path = Path(ref)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise BenchInputError("suite file not found", where=str(path))
        return replace(parse(path.read_text(encoding="utf-8"), str(path), registry), ref=ref)
    names = registry.names("suite")
    if ref not in names:
        raise BenchInputError(
            f"unknown suite '{ref}'"
            + suggest(ref, names)
            + "; pass a built-in suite name or a path to a .yaml file"
        )
    spec = registry.get("suite", ref)
    source = spec.source or f"suite '{ref}' of plugin '{spec.plugin}'"
    return replace(parse(spec.yaml_text, source, registry), ref=ref)


def parse(text: str, source: str, registry: Registry) -> Suite:
    """Validate YAML text; ``source`` names it in error messages."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise BenchInputError(f"YAML syntax error: {problem}", where=source, line=line) from None
    if not isinstance(data, dict):
        raise BenchInputError("a suite must be a YAML mapping (name, datasets, ...)", where=source)
    try:
        model = SuiteModel.model_validate(data)
    except ValidationError as exc:
        raise _explain_validation(exc, node, source) from None
    return resolve(model, node, source, registry)


def _explain_validation(exc: ValidationError, node: yaml.Node, source: str) -> BenchInputError:
    # A typo'd field also makes the real one "missing": report the typo, which explains both.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    loc = [part for part in error["loc"] if not _is_union_tag(part)]
    field = _dotted(loc)
    if error["type"] == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        message = f"unknown field '{field}'" + suggest(str(loc[-1]), parent_model.model_fields)
    elif error["type"] == "missing":
        message = f"missing required field '{field}'"
    else:
        message = f"field '{field}': {error['msg']}"
        if "input" in error and not isinstance(error["input"], dict | list):
            message += f" (got {error['input']!r})"
    more = len(errors) - 1
    if more:
        message += f" [and {more} more problem{'s' if more > 1 else ''}]"
    return BenchInputError(message, where=source, line=_line_of(node, loc))


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part.startswith("function-")


def _model_at(loc: list[Any]) -> type[BaseModel]:
    """The pydantic model a location points into, to list its fields in a suggestion."""
    model: type[BaseModel] = SuiteModel
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return model


def _dotted(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """1-based line of the deepest YAML node on the path ``loc`` (or of its parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == part), None)
            if match is None:
                break
            key, node = match
            line = key.start_mark.line + 1
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def resolve(model: SuiteModel, node: yaml.Node, source: str, registry: Registry) -> Suite:
    """Check names, tags and parameters against the registry; expand ``tag:`` selectors."""
    components: dict[str, list[Component]] = {}
    for field_name, kind in COMPONENT_FIELDS.items():
        resolved: list[Component] = []
        for index, ref in enumerate(getattr(model, field_name)):
            where_loc = [field_name, index]
            line = _line_of(node, where_loc)
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
            for spec in specs:
                unknown = sorted(set(ref.params) - set(spec.params))
                if unknown:
                    bad = unknown[0]
                    raise BenchInputError(
                        f"field '{_dotted([*where_loc, 'params', bad])}': {kind} '{spec.name}' "
                        f"has no parameter '{bad}'" + suggest(bad, spec.params),
                        where=source,
                        line=_line_of(node, [*where_loc, "params", bad]),
                    )
                params = {**spec.params, **ref.params}
                resolved.append(
                    Component(spec, params, ref.label or spec.name, timeout_s=ref.timeout_s)
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
        components[kind] = resolved
    return Suite(model=model, source=source, components=components, ref=source)
