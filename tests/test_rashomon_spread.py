"""The Rashomon spread of a leaderboard's rows: ranges over seeds and the rows within them."""

from __future__ import annotations

import json

from benchmark import rashomon_spread as rs
from benchmark.rashomon_spread import SpreadRow


def test_spread_is_the_range_over_seeds_and_close_rows_are_counted_both_ways():
    rows = [
        SpreadRow(("a",), (0.90, 0.80, 0.85)),  # mean 0.85, spread 0.10
        SpreadRow(("b",), (0.81, 0.83)),  # mean 0.82, spread 0.02: within a's spread
        SpreadRow(("c",), (0.50, 0.51)),  # far below both
    ]
    order = rs.ranked(rows, "higher")
    assert [r.labels for r in order] == [("a",), ("b",), ("c",)]
    assert abs(order[0].spread - 0.10) < 1e-12
    assert rs.within_spread(order) == [True, False]
    assert rs.close_rows(order) == [1, 1, 0]
    lower = rs.ranked(rows, "lower")
    assert [r.labels for r in lower] == [("c",), ("b",), ("a",)]


def test_rows_without_values_are_not_ranked_and_one_seed_makes_no_section():
    rows = {"d": [SpreadRow(("a",), (0.5,)), SpreadRow(("b",), (0.4,)), SpreadRow(("e",), ())]}
    assert rs.ranked(rows["d"], "higher")[-1].labels == ("b",)
    assert rs.section(rows, {"d": ("m", "higher")}, ["model"]) == []


def test_the_section_names_metric_direction_and_counts():
    rows = {"mnist": [SpreadRow(("a", "x"), (0.9, 0.8)), SpreadRow(("b", "y"), (0.84, 0.86))]}
    text = "\n".join(rs.section(rows, {"mnist": ("acc", "higher")}, ["model", "debiaser"]))
    assert "## Rashomon spread" in text and "### mnist" in text
    assert "1 of 1 neighbouring pairs" in text
    assert "| 1 | a | x | 0.8500 | 0.8000 – 0.9000 | 0.1000 (n=2) | ≈ | 1 |" in text


def test_published_data_json_is_read_per_job(tmp_path):
    data = {
        "suite": "toy",
        "datasets": [{"name": "mnist", "primary_metric": "acc", "direction": "higher"}],
        "rows": [
            {
                "dataset": "mnist",
                "model": "a",
                "debiaser": "erm",
                "explainer": None,
                "jobs": [
                    {"evaluator": "e", "status": "ok", "values": {"acc": 0.9}},
                    {"evaluator": "e", "status": "ok", "values": {"acc": 0.7}},
                    {"evaluator": "e", "status": "failed", "values": {}},
                ],
            },
            {
                "dataset": "mnist",
                "model": "b",
                "debiaser": "erm",
                "explainer": None,
                "jobs": [{"evaluator": "e", "status": "ok", "values": {"acc": 0.75}}] * 2,
            },
        ],
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text("# toy\n\n### mnist\n\n(table)\n\n## Figures\n\nfig\n")
    assert rs.main([str(tmp_path)]) == 0
    text = readme.read_text()
    assert "| 1 | a | erm | 0.8000 | 0.7000 – 0.9000 | 0.2000 (n=2) | ≈ | 1 |" in text
    assert "| 2 | b | erm | 0.7500" in text
    # placed where the renderer puts it, before the figures, and replaced, not repeated
    assert text.index("## Rashomon spread") < text.index("## Figures")
    assert rs.main([str(tmp_path)]) == 0
    assert readme.read_text() == text
    assert rs.main([str(tmp_path / "missing")]) == 2
