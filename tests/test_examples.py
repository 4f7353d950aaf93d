"""The external plugin distributions in examples/, installed for real with pip.

pip builds each distribution and installs it into a target directory (real dist-info, real
entry points); the real ``bench`` CLI then runs with that directory on ``PYTHONPATH``.
"""

import json

import pytest

from tests.conftest import REPO, bench, pip_install, plugins_json, run_pytest

SUITE = """\
name: third-party
datasets:
  - {name: digits, params: {train_limit: 300, test_limit: 100}}
models: [logistic-regression, seed-cnn]
debiasers:
  - {name: none, params: {epochs: 2}}
evaluators: [classification, calibration]
seeds: [0]
leaderboard: {metric: accuracy}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    pip_install(
        target,
        REPO / "examples" / "bench-example-plugin",
        REPO / "examples" / "broken-plugin",
    )
    return target


def test_installed_plugin_is_listed_with_its_version_and_broken_one_reported(site, tmp_path):
    listing = plugins_json(tmp_path, site)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["example"] == {
        "name": "example",
        "distribution": "bench-example-plugin",
        "version": "0.3.1",
        "status": "loaded",
        "error": "",
        "components": 2,
        "warning": "",
    }
    assert plugins["broken"]["status"] == "error"
    assert "needs a GPU driver" in plugins["broken"]["error"]
    components = {(c["kind"], c["name"]): c for c in listing["components"]}
    for key in (("model", "logistic-regression"), ("evaluator", "calibration")):
        assert components[key]["distribution"] == "bench-example-plugin"
        assert components[key]["version"] == "0.3.1"
    assert ("model", "seed-cnn") in components  # built-ins load beside the broken plugin

    text = bench("plugins", cwd=tmp_path, extra_path=[site]).stdout
    assert "broken" in text and "error" in text


def test_plan_and_run_include_third_party_combinations(site, tmp_path):
    suite = tmp_path / "third.yaml"
    suite.write_text(SUITE)
    plan = bench("plan", "--suite", str(suite), "--json", cwd=tmp_path, extra_path=[site])
    assert plan.returncode == 0, plan.stderr
    jobs = json.loads(plan.stdout)["jobs"]
    combos = {(j["model"]["name"], j["evaluator"]["name"]) for j in jobs}
    assert combos == {
        (m, e)
        for m in ("logistic-regression", "seed-cnn")
        for e in ("classification", "calibration")
    }
    assert (
        next(j for j in jobs if j["evaluator"]["name"] == "calibration")["evaluator"]["plugin"]
        == "example"
    )

    result = bench("run", "--suite", str(suite), "--no-progress", cwd=tmp_path, extra_path=[site])
    assert result.returncode == 0, result.stderr
    assert "plugin 'broken'" in result.stderr  # warned about, never fatal
    board = (tmp_path / "leaderboards" / "third-party" / "README.md").read_text()
    assert "logistic-regression" in board and "ece ↓" in board and "FAILED 1/1" not in board


def test_the_example_distribution_passes_its_own_tests(site):
    result = run_pytest(
        REPO / "examples" / "bench-example-plugin" / "tests",
        cwd=site,
        env={"PYTHONPATH": f"{site}:{REPO}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
