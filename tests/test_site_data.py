"""The site's JSON document: valid against its published schema, one cell string for both
outputs, every seed's job, provenance, and a ``-k`` per row that selects exactly its jobs."""

import json
import shlex

import jsonschema
import pytest
from markdown_it import MarkdownIt

from benchmark import planner
from benchmark.render import site, site_data
from benchmark.render.cells import cell_text
from benchmark.selection import select
from tests.sitekit import ERROR, HOSTILE, publish_toy_site


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from benchmark.registry import Registry
    from tests import toy_plugin

    registry = Registry.load(extra_plugins=[("toy", toy_plugin)])
    return publish_toy_site(registry, tmp_path_factory.mktemp("site"), skip_seed=1)


def document(published) -> dict:
    return json.loads((published.page.parent / "data.json").read_text(encoding="utf-8"))


def test_document_validates_against_the_published_schema(published):
    schema = json.loads((published.out / site.SCHEMA_FILE).read_text())
    assert schema == site_data.schema()  # the file is the models' schema, not a copy
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(document(published), schema)
    broken = document(published)
    broken["rows"][0]["cells"]["accuracy"]["mean"] = "0.5"  # numbers stay numbers
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    assert document(published)["schema_version"] == 1


def markdown_cells(readme: str) -> dict[tuple[str, str], list[str]]:
    """``(dataset, debiaser) -> rendered text of every cell`` of the ranked tables, parsed by
    a CommonMark + GFM-tables parser (what GitHub shows)."""
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(readme)
    out, dataset, row, in_cell, in_ranked = {}, None, None, False, False
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            break  # the ranked tables come first; later sections (spread, figures) are not
        if token.type == "heading_open" and token.tag == "h3":
            dataset = tokens[i + 1].content
            in_ranked = True
        elif token.type == "table_close":
            in_ranked = False  # the rank table after it has other columns
        elif in_ranked and token.type == "tr_open":
            row = []
        elif in_ranked and token.type == "td_open":
            in_cell = True
        elif in_cell and token.type == "inline":
            row.append(
                "".join(c.content for c in token.children if c.type in ("text", "code_inline"))
            )
            in_cell = False
        elif in_ranked and token.type == "tr_close" and row:
            out[(dataset, row[2])] = row
    return out


def test_each_json_cell_formats_to_its_markdown_cell(published):
    doc = document(published)
    readme = (published.page.parent / "README.md").read_text(encoding="utf-8")
    tables = markdown_cells(readme)
    checked = 0
    for row in doc["rows"]:
        cells = tables[(row["dataset"], row["debiaser"])]
        assert cells[2] == row["debiaser"]  # the hostile labels read back as typed
        columns = next(d["columns"] for d in doc["datasets"] if d["name"] == row["dataset"])
        for column, shown in zip(columns, cells[3:], strict=True):
            cell = row["cells"][column]
            assert shown == cell["text"] == cell_text(cell)
            checked += 1
    assert checked == len(doc["rows"]) * 4  # accuracy, norm, parameters, the failing x
    rank_cells = {(r["dataset"], r["debiaser"]): r for r in doc["rows"]}
    for key, cells in tables.items():
        row = rank_cells[key]
        assert cells[0] == (f"={row['rank']}" if row["tied"] else str(row["rank"]))


def test_rows_hold_every_seed_with_status_error_and_provenance(published):
    doc = document(published)
    short = next(r for r in doc["rows"] if r["debiaser"] == "short" and r["dataset"] == "toy-bars")
    statuses = {(j["evaluator"], j["seed"]): j["status"] for j in short["jobs"]}
    assert statuses[("toy-accuracy", 0)] == "ok" and statuses[("toy-accuracy", 1)] == "missing"
    assert statuses[("toy-raise", 0)] == "failed"
    failed = next(j for j in short["jobs"] if j["status"] == "failed")
    assert ERROR in failed["error"]
    ok = next(j for j in short["jobs"] if j["status"] == "ok" and j["evaluator"] == "toy-norm")
    assert ok["values"]["norm"] > 0 and ok["device"] == "cpu" and ok["threads"] >= 1
    assert ok["duration_s"] > 0 and len(ok["job_key"]) >= 16
    stored = published.store.results()
    assert ok["job_key"] in set(stored["job_key"])
    assert short["components"]["debiaser"] == {
        "name": "toy-sgd",
        "version": "1",
        "params": {"steps": 2, "lr": 0.05},
    }
    assert short["cells"]["accuracy"]["badges"] == ["missing 1/2"]
    prov = doc["provenance"]
    assert prov["suite_config_hash"] == published.plan.suite.config_hash()
    assert [r["run_id"] for r in prov["runs"]] == [1]
    assert prov["runs"][0]["versions"]["torch"]
    assert prov["conditions"][0]["device"] == "cpu"
    glossary = {m["column"]: m for m in doc["metrics"]}
    assert glossary["norm"]["direction"] == "lower" and glossary["accuracy"]["label"].startswith(
        "acc <b>"
    )


def test_each_row_command_selects_exactly_its_jobs(published):
    """``toy-bars / ...`` is inside ``toy-bars-b / ...``: the command must exclude the other
    dataset's rows, and labels holding -k syntax get the whole suite's command instead."""
    doc = document(published)
    plan = planner.expand(published.plan.suite)
    for row in doc["rows"]:
        command = row["command"]
        assert command.startswith("bench run --suite site.yaml")
        if "(" in row["debiaser"]:  # <script>alert(1)</script>: parentheses are -k syntax
            assert shlex.split(command, comments=True) == ["bench", "run", "--suite", "site.yaml"]
            assert "labels hold -k syntax" in command
            continue
        expr = shlex.split(command)[-1]
        chosen = {j.key for j in plan.jobs if select(expr, j.describe())}
        assert chosen == {j["job_key"] for j in row["jobs"]}, row["id"]
    assert {HOSTILE["pipe"], HOSTILE["tick"]} <= {r["debiaser"] for r in doc["rows"]}


def test_figures_name_their_evaluator_and_carry_alt_text(published):
    from benchmark.render.site import suite_page

    figure = site_data._figure("figures/sanity-model-cascade-mnist.png", ["sanity", "sanity-model"])
    assert figure.evaluator == "sanity-model"  # the longest label that prefixes the file
    assert figure.alt == "sanity-model: cascade mnist"
    doc = site_data.Document.model_validate(document(published))
    doc.figures = [figure]
    page = suite_page(doc)
    assert (
        '<img src="figures/sanity-model-cascade-mnist.png" alt="sanity-model: cascade mnist"'
        in page
    )
