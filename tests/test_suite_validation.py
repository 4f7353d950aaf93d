"""The holes a malformed-suite corpus found: each valid-looking but wrong suite is refused at plan
time with the file, the line and the field, never a traceback after every job has run."""

import textwrap

import pytest

from benchmark import render, yaml_input
from benchmark import suite as suite_module
from benchmark.errors import BenchInputError
from tests.conftest import bench
from tests.test_suite import VALID


def parse(text, registry):
    return suite_module.parse(textwrap.dedent(text), "suite.yaml", registry)


def refused(text, registry, *fragments):
    with pytest.raises(BenchInputError) as info:
        parse(text, registry)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        # leaderboard names checked against what the evaluators declare
        (
            "{metric: accuracy}",
            "{metric: acuracy}",
            ["leaderboard.metric", "did you mean 'accuracy'"],
        ),
        (
            "{metric: accuracy}",
            "{metric: accuracy, columns: [accuracy, nll]}",
            ["leaderboard.columns[1]", "'nll'"],
        ),
        (
            "{metric: accuracy}",
            "{metric: accuracy, labels: {acc: Accuracy}}",
            ["leaderboard.labels.acc", "'acc'"],
        ),
        (
            "{metric: accuracy}",
            "{metric: accuracy, metric_by_dataset: {toy-bars: accurcy}}",
            ["metric_by_dataset.toy-bars", "did you mean 'accuracy'"],
        ),
        (
            "{metric: accuracy}",
            "{metric: accuracy, metric_by_dataset: {mnist: accuracy}}",
            ["metric_by_dataset.mnist", "no dataset of the suite"],
        ),
        # parameter values against the factory's annotations
        ("{steps: 5}", '{steps: "ten"}', ["debiasers[0].params.steps", "valid integer", "'ten'"]),
        ("{steps: 5}", "{steps: 5, lr: fast}", ["params.lr", "valid number", "'fast'"]),
        ("{steps: 5}", "{steps: true}", ["params.steps"]),
        ("{steps: 5}", "{steps: -5}", ["params.steps", "greater than 0"]),
        # seeds the store can hold
        ("seeds: [0, 1]", "seeds: [0, 123456789012345678901]", ["seeds[1]", "less than or equal"]),
        ("seeds: [0, 1]", "seeds: [-1]", ["seeds[0]", "greater than or equal to 0"]),
        # a suite name is a slug, never a path
        ("name: toy\n", "name: ..\n", ["field 'name'", "should match pattern"]),
        ("name: toy\n", "name: ../../x\n", ["field 'name'"]),
        ("name: toy\n", "name: /tmp/evil\n", ["field 'name'"]),
        ("name: toy\n", 'name: ""\n', ["field 'name'"]),
        ("name: toy\n", "name: " + "x" * 10_000 + "\n", ["field 'name'"]),
        ("name: toy\n", 'name: "a\\0b"\n', ["field 'name'"]),
        # a duplicated key is an error, not last-one-wins
        ("seeds: [0, 1]", "seeds: [0, 1]\nseeds: [2]", ["key 'seeds' appears twice", "line 9"]),
    ],
)
def test_valid_looking_suites_are_refused(toy_registry, old, new, fragments):
    assert old in VALID
    refused(VALID.replace(old, new), toy_registry, "suite.yaml", *fragments)


def test_a_count_cannot_rank_a_leaderboard(toy_registry):
    text = VALID.replace("{metric: accuracy}", "{metric: parameters}")
    text = text.replace("evaluators: [toy-accuracy]", "evaluators: [toy-accuracy, toy-norm]")
    assert "toy-norm" in text
    refused(text, toy_registry, "leaderboard.metric", "'parameters' is a count", "'neither'")
    parse(text.replace("{metric: parameters}", "{metric: norm}"), toy_registry)  # a score can


def test_a_line_number_points_at_the_bad_parameter(toy_registry):
    message = refused(VALID.replace("{steps: 5}", '{steps: "ten"}'), toy_registry)
    assert message.startswith("suite.yaml:7:")


def test_deep_nesting_is_refused_not_a_recursion_error(toy_registry):
    deep = "[" * 5000 + "]" * 5000
    refused(VALID.replace("{steps: 5}", "{steps: 5, x: " + deep + "}"), toy_registry, "nested")
    medium = "[" * 40 + "]" * 40  # composes fine, still deeper than any suite needs
    refused(VALID.replace("{steps: 5}", "{steps: " + medium + "}"), toy_registry, "nested")


def test_an_alias_bomb_is_refused_quickly(toy_registry):
    bomb = "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    text = "a0: &a0 [lol]\n" + bomb + VALID.replace("{steps: 5}", "{steps: *a9}")
    refused(text, toy_registry, "alias bomb")


def test_a_recursive_alias_is_refused(toy_registry):
    text = VALID.replace("{steps: 5}", "&loop {steps: 5, again: *loop}")
    refused(text, toy_registry, "recursive")


def test_non_utf8_bytes_are_exit_2_naming_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(VALID.replace("toy", "t\xf6y").encode("latin-1"))
    with pytest.raises(BenchInputError, match=r"latin1.yaml:1: not UTF-8 text: byte 0xf6"):
        yaml_input.read_text(path)
    done = bench("plan", "--suite", "latin1.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "not UTF-8" in done.stderr and "Traceback" not in done.stderr


def test_ambiguous_shared_metric_names_the_qualified_forms(toy_registry):
    two = VALID.replace(
        "evaluators: [toy-accuracy]",
        "evaluators: [toy-accuracy, {name: toy-accuracy, label: x2}]",
    )
    refused(two, toy_registry, "'toy-accuracy.accuracy' or 'x2.accuracy'")
    suite = parse(two.replace("metric: accuracy", "metric: x2.accuracy"), toy_registry)
    assert suite_module.declared_metrics(suite)["x2.accuracy"] == "x2"


def test_leaderboard_writer_deletes_only_files_it_wrote(tmp_path):
    """A folder that happens to hold the user's files keeps them; a stale figure goes."""
    folder = tmp_path / "board"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "mine.png").write_bytes(b"user's own")
    (folder / "notes.md").write_text("user's notes")
    (folder / "figures" / "old.png").write_bytes(b"written by bench")
    render.record_written(folder, ["README.md", "figures/old.png", "../../escape.txt"])
    (tmp_path / "escape.txt").write_text("outside")
    render.remove_written(folder)
    assert not (folder / "figures" / "old.png").exists()
    assert (folder / "figures" / "mine.png").read_bytes() == b"user's own"
    assert (folder / "notes.md").exists() and (tmp_path / "escape.txt").exists()
