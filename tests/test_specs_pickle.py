"""Every registered spec pickles: executors send specs (or what they name) to worker processes,
and a lambda, a closure or a ``MappingProxyType`` in a spec does not travel.

The callables a plugin puts in its specs (``factory``, ``DebiaserSpec.prepare``,
``EvaluatorSpec.figures``) are also pickled one by one, so a failure names the plugin's
attribute rather than the whole spec; a round trip must give back the same function (pickled
by reference) or an equal ``functools.partial`` of one.
"""

from __future__ import annotations

import functools
import importlib
import pickle
from pathlib import Path

import pytest

from benchmark.registry import Registry

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "bench-example-plugin"
CALLABLES = ("factory", "prepare", "figures")


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The built-in plugins plus the example distribution's: through its entry point when
    ``tests/test_examples.py`` has installed it already, else registered in-process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLE))  # may hold the build's egg-info: an entry point
        registry = Registry.load()
        if not any(spec.plugin == "example" for spec in registry.all_specs()):
            example = importlib.import_module("bench_example_plugin")
            registry = Registry.load(extra_plugins=[("example-in-process", example)])
    assert not registry.broken_plugins(), registry.broken_plugins()
    return registry


def _ids(registry: Registry) -> list[str]:
    return [f"{spec.kind}:{spec.name}" for spec in registry.all_specs()]


def _same_callable(a: object, b: object) -> bool:
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return a.func is b.func and a.args == b.args and a.keywords == b.keywords
    return a is b


def test_every_kind_is_covered(registry):
    kinds = {spec.kind for spec in registry.all_specs()}
    assert kinds == {"dataset", "model", "debiaser", "explainer", "evaluator"}
    names = set(_ids(registry))
    # the three evaluator families that used to carry lambdas, and the example plugin
    assert {"evaluator:road", "evaluator:roar", "evaluator:kar", "evaluator:deletion"} <= names
    assert {"evaluator:calibration", "model:logistic-regression"} <= names


def test_spec_callables_pickle_one_by_one(registry):
    failures = []
    for spec in registry.all_specs():
        for attribute in CALLABLES:
            value = getattr(spec, attribute, None)
            if value is None:
                continue
            try:
                restored = pickle.loads(pickle.dumps(value))
            except Exception as exc:
                failures.append(f"{spec.kind} '{spec.name}' ({spec.plugin}).{attribute}: {exc!r}")
                continue
            if not _same_callable(value, restored):
                failures.append(f"{spec.kind} '{spec.name}'.{attribute} changed in a round trip")
    assert not failures, "\n".join(failures)


def test_whole_specs_pickle_and_round_trip(registry):
    for spec in registry.all_specs():
        restored = pickle.loads(pickle.dumps(spec))
        assert type(restored) is type(spec)
        assert (restored.name, restored.version, restored.plugin) == (
            spec.name,
            spec.version,
            spec.plugin,
        )
        assert dict(restored.params) == dict(spec.params)
        assert restored.provides == spec.provides and restored.requires == spec.requires
        for attribute in CALLABLES:
            value = getattr(spec, attribute, None)
            if value is not None:
                assert _same_callable(value, getattr(restored, attribute)), (spec.name, attribute)


def test_figures_still_draw_through_the_partials(registry):
    """The partials that replaced the lambdas call the same plotting code: an empty result
    table draws no figure rather than raising a TypeError about arguments."""
    pandas = pytest.importorskip("pandas")
    empty = pandas.DataFrame(
        columns=["dataset", "model", "debiaser", "explainer", "evaluator", "seed", "arrays"]
    )
    for name in ("road", "roar", "kar", "pixel-flipping", "deletion", "insertion"):
        figures = registry.get("evaluator", name).figures
        assert isinstance(figures, functools.partial)
        assert figures(empty) == {}
