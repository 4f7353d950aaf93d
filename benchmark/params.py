"""A component's suite parameters, read from its factory's signature, and checked at plan time.

A spec's ``params`` used to be a hand-written dict beside the factory; the two drifted (a default
changed in one place only) and nothing checked a suite's values until a job ran (``epochs:
"ten"`` passed ``bench plan`` and failed an hour later). Here the factory's signature is the one
source: every parameter with a default that is not one the runner passes itself (``model``,
``x``, ``seed``, ...) is a suite parameter, its default is the spec's default, and its annotation
is what a suite's value is checked against, with pydantic, before any job runs. Ranges are
declared in the annotation (``pydantic.PositiveInt``, ``Annotated[float, Field(ge=0, le=1)]``).

Values are checked as JSON in pydantic's strict mode: a suite's YAML values are JSON values, so
``"5"`` is not an int and ``true`` is not a number, while a YAML list fits a ``tuple[...]`` and an
int fits a ``float``. An annotation pydantic cannot check (``torch.Tensor``, a missing one) is not
checked: the factory still validates its own input at run time.

A check that needs the component's other parameters (a dataset's ``csv`` file relative to its
``root``) reads them from pydantic's validation context: a validator taking ``(value, info)``
finds ``info.context`` = every parameter's value (``None`` when checked on its own). Validators
run when a suite is loaded, so one may look at the user's files there (a dataset's ``root``) and
refuse a missing one at plan time, naming the file, before any job runs.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

RUNTIME_ARGUMENTS: dict[str, frozenset[str]] = {
    "dataset": frozenset(),
    "model": frozenset({"num_classes", "input_shape", "vocabulary_size"}),
    "debiaser": frozenset({"model", "data", "seed"}),
    "explainer": frozenset({"model", "x", "target", "target_layer", "data", "cache_dir"}),
    "evaluator": frozenset({"context"}),
}
"""What the runner passes each kind's factory itself: never a suite parameter."""

MAX_SEED = 2**63 - 1
"""Seeds are stored as SQLite integers (signed 64 bit)."""


def _unwrap(factory: Callable[..., Any]) -> tuple[Callable[..., Any], set[str]]:
    """The function behind ``functools.partial`` layers, and the keywords the partials bind
    (fixed by the plugin, so not suite parameters)."""
    bound: set[str] = set()
    while isinstance(factory, functools.partial):
        bound |= set(factory.keywords)
        factory = factory.func
    return factory, bound


def _annotation(function: Callable[..., Any], parameter: inspect.Parameter) -> Any:
    """The evaluated annotation of one parameter, or ``inspect.Parameter.empty`` when it cannot
    be evaluated (a name imported only under ``TYPE_CHECKING``)."""
    annotation = parameter.annotation
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, getattr(function, "__globals__", {}))
        except Exception:
            return inspect.Parameter.empty
    return annotation


def _yaml_like(value: Any) -> Any:
    """Tuples in a signature's defaults become lists, as a suite's YAML would write them."""
    if isinstance(value, tuple):
        return [_yaml_like(v) for v in value]
    return value


def signature_params(factory: Callable[..., Any], kind: str) -> dict[str, tuple[Any, Any]]:
    """``name -> (default, annotation)`` for every suite parameter of ``factory``."""
    function, bound = _unwrap(factory)
    skip = RUNTIME_ARGUMENTS.get(kind, frozenset()) | bound
    found: dict[str, tuple[Any, Any]] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in skip or parameter.default is inspect.Parameter.empty:
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        found[name] = (_yaml_like(parameter.default), _annotation(function, parameter))
    return found


def accepts_any_keyword(factory: Callable[..., Any]) -> bool:
    """Whether the factory takes ``**kwargs`` (so explicit spec params cannot be checked)."""
    function, _ = _unwrap(factory)
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        for p in inspect.signature(function).parameters.values()
    )


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(annotation)
    except Exception:  # pydantic has no schema for it (a tensor, a module): not checked here
        return None


def check_value(annotation: Any, value: Any, context: Mapping[str, Any] | None = None) -> str:
    """An error message when ``value`` does not fit ``annotation``, else ``""``.

    ``context`` (all of the component's parameter values) reaches validators as pydantic's
    validation context. Pydantic's own messages start lower-case here (they continue a
    sentence); a validator's ``ValueError`` text is kept as written, without pydantic's
    ``Value error,`` prefix, since it may quote paths, whose case matters."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return ""
    try:
        adapter = _adapter(annotation)
    except TypeError:  # an unhashable annotation object
        adapter = None
    if adapter is None:
        return ""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return f"{value!r} is not a plain YAML value (number, string, list, mapping)"
    try:
        adapter.validate_json(text, strict=True, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "value_error":
            message = str(first["ctx"]["error"]) if "error" in first.get("ctx", {}) else ""
            message = message or first["msg"].removeprefix("Value error, ")
        else:
            message = first["msg"][:1].lower() + first["msg"][1:]
        return message + (f" (at {where})" if where else "") + f", got {value!r}"
    return ""


def check_params(types: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first ``(parameter, message)`` whose value does not fit its annotation; each check
    sees all of ``values`` as its validation context."""
    context = dict(values)
    for name, value in values.items():
        message = check_value(types.get(name, inspect.Parameter.empty), value, context)
        if message:
            return name, message
    return None
