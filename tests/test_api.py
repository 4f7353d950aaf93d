"""``benchmark.api`` against a real run: a tiny toy suite (the toy plugin's data, model,
debiaser and explainer with the built-in perturbation evaluators) run through the serial
executor into a real store and cache, then read back. The API must return what the runner
stored and cached, bit for bit, and keep per-image arrays out of the store.

This module is also an in-process plugin (its ``bench_register_evaluators``): two evaluators
that return hand-made per-image arrays, one good and one that breaks the contract.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import Evaluation, EvaluatorSpec, hookimpl, render
from benchmark.api import FRAME_COLUMNS, open_suite
from benchmark.cache import ArtifactCache
from benchmark.errors import BenchInputError
from benchmark.leaderboard import aggregate
from benchmark.registry import Registry
from tests import sitekit, toy_plugin
from tests.conftest import bench

N_IMAGES = 8

SUITE = f"""\
name: api-test
datasets: [toy-bars]
models: [toy-linear]
debiasers: [{{name: toy-sgd, params: {{steps: 5}}}}]
explainers: [toy-gradient]
evaluators:
  - toy-accuracy
  - toy-mass
  - api-scores
  - {{name: deletion, params: {{n_images: {N_IMAGES}, steps: 6}}}}
  - {{name: pixel-flipping, params: {{n_images: {N_IMAGES}, steps: 6}}}}
  - {{name: region-perturbation, params: {{n_images: {N_IMAGES}, patch_size: 2}}}}
  - {{name: road, params: {{n_images: {N_IMAGES}, percentages: [20, 50, 80]}}}}
seeds: [0, 1]
leaderboard:
  metric: accuracy
"""

PER_IMAGE_SHAPES = {
    "deletion": {"auc": (N_IMAGES,), "curve": (N_IMAGES, 7)},
    "pixel-flipping": {"auc": (N_IMAGES,), "curve": (N_IMAGES, 6)},
    "region-perturbation": {"aopc": (N_IMAGES,), "drop_curve": (N_IMAGES, 10)},  # 3x3 + 1
    "road": {
        **{f"{o}{s}_auc": (N_IMAGES,) for o in ("morf", "lerf") for s in ("", "_prob")},
        "lerf_minus_morf": (N_IMAGES,),
        "lerf_minus_morf_prob": (N_IMAGES,),
        **{
            f"{o}_{c}": (N_IMAGES, 3) for o in ("morf", "lerf") for c in ("accuracy", "probability")
        },
    },
    "api-scores": {"score": (5,), "curve": (5, 3)},
}


def scores(context) -> Evaluation:
    """Known per-image values: a score per image (its mean is the metric) and a curve."""
    score = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    curve = torch.arange(15.0).view(5, 3)
    return Evaluation(
        {"score": float(score.mean())}, {"x": [1, 2]}, {"score": score, "curve": curve}
    )


def scalar_per_image(context) -> Evaluation:
    return Evaluation({"score": 1.0}, per_image={"score": 1.0})


def ragged_per_image(context) -> Evaluation:
    return Evaluation({"score": 1.0}, per_image={"a": np.zeros(3), "b": np.zeros((4, 2))})


@hookimpl
def bench_register_evaluators(register):
    register(EvaluatorSpec("api-scores", scores, version="1", directions={"score": "higher"}))
    register(EvaluatorSpec("api-scalar", scalar_per_image, directions={"score": "higher"}))
    register(EvaluatorSpec("api-ragged", ragged_per_image, directions={"score": "higher"}))


def registry() -> Registry:
    import tests.test_api as this

    return Registry.load(extra_plugins=[("toy", toy_plugin), ("api-test", this)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The suite, run once for the module (all but toy-accuracy at seed 1, left missing)."""
    tmp = tmp_path_factory.mktemp("api")
    reg = registry()

    def keep(job):
        return not (job.evaluator.label == "toy-accuracy" and job.seed == 1)

    plan, store = sitekit.run_toy_suite(reg, tmp, SUITE, "api-test.yaml", keep=keep)
    results = open_suite(plan.suite, store=store, cache=tmp / "c", registry=reg)
    yield tmp, plan, store, results
    store.close()


