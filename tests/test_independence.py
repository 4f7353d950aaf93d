"""Model-independence flags: identical scores over models and seeds, or a spread over them far
below the spread over images, are flagged; verdicts and counts never are."""

import pandas as pd
import pytest

from benchmark.independence import RATIO, assessable, model_independence


def jobs(rows):
    return pd.DataFrame(
        [
            {
                "dataset": "d",
                "model": model,
                "debiaser": "erm",
                "explainer": explainer,
                "evaluator": "ev",
                "seed": seed,
                "job_key": f"{explainer}-{model}-{seed}",
                "status": "ok",
                "values": values,
            }
            for explainer, model, seed, values in rows
        ]
    )


def test_identical_scores_over_models_and_seeds_are_flagged_and_moving_ones_are_not():
    frame = jobs(
        [
            ("sobel", "a", 0, {"auc": 0.5, "verdict": 1.0}),
            ("sobel", "a", 1, {"auc": 0.5, "verdict": 1.0}),
            ("sobel", "b", 0, {"auc": 0.5, "verdict": 1.0}),
            ("grad", "a", 0, {"auc": 0.31, "verdict": 1.0}),
            ("grad", "a", 1, {"auc": 0.35, "verdict": 1.0}),
            ("grad", "b", 0, {"auc": 0.29, "verdict": 1.0}),
        ]
    )
    out = model_independence(frame, {("ev", "auc"): "lower", ("ev", "verdict"): "higher"})
    by = out.set_index(["explainer", "metric"])
    assert by.loc[("sobel", "auc"), "flag"] == "identical"
    assert by.loc[("sobel", "auc"), "n_values"] == 3
    assert by.loc[("grad", "auc"), "flag"] == ""
    assert by.loc[("grad", "auc"), "spread"] == pytest.approx(pd.Series([0.31, 0.35, 0.29]).std())
    assert "verdict" not in set(out["metric"])  # a unanimous verdict is not independence


def test_a_spread_far_below_the_image_spread_is_flagged():
    frame = jobs(
        [
            ("edge", "a", 0, {"sparseness": 0.600}),
            ("edge", "a", 1, {"sparseness": 0.6001}),
            ("grad", "a", 0, {"sparseness": 0.40}),
            ("grad", "a", 1, {"sparseness": 0.45}),
        ]
    )
    spreads = {key: {"sparseness": {"std": 0.2, "mean": 0.5, "n": 64}} for key in frame["job_key"]}
    out = model_independence(frame, {("ev", "sparseness"): "higher"}, spreads)
    by = out.set_index("explainer")
    assert by.loc["edge", "spread"] < RATIO * 0.2
    assert by.loc["edge", "flag"] == "far below image spread"
    assert by.loc["grad", "flag"] == "" and by.loc["grad", "image_spread"] == pytest.approx(0.2)


def test_one_model_and_one_seed_is_not_assessable():
    frame = jobs([("grad", "a", 0, {"auc": 0.3}), ("sobel", "a", 0, {"auc": 0.5})])
    assert not assessable(frame)
    assert model_independence(frame, {("ev", "auc"): "lower"}).empty
    counts = jobs([("g", "a", 0, {"cells": 10.0}), ("g", "a", 1, {"cells": 10.0})])
    assert assessable(counts)
    assert model_independence(counts, {("ev", "cells"): "neither"}).empty  # counts left out


def test_the_page_groups_identical_scores_and_lists_the_others_one_by_one():
    from types import SimpleNamespace

    from benchmark.render.markdown import _independence

    flags = pd.DataFrame(
        [["d", "random", "ev", f"m{i}", 3, 0.0, None, "identical"] for i in range(5)]
        + [["d", "grad|ient", "ev", "score", 3, 1e-5, 0.2, "far below image spread"]]
        + [["d", "gradient", "ev", "other", 3, 0.1, 0.2, ""]],
        columns=[
            "dataset",
            "explainer",
            "evaluator",
            "metric",
            "n_values",
            "spread",
            "image_spread",
            "flag",
        ],
    )
    text = "\n".join(_independence(SimpleNamespace(independence=flags)))
    assert "7 (dataset, explainer, metric) combinations" in text and "6 are flagged" in text
    assert "| d | random | ev | 5 | m0, m1, m2 and 2 more |" in text
    assert "| d | grad\\|ient | ev.score | 3 | 1e-05 | 0.2 | far below image spread |" in text
    assert "other" not in text
