"""Evaluator reliability (``benchmark.reliability``) against published and hand-computed values.

Krippendorff's alpha is held to the worked example of Krippendorff, "Computing Krippendorff's
Alpha-Reliability" (2011, sec. C: four observers, twelve units, missing values), whose
published values have three decimals (tolerance 5e-4), and to small cases computed by hand
below (exact fractions, tolerance 1e-12). The table is checked on a hand-built set of job
records whose every number is derived in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from benchmark import reliability as rel
from benchmark.leaderboard import Leaderboard

NAN = math.nan
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


@pytest.mark.parametrize(
    ("level", "published"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_alpha_equals_krippendorffs_worked_example(level, published):
    assert rel.krippendorff_alpha(KRIPPENDORFF_2011, level) == pytest.approx(published, abs=5e-4)


def test_alpha_small_cases_by_hand():
    # units (1,1), (2,2), (3,4): o_11 = o_22 = 2, o_34 = o_43 = 1, n = (2, 2, 1, 1), n = 6.
    # interval: observed sum o d2 = 2; expected sum n_c n_k d2 over ordered pairs = 2 * 41
    # -> alpha = 1 - 5 * 2 / 82 = 36 / 41
    data = [[1, 2, 3], [1, 2, 4]]
    assert rel.krippendorff_alpha(data, "interval") == pytest.approx(36 / 41, abs=1e-12)
    # ordinal d2 from the cumulated counts: (1,2) 4, (1,3) 12.25, (1,4) 20.25, (2,3) 2.25,
    # (2,4) 6.25, (3,4) 1; expected 2 * 99, observed 2 -> 1 - 10 / 198 = 94 / 99
    assert rel.krippendorff_alpha(data, "ordinal") == pytest.approx(94 / 99, abs=1e-12)
    # nominal: observed 2 disagreeing pairs, expected 2 * (4 + 2 + 2 + 2 + 2 + 1) = 26
    assert rel.krippendorff_alpha(data, "nominal") == pytest.approx(1 - 5 * 2 / 26, abs=1e-12)
    # two raters ranking three units in opposite orders: o_13 = o_31 = 2, o_22 = 2;
    # ordinal observed 2 * 2 * 16 = 64, expected 2 * (16 + 64 + 16) = 192 -> 1 - 5 * 64 / 192
    reversed_ranks = [[1, 2, 3], [3, 2, 1]]
    assert rel.krippendorff_alpha(reversed_ranks, "ordinal") == pytest.approx(-2 / 3, abs=1e-12)


@pytest.mark.parametrize("level", rel.LEVELS)
def test_perfect_agreement_is_one_and_chance_is_zero(level):
    perfect = [[1, 2, 3, NAN, 5], [1, 2, 3, 4, 5], [1, NAN, 3, 4, 5]]
    assert rel.krippendorff_alpha(perfect, level) == pytest.approx(1.0, abs=1e-12)
    g = np.random.default_rng(0)
    chance = g.integers(1, 6, size=(4, 3000)).astype(float)
    # 12,000 pairable values: alpha's spread at chance is about 0.01
    assert abs(rel.krippendorff_alpha(chance, level)) < 0.03


def test_alpha_is_undefined_without_variation_or_pairs():
    assert math.isnan(rel.krippendorff_alpha([[2, 2], [2, 2]]))
    assert math.isnan(rel.krippendorff_alpha([[1, NAN], [NAN, 2]]))  # no unit with two values
    with pytest.raises(ValueError, match="raters x units"):
        rel.krippendorff_alpha([1, 2, 3])
    with pytest.raises(ValueError, match="level"):
        rel.krippendorff_alpha([[1, 2], [1, 2]], "cardinal")


def test_ranks_inter_rater_inter_method_and_internal_consistency_by_hand():
    assert rel.ranks([0.3, 0.1, 0.2], "higher").tolist() == [1, 3, 2]
    assert rel.ranks([0.3, 0.1, 0.2], "lower").tolist() == [3, 1, 2]
    tied = rel.ranks([[0.5, 0.5, 0.1, NAN]], "higher")
    assert tied[0, :3].tolist() == [1.5, 1.5, 3] and math.isnan(tied[0, 3])
    # the same order on different scales is perfect agreement; opposite orders are -2/3
    assert rel.inter_rater_reliability([[1, 2, 3], [10, 20, 30]]) == pytest.approx(1.0)
    assert rel.inter_rater_reliability([[1, 2, 3], [3, 2, 1]]) == pytest.approx(-2 / 3)
    # b is lower-is-better and the mirror of a: oriented it agrees perfectly; c swaps the
    # middle pair: rho = 1 - 6 * 2 / (4 * 15) = 0.8 with both -> mean (1 + 0.8 + 0.8) / 3
    scores = {"a": [1, 2, 3, 4], "b": [4, 3, 2, 1], "c": [1, 3, 2, 4]}
    got = rel.inter_method_reliability(scores, {"b": "lower"})
    assert got == pytest.approx(13 / 15, abs=1e-12)
    assert math.isnan(rel.inter_method_reliability({"a": [1, 2, 3]}))
    # Cronbach: item variances 1 and 7/3, total variance 19/3 -> 2 * (1 - (10/3) / (19/3))
    cases = [[1, 2], [2, 3], [3, 5]]
    assert rel.cronbach_alpha(cases) == pytest.approx(18 / 19, abs=1e-12)
    assert rel.internal_consistency(np.asarray(cases) * 0.1) == pytest.approx(18 / 19)
    assert math.isnan(rel.cronbach_alpha([[1, 2]]))
    # MetaQuantus's rank condition: all kept, or one explainer of three in place
    assert rel.rank_kept([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]) == 1.0
    assert rel.rank_kept([0.1, 0.2, 0.3], [0.2, 0.1, 0.3]) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------
# The table, on hand-built job records.


def job(model, seed, explainer, evaluator, name, values, key, arrays=None):
    return {
        "dataset": "d",
        "model": model,
        "debiaser": "none",
        "explainer": explainer,
        "evaluator": evaluator,
        "evaluator_name": name,
        "seed": seed,
        "status": "ok",
        "values": values,
        "job_key": key,
        "arrays": arrays or {},
    }


PF = {  # pixel-flipping AUC, lower is better
    ("m", 0): {"A": 0.10, "B": 0.20, "C": 0.30},
    ("m", 1): {"A": 0.15, "B": 0.35, "C": 0.25},
    ("m2", 0): {"A": 0.30, "B": 0.20, "C": 0.10},
}
DELETION = {("m", 0): {"A": 0.2, "B": 0.3, "C": 0.4}, ("m", 1): {"A": 0.2, "B": 0.3, "C": 0.4}}
ROAR_PER_SEED = {"A": [0.5, 0.6], "B": [0.7, 0.8], "C": [0.9, 0.55]}
PF_PER_IMAGE = {"A": [0.1, 0.2], "B": [0.2, 0.3], "C": [0.3, 0.5]}
META = {  # resilience, reactivity, worse_under_disruption of pixel-flipping, per explainer
    "A": (0.2, 0.9, 0.5),
    "B": (0.4, 0.9, 0.7),
    "C": (0.6, 0.9, 0.6),
}
MINOR_MEANS = {  # two minor draws: draw 0 keeps the order, draw 1 swaps A and B
    "A": ([0.1, 0.1], [0.1, 0.2]),
    "B": ([0.2, 0.2], [0.2, 0.1]),
    "C": ([0.3, 0.3], [0.3, 0.3]),
}


def records(failed: bool = False) -> list[dict]:
    out = []
    for (model, seed), by_explainer in PF.items():
        for e, v in by_explainer.items():
            out.append(
                job(model, seed, e, "pf", "pixel-flipping", {"auc": v}, f"pf-{model}{seed}{e}")
            )
    for (model, seed), by_explainer in DELETION.items():
        for e, v in by_explainer.items():
            out.append(job(model, seed, e, "del", "deletion", {"auc": v}, f"del-{model}{seed}{e}"))
    for e, per_seed in ROAR_PER_SEED.items():
        values = {"auc": float(np.mean(per_seed)), "verdict": 1.0, "p_value": 0.01}
        arrays = {"auc_per_seed": per_seed}
        out.append(job("m", 0, e, "roar", "roar", values, f"roar-{e}", arrays))
    for e, (res, rea, worse) in META.items():
        values = {
            "pixel-flipping.resilience": res,
            "pixel-flipping.reactivity": rea,
            "pixel-flipping.worse_under_disruption": worse,
            "pixel-flipping.meta_consistency": (res + rea + worse) / 3,
            "accuracy": 0.9,
        }
        if e == "A":
            values |= {"sparseness.resilience": 0.3, "sparseness.reactivity": 0.8}
            values |= {"sparseness.worse_under_disruption": 0.7}
        before, after = MINOR_MEANS[e]
        minor = {"unperturbed": before, "perturbed": after}
        arrays = {"mean_scores": {"pixel-flipping": {"model": {"minor": minor}}}}
        out.append(job("m", 0, e, "meta", "meta-evaluation", values, f"meta-{e}", arrays))
    if failed:
        broken = job("m", 1, "A", "roar", "roar", {}, "roar-failed")
        out.append({**broken, "status": "failed"})
    return out


PER_IMAGE = {f"pf-m0{e}": {"auc": v} for e, v in PF_PER_IMAGE.items()}
DIRECTIONS = {
    ("pf", "auc"): "lower",
    ("del", "auc"): "lower",
    ("roar", "auc"): "lower",
    ("roar", "verdict"): "neither",
}


def check_rows(rows: list[dict]) -> None:
    got = {row["column"]: row for row in rows}
    assert list(got) == ["pf.auc", "del.auc", "roar.auc", "quantus.sparseness"]
    assert all(tuple(row) == rel.COLUMNS for row in rows)
    pf = got["pf.auc"]
    assert (pf["n_explainers"], pf["n_repeats"], pf["property"]) == (3, 3, "faithfulness")
    # across seeds (model m): ranks [1,2,3] and [1,3,2]: o_11 = 2, o_23 = o_32 = 2;
    # observed 2 * 2 * 4 = 16 of expected 192 -> 1 - 5 * 16 / 192 = 7 / 12 (m2 has one seed)
    assert pf["alpha_seeds"] == pytest.approx(7 / 12, abs=1e-12)
    # across models (seed 0): m ranks [1,2,3], m2 ranks [3,2,1] -> -2/3
    assert pf["alpha_models"] == pytest.approx(-2 / 3, abs=1e-12)
    assert pf["alpha_datasets"] is None and pf["alpha_debiasers"] is None
    assert pf["alpha_retrain_seeds"] is None
    # per-image scores of cell (m, 0): the two images rank A, B, C alike; Cronbach 18 / 19
    assert pf["alpha_images"] == pytest.approx(1.0)
    assert pf["internal_consistency"] == pytest.approx(18 / 19, abs=1e-12)
    # inter-method, over cells and partners: deletion rho 1 in cell (m, 0) and, ranks
    # [1,3,2] vs [1,2,3], 1 - 6 * 2 / 24 = 0.5 in (m, 1); ROAR (mean AUC .55, .75, .725:
    # ranks [1,3,2]) 0.5 in (m, 0); m2 has no partner -> (1 + 0.5 + 0.5) / 3
    assert pf["inter_method"] == pytest.approx(2 / 3, abs=1e-12)
    # MetaQuantus: means over the three explainers; rank resilience (1 + 1/3) / 2
    assert pf["resilience"] == pytest.approx(0.4)
    assert pf["reactivity"] == pytest.approx(0.9)
    assert pf["worse_under_disruption"] == pytest.approx(0.6)
    assert pf["rank_resilience"] == pytest.approx(2 / 3)
    assert pf["meta_consistency"] == pytest.approx((0.4 + 0.9 + 2 / 3 + 0.6) / 4)

    deletion = got["del.auc"]
    assert deletion["alpha_seeds"] == pytest.approx(1.0)
    assert deletion["inter_method"] == pytest.approx(2 / 3, abs=1e-12)  # the same three rhos
    assert deletion["resilience"] is None and deletion["alpha_models"] is None

    roar = got["roar.auc"]
    # retrain 0 ranks [1,2,3], retrain 1 ranks [2,3,1]: every unit disagrees by one step
    # twice and by two once: observed 8 + 8 + 32 = 48 -> 1 - 5 * 48 / 192 = -1/4
    assert roar["alpha_retrain_seeds"] == pytest.approx(-0.25, abs=1e-12)
    assert roar["alpha_seeds"] is None  # one model seed
    assert roar["inter_method"] == pytest.approx(0.5, abs=1e-12)  # with pf and del in (m, 0)

    sparse = got["quantus.sparseness"]  # no sparseness results: a row of its own
    assert sparse["n_explainers"] == 3 and sparse["property"] == "complexity"
    assert (sparse["resilience"], sparse["reactivity"]) == (0.3, 0.8)
    assert sparse["rank_resilience"] is None
    assert sparse["meta_consistency"] == pytest.approx((0.3 + 0.8 + 0.7) / 3)


def test_table_from_records_has_the_hand_computed_numbers():
    rows = rel.reliability_table(records(failed=True), per_image=PER_IMAGE, directions=DIRECTIONS)
    check_rows(rows)
    only = rel.reliability_table(records(), directions=DIRECTIONS, metrics=["del.auc"])
    assert [r["column"] for r in only] == ["del.auc"]


def test_table_from_a_leaderboard_reads_directions_names_and_arrays():
    frame = pd.DataFrame(records(failed=True))
    frame["components"] = [{"evaluator": {"name": n}} for n in frame.pop("evaluator_name")]
    arrays = dict(zip(frame["job_key"], frame.pop("arrays"), strict=True))
    cells = pd.DataFrame(
        [
            {"evaluator": label, "metric": metric, "direction": direction}
            for (label, metric), direction in DIRECTIONS.items()
        ]
    )
    cells.loc[cells["evaluator"] == "pf", "metric"] = "pf.auc"  # a shared name, prefixed
    board = Leaderboard(
        suite_ref="synthetic",
        suite_name="synthetic",
        description="",
        cells=cells,
        primary={},
        failures=pd.DataFrame(),
        runs=pd.DataFrame(),
        jobs=frame,
    )
    check_rows(rel.reliability_table(board, arrays=arrays, per_image=PER_IMAGE))


def test_empty_input_gives_no_rows_and_markdown_says_so():
    assert rel.reliability_table([]) == []
    assert "No evaluator results" in rel.markdown([])


def test_markdown_escapes_labels_and_drops_empty_columns():
    hostile = "<b>x|y</b>"
    values = {"auc": 0.1}
    rows = rel.reliability_table(
        [
            job("m", s, e, hostile, "pixel-flipping", {"auc": v}, f"{s}{e}")
            for s in (0, 1)
            for e, v in (("A", 0.1 + s), ("B", 0.2), ("C", 0.3 - s))
        ]
        + [job("m", 0, "A", "x", "x", values, "x")]
    )
    text = rel.markdown(rows)
    parser = MarkdownIt("commonmark", {"html": True}).enable("table")  # raw HTML would pass
    rows_seen = [t for t in parser.parse(text) if t.type == "tr_open"]
    assert len(rows_seen) == 3  # header + two metrics
    cells = [t for t in parser.parse(text) if t.type == "th_open"]
    assert len(cells) == len(text.splitlines()[0].split(" | "))  # the pipe added no column
    html = parser.render(text)
    assert "<b>" not in html and "α seeds" in html
    assert "α models" not in text  # no row has a value there
    assert "–" in text  # x.auc has one explainer: nothing assessable


# --------------------------------------------------------------------------------------------
# The leaderboard's reliability table, from a real run: the toy plugin's data and model, three
# explainers (one model-independent), two seeds, the built-in deletion evaluator (per-image
# scores kept in the cache).

TOY_SUITE = """\
name: reliability-toy
datasets: [toy-bars]
models: [toy-linear]
debiasers: [{name: toy-sgd, params: {steps: 5}}]
explainers: [toy-gradient, gradient, random]
evaluators:
  - toy-accuracy
  - {name: deletion, params: {n_images: 8, steps: 6}}
