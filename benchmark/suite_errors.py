"""Where in a suite file a problem is: the line and dotted field of a location, and pydantic's
validation errors turned into one ``BenchInputError`` that names them.

pydantic reports a location as a path (``("debiasers", 0, "params", "epoch")``) but knows
nothing of the YAML it came from, so the line is read from the composed YAML nodes
(``benchmark.yaml_input.load`` returns them). Every check of a suite file (the schema in
``benchmark.suite``, ``exclude`` rules, parameters) names its field and line through these
helpers, so every message reads the same: ``suite.yaml:4: field 'debiasers[0].params.epoch':
... (did you mean 'epochs'?)``.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from benchmark.errors import BenchInputError
from benchmark.registry import suggest


def dotted(loc: list[Any]) -> str:
    """``["datasets", 1, "params", "root"]`` as a reader writes it: ``datasets[1].params.root``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
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


def explain_validation(
    exc: ValidationError, node: yaml.Node | None, source: str, root: type[BaseModel]
) -> BenchInputError:
    """The first of pydantic's errors (``root`` is the model validated) as one message."""
    # A typo'd field also makes the real one "missing": report the typo, which explains both.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    loc = [part for part in error["loc"] if not _is_union_tag(part)]
    field = dotted(loc)
    if error["type"] == "extra_forbidden":
        parent_model = _model_at(root, loc[:-1])
        message = f"unknown field '{field}'" + suggest(str(loc[-1]), parent_model.model_fields)
    elif error["type"] == "missing":
        message = f"missing required field '{field}'"
    else:
        message = f"field '{field}': {error['msg']}"
        if "input" in error and not isinstance(error["input"], dict | list):
            got = repr(error["input"])
            message += f" (got {got if len(got) <= 80 else got[:60] + '...'})"
    more = len(errors) - 1
    if more:
        message += f" [and {more} more problem{'s' if more > 1 else ''}]"
    return BenchInputError(message, where=source, line=line_of(node, loc))


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part.startswith("function-")


def _model_at(root: type[BaseModel], loc: list[Any]) -> type[BaseModel]:
    """The pydantic model a location points into, to list its fields in a suggestion; list
    indices and mapping keys (``parameters.<name>``) are stepped over."""
    model = root
    for part in loc:
        if isinstance(part, int) or part not in model.model_fields:
            continue
        annotation = model.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return model
