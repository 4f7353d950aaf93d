"""``bench new plugin``: the generated distribution installs with pip, loads through its entry
point, and its own tests (contract checks and the demo suite through the CLI) pass as
generated."""

import os

import pytest

from benchmark import scaffold
from benchmark.errors import BenchInputError
from tests.conftest import bench, pip_install, plugins_json, run_pytest


@pytest.mark.slow
def test_a_generated_plugin_installs_loads_and_passes_its_own_tests(tmp_path):
    done = bench("new", "plugin", "my-plugin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    pip_install(site, tmp_path / "my-plugin")
    plugins = {p["name"]: p for p in plugins_json(tmp_path, site)["plugins"]}
    assert plugins["my_plugin"]["status"] == "loaded", plugins["my_plugin"]
    assert plugins["my_plugin"]["components"] == 6  # five components and the demo suite

    env = {**os.environ, "CI": "true", "PYTHONPATH": str(site)}
    tests = run_pytest(tmp_path / "my-plugin", cwd=tmp_path, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "7 passed" in tests.stdout


def test_only_the_kinds_asked_for_are_written(tmp_path):
    written = scaffold.new_plugin("just-an-explainer", tmp_path / "p", ("explainer",))
    names = sorted(p.relative_to(tmp_path / "p").as_posix() for p in written)
    assert "just_an_explainer/explainer.py" in names
    assert not any(n.endswith(("model.py", "dataset.py", "evaluator.py")) for n in names)
    tests = (tmp_path / "p" / "tests" / "test_plugin.py").read_text()
    assert 'check_explainer("just-an-explainer-abs-gradient")' in tests
    demo = (tmp_path / "p" / "just_an_explainer" / "demo.yaml").read_text()
    assert "seed-cnn" in demo and "just-an-explainer-abs-gradient" in demo


@pytest.mark.parametrize("name", ["My_Plugin", "1plugin", "a--b", "class", "x" * 41, "../evil"])
def test_bad_plugin_names_are_refused(tmp_path, name):
    with pytest.raises(BenchInputError):
        scaffold.new_plugin(name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_never_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    done = bench("new", "plugin", "taken", cwd=tmp_path)
    assert done.returncode == 2 and "already exists" in done.stderr
