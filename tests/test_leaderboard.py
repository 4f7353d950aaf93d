"""Leaderboard: mean/std(ddof=1)/n over seeds, ranking by direction, failed and missing cells."""

import json

import numpy as np
from scipy import stats

from benchmark import render
from benchmark.leaderboard import aggregate
from tests.sitekit import run_toy_suite

SUITE = """\
name: lb-test
datasets: [toy-bars]
models: [toy-linear]
debiasers:
  - {name: toy-sgd, label: short, params: {steps: 2, lr: 0.05}}
  - {name: toy-sgd, label: long, params: {steps: 40}}
evaluators: [toy-accuracy, toy-explode]
seeds: [0, 1, 2]
leaderboard: {metric: accuracy}
"""


def run_suite(registry, tmp_path, text=SUITE, seeds_to_run=None):
    return run_toy_suite(
        registry,
        tmp_path,
        text,
        "s.yaml",
        keep=lambda j: seeds_to_run is None or j.seed in seeds_to_run,
    )


def test_aggregate_matches_numpy_and_ranks_by_direction(toy_registry, tmp_path):
    plan, store = run_suite(toy_registry, tmp_path)
    board = aggregate(plan, store)
    results = store.results().query("metric == 'accuracy'")
    cells = board.cells.set_index(["debiaser", "metric"])
    for label in ("short", "long"):
        values = results[results["debiaser"] == label]["value"].to_numpy()
        cell = cells.loc[(label, "accuracy")]
        assert cell["n"] == 3 and len(values) == 3
        assert np.isclose(cell["mean"], values.mean())
        assert np.isclose(cell["std"], values.std(ddof=1))
    long_acc, short_acc = (cells.loc[(d, "accuracy"), "mean"] for d in ("long", "short"))
    assert long_acc > short_acc  # 40 steps beat 2 tiny steps
    ranked = board.cells[board.cells["metric"] == "accuracy"].set_index("debiaser")
    for label in ("short", "long"):
        cell = ranked.loc[label]
        low, high = (cell["mean"],) * 2  # scipy gives NaN for a zero spread
        if cell["std"] > 0:
            low, high = stats.t.interval(0.95, 2, loc=cell["mean"], scale=cell["std"] / np.sqrt(3))
        assert np.isclose(cell["ci_low"], low) and np.isclose(cell["ci_high"], high)
    # ranks with ties: 1 + the rows whose interval lies entirely on the better side
    overlap = ranked.loc["long", "ci_low"] <= ranked.loc["short", "ci_high"]
    assert ranked.loc["long", "rank"] == 1
    assert ranked.loc["short", "rank"] == (1 if overlap else 2)
    assert bool(ranked.loc["short", "tied"]) == bool(ranked.loc["long", "tied"]) == overlap
    # the always-failing evaluator still has its cells, marked failed, never dropped
    failed = board.cells[board.cells["evaluator"] == "toy-explode"]
    assert set(failed["n_failed"]) == {3} and set(failed["n"]) == {0}
    assert len(board.failures) == 6


def test_lower_is_better_flips_the_ranking(toy_registry, tmp_path):
    plan, store = run_suite(
        toy_registry,
        tmp_path,
        SUITE.replace("{metric: accuracy}", "{metric: accuracy, direction: lower}"),
    )
    ranked = aggregate(plan, store).cells.query("metric == 'accuracy'").set_index("debiaser")
    assert ranked.loc["short", "rank"] == 1  # the lower mean is best now
    overlap = ranked.loc["short", "ci_high"] >= ranked.loc["long", "ci_low"]
    assert ranked.loc["long", "rank"] == (1 if overlap else 2)


def test_markdown_and_csv_show_failed_and_missing_cells(toy_registry, tmp_path):
    plan, store = run_suite(toy_registry, tmp_path, seeds_to_run={0, 1})
    board = aggregate(plan, store)
    target = render.write(board, tmp_path / "leaderboards")
    text = (target / "README.md").read_text()
    assert "*missing 1/3*" in text
    assert "**FAILED 2/3**" in text
    assert "accuracy ↑" in text
    assert "evaluator exploded on purpose" in text  # the failures section names the error
    assert "(n=2)" in text
    csv = (target / "results.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,model,debiaser,explainer,evaluator,metric,direction,mean")
    assert len(csv) == 1 + 2 * 2  # (accuracy, x) x (short, long)