seeds: [0, 1]
leaderboard:
  metric: auc
  direction: lower
"""


def test_the_leaderboard_ranks_its_metrics_as_instruments(tmp_path):
    from benchmark import render
    from benchmark.cache import ArtifactCache
    from benchmark.leaderboard import aggregate
    from benchmark.registry import Registry
    from tests import sitekit, toy_plugin

    registry = Registry.load(extra_plugins=[("toy", toy_plugin)])
    plan, store = sitekit.run_toy_suite(registry, tmp_path, TOY_SUITE, "r.yaml")
    without = aggregate(plan, store)
    board = aggregate(plan, store, ArtifactCache(tmp_path / "c"))
    (row,) = board.reliability
    assert row["column"] == "deletion.auc" and row["n_explainers"] == 3
    assert row["n_repeats"] == 2  # one (dataset, model, debiaser) x two seeds
    # the same numbers as the table computed on the leaderboard's jobs directly
    direct = rel.reliability_table(without, metrics={"deletion.auc"})[0]
    assert row["alpha_seeds"] == pytest.approx(direct["alpha_seeds"], nan_ok=True)
    assert row["alpha_seeds"] is not None
    # per-image scores come from the cache only: without it, no alpha over images
    assert without.reliability[0]["alpha_images"] is None
    assert row["alpha_images"] is not None and -1 <= row["alpha_images"] <= 1
    text = render.markdown.render(board)
    assert "## Evaluator reliability" in text and "`deletion.auc`" in text
    store.close()


def test_retraining_alpha_is_only_given_to_the_metrics_the_retraining_seeds_measure():
    # three explainers, one cell; ROAR stores its AUC per retraining seed. The seeds rank the
    # explainers a < b < c every time (alpha 1); mask accuracy has no per-seed values.
    records = [
        {
            "dataset": "d",
            "model": "m",
            "debiaser": "e",
            "explainer": name,
            "evaluator": "roar",
            "seed": 0,
            "values": {"auc": auc, "mask_accuracy": mask},
            "arrays": {"auc_per_seed": [auc, auc + 0.01, auc - 0.01]},
        }
        for name, auc, mask in (("a", 0.2, 0.9), ("b", 0.5, 0.1), ("c", 0.8, 0.5))
    ]
    directions = {("roar", "auc"): "lower", ("roar", "mask_accuracy"): "lower"}
    rows = rel.by_column(rel.reliability_table(records, directions=directions))
    assert rows["roar.auc"]["alpha_retrain_seeds"] == pytest.approx(1.0)
    assert rows["roar.mask_accuracy"]["alpha_retrain_seeds"] is None
