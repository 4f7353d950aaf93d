"""What a built-in explainer requires of a model, and the one way each module declares its specs.

The tag sets name the four kinds of access an attribution method needs (see the package
docstring); :func:`explainer_spec` is the spec every module's ``specs()`` lists, so that the
twenty built-ins state only what differs between them (name, factory, tags, description) and
nothing that could drift: the version is the same for all, ``params`` are read from the
factory's signature, and ``uses_target_layer`` from whether the factory takes one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from benchmark.specs import ExplainerSpec

GRADIENT = frozenset({"differentiable"})
"""Back-propagates to the input."""
CAM = frozenset({"differentiable", "conv"})
"""Has the convolutional layer ``ModelSpec.target_layer`` names."""
RULES = frozenset({"differentiable", "lrp"})
"""Every nonlinearity is its own module of a type captum's LRP and DeepLIFT have rules for."""
NOTHING: frozenset[str] = frozenset()
"""Only calls the model (perturbation methods) or not even that (controls)."""

VERSION = "1"


def explainer_spec(
    name: str,
    factory: Callable[..., Any],
    requires: frozenset[str],
    description: str,
    *,
    batch_independent: bool = True,
) -> ExplainerSpec:
    """The spec of a built-in explainer; ``description`` is one line naming the paper.
    ``batch_independent=False`` for the methods that draw one random stream per chunk of the
    batch (their maps depend on the batch's composition; see ``ExplainerSpec``)."""
    return ExplainerSpec(
        name=name,
        factory=factory,
        version=VERSION,
        description=description,
        requires=requires,
        uses_target_layer="target_layer" in inspect.signature(factory).parameters,
        batch_independent=batch_independent,
    )
