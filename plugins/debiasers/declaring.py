"""The one way a built-in debiaser declares its spec, so each module states only what differs
(name, factory, description, requirements) and nothing that could drift: the version is the
same for all and the shared training parameters come from ``benchmark.kit.training``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from benchmark.kit.training import TRAINING, TrainingParams
from benchmark.specs import DebiaserSpec

VERSION = "1"


def debiaser_spec(
    name: str,
    factory: Callable[..., Any],
    description: str,
    *,
    requires: Iterable[str] = (),
    provides: Iterable[str] = (),
    prepare: Callable[..., Any] | None = None,
    training: TrainingParams = TRAINING,
    version: str = VERSION,
    modalities: Iterable[str] = ("image",),
) -> DebiaserSpec:
    """The spec of a built-in debiaser; ``description`` is one line naming the paper.
    ``version`` is raised for one debiaser whose training changed, so its cached models and
    stored results are not mistaken for the new procedure's."""
    return DebiaserSpec(
        name=name,
        factory=factory,
        version=version,
        description=description,
        requires=frozenset(requires),
        provides=frozenset(provides),
        prepare=prepare,
        training=training,
        modalities=frozenset(modalities),
    )
