"""Suite parameters (``benchmark.suite_parameters``): ``${name}`` in component params takes the
value given with ``-p`` (or the default) with its type; a null value drops the entry, and
``bench plan`` says why; wrong names are errors with file, line and a suggestion (exit 2)."""

import json
import sqlite3
import textwrap

import pytest
from click.testing import CliRunner

from benchmark import suite as suite_module
from benchmark.cli import main
from benchmark.errors import BenchInputError
from benchmark.records import digest
from benchmark.suite_parameters import from_command_line

SUITE = """\
name: params
parameters:
  epochs: 2
  lr: {default: 0.25, description: "the learning rate"}
  digits_limit: {default: null, description: "training digits of the second entry"}
datasets:
  - name: digits
    params: {train_limit: 200, test_limit: 100}
  - name: digits
    label: digits-small
    params:
      train_limit: ${digits_limit}
      test_limit: 100
models: [{name: mlp, params: {hidden: [16]}}]
debiasers:
  - name: none
    params: {epochs: "${epochs}", lr: "${lr}"}
evaluators: [classification]
seeds: [0]
leaderboard: {metric: accuracy}
"""


def parse(text, registry, **kwargs):
    return suite_module.parse(textwrap.dedent(text), "suite.yaml", registry, **kwargs)


def line_with(text, fragment):
    (line,) = [n for n, line in enumerate(text.splitlines(), 1) if fragment in line]
    return line


