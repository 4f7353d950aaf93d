"""Suite validation: bad input gives one clear message (file, line, field, suggestion), exit 2."""

import textwrap

import pytest

from benchmark import suite as suite_module
from benchmark.errors import BenchInputError
from tests.conftest import bench

VALID = """\
name: toy
version: 2
datasets: [toy-bars]
models: ["tag:differentiable"]
debiasers:
  - name: toy-sgd
    params: {steps: 5}
evaluators: [toy-accuracy]
seeds: [0, 1]
leaderboard: {metric: accuracy}
"""


def parse(text, registry):
    return suite_module.parse(textwrap.dedent(text), "suite.yaml", registry)


def test_valid_suite_resolves_names_tags_and_params(toy_registry):
    suite = parse(VALID, toy_registry)
    assert suite.model.version == "2"
    models = [c.name for c in suite.components["model"]]
    assert "toy-linear" in models and "seed-cnn" in models  # tag selector expands
    (debiaser,) = suite.components["debiaser"]
    assert debiaser.params == {"steps": 5, "lr": 0.5}  # defaults merged with overrides
    assert suite.components["explainer"] == []


@pytest.mark.parametrize(
    ("replace", "by", "expected_line", "fragments"),
    [
        ("seeds:", "seedz:", 9, ["unknown field 'seedz'", "did you mean 'seeds'"]),
        ("[toy-accuracy]", "[toy-acuracy]", 8, ["evaluators[0]", "did you mean 'toy-accuracy'"]),
        ("{steps: 5}", "{stepz: 5}", 7, ["has no parameter 'stepz'", "did you mean 'steps'"]),
        ("[0, 1]", "[zero]", 9, ["seeds[0]", "integer"]),
        ("{metric: accuracy}", "{metric: accuracy, dir: higher}", 10, ["did you mean"]),
        (
            '"tag:differentiable"',
            '"tag:differentable"',
            4,
            ["no model provides tag", "did you mean 'differentiable'"],
        ),
        ("datasets: [toy-bars]\n", "datasets: [toy-bars\n", None, ["YAML syntax error"]),
    ],
)
def test_bad_suites_name_file_line_field_and_suggest(
    toy_registry, replace, by, expected_line, fragments
):
    assert replace in VALID
    with pytest.raises(BenchInputError) as info:
        parse(VALID.replace(replace, by, 1), toy_registry)
    error = info.value
    assert error.where == "suite.yaml"
    if expected_line is not None:
        assert error.line == expected_line, error.render()
    else:
        assert error.line is not None
    for fragment in fragments:
        assert fragment in error.message, error.render()


def test_missing_field_and_non_mapping(toy_registry):
    with pytest.raises(BenchInputError, match="missing required field 'leaderboard'"):
        parse(VALID.replace("leaderboard: {metric: accuracy}\n", ""), toy_registry)
    with pytest.raises(BenchInputError, match="must be a YAML mapping"):
        parse("- just a list\n", toy_registry)


def test_duplicate_component_needs_label(toy_registry):
    text = VALID.replace("evaluators: [toy-accuracy]", "evaluators: [toy-accuracy, toy-accuracy]")
    with pytest.raises(BenchInputError, match="appears twice"):
        parse(text, toy_registry)
    labelled = VALID.replace(
        "evaluators: [toy-accuracy]",
        "evaluators: [toy-accuracy, {name: toy-accuracy, label: x2, params: {scale: 2.0}}]",
    )
    with pytest.raises(BenchInputError, match=r"'toy-accuracy\.accuracy' or 'x2\.accuracy'"):
        parse(labelled, toy_registry)  # two entries return 'accuracy': ambiguous
    labelled = labelled.replace("metric: accuracy", "metric: toy-accuracy.accuracy")
    assert [c.label for c in parse(labelled, toy_registry).components["evaluator"]] == [
        "toy-accuracy",
        "x2",
    ]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            VALID.replace("seeds:", "sedes:")
            .replace("toy-bars", "mnist")
            .replace("toy-sgd", "none")
            .replace("{steps: 5}", "{}")
            .replace("toy-accuracy", "classification"),
            ["line 9", "did you mean 'seeds'"],
        ),
        (
            "name: x\ndatasets: [mnsit]\nmodels: [mlp]\ndebiasers: [none]\n"
            "evaluators: [classification]\nseeds: [0]\nleaderboard: {metric: accuracy}\n",
            ["line 2", "unknown dataset 'mnsit'", "did you mean 'mnist'"],
        ),
    ],
)
def test_cli_bad_suite_exit_2_without_traceback(tmp_path, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for command in ("plan", "run"):
        result = bench(command, "--suite", str(path), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        message = result.stderr.replace(f"{path}:", "")  # "file:line: ..." -> check pieces
        assert str(path) in result.stderr
        line = fragments[0].split()[1]
        assert f"{path}:{line}:" in result.stderr
        for fragment in fragments[1:]:
            assert fragment in message
    assert not (tmp_path / "leaderboards").exists()


def test_cli_unknown_suite_and_missing_file(tmp_path):
    result = bench("plan", "--suite", "smok", cwd=tmp_path)
    assert result.returncode == 2 and "did you mean 'smoke'" in result.stderr
    result = bench("plan", "--suite", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "suite file not found" in result.stderr
