"""``-k EXPR``: pick jobs by their description, the way ``pytest -k`` picks tests.

An expression is words joined by ``and``, ``or``, ``not`` and parentheses; a word matches when
it occurs, case-insensitively, in the job's description (``mnist / seed-cnn / none /
classification / seed 0``). ``-k "colored and not resnet18"`` runs a part of a suite into the
same store. Written by hand because pytest's parser is private (``_pytest.mark.expression``)
and pytest is not a run-time dependency. The grammar is pytest's with one extension: adjacent
words form one phrase, so ``-k "seed 0"`` means the text "seed 0" (pytest would refuse it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from benchmark.errors import BenchInputError

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


def _tokens(expr: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:  # only trailing whitespace is left
            break
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent: ``or`` binds loosest, then ``and``, then ``not``."""

    def __init__(self, expr: str, text: str) -> None:
        self.expr = expr
        self.tokens = _tokens(expr)
        self.pos = 0
        self.text = text.lower()

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _error(self, what: str) -> BenchInputError:
        return BenchInputError(f"-k {self.expr!r}: {what}")

    def parse(self) -> bool:
        if not self.tokens:
            raise self._error("empty expression")
        value = self._or()
        if self._peek() is not None:
            raise self._error(f"unexpected {self._peek()!r}")
        return value

    def _binary(self, operator: str, operand: Callable[[], bool]) -> bool:
        """``operand (operator operand)*``; every operand is parsed, so errors are found."""
        value = operand()
        while self._peek() == operator:
            self.pos += 1
            right = operand()
            value = (value or right) if operator == "or" else (value and right)
        return value

    def _or(self) -> bool:
        return self._binary("or", self._and)

    def _and(self) -> bool:
        return self._binary("and", self._not)

    def _not(self) -> bool:
        if self._peek() == "not":
            self.pos += 1
            return not self._not()
        return self._atom()

    def _atom(self) -> bool:
        token = self._peek()
        if token is None:
            raise self._error("expression ends too early")
        self.pos += 1
        if token == "(":
            value = self._or()
            if self._peek() != ")":
                raise self._error("missing ')'")
            self.pos += 1
            return value
        if token in {")", "and", "or", "not"}:
            raise self._error(f"unexpected {token!r}")
        words = [token]  # adjacent words form one phrase: `-k "seed 0"`
        while self._peek() is not None and self._peek() not in {"(", ")", "and", "or", "not"}:
            words.append(self.tokens[self.pos])
            self.pos += 1
        return " ".join(words).lower() in self.text


def select(expr: str, description: str) -> bool:
    """Whether ``description`` matches the ``-k`` expression (``BenchInputError`` if malformed)."""
    return _Parser(expr, description).parse()