def cached_state(cache_dir: Path, seed: int) -> dict[str, torch.Tensor]:
    """The model file the runner wrote for ``seed``, found by its sidecar (not by its key)."""
    (sidecar,) = [
        p
        for p in (cache_dir / "models").glob("*.json")
        if json.loads(p.read_text())["seed"] == seed
    ]
    return ArtifactCache(cache_dir).load("models", sidecar.stem)


def test_the_frame_holds_every_seed_value_the_store_holds(run):
    _tmp, plan, store, results = run
    frame = results.frame()
    assert list(frame.columns) == FRAME_COLUMNS
    assert set(frame["job_key"]) == {job.key for job in plan.jobs}
    stored = store.results(job.key for job in plan.jobs)
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == len(stored) and len(stored) > 0
    merged = ok.merge(stored, on=["job_key", "metric"], suffixes=("", "_store"))
    assert len(merged) == len(ok)
    assert (merged["value"] == merged["value_store"]).all()  # exact: the same floats
    assert (merged["seed"] == merged["seed_store"]).all()
    assert (merged["direction"] == merged["direction_store"]).all()
    missing = frame[frame["status"] == "missing"]
    assert list(zip(missing["evaluator"], missing["seed"], strict=True)) == [("toy-accuracy", 1)]
    assert missing["metric"].isna().all() and missing["value"].isna().all()
    # two evaluators return `auc`: the column says whose, as the leaderboard names it
    auc = frame[frame["metric"] == "auc"]
    assert set(auc["column"]) == {"deletion.auc", "pixel-flipping.auc"}

    wide = results.frame(wide=True)
    assert len(wide) == len(plan.jobs) and wide["job_key"].is_unique
    for row in ok.itertuples(index=False):
        assert wide.loc[wide["job_key"] == row.job_key, row.column].item() == row.value


def test_seeds_csv_publishes_every_seed_value(run):
    tmp, plan, store, results = run
    target = render.write(aggregate(plan, store), tmp / "leaderboards")
    seeds = pd.read_csv(target / "seeds.csv")
    assert list(seeds.columns[:8]) == [
        "dataset",
        "model",
        "debiaser",
        "explainer",
        "evaluator",
        "seed",
        "status",
        "job_key",
    ]
    assert "seeds.csv" in json.loads((target / render.MANIFEST).read_text())
    wide = results.frame(wide=True).set_index("job_key")
    assert set(seeds["job_key"]) == set(wide.index)
    metrics = list(seeds.columns[8:])
    assert {"deletion.auc", "pixel-flipping.auc", "aopc", "morf_auc", "accuracy"} <= set(metrics)
    for row in seeds.to_dict("records"):
        assert row["status"] == wide.loc[row["job_key"], "status"]
        for metric in metrics:
            ours, theirs = row[metric], wide.loc[row["job_key"], metric]
            assert (pd.isna(ours) and pd.isna(theirs)) or ours == theirs  # full precision


def test_the_model_is_the_artifact_the_runner_cached_bit_for_bit(run):
    tmp, _plan, _store, results = run
    for seed in (0, 1):
        job = results.job(evaluator="toy-mass", seed=seed)
        state = cached_state(tmp / "c", seed)
        model = job.model()
        mine = model.state_dict()
        assert list(mine) == list(state)
        for name, tensor in state.items():
            assert mine[name].dtype == tensor.dtype and torch.equal(mine[name], tensor)
        assert not model.training
        # a copy: changing it changes neither the cache nor the next call
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        again = job.model().state_dict()
        assert all(torch.equal(again[n], t) for n, t in state.items())
    # seeds differ, so the look-up is by the job's own key
    assert not torch.equal(
        results.job(evaluator="toy-mass", seed=0).model().state_dict()["1.weight"],
        results.job(evaluator="toy-mass", seed=1).model().state_dict()["1.weight"],
    )


