"""What a careless plugin author does, and the clear error or warning naming the plugin each one
gets: a misspelt hook, a name clash with a built-in, a hook that fails half-way, a plugin that
registers nothing, an evaluator without directions. Third-party plugins are real distributions
found through their entry points by the real ``bench`` CLI."""

import types

import pytest
import torch

from benchmark import EvaluatorSpec, hookimpl
from benchmark.registry import PluginError, Registry
from benchmark.runner import environment_versions
from tests.conftest import bench, plugins_json, write_distribution

MISSPELT = """
from benchmark import ExplainerSpec, hookimpl
import torch

def ones(model, x, target):
    return torch.ones(x.shape[0], 1, *x.shape[2:])

@hookimpl
def bench_register_explainer(register):  # the hook is bench_register_explainers
    register(ExplainerSpec("ones", ones))
"""

CLASHING = """
from benchmark import ExplainerSpec, hookimpl
import torch

def ones(model, x, target):
    return torch.ones(x.shape[0], 1, *x.shape[2:])

@hookimpl
def bench_register_explainers(register):
    register(ExplainerSpec("gradient", ones))   # clashes with the built-in
    register(ExplainerSpec("ones", ones))       # still registers and runs
"""

SILENT = """
from benchmark import hookimpl

@hookimpl
def bench_register_models(register):
    pass  # forgot to call register
"""

UNDECORATED = """
from benchmark import ModelSpec

def bench_register_models(register):  # no @hookimpl: pluggy never calls it
    raise AssertionError("never called")
"""

REPORTER = """
from benchmark import hookimpl

@hookimpl
def bench_run_finished(suite_name, summary):
    pass  # a reporter registers nothing, rightly
"""


@pytest.fixture
def careless_site(tmp_path):
    site = tmp_path / "site"
    for name, module, source in [
        ("misspelt", "misspelt_plugin", MISSPELT),
        ("clashing", "clashing_plugin", CLASHING),
        ("silent", "silent_plugin", SILENT),
        ("undecorated", "undecorated_plugin", UNDECORATED),
        ("reporter", "reporter_plugin", REPORTER),
    ]:
        write_distribution(site, f"bench-{name}", "1.2.3", {name: module}, {module: source})
    return site


def test_each_careless_plugin_is_named_with_what_is_wrong(tmp_path, careless_site):
    listing = plugins_json(tmp_path, careless_site)
    plugins = {p["name"]: p for p in listing["plugins"]}

    misspelt = plugins["misspelt"]
    assert misspelt["status"] == "error"
    assert "unknown hook 'bench_register_explainer'" in misspelt["error"]
    assert "did you mean 'bench_register_explainers'" in misspelt["error"]

    clashing = plugins["clashing"]
    assert clashing["status"] == "partial" and clashing["components"] == 1
    assert "'gradient' is registered by both plugin 'builtin_explainers'" in clashing["error"]
    owners = {(c["kind"], c["name"]): c["plugin"] for c in listing["components"]}
    assert owners[("explainer", "ones")] == "clashing"
    assert owners[("explainer", "gradient")] == "builtin_explainers"

    silent = plugins["silent"]
    assert silent["status"] == "loaded" and silent["components"] == 0
    assert "bench_register_* hooks registered nothing" in silent["warning"]
    assert "@benchmark.hookimpl decorators missing" in plugins["undecorated"]["warning"]
    assert plugins["reporter"]["status"] == "loaded" and plugins["reporter"]["warning"] == ""


def test_plan_warns_about_careless_plugins_on_stderr(tmp_path, careless_site):
    done = bench("plan", "--suite", "smoke", cwd=tmp_path, extra_path=[careless_site])
    assert done.returncode == 0, done.stderr
    err = " ".join(done.stderr.split())
    assert "plugin 'misspelt' (bench-misspelt 1.2.3) not loaded" in err
    assert "plugin 'clashing' (bench-clashing 1.2.3) loaded in part" in err
    assert "plugin 'silent' (bench-silent 1.2.3) its bench_register_* hooks registered" in err
    assert "plugin 'undecorated'" in err and "plugin 'reporter'" not in err


def test_strict_mode_refuses_a_misspelt_hook(tmp_path, careless_site):
    done = bench(
        "plugins",
        cwd=tmp_path,
        extra_path=[careless_site],
        env={
            "BENCH_STRICT_PLUGINS": "1",
            "BENCH_DISABLE_PLUGINS": "clashing,silent,undecorated,reporter",
        },
    )
    assert done.returncode == 2
    assert "unknown hook 'bench_register_explainer'" in " ".join(done.stderr.split())


def test_a_partly_loaded_plugin_is_in_the_provenance():
    def ones(model, x, target):  # registered, never run: the test is about loading
        return torch.ones(x.shape[0], 1, *x.shape[2:])

    from benchmark import ExplainerSpec

    def register_then_fail(register):
        register(ExplainerSpec("half-done", ones))
        raise RuntimeError("second component is broken")

    plugin = types.SimpleNamespace(bench_register_explainers=hookimpl(register_then_fail))
    registry = Registry.load(extra_plugins=[("halfway", plugin)], entry_points=False)
    record = registry.plugins["halfway"]
    assert record.status == "partial" and record.components == 1
    assert "second component is broken" in record.error
    assert "half-done" in registry.names("explainer")
    assert record in registry.broken_plugins()
    # provenance lists every plugin that can contribute a result, partial ones included
    assert record.contributes
    versions = environment_versions(registry)
    assert versions.get(record.distribution) == record.version or record.version == ""


def test_an_evaluator_without_directions_is_a_registration_error():
    with pytest.raises(ValueError, match="declare every metric it returns in directions"):
        EvaluatorSpec("no-directions", lambda context: None)

    def register(register):
        register(EvaluatorSpec("no-directions", lambda context: None))

    plugin = types.SimpleNamespace(bench_register_evaluators=hookimpl(register))
    registry = Registry.load(extra_plugins=[("nodir", plugin)], entry_points=False)
    assert registry.plugins["nodir"].status == "error"
    assert "directions" in registry.plugins["nodir"].error


def test_explicit_params_the_factory_does_not_take_are_refused():
    def factory(model, x, target, *, window: int = 3):
        return torch.ones(x.shape[0], 1, *x.shape[2:]) * window

    from benchmark import ExplainerSpec

    assert ExplainerSpec("derived", factory).params == {"window": 3}
    with pytest.raises(ValueError, match="params name 'widnow', which the factory"):
        ExplainerSpec("drifted", factory, params={"widnow": 3})


def test_strict_registry_raises_on_unknown_hook(monkeypatch):
    monkeypatch.setenv("BENCH_STRICT_PLUGINS", "1")
    plugin = types.SimpleNamespace(bench_register_model=hookimpl(lambda register: None))
    with pytest.raises(PluginError, match="did you mean 'bench_register_models'"):
        Registry.load(extra_plugins=[("typo", plugin)], entry_points=False)


def test_explicit_debiaser_params_win_over_the_shared_training_defaults():
    from benchmark import DebiaserSpec
    from benchmark.kit.training import TrainingParams

    def train(model, data, *, seed, gamma: float = 2.0, **training):
        return model.eval()  # only its signature matters here

    derived = DebiaserSpec("focal", train, training=TrainingParams(epochs=3))
    assert derived.params["gamma"] == 2.0 and derived.params["epochs"] == 3
    explicit = DebiaserSpec("focal", train, params={"lr": 0.5}, training=TrainingParams())
    assert explicit.params["lr"] == 0.5 and explicit.params["epochs"] == 5
