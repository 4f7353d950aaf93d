"""The metrics a suite's evaluators declare, named as its leaderboard names them, and the check
of the suite's ``leaderboard`` section against them.

A metric that two evaluator entries of a suite declare becomes two columns, ``label.metric``
each, so that no column mixes two definitions (``pixel-flipping.auc`` beside ``deletion.auc``);
a metric only one entry declares keeps its bare name. Every metric the ``leaderboard`` section
names (the ranking metric, ``metric_by_dataset``, ``columns``, ``labels``) must be one of these
columns, and a count (direction ``neither``) cannot rank: both are refused when the suite is
loaded, naming the field and line, rather than found as an empty leaderboard after a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from benchmark.errors import BenchInputError
from benchmark.registry import suggest
from benchmark.suite_errors import dotted, line_of

if TYPE_CHECKING:
    from benchmark.suite import Suite


def _metric_owners(suite: Suite) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for component in suite.components["evaluator"]:
        for metric in component.spec.returns(component.params):
            owners.setdefault(metric, []).append(component.label)
    return owners


def shared_metrics(suite: Suite) -> set[str]:
    """Metric names that two or more evaluator entries of the suite return."""
    return {metric for metric, labels in _metric_owners(suite).items() if len(labels) > 1}


def declared_metrics(suite: Suite) -> dict[str, str]:
    """``column name -> evaluator label`` of every metric the suite's evaluators declare, named
    as the leaderboard names them: a metric that two evaluator entries declare is
    ``label.metric`` (so no column mixes two definitions), any other is the bare metric."""
    owners = _metric_owners(suite)
    names: dict[str, str] = {}
    for metric, labels in owners.items():
        if len(labels) == 1:
            names[metric] = labels[0]
        else:
            names.update({f"{label}.{metric}": label for label in labels})
    return names


def check_leaderboard(suite: Suite, node: yaml.Node | None) -> None:
    """Every metric the leaderboard section names is one the evaluators declare; every dataset
    key of ``metric_by_dataset`` is one of the suite's datasets (an entry dropped for want of a
    parameter's value counts: it is there when the value is given)."""
    board = suite.model.leaderboard
    known = declared_metrics(suite)
    datasets = [c.label for c in suite.components["dataset"]]
    datasets += [label for d in suite.dropped if d.kind == "dataset" for label in d.labels]
    named: list[tuple[list[Any], str]] = [(["leaderboard", "metric"], board.metric)]
    named += [
        (["leaderboard", "metric_by_dataset", d], m) for d, m in board.metric_by_dataset.items()
    ]
    named += [(["leaderboard", "columns", i], m) for i, m in enumerate(board.columns)]
    named += [(["leaderboard", "labels", m], m) for m in board.labels]
    for dataset in board.metric_by_dataset:
        if dataset not in datasets:
            raise BenchInputError(
                f"field 'leaderboard.metric_by_dataset.{dataset}': no dataset of the suite is "
                f"labelled '{dataset}'" + suggest(dataset, datasets),
                where=suite.source,
                line=line_of(node, ["leaderboard", "metric_by_dataset", dataset]),
            )
    directions = {
        (component.label, metric): component.spec.directions.get(metric)
        for component in suite.components["evaluator"]
        for metric in component.spec.returns(component.params)
    }
    primaries = [(["leaderboard", "metric"], board.metric)]
    primaries += [
        (["leaderboard", "metric_by_dataset", d], m) for d, m in board.metric_by_dataset.items()
    ]
    for loc, metric in named:
        if metric in known:
            bare = metric.removeprefix(f"{known[metric]}.")
            if (loc, metric) in primaries and directions.get((known[metric], bare)) == "neither":
                raise BenchInputError(
                    f"field '{dotted(loc)}': metric '{metric}' is a count (direction "
                    "'neither'), not a score: it cannot rank a leaderboard",
                    where=suite.source,
                    line=line_of(node, loc),
                )
            continue
        qualified = sorted(name for name in known if name.endswith(f".{metric}"))
        if qualified:
            hint = (
                f"; '{metric}' is declared by several evaluators, so the leaderboard names it "
                f"{' or '.join(repr(q) for q in qualified)}"
            )
        else:
            hint = suggest(metric, known)
        raise BenchInputError(
            f"field '{dotted(loc)}': no evaluator of the suite declares metric '{metric}'" + hint,
            where=suite.source,
            line=line_of(node, loc),
        )
