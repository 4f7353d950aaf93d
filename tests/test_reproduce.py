"""``bench reproduce``: a published toy suite rerun on a fresh store reproduces bit for bit under
equal conditions; an edited published value is a difference in units of its row's seed std;
``-k`` and ``--sample`` pick rows; bad input is exit 2 naming the file. Real runs, real
stores, real published documents."""

import json
import shutil
import sqlite3

import pytest

from benchmark import render
from benchmark.errors import BenchInputError
from benchmark.leaderboard import aggregate
from benchmark.registry import Registry
from benchmark.reproduce import choose, load_published, reproduce
from tests import toy_plugin
from tests.conftest import bench, write_distribution
from tests.sitekit import run_toy_suite

SUITE = """\
name: repro-test
datasets: [toy-bars]
models: [toy-linear]
debiasers:
  - {name: toy-sgd, label: short, params: {steps: 3}}
  - {name: toy-sgd, label: long, params: {steps: 12}}
evaluators: [toy-accuracy, toy-norm]
seeds: [0, 1, 2]
leaderboard: {metric: accuracy}
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The suite run for real into a store and published under ``leaderboards/``."""
    tmp = tmp_path_factory.mktemp("repro")
    registry = Registry.load(extra_plugins=[("toy", toy_plugin)])
    plan, store = run_toy_suite(registry, tmp, SUITE, "repro.yaml")
    render.write(aggregate(plan, store), tmp / "leaderboards")
    store.close()
    return registry, plan.suite, tmp / "leaderboards"


def rerun(published, out=None, **options):
    registry, suite, folder = published
    return reproduce(
        registry, suite, out or folder, executor="serial", show_progress=False, **options
    )


def edited_copy(published, tmp_path, edit):
    """A copy of the published folder whose data.json ``edit(document)`` changed."""
    out = tmp_path / "leaderboards"
    shutil.copytree(published[2], out)
    path = out / "repro-test" / "data.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    return out


def test_a_fresh_rerun_is_bit_identical_and_its_conditions_equal(published):
    report = rerun(published)
    summary = report.summary()
    # 2 rows x 3 seeds x (accuracy + norm + parameters)
    assert summary["values"] == summary["identical"] == 18
    assert summary["differing"] == summary["not_rerun"] == 0
    assert {c.field: c.verdict for c in report.conditions} == {
        c.field: "equal" for c in report.conditions
    }
    fields = {c.field: c for c in report.conditions}
    assert {"cpu", "instruction sets", "torch build / BLAS / oneDNN", "threads", "device"} <= set(
        fields
    )
    assert fields["machine fingerprint"].published == fields["machine fingerprint"].rerun
    assert (
        summary["text"].startswith("18 of 18 values identical")
        and "conditions equal" in (summary["text"])
    )
    assert {m["metric"] for m in report.metrics()} == {"accuracy", "norm", "parameters"}
    document = json.loads(json.dumps(report.to_json()))  # what --json writes
    assert document["summary"]["identical"] == 18


def test_the_published_document_names_the_machine_that_made_it(published):
    document = load_published(published[2] / "repro-test" / "data.json")
    (fingerprint, machine), *others = document.provenance.machines.items()
    assert not others and machine["fingerprint"] == fingerprint
    assert machine["cpu"] and machine["torch_build"]["version"]
    assert document.provenance.runs[0].machine["fingerprint"] == fingerprint
    assert all("machine" in job.model_dump() for row in document.rows for job in row.jobs)


def test_an_edited_value_is_a_difference_in_units_of_the_row_std(published, tmp_path):
    shift = {}

    def edit(document):
        row = next(r for r in document["rows"] if r["debiaser"] == "long")
        std = row["cells"]["norm"]["std"]
        job = next(j for j in row["jobs"] if j["evaluator"] == "toy-norm" and j["seed"] == 1)
        job["values"]["norm"] += 0.5 * std
        norm = next(j for j in row["jobs"] if j["evaluator"] == "toy-norm" and j["seed"] == 2)
        norm["values"]["parameters"] += 3.0  # a metric whose seed std is 0
        shift.update(row=row["id"], std=std)

    report = rerun(published, edited_copy(published, tmp_path, edit))
    summary = report.summary()
    assert (summary["values"], summary["identical"], summary["differing"]) == (18, 16, 2)
    norm = next(r for r in report.rows if r.row == shift["row"] and r.metric == "norm")
    assert shift["std"] > 0 and norm.std == shift["std"]
    moved = [s for s in norm.seeds if not s.identical]
    assert [s.seed for s in moved] == [1]
    assert moved[0].diff_std == pytest.approx(0.5, rel=1e-9)
    assert norm.mean_diff_std == pytest.approx(0.5 / 3, rel=1e-9)  # one of three seeds
    parameters = next(r for r in report.rows if r.row == shift["row"] and r.metric == "parameters")
    assert parameters.std == 0 and "std is 0" in parameters.note
    odd = next(s for s in parameters.seeds if not s.identical)
    assert odd.diff_std is None and odd.abs_diff == 3.0
    assert summary["largest_std"] == pytest.approx(0.5) and summary["differing_without_std"] == 1
    assert "16 of 18 values identical; largest difference 0.5 std" in summary["text"]
    by_metric = {m["metric"]: m for m in report.metrics()}
    assert by_metric["norm"]["differing"] == by_metric["parameters"]["differing"] == 1
    assert by_metric["accuracy"]["differing"] == 0