def test_attributions_are_the_explainers_on_the_cached_model_and_come_from_the_cache(run):
    tmp, _plan, _store, results = run
    job = results.job(evaluator="toy-mass", seed=0)
    model = toy_plugin.linear(2, (1, 6, 6))
    model.load_state_dict(cached_state(tmp / "c", 0))
    model.eval()
    test = job.dataset().test
    # the images and targets toy-mass explained: returned from the runner's attribution cache
    x, y = test.x[:8], test.y[:8]
    before = sorted((tmp / "c" / "attributions").glob("*.pt"))
    maps = job.attributions(x, y)
    assert sorted((tmp / "c" / "attributions").glob("*.pt")) == before
    assert torch.equal(maps, toy_plugin.gradient(model, x, y))
    assert float(maps.abs().sum()) == pytest.approx(job.metrics["mass"], rel=1e-6)
    # other images: computed by the explainer on the same model (and cached)
    other = test.x[20:25]
    predicted = model(other).argmax(1)
    assert torch.equal(job.attributions(other), toy_plugin.gradient(model, other, predicted))
    assert torch.equal(
        job.attributions(other, 1),
        toy_plugin.gradient(model, other, torch.ones(5, dtype=torch.long)),
    )
    with pytest.raises(BenchInputError, match="one class per image"):
        job.attributions(other, [0, 1])
    with pytest.raises(BenchInputError, match="no explainer"):
        results.job(evaluator="toy-accuracy", seed=0).attributions(other)


def test_per_image_arrays_are_cached_with_their_means_the_metrics(run):
    tmp, _plan, _store, results = run
    for evaluator, shapes in PER_IMAGE_SHAPES.items():
        for job in results.jobs(evaluator=evaluator):
            arrays = job.per_image()
            assert {k: v.shape for k, v in arrays.items()} == shapes, evaluator
            spread = job.arrays["per_image_spread"]
            for name, values in arrays.items():
                if values.ndim == 1:
                    # where the metric is a mean over images, it is the per-image mean
                    assert job.metrics[name] == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
                    assert spread[name]["n"] == len(values)
                    assert spread[name]["mean"] == pytest.approx(values.mean(), rel=1e-12)
                    assert spread[name]["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
                else:
                    assert name not in spread
            assert (tmp / "c" / "per_image" / f"{job.key}.pt").is_file()
    scored = results.job(evaluator="api-scores", seed=0)
    assert scored.arrays["per_image_spread"] == {
        "score": {"mean": 4.0, "std": pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1)), "n": 5}
    }
    assert np.array_equal(scored.per_image()["curve"], np.arange(15.0).reshape(5, 3))


def test_per_image_arrays_never_reach_the_store(run):
    _tmp, _plan, store, results = run
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT job_key, name, value FROM arrays").fetchall()
    assert rows
    for _key, name, value in rows:
        if name == "per_image_spread":
            assert all(set(s) == {"mean", "std", "n"} for s in json.loads(value).values())
            continue
        # curves per image are 2-D; the store keeps only 1-D arrays (mean curves, the
        # evaluators' own per-image score lists) for these evaluators
        assert np.asarray(json.loads(value), dtype=object).ndim <= 1, name
    for job in results.jobs(evaluator="road"):
        stored = job.arrays
        assert len(stored["morf_accuracy"]) == 3  # the mean curve, not (N, 3)
        assert job.per_image()["morf_accuracy"].shape == (N_IMAGES, 3)


def test_unknown_labels_keys_and_seeds_are_clear_errors(run):
    _tmp, _plan, _store, results = run
    with pytest.raises(
        BenchInputError, match=r"no model labelled 'toy-linaer'.*did you mean 'toy-linear'"
    ):
        results.jobs(model="toy-linaer")
    with pytest.raises(BenchInputError, match="no evaluator labelled 'roar'"):
        results.job(evaluator="roar")
    with pytest.raises(BenchInputError, match=r"no seed 7 \(its seeds: 0, 1\)"):
        results.jobs(seed=7)
    with pytest.raises(BenchInputError, match="has key 'ffffnotakey'"):
        results.job(key="ffffnotakey")
    with pytest.raises(BenchInputError, match=r"2 jobs of suite 'api-test' match evaluator='road'"):
        results.job(evaluator="road")
    with pytest.raises(BenchInputError, match=r"-k 'road and'"):
        results.jobs("road and")
    job = results.job(evaluator="road", seed=1)
    assert results.job(key=job.key[:10]).key == job.key
    assert [j.key for j in results.jobs("road and seed 1")] == [job.key]


