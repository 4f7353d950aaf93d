"""The one way a built-in evaluator module declares its spec.

Every built-in evaluator is version 1 and nearly all of them score attributions, so they need
the job's explainer; stating that in each of ten modules let the copies drift apart (and made
every ``specs()`` the same dozen lines). :func:`evaluator_spec` states it once, and a module's
``specs()`` names only what differs: the name, the factory (whose signature gives the
parameters and their types), one line of description, the directions, and the optional
figures and retraining count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from benchmark.specs import Direction, EvaluatorSpec

VERSION = "1"
"""The version of every built-in evaluator (part of every cache key: bump it with the numbers)."""
EXPLAINER = frozenset({"explainer"})
"""What an attribution metric requires of a combination: the job's explainer."""


def evaluator_spec(
    name: str,
    factory: Callable[..., Any],
    description: str,
    directions: Mapping[str, Direction],
    *,
    requires: frozenset[str] = EXPLAINER,
    version: str = VERSION,
    figures: Callable[[Any], dict[str, Any]] | None = None,
    retrains: Callable[[Mapping[str, Any]], int] | None = None,
    metrics: Callable[[Mapping[str, Any]], list[str]] | None = None,
) -> EvaluatorSpec:
    """The spec of a built-in evaluator; ``description`` is one line naming the paper."""
    return EvaluatorSpec(
        name=name,
        factory=factory,
        version=version,
        description=description,
        requires=requires,
        directions=directions,
        figures=figures,
        retrains=retrains,
        metrics=metrics,
    )
