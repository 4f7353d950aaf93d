"""Plugin loading: in-process plugins, fake installed distributions, broken plugins, env vars."""

import json
import types

import pytest

from benchmark import DatasetSpec, ModelSpec, hookimpl
from benchmark.registry import PluginError, Registry
from tests.conftest import bench, plugins_json, write_distribution
from tests.toy_plugin import linear


def test_in_process_plugin_registers_with_plugin_name(toy_registry):
    spec = toy_registry.get("model", "toy-linear")
    assert spec.plugin == "toy"
    assert spec.version == "1"
    assert "differentiable" in spec.provides
    assert "toy-accuracy" in toy_registry.names("evaluator")


def test_version_defaults_to_distribution_version():
    plugin = types.SimpleNamespace(
        bench_register_models=hookimpl(lambda register: register(ModelSpec("unversioned", linear)))
    )
    registry = Registry.load(extra_plugins=[("p", plugin)], entry_points=False)
    assert registry.get("model", "unversioned").version == "0"


def test_unknown_name_suggests_closest(toy_registry):
    with pytest.raises(Exception, match="did you mean 'toy-linear'"):
        toy_registry.get("model", "toy-linaer")


def _registers(name):
    def bench_register_datasets(register):
        register(DatasetSpec(name, lambda: None))

    return types.SimpleNamespace(bench_register_datasets=hookimpl(bench_register_datasets))


def test_duplicate_name_is_an_error_naming_both_plugins():
    registry = Registry.load(
        extra_plugins=[("first", _registers("same")), ("second", _registers("same"))],
        entry_points=False,
    )
    assert registry.get("dataset", "same").plugin == "first"
    record = registry.plugins["second"]
    assert record.status == "error"
    assert "'first'" in record.error and "'second'" in record.error


def test_wrong_spec_type_is_reported_for_that_plugin_only():
    bad = types.SimpleNamespace(
        bench_register_models=hookimpl(lambda register: register(DatasetSpec("oops", lambda: None)))
    )
    registry = Registry.load(
        extra_plugins=[("bad", bad), ("good", _registers("fine"))], entry_points=False
    )
    assert registry.plugins["bad"].status == "error"
    assert "must register ModelSpec" in registry.plugins["bad"].error
    assert registry.names("dataset") == ["fine"]


def test_strict_mode_reraises(monkeypatch):
    monkeypatch.setenv("BENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="second"):
        Registry.load(
            extra_plugins=[("first", _registers("same")), ("second", _registers("same"))],
            entry_points=False,
        )


GOOD = """
from benchmark import ModelSpec, hookimpl
from tests.toy_plugin import linear

@hookimpl
def bench_register_models(register):
    register(ModelSpec("third-party-linear", linear, description="from a fake dist",
                       provides=frozenset({"differentiable"})))
"""
CRASHING = """
raise RuntimeError("this plugin is broken at import")
"""


@pytest.fixture
def fake_site(tmp_path):
    site = tmp_path / "site"
    write_distribution(
        site, "bench-good-thing", "2.5.0", {"goodthing": "good_thing"}, {"good_thing": GOOD}
    )
    write_distribution(
        site,
        "bench-crashing-thing",
        "0.0.1",
        {"crashing": "crashing_thing"},
        {"crashing_thing": CRASHING},
    )
    return site


def test_fake_distributions_good_listed_and_broken_reported(tmp_path, fake_site):
    listing = plugins_json(tmp_path, fake_site)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["goodthing"]["status"] == "loaded"
    assert plugins["goodthing"]["distribution"] == "bench-good-thing"
    assert plugins["crashing"]["status"] == "error"
    assert "this plugin is broken at import" in plugins["crashing"]["error"]
    assert plugins["crashing"]["version"] == "0.0.1"
    components = {(c["kind"], c["name"]): c for c in listing["components"]}
    third = components[("model", "third-party-linear")]
    assert third["distribution"] == "bench-good-thing"
    assert third["version"] == "2.5.0"
    assert third["provides"] == ["differentiable"]
    # the built-ins still load beside the broken plugin
    assert ("model", "seed-cnn") in components and ("dataset", "mnist") in components


def test_disable_and_allow_list(tmp_path, fake_site):
    listing = plugins_json(tmp_path, fake_site, env={"BENCH_DISABLE_PLUGINS": "crashing"})
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["crashing"]["status"] == "disabled"

    listing = plugins_json(tmp_path, fake_site, env={"BENCH_LOAD_PLUGINS": "goodthing"})
    plugins = {p["name"]: p["status"] for p in listing["plugins"]}
    assert plugins["goodthing"] == "loaded"
    assert plugins["builtin_models"] == "disabled"
    components = [c["name"] for c in listing["components"] if c["kind"] != "executor"]
    assert components == ["third-party-linear"]
    # the core's executors are registered whatever the allow-list says: without one, nothing runs
    assert {c["name"] for c in listing["components"] if c["kind"] == "executor"} == {
        "process",
        "serial",
        "ray",
    }


def test_strict_mode_cli_exits_2_naming_the_plugin(tmp_path, fake_site):
    result = bench(
        "plan",
        "--suite",
        "smoke",
        cwd=tmp_path,
        extra_path=[fake_site],
        env={"BENCH_STRICT_PLUGINS": "1"},
    )
    assert result.returncode == 2
    assert "crashing" in result.stderr and "Traceback" not in result.stderr


def test_plugins_json_states_each_components_contract(tmp_path):
    result = bench("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    components = {c["name"]: c for c in json.loads(result.stdout)["components"]}
    assert components["smoothgrad"]["batch_independent"] is False  # found by check_explainer
    assert components["gradient"]["batch_independent"] is True
    assert components["seed-cnn"]["target_layer"] == "conv_layers.3"
    assert components["pixel-flipping"]["directions"] == {"auc": "lower"}
