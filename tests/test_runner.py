"""Runner contracts, for every built-in executor: determinism, model cache, resume from the
store, per-job isolation, failures that never replace good results, reporter hooks."""

import textwrap
import types

import pandas as pd
import pytest

from benchmark import hookimpl, planner
from benchmark import suite as suite_module
from benchmark.registry import Registry
from tests import toy_plugin
from tests.conftest import EXECUTORS, run_plan

SUITE = """\
name: runner-test
datasets: [toy-bars]
models: [toy-linear]
debiasers: [toy-sgd]
explainers: [toy-gradient, toy-wrong-shape]
evaluators: [toy-accuracy, toy-explode, toy-nan, toy-mass]
seeds: [0, 1]
leaderboard: {metric: accuracy}
"""


CLEAN = SUITE.replace("toy-explode, toy-nan, ", "").replace(", toy-wrong-shape", "")


def make_plan(registry, text=SUITE):
    return planner.expand(suite_module.parse(textwrap.dedent(text), "s.yaml", registry))


@pytest.fixture(params=EXECUTORS)
def executor(request):
    """Each contract test runs under serial, process (2 workers) and Ray (2 workers)."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return request.param


run = run_plan


def metric_values(store):
    results = store.results()
    ok = results[results["status"] == "ok"]
    return ok.set_index(["job_key", "metric"])["value"].sort_index()


def test_failures_are_isolated_rows_and_the_run_goes_on(toy_registry, tmp_path, executor):
    plan = make_plan(toy_registry)
    summary, store = run(toy_registry, tmp_path, plan, executor)
    assert summary.total == len(plan.jobs) == 2 * 5
    jobs = store.jobs().set_index(["evaluator", "explainer", "seed"], drop=False)
    for seed in (0, 1):
        assert jobs.loc[("toy-accuracy", None, seed), "status"] == "ok"
        assert jobs.loc[("toy-mass", "toy-gradient", seed), "status"] == "ok"
        assert "exploded on purpose" in jobs.loc[("toy-explode", None, seed), "error"]
        assert "metric 'score' is not finite" in jobs.loc[("toy-nan", None, seed), "error"]
        wrong = jobs.loc[("toy-mass", "toy-wrong-shape", seed), "error"]
        assert "(plugin 'toy') returned attributions of shape (8, 6)" in wrong
        assert "(factory at " in wrong and "toy_plugin.py:" in wrong  # the plugin, not the core
    assert summary.failed == 6 and summary.ran == 10
    assert summary.models_trained == 2  # one model per seed, shared by all its evaluators
    accuracy = store.results().query("metric == 'accuracy'")["value"]
    assert (accuracy > 0.9).all()  # the toy task is easy: real training happened


def test_same_run_twice_gives_identical_numbers(toy_registry, tmp_path, executor):
    plan = make_plan(toy_registry, CLEAN)
    _, first = run(toy_registry, tmp_path / "a", plan, executor)
    _, second = run(toy_registry, tmp_path / "b", plan, executor)  # fresh cache: retrains
    pd.testing.assert_series_equal(metric_values(first), metric_values(second))
    assert len(metric_values(first)) == 4  # (accuracy + mass) x 2 seeds
    # and bit-identical to a serial run at the same thread count
    _, serial = run(toy_registry, tmp_path / "serial", plan, "serial", threads=1)
    pd.testing.assert_series_equal(metric_values(first), metric_values(serial))
    jobs = first.jobs()
    assert set(jobs["threads"]) == {1} and set(jobs["device"]) == {"cpu"}


def test_rerun_skips_stored_jobs_and_trains_nothing(toy_registry, tmp_path, executor):
    plan = make_plan(toy_registry, CLEAN)
    first, store = run(toy_registry, tmp_path, plan, executor)
    before = metric_values(store)
    store.close()
    again, store = run(toy_registry, tmp_path, plan, executor)
    assert (again.ran, again.cached, again.models_trained) == (0, first.total, 0)
    forced, store = run(toy_registry, tmp_path, plan, executor, rerun=True)
    assert forced.ran == first.total
    assert forced.models_trained == 0 and forced.model_cache_hits == 2
    pd.testing.assert_series_equal(before, metric_values(store))
    assert len(store.runs()) == 3
    assert not store.results().duplicated(["job_key", "metric"]).any()


def test_failed_jobs_are_retried_on_the_next_run(toy_registry, tmp_path, executor):
    plan = make_plan(toy_registry, SUITE.replace("toy-nan, toy-mass", "toy-nan"))
    first, _ = run(toy_registry, tmp_path, plan, executor)
    second, _ = run(toy_registry, tmp_path, plan, executor)
    assert first.failed == second.failed == 4
    assert second.ran == 4 and second.cached == 2


def test_lifecycle_hooks_reach_reporters_and_a_broken_reporter_is_harmless(tmp_path):
    seen = []

    class Reporter:
        @hookimpl
        def bench_run_started(self, suite_name, plan, run_id):
            seen.append(("start", suite_name, len(plan.jobs)))

        @hookimpl
        def bench_job_finished(self, job, outcome):
            seen.append(("job", outcome.status))

        @hookimpl
        def bench_run_finished(self, suite_name, summary):
            seen.append(("end", summary.failed))

    broken = types.SimpleNamespace(bench_job_finished=hookimpl(lambda job, outcome: 1 / 0))
    registry = Registry.load(
        extra_plugins=[("toy", toy_plugin), ("reporter", Reporter()), ("broken-reporter", broken)]
    )
    plan = make_plan(registry, SUITE.replace("toy-explode, toy-nan, toy-mass", "toy-explode"))
    summary, _ = run(registry, tmp_path, plan)
    assert seen[0] == ("start", "runner-test", 4)
    assert sorted(seen[1:-1]) == [("job", "failed")] * 2 + [("job", "ok")] * 2
    assert seen[-1] == ("end", 2)
    assert summary.ran == 4


def test_weights_load_with_weights_only(toy_registry, tmp_path, monkeypatch):
    import torch

    plan = make_plan(
        toy_registry, SUITE.replace("toy-explode, toy-nan, toy-mass", "").replace(", ]", "]")
    )
    run(toy_registry, tmp_path, plan)
    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    summary, _ = run(toy_registry, tmp_path, plan, rerun=True)
    assert summary.model_cache_hits == 2 and calls == [True, True]


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep the thread count fixed so that repeated runs are bit-identical."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_model_with_wrong_logit_shape_fails_its_jobs_only(toy_registry, tmp_path, executor):
    text = SUITE.replace("models: [toy-linear]", "models: [toy-linear, toy-wrong-width]")
    text = text.replace("toy-explode, toy-nan, toy-mass", "").replace(", ]", "]")
    text = text.replace("explainers: [toy-gradient, toy-wrong-shape]\n", "")
    summary, store = run(toy_registry, tmp_path, make_plan(toy_registry, text), executor)
    jobs = store.jobs().set_index("model")
    assert set(jobs.loc["toy-linear", "status"]) == {"ok"}
    assert set(jobs.loc["toy-wrong-width", "status"]) == {"failed"}
    assert "expected logits of shape (2, 2)" in jobs.loc["toy-wrong-width", "error"].iloc[0]
    assert summary.failed == 2
