"""Reading a user's YAML without surprises: bytes that are not UTF-8, a duplicated key, nesting
deep enough to exhaust Python's stack, and an alias bomb are each a clear ``BenchInputError``
(exit 2) naming the file and line, never a traceback or a hang.

PyYAML already refuses arbitrary objects (``safe_load``) but happily keeps the last of two equal
keys, recurses once per nesting level, and builds a "billion laughs" document (nine aliases of
nine aliases ...) as shared references: cheap to load, then exponential for anything that walks
it (pydantic, the JSON of a cache key). So the composed node graph is measured first: its depth
and the number of values it stands for once every alias is expanded.
"""

from __future__ import annotations

from typing import Any

import yaml

from benchmark.errors import BenchInputError

MAX_DEPTH = 32
"""Nesting levels a suite may use; real suites use five."""
MAX_VALUES = 100_000
"""Values (scalars, lists, mappings) a suite may stand for with its aliases expanded."""


def read_text(path: Any) -> str:
    """A file's text as UTF-8, or an error saying where the first bad byte is."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BenchInputError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be "
            "decoded (save the file as UTF-8)",
            where=str(path),
            line=line,
        ) from None


def load(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """``(node, data)``: the composed node (for line numbers) and the plain data."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise BenchInputError(f"YAML syntax error: {problem}", where=source, line=line) from None
    except RecursionError:
        raise BenchInputError(
            f"the YAML is nested too deeply (more than {MAX_DEPTH} levels are refused)",
            where=source,
        ) from None
    if node is None:
        return None, None
    _measure(node, source)
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return node, data


def _measure(root: yaml.Node, source: str) -> None:
    """Refuse too deep a nesting, a recursive alias, an alias bomb and duplicated keys."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int, path: frozenset[int]) -> int:
        if depth > MAX_DEPTH:
            raise BenchInputError(
                f"the YAML is nested more than {MAX_DEPTH} levels deep",
                where=source,
                line=node.start_mark.line + 1,
            )
        if id(node) in path:
            raise BenchInputError(
                "a YAML alias refers to a value that contains it (a recursive structure)",
                where=source,
                line=node.start_mark.line + 1,
            )
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        inner = path | {id(node)}
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, source)
            for key, value in node.value:
                total += size(key, depth + 1, inner) + size(value, depth + 1, inner)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item, depth + 1, inner)
        if total > MAX_VALUES:
            raise BenchInputError(
                f"the YAML stands for more than {MAX_VALUES:,} values once its aliases are "
                "expanded (an alias bomb?); write the values out or use fewer aliases",
                where=source,
                line=node.start_mark.line + 1,
            )
        sizes[id(node)] = total
        return total

    size(root, 0, frozenset())


def _no_duplicate_keys(node: yaml.MappingNode, source: str) -> None:
    seen: dict[Any, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        line = key.start_mark.line + 1
        if key.value in seen:
            raise BenchInputError(
                f"key '{key.value}' appears twice in one mapping (first on line "
                f"{seen[key.value]}); YAML would silently keep only the last one",
                where=source,
                line=line,
            )
        seen[key.value] = line