def test_a_missing_job_and_missing_artifacts_say_how_to_get_them(run, tmp_path):
    tmp, plan, store, results = run
    missing = results.job(evaluator="toy-accuracy", seed=1)
    assert (missing.status, missing.metrics, missing.error) == ("missing", {}, None)
    with pytest.raises(BenchInputError, match=r"no result in the store \(missing\).*bench run"):
        missing.per_image()
    with pytest.raises(BenchInputError, match="returns none"):
        results.job(evaluator="toy-accuracy", seed=0).per_image()
    # a cache without the models (another machine, a cleaned cache): never trained here
    cache = tmp_path / "c"
    shutil.copytree(tmp / "c", cache)
    shutil.rmtree(cache / "models")
    shutil.rmtree(cache / "per_image")
    elsewhere = open_suite(plan.suite, store=store, cache=cache, registry=results.registry)
    job = elsewhere.job(evaluator="deletion", seed=0)
    with pytest.raises(BenchInputError, match="not in the cache") as caught:
        job.model()
    assert re.search(r"bench run --suite .* -k .*deletion / seed 0.* --rerun", str(caught.value))
    assert not (cache / "models").exists() or not list((cache / "models").glob("*.pt"))
    with pytest.raises(BenchInputError, match=r"per-image arrays .* not in the cache"):
        job.per_image()


def test_a_broken_per_image_contract_fails_the_job_with_a_clear_error(tmp_path):
    text = SUITE.replace("  - toy-mass\n", "  - api-scalar\n  - api-ragged\n")
    keep = {"api-scalar", "api-ragged"}
    _plan, store = sitekit.run_toy_suite(
        registry(), tmp_path, text, "x.yaml", keep=lambda job: job.evaluator.label in keep
    )
    errors = dict(zip(store.jobs()["evaluator"], store.jobs()["error"], strict=True))
    assert "per_image['score'] is a scalar" in errors["api-scalar"]
    assert "disagree on the number of images: {'a': 3, 'b': 4}" in errors["api-ragged"]
    assert not (tmp_path / "c" / "per_image").exists()
    store.close()


def test_a_store_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(
        BenchInputError, match="no results store here; run `bench run --suite smoke`"
    ):
        open_suite("smoke", store=tmp_path / "none.sqlite")


# --------------------------------------------------------------------------------------------
# docs/api.md runs: its suite file is written, its `bench run` runs through the real CLI, and
# its Python blocks execute in order against what that run left.

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_the_api_guide_runs(tmp_path, monkeypatch):
    blocks = FENCE.findall(DOC.read_text())
    (suite_text,) = [body for lang, body in blocks if lang == "yaml"]
    (command,) = [body for lang, body in blocks if lang == "bash"]
    (tmp_path / "tiny.yaml").write_text(suite_text)
    args = command.split()
    assert args[:2] == ["bench", "run"]
    done = bench(*args[1:], cwd=tmp_path, env={"BENCH_HOME": str(tmp_path / ".bench")})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "leaderboards" / "tiny" / "seeds.csv").is_file()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH_HOME", raising=False)
    namespace: dict = {}
    code = [body for lang, body in blocks if lang == "python"]
    assert len(code) >= 3
    for body in code:
        exec(compile(body, str(DOC), "exec"), namespace)
    assert namespace["maps"].shape == (4, 1, 8, 8)
    assert namespace["curves"]["curve"].shape[0] == 16
    # a published store (``bench publish --with-store``) reads back the same values
    done = bench("publish", "--suite", "tiny.yaml", "--with-store", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "leaderboards" / "tiny" / "results.sqlite"
    assert "leaderboards/tiny/results.sqlite" in done.stdout.splitlines()
    with open_suite("tiny.yaml", store=copy) as published:
        assert published.frame().equals(namespace["long"])
