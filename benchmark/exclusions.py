"""A suite's ``exclude`` rules: combinations a suite does not want, said once instead of
splitting one question into several suites.

Full crossing is the point of a suite, but some cells cost far more than they tell (an
adversarially trained large model on a second dataset that only one evaluator needs). An
``exclude`` entry names component labels by kind; a combination that matches every label of
an entry is not planned, and ``bench plan`` lists it among the skipped combinations with the
entry that removed it, so nothing disappears silently (DomainBed's silent blanks are what we
avoid). Labels are checked against the suite's own entries when it is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from benchmark.errors import BenchInputError
from benchmark.registry import suggest

KINDS = ("dataset", "model", "debiaser", "explainer", "evaluator")


def check_exclusions(
    rules: Sequence[Mapping[str, str]],
    labels: Mapping[str, Iterable[str]],
    source: str,
    line_of: Callable[[list[Any]], int | None],
) -> None:
    """Every rule names at least one kind, and only labels the suite has for that kind."""
    for index, rule in enumerate(rules):
        if not rule:
            raise BenchInputError(
                f"field 'exclude[{index}]': an exclusion must name at least one of {KINDS}",
                where=source,
                line=line_of(["exclude", index]),
            )
        for kind, label in rule.items():
            known = list(labels.get(kind, ()))
            if label not in known:
                raise BenchInputError(
                    f"field 'exclude[{index}].{kind}': the suite has no {kind} labelled "
                    f"'{label}'" + suggest(label, known),
                    where=source,
                    line=line_of(["exclude", index, kind]),
                )


def excluded_by(rules: Sequence[Mapping[str, str]], combo: Mapping[str, str]) -> str:
    """The reason a combination (``kind -> label``) is excluded, or ``""``."""
    for index, rule in enumerate(rules):
        if all(combo.get(kind) == label for kind, label in rule.items()):
            named = ", ".join(f"{kind} '{label}'" for kind, label in rule.items())
            return f"excluded by the suite (exclude[{index}]: {named})"
    return ""
