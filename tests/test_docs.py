"""The plugin author's guide runs: its Python blocks execute in order, its suite YAML validates
against the installed plugins, its TOML parses, and its schema block matches the pydantic
models that validate suites."""

import re
import tomllib
from pathlib import Path

import pytest

from benchmark import schema
from benchmark import suite as suite_module
from benchmark.registry import Registry

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(language):
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == language]


def test_the_schema_block_is_generated_from_the_models():
    text = DOC.read_text()
    block = text.split("<!-- schema:start -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert block == schema.markdown(), "run `python -m benchmark.schema` to regenerate it"
    for field in suite_module.SuiteModel.model_fields:
        assert f"| `{field}` |" in block


def test_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = blocks("python")
    assert len(code) >= 4
    namespace: dict = {}
    for body in code:
        exec(compile(body, str(DOC), "exec"), namespace)
    assert namespace["maps"].shape == (6, 1, 28, 28)
    counter = namespace["FailureCounter"]()
    assert counter.failed == []


@pytest.mark.parametrize("body", blocks("yaml"))
def test_suite_examples_validate(body):
    suite = suite_module.parse(body, "docs/plugins.md", Registry.load())
    assert suite.components["evaluator"]


@pytest.mark.parametrize("body", blocks("toml"))
def test_toml_examples_parse(body):
    assert "bench" in tomllib.loads(body)["project"]["entry-points"]


def test_the_hook_table_lists_every_registration_hook():
    from benchmark.kinds import KIND_TABLE

    text = DOC.read_text()
    for kind in KIND_TABLE:
        assert f"`{kind.hook}`" in text


def test_the_readme_suite_example_validates():
    readme = (DOC.parent.parent / "README.md").read_text()
    (body,) = [b for lang, b in FENCE.findall(readme) if lang == "yaml"][:1]
    suite = suite_module.parse(body, "README.md", Registry.load())
    assert [c.label for c in suite.components["explainer"]] == ["gradient", "random"]