def test_evaluator_figures_are_drawn_from_stored_arrays(toy_registry, tmp_path):
    text = SUITE.replace("[toy-accuracy, toy-explode]", "[toy-curve, toy-badfig]").replace(
        "{metric: accuracy}",
        "{metric: toy-curve.first}",  # both evaluators return 'first'
    )
    plan, store = run_suite(toy_registry, tmp_path, text=text)
    board = aggregate(plan, store)
    spec, results = board.figure_inputs["toy-curve"]
    assert spec.name == "toy-curve"
    assert len(results) == 6  # 2 debiasers x 3 seeds, each with its stored curve
    assert all(len(arrays["curve"]) == 4 for arrays in results["arrays"])
    target = render.write(board, tmp_path / "leaderboards")
    png = target / "figures" / "toy-curve-curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (target / "README.md").read_text()
    assert "![figures/toy-curve-curves.png](figures/toy-curve-curves.png)" in readme
    # a broken figure hook loses its figure, not the leaderboard, and says why
    assert "plotting failed on purpose" in readme
    assert not list((target / "figures").glob("toy-badfig*"))
    # regenerating from an unchanged store gives byte-identical figures and drops a stale one
    # an earlier write made, but never a file it did not write
    written = json.loads((target / render.MANIFEST).read_text())
    (target / "figures" / "stale.png").write_bytes(b"old")
    render.record_written(target, [*written, "figures/stale.png"])
    (target / "figures" / "mine.png").write_bytes(b"the user's")
    first = png.read_bytes()
    render.write(aggregate(plan, store), tmp_path / "leaderboards")
    assert png.read_bytes() == first
    assert not (target / "figures" / "stale.png").exists()
    assert (target / "figures" / "mine.png").read_bytes() == b"the user's"


def test_rank_table_ranks_by_each_direction_and_states_agreement():
    import pandas as pd

    from benchmark.leaderboard import Leaderboard
    from benchmark.render.markdown import _rank_table

    # four explainers, two metrics: "auc" (lower is better) and "score" (higher is better)
    auc = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    score = {"a": 0.9, "b": 0.7, "c": 0.8, "d": 0.1}  # order a, c, b, d
    rows = [
        {
            "dataset": "ds",
            "model": "m",
            "debiaser": "none",
            "explainer": e,
            "evaluator": ev,
            "metric": metric,
            "direction": direction,
            "mean": values[e],
            "std": np.nan,
            "n": 1,
            "n_expected": 1,
            "n_failed": 0,
            "n_missing": 0,
            "rank": np.nan,
        }
        for metric, direction, ev, values in (
            ("auc", "lower", "x", auc),
            ("score", "higher", "y", score),
        )
        for e in values
    ]
    board = Leaderboard(
        "s", "s", "", pd.DataFrame(rows), {"ds": ("auc", "lower")}, pd.DataFrame(), pd.DataFrame()
    )
    lines = _rank_table(board, "ds", []).splitlines()
    body = {line.split(" | ")[2]: line for line in lines if line.startswith("| m |")}
    assert body["a"].endswith("| 1 | 1 |") and body["b"].endswith("| 2 | 3 |")
    assert body["c"].endswith("| 3 | 2 |") and body["d"].endswith("| 4 | 4 |")
    # one discordant pair (b, c) out of six: tau = (5 - 1) / 6
    assert lines[-1].endswith(f"| +1.00 | {4 / 6:+.2f} |")
    assert (
        _rank_table(board, "ds", ["score"])
        .splitlines()[2]
        .startswith("| model | debiaser | explainer | auc ↓ | score ↑")
    )


def test_a_per_dataset_metric_keeps_its_own_direction(toy_registry, tmp_path):
    text = SUITE.replace("datasets: [toy-bars]", "datasets: [toy-bars, {name: toy-bars, label: b}]")
    text = text.replace(
        "evaluators: [toy-accuracy, toy-explode]", "evaluators: [toy-accuracy, toy-curve]"
    )
    text = text.replace(
        "leaderboard: {metric: accuracy}",
        "leaderboard: {metric: first, direction: lower, metric_by_dataset: {b: accuracy}}",
    )
    plan, store = run_suite(toy_registry, tmp_path, text)
    board = aggregate(plan, store)
    assert board.primary == {"toy-bars": ("first", "lower"), "b": ("accuracy", "higher")}
    ranks = board.cells.query("metric == 'accuracy'").set_index(["dataset", "debiaser"])["rank"]
    assert ranks[("b", "long")] == 1  # better accuracy first
    firsts = board.cells.query("metric == 'first' and dataset == 'toy-bars'")
    best = firsts.loc[firsts["mean"].idxmin(), "debiaser"]
    assert ranks[("toy-bars", best)] == 1  # the suite asked for lower 'first' there


def test_labels_replace_column_headers_but_not_metric_names(toy_registry, tmp_path):
    text = SUITE.replace(
        "leaderboard: {metric: accuracy}",
        "leaderboard: {metric: accuracy, labels: {accuracy: 'accuracy (test split)'}}",
    )
    plan, store = run_suite(toy_registry, tmp_path, text)
    board = aggregate(plan, store)
    assert board.labels == {"accuracy": "accuracy (test split)"}
    page = render.markdown.render(board)
    assert "| accuracy (test split) ↑ |" in page  # the header states how it was computed
    assert "Ranked by **accuracy**" in page  # the metric keeps its name
    assert set(board.cells["metric"]) >= {"accuracy"}
