"""Fault injection: hangs, crashes and exits in plugin code become failed rows, never the end
of a run; errors stay bounded; a failure never replaces a good stored result."""

import textwrap

import pytest

from benchmark import planner
from benchmark import suite as suite_module
from tests.conftest import run_plan as run

ISOLATED = ("process", "ray")


def plan_for(registry, evaluators, seeds=(0, 1), timeout=None):
    metric = "accuracy" if "toy-accuracy" in evaluators else "x"  # what the evaluators return
    text = textwrap.dedent(
        f"""\
        name: faults
        datasets: [toy-bars]
        models: [toy-linear]
        debiasers: [toy-sgd]
        evaluators: [{", ".join(evaluators)}]
        seeds: [{", ".join(map(str, seeds))}]
        leaderboard: {{metric: {metric}}}
        """
    )
    suite = suite_module.parse(text, "faults.yaml", registry)
    return planner.expand(suite, timeout_s=timeout)


def statuses(store):
    jobs = store.jobs()
    return {(row.evaluator, row.seed): (row.status, row.error or "") for row in jobs.itertuples()}


@pytest.fixture(params=ISOLATED)
def isolated(request):
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return request.param


def test_a_hung_job_times_out_and_the_rest_of_its_group_still_runs(
    toy_registry, tmp_path, isolated
):
    # toy-sleep and toy-accuracy share a trained model: one group, the sleeper first
    plan = plan_for(toy_registry, ["toy-sleep", "toy-accuracy"], timeout=4)
    summary, store = run(toy_registry, tmp_path, plan, isolated)
    rows = statuses(store)
    for seed in (0, 1):
        status, error = rows[("toy-sleep", seed)]
        assert status == "failed" and "timed out after 4 s" in error
        assert rows[("toy-accuracy", seed)][0] == "ok"
    assert summary.failed == 2 and summary.ran == 4
    durations = store.jobs().query("evaluator == 'toy-sleep'")["duration_s"]
    assert (durations >= 4).all() and (durations < 4 + 30).all()


@pytest.mark.parametrize(
    ("evaluator", "reason"),
    [("toy-segfault", "SIGSEGV"), ("toy-os-exit", "exited with status 1")],
)
def test_a_dying_worker_fails_its_job_and_a_fresh_worker_takes_the_rest(
    toy_registry, tmp_path, isolated, evaluator, reason
):
    plan = plan_for(toy_registry, [evaluator, "toy-accuracy"])
    summary, store = run(toy_registry, tmp_path, plan, isolated)
    rows = statuses(store)
    for seed in (0, 1):
        status, error = rows[(evaluator, seed)]
        assert status == "failed" and "worker died" in error
        if isolated == "process":  # Ray words actor deaths its own way
            assert reason in error
        assert rows[("toy-accuracy", seed)][0] == "ok"
    assert summary.failed == 2


@pytest.mark.parametrize("executor", ["serial", *ISOLATED])
def test_sys_exit_and_keyboard_interrupt_in_plugin_code_fail_only_their_job(
    toy_registry, tmp_path, executor, request
):
    if executor == "ray":
        request.getfixturevalue("ray_session")
    plan = plan_for(toy_registry, ["toy-sys-exit", "toy-keyboard", "toy-accuracy"], seeds=(0,))
    summary, store = run(toy_registry, tmp_path, plan, executor)
    rows = statuses(store)
    assert "SystemExit" in rows[("toy-sys-exit", 0)][1]
    assert "KeyboardInterrupt" in rows[("toy-keyboard", 0)][1]
    assert rows[("toy-accuracy", 0)][0] == "ok"
    assert summary.failed == 2 and not summary.interrupted


def test_a_huge_error_message_is_bounded(toy_registry, tmp_path):
    plan = plan_for(toy_registry, ["toy-huge-error"], seeds=(0,))
    _, store = run(toy_registry, tmp_path, plan, "process", jobs=1)
    error = store.jobs()["error"].iloc[0]
    assert error.startswith("ValueError: xxx") and len(error) <= 4000
    assert "more characters cut" in error


def test_a_failed_rerun_never_replaces_a_good_result(toy_registry, tmp_path, monkeypatch):
    plan = plan_for(toy_registry, ["toy-accuracy"])
    _, store = run(toy_registry, tmp_path, plan, "serial")
    good = store.results().set_index("job_key")["value"]
    store.close()
    from tests import toy_plugin

    def broken(context, scale=1.0):
        raise RuntimeError("this release is broken")

    monkeypatch.setattr(toy_plugin, "accuracy", broken)
    registry = type(toy_registry).load(extra_plugins=[("toy", toy_plugin)])
    summary, store = run(
        registry, tmp_path, plan_for(registry, ["toy-accuracy"]), "serial", rerun=True
    )
    assert summary.failed == 2
    results = store.results().set_index("job_key")
    assert set(results["status"]) == {"ok"}  # both good rows kept ...
    assert results["value"].equals(good)  # ... with their numbers
    assert set(results["failed_attempts"]) == {1}  # ... and the failure counted
    attempts = store.attempts()
    assert len(attempts) == 2 and attempts["error"].str.contains("this release is broken").all()