def without_parameters(text):
    """``text`` with its ``parameters:`` section cut out."""
    head, rest = text.split("parameters:\n", 1)
    return head + "datasets:" + rest.split("\ndatasets:", 1)[1]


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """The real ``bench`` command in this process (real entry points), run in ``tmp_path``
    with ``params.yaml`` (``SUITE``) there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(SUITE)
    env = {"BENCH_HOME": str(tmp_path / ".bench"), "COLUMNS": "200"}

    def invoke(*args):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


# -- substitution -------------------------------------------------------------------------------


def test_substitution_keeps_the_values_type(toy_registry):
    suite = parse(SUITE, toy_registry, parameters={"epochs": 3, "digits_limit": 50})
    (debiaser,) = suite.components["debiaser"]
    assert debiaser.params["epochs"] == 3 and type(debiaser.params["epochs"]) is int
    assert debiaser.params["lr"] == 0.25 and type(debiaser.params["lr"]) is float
    small = suite.components["dataset"][1]
    assert small.label == "digits-small" and small.params["train_limit"] == 50
    assert suite.parameters == {"epochs": 3, "lr": 0.25, "digits_limit": 50}
    assert suite.dropped == ()


def test_substitution_reaches_into_nested_lists_and_mappings(toy_registry):
    text = """\
    name: nested
    parameters: {width: 8, tol: 0.001, scale: 2.0}
    datasets: [digits]
    models: [{name: madry-cnn, params: {widths: ["${width}", 16, "${width}"]}}]
    debiasers: [none]
    explainers: [gradient]
    evaluators:
      - classification
      - name: quantus
        params: {metric_params: {nested: [{tol: "${tol}"}, "${scale}"], kept: "$5"}}
    seeds: [0]
    leaderboard: {metric: accuracy}
    """
    suite = parse(text, toy_registry, parameters={"width": 4})
    (model,) = suite.components["model"]
    assert model.params["widths"] == [4, 16, 4]
    quantus = suite.components["evaluator"][1]
    assert quantus.params["metric_params"] == {"nested": [{"tol": 0.001}, 2.0], "kept": "$5"}
    assert parse(text, toy_registry).components["model"][0].params["widths"] == [8, 16, 8]


def test_a_value_is_checked_against_the_factorys_annotation(toy_registry):
    with pytest.raises(BenchInputError, match=r"debiasers\[0\]\.params\.epochs") as info:
        parse(SUITE, toy_registry, parameters={"epochs": "three"})
    assert info.value.where == "suite.yaml"


# -- errors in the file ------------------------------------------------------------------------


def test_an_undeclared_reference_names_file_line_and_suggests(toy_registry):
    text = SUITE.replace('"${epochs}"', '"${epoch}"')
    with pytest.raises(BenchInputError) as info:
        parse(text, toy_registry)
    error = info.value
    line = line_with(text, '"${epoch}"')
    assert (error.where, error.line) == ("suite.yaml", line)
    assert str(error).startswith(
        f"suite.yaml:{line}: field 'debiasers[0].params.epochs': '${{epoch}}' refers to "
        "parameter 'epoch', which the suite does not declare (did you mean 'epochs'?)"
    )


def test_a_reference_in_a_suite_without_parameters_says_how_to_declare(toy_registry):
    text = without_parameters(SUITE)
    with pytest.raises(BenchInputError, match="declare it under 'parameters:'") as info:
        parse(text, toy_registry)
    assert info.value.line == line_with(text, "${digits_limit}")  # the first reference


def test_a_reference_inside_a_longer_string_is_refused_saying_so(toy_registry):
    text = SUITE.replace('"${lr}"', '"${lr}0"')
    with pytest.raises(BenchInputError, match="it is not interpolated into text") as info:
        parse(text, toy_registry)
    assert info.value.line == line_with(text, '"${lr}0"')
    assert "field 'debiasers[0].params.lr': '${' inside a longer string" in info.value.message


@pytest.mark.parametrize(
    ("declaration", "line", "fragment"),
    [
        ("  Epochs: 2\n", 2, "field 'parameters': Value error, parameter name 'Epochs' must"),
        ("  epochs: [2]\n", 3, "field 'parameters.epochs.default': Value error, a parameter's"),
        ("  epochs: {default: 2, descripton: x}\n", 3, "did you mean 'description'?"),
    ],
)
def test_a_bad_declaration_is_a_clear_error(toy_registry, declaration, line, fragment):
    with pytest.raises(BenchInputError) as info:
        parse(SUITE.replace("  epochs: 2\n", declaration), toy_registry)
    assert info.value.line == line and fragment in info.value.message


# -- null values drop entries -------------------------------------------------------------------


def test_a_null_parameter_drops_the_entry_and_the_suite_says_why(toy_registry):
    suite = parse(SUITE, toy_registry)
    assert [c.label for c in suite.components["dataset"]] == ["digits"]
    (dropped,) = suite.dropped
    assert dropped.describe() == "dataset digits-small"
    assert dropped.reason == ("parameter digits_limit not given (bench run -p digits_limit=...)")


def test_a_dropped_entry_may_still_be_named_by_exclude_and_the_leaderboard(toy_registry):
    text = SUITE.replace(
        "leaderboard: {metric: accuracy}",
        "leaderboard: {metric: accuracy, metric_by_dataset: {digits-small: accuracy}}\n"
        "exclude: [{dataset: digits-small, model: mlp}]",
    )
    assert [c.label for c in parse(text, toy_registry).components["dataset"]] == ["digits"]


def test_dropping_every_dataset_is_the_empty_list_error(toy_registry):
    text = SUITE.replace(
        "    params: {train_limit: 200, test_limit: 100}",
        '    params: {train_limit: "${digits_limit}", test_limit: 100}',
    )
    with pytest.raises(BenchInputError, match="no dataset is left") as info:
        parse(text, toy_registry)
    assert "field 'datasets'" in info.value.message
    assert info.value.line == line_with(text, "datasets:")


def test_a_dropped_entrys_name_is_still_checked(toy_registry):
    text = SUITE.replace("  - name: digits\n    label", "  - name: digts\n    label")
    with pytest.raises(BenchInputError, match="did you mean 'digits'"):
        parse(text, toy_registry)


# -- the configuration hash ----------------------------------------------------------------------


def test_a_suite_without_parameters_keeps_its_config_hash(toy_registry):
    text = without_parameters(SUITE).replace("${digits_limit}", "50").replace('"${epochs}"', "2")
    text = text.replace('"${lr}"', "0.25")
    suite = parse(text, toy_registry)
    before = {kind: [c.identity() for c in comps] for kind, comps in suite.components.items()}
    before["seeds"] = suite.model.seeds  # Suite.config_hash as it was before parameters
    assert suite.parameters == {} and suite.dropped == ()
    assert suite.config_hash() == digest(before)
    assert parse(text, toy_registry, parameters={}).config_hash() == digest(before)
    # the same components reached through parameters are a different configuration
    same = parse(SUITE, toy_registry, parameters={"digits_limit": 50})
    assert [c.identity() for c in same.components["dataset"]] == before["dataset"]
    assert same.config_hash() != suite.config_hash()


def test_every_value_enters_the_config_hash(toy_registry):
    hashes = {
        parse(SUITE, toy_registry, parameters=given).config_hash()
        for given in ({}, {"epochs": 3}, {"lr": 0.5}, {"digits_limit": 50})
    }
    assert len(hashes) == 4
    assert parse(SUITE, toy_registry, parameters={"epochs": 2}).config_hash() in hashes


# -- the command line -----------------------------------------------------------------------------


def test_values_on_the_command_line_are_yaml_scalars():
    given = from_command_line(
        ["a=3", "b=0.5", "c=true", "d=null", "e=", "f=/data/fmnist", "g='3'", "h=2020-01-01"]
    )
    assert given == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": None,
        "e": None,
        "f": "/data/fmnist",
        "g": "3",
        "h": "2020-01-01",
    }
    assert [type(given[k]) for k in "abc"] == [int, float, bool]


def test_plan_shows_the_dropped_entry_and_why(bench):
    result = bench("plan", "--suite", "params.yaml")
    assert result.exit_code == 0, result.output
    assert (
        "  skipped dataset digits-small: parameter digits_limit not given "
        "(bench run -p digits_limit=...)"
    ) in result.stdout
    assert "run   digits / mlp / none" in result.stdout
    assert "digits-small /" not in result.stdout

    result = bench("plan", "--suite", "params.yaml", "--json")
    doc = json.loads(result.stdout)
    assert doc["dropped"] == [
        {
            "kind": "dataset",
            "entry": "digits-small",
            "reason": "parameter digits_limit not given (bench run -p digits_limit=...)",
        }
    ]
    assert doc["parameters"] == {"epochs": 2, "lr": 0.25, "digits_limit": None}


def test_p_overrides_the_default(bench):
    options = ["-p", "epochs=3", "--param", "digits_limit=50"]
    result = bench("plan", "--suite", "params.yaml", "--json", *options)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dropped"] == [] and doc["parameters"]["epochs"] == 3
    assert [job["debiaser"]["params"]["epochs"] for job in doc["jobs"]] == [3, 3]
    assert [job["dataset"]["params"]["train_limit"] for job in doc["jobs"]] == [200, 50]


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ("epochs", "-p epochs: expected NAME=VALUE"),
        ("=3", "-p =3: expected NAME=VALUE"),
        ("epochs=[1, 2]", "VALUE must be one value"),
        ("epoch=3", "-p epoch: the suite has no parameter 'epoch' (did you mean 'epochs'?)"),
        ("root=/x", "-p root: the suite has no parameter 'root'"),
        ("Epochs=3", "-p Epochs: the suite has no parameter 'Epochs' (did you mean 'epochs'?)"),
    ],
)
def test_a_malformed_or_unknown_p_exits_2_listing_the_parameters(bench, option, fragment):
    result = bench("plan", "--suite", "params.yaml", "-p", option)
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "error: params.yaml: " in message and fragment in message
    assert (
        "the suite's parameters: epochs (default 2), lr (default 0.25: the learning rate), "
        "digits_limit (default null: training digits of the second entry)"
    ) in message
    assert "Traceback" not in result.output


def test_p_for_a_suite_without_parameters_exits_2(bench):
    result = bench("plan", "--suite", "smoke", "-p", "epochs=3")
    assert result.exit_code == 2
    assert "the suite declares no parameters" in " ".join(result.stderr.split())


@pytest.mark.parametrize("command", ["run", "plan", "leaderboard", "publish", "reproduce"])
def test_every_command_that_loads_a_suite_takes_p(bench, command):
    result = bench(command, "--help")
    assert "-p, --param NAME=VALUE" in result.stdout


def test_run_uses_the_values_and_stores_them_in_the_config_hash(bench, tmp_path):
    common = ["--suite", "params.yaml", "--executor", "serial", "--no-progress", "-p", "epochs=1"]
    first = bench("run", *common)
    assert first.exit_code == 0, first.output
    assert "note: skipped dataset digits-small: parameter digits_limit not given" in (
        " ".join(first.stderr.split())
    )
    second = bench("run", *common, "-p", "digits_limit=60")
    assert second.exit_code == 0, second.output
    with sqlite3.connect(tmp_path / ".bench" / "results.sqlite") as conn:
        hashes = [h for (h,) in conn.execute("SELECT config_hash FROM runs ORDER BY run_id")]
        jobs = conn.execute("SELECT dataset, debiaser_params, dataset_params FROM jobs").fetchall()
    assert len(set(hashes)) == 2  # a run with other values is another configuration
    assert sorted(d for d, _, _ in jobs) == ["digits", "digits-small"]  # the first one cached
    assert {json.loads(p)["epochs"] for _, p, _ in jobs} == {1}
    assert {json.loads(p)["train_limit"] for _, _, p in jobs} == {200, 60}
