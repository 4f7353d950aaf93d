"""The built-in `explainability` suite plans every explainer against every evaluator."""

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.registry import Registry


def test_builtin_suite_pairs_every_explainer_with_every_evaluator():
    registry = Registry.load()
    suite = suite_module.load("explainability", registry)
    plan = planner.expand(suite)
    explainers = {c.spec.name for c in suite.components["explainer"]}
    assert explainers == set(registry.names("explainer"))  # every built-in explainer
    assert {"random", "sobel"} <= explainers  # the two controls
    evaluators = suite.components["evaluator"]
    assert {"roar", "kar", "road", "pixel-flipping", "insertion", "deletion"} <= {
        c.spec.name for c in evaluators
    }
    assert not plan.skipped  # seed-cnn provides everything every explainer needs
    assert len(plan.jobs) == len(explainers) * len(evaluators) * len(suite.model.seeds)
