"""The suite schema as Markdown, generated from the pydantic models that validate suites, so the
plugin author's guide (``docs/plugins.md``) cannot drift from what ``bench plan`` accepts.

``python -m benchmark.schema`` rewrites the block between the ``schema:start`` / ``schema:end``
markers of ``docs/plugins.md``; ``tests/test_docs.py`` fails when the block is stale.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from benchmark.suite import ComponentRef, LeaderboardDef, SuiteModel

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
_BLOCK = re.compile(r"(<!-- schema:start -->\n)(.*?)(<!-- schema:end -->)", re.DOTALL)


def _type_name(annotation: object) -> str:
    """``list[ComponentRef]``, ``float or None``, ``'higher' or 'lower'``: types as a reader
    of a YAML file thinks of them."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", repr(annotation))


def _constraints(field: typing.Any) -> str:
    parts = []
    for item in field.metadata:
        for name, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(item, name, None) is not None:
                parts.append(f"{symbol} {getattr(item, name)}")
        if getattr(item, "min_length", None):
            parts.append(f"at least {item.min_length} item(s)")
        if getattr(item, "pattern", None):
            parts.append(f"matches `{item.pattern}`")
    return "; ".join(parts)


def table(model: type[BaseModel]) -> str:
    """One Markdown table: field, type, required or default, constraints, meaning."""
    rows = ["| field | type | default | constraints | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if field.is_required():
            default = "**required**"
        elif field.default_factory is not None:
            default = f"`{field.default_factory()!r}`"
        elif field.default is PydanticUndefined:
            default = ""
        else:
            default = f"`{field.default!r}`"
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        kind = _type_name(field.annotation).replace("|", "\\|")
        rows.append(f"| `{name}` | `{kind}` | {default} | {_constraints(field)} | {meaning} |")
    return "\n".join(rows)


def markdown() -> str:
    """The schema section: the suite file, then each kind of entry it contains."""
    return (
        "**Suite file** (unknown fields are errors, with a did-you-mean)\n\n"
        f"{table(SuiteModel)}\n\n"
        "**Component entry** (each item of `datasets`, `models`, `debiasers`, `explainers`, "
        '`evaluators`; a plain string is a `name`, `"tag:x"` a `tag`)\n\n'
        f"{table(ComponentRef)}\n\n"
        "**`leaderboard`**\n\n"
        f"{table(LeaderboardDef)}\n"
    )


def rewrite(doc: Path = DOC) -> bool:
    """Put the current schema into ``doc``; whether it changed."""
    text = doc.read_text(encoding="utf-8")
    new = _BLOCK.sub(lambda m: m.group(1) + markdown() + m.group(3), text)
    if new != text:
        doc.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    changed = rewrite(Path(sys.argv[1]) if len(sys.argv) > 1 else DOC)
    print(f"{DOC}: {'rewritten' if changed else 'up to date'}")