def test_a_row_of_one_seed_reports_the_absolute_difference(published, tmp_path):
    def edit(document):
        row = document["rows"][0]
        row["cells"]["accuracy"] |= {"std": None, "n": 1}
        job = next(j for j in row["jobs"] if j["evaluator"] == "toy-accuracy")
        job["values"]["accuracy"] += 0.25

    report = rerun(published, edited_copy(published, tmp_path, edit), select_expr="accuracy")
    cell = next(r for r in report.rows if r.std is None)
    assert cell.note.startswith("n=1") and cell.mean_diff_std is None
    assert [s.abs_diff for s in cell.seeds if not s.identical] == [pytest.approx(0.25)]


def test_k_selects_the_rows_and_jobs_it_names(published):
    report = rerun(published, select_expr="long and seed 0")
    assert report.selection["rows"] == ["toy-bars|toy-linear|long|"]
    assert report.selection["jobs"] == 2  # toy-accuracy and toy-norm, seed 0
    assert {(r.row, s.seed) for r in report.rows for s in r.seeds} == {
        ("toy-bars|toy-linear|long|", 0)
    }
    assert report.summary()["identical"] == 3


def test_sample_draws_the_same_rows_for_the_same_seed(published):
    document = load_published(published[2] / "repro-test" / "data.json")
    ids = {
        seed: [r.id for r, _ in choose(document, sample=1, sample_seed=seed)] for seed in range(8)
    }
    assert all(len(chosen) == 1 for chosen in ids.values())
    assert ids[3] == [r.id for r, _ in choose(document, sample=1, sample_seed=3)]
    assert len({tuple(chosen) for chosen in ids.values()}) == 2  # both rows come up
    assert len(choose(document, sample=5)) == 2  # more than there are: every row
    report = rerun(published, sample=1, sample_seed=3)
    assert report.selection["rows"] == ids[3]
    assert {r.row for r in report.rows} == set(ids[3])


def test_bad_selections_and_documents_are_input_errors_naming_them(published, tmp_path):
    with pytest.raises(BenchInputError, match="-k 'resnet' selects no published value"):
        rerun(published, select_expr="resnet")
    broken = edited_copy(published, tmp_path, lambda d: d["rows"][0].update(rank="first"))
    with pytest.raises(BenchInputError, match=r"data\.json: .*field 'rows\.0\.rank'"):
        rerun(published, broken)
    with pytest.raises(BenchInputError, match="no published leaderboard data"):
        rerun(published, tmp_path / "nowhere")


def test_cli_missing_data_is_exit_2_with_the_path(tmp_path):
    result = bench("reproduce", "--suite", "smoke", "--published", "empty", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "empty/smoke/data.json" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_cli_reproduces_a_published_suite_in_worker_processes(tmp_path):
    """``bench run`` publishes; ``bench reproduce`` reruns it with process workers on a fresh
    store, writes its JSON, exits 0 and leaves the user's store as it was."""
    site = write_distribution(
        tmp_path / "site", "bench-toy", "1.0", {"toy": "tests.toy_plugin"}, modules={}
    )
    suite = tmp_path / "repro.yaml"
    suite.write_text(SUITE)
    ran = bench("run", "--suite", str(suite), "--no-progress", cwd=tmp_path, extra_path=[site])
    assert ran.returncode == 0, ran.stderr
    store = tmp_path / ".bench" / "results.sqlite"
    before = store.read_bytes()
    result = bench(
        "reproduce",
        "--suite",
        str(suite),
        "--json",
        "report.json",
        "--no-progress",
        cwd=tmp_path,
        extra_path=[site],
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["values"] == report["summary"]["identical"] == 18
    assert report["summary"]["conditions"] == "equal"
    assert "18 of 18 values identical" in result.stdout
    assert store.read_bytes() == before
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
