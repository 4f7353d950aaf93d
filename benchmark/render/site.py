"""The static leaderboard site: ``leaderboards/index.html`` and one page per suite.

Every page works from ``file://`` with no network and no CDN: the suite's JSON document is
embedded in its page (a browser will not ``fetch`` a local file) and also written beside it as
``data.json`` for download and for programs; the script and stylesheet are two local files
under ``leaderboards/assets/``. Python writes only escaped text (``benchmark.render.escape``);
the script writes data with ``textContent``. ``tests/test_site_browser.py`` drives the pages in
a real headless Chromium.

No front-end framework: the page is one table with sorting, filters and downloads, which a few
hundred lines of plain JavaScript do, and a framework would need a build step and a bundle
checked into the repository.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from benchmark.render.escape import html_text, json_for_script
from benchmark.render.site_data import Document, dumps, schema

ASSETS = ("site.js", "site.css")
SCHEMA_FILE = "schema/leaderboard-v1.schema.json"


def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # nothing may load from anywhere but this folder: no CDN, no font, no beacon
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'none'\">\n"
        f"<title>{html_text(title)}</title>\n"
        f'<link rel="stylesheet" href="{up}assets/site.css">\n</head>\n<body>\n'
        f"{body}\n</body>\n</html>\n"
    )


def _table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table of already-escaped cells."""
    out = ['<table class="plain"><thead><tr>']
    out += [f"<th>{h}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _glossary(document: Document) -> str:
    arrows = {"higher": "↑ higher is better", "lower": "↓ lower is better", "neither": "a count"}
    return _table(
        ["column", "header", "evaluator", "direction", "what it measures", "paper"],
        [
            [
                f"<code>{html_text(m.column)}</code>",
                html_text(m.label),
                html_text(m.evaluator),
                arrows[m.direction],
                html_text(m.description),
                html_text(m.reference),
            ]
            for m in document.metrics
        ],
    )


def _provenance(document: Document) -> str:
    prov = document.provenance
    parts = [
        f"<p>Suite configuration hash <code>{html_text(prov.suite_config_hash)}</code>; "
        f"published from git revision <code>{html_text(prov.git_revision or 'unknown')}</code>"
        + (" (with uncommitted code changes)" if prov.git_dirty else "")
        + ".</p>"
    ]
    conditions = ", ".join(
        f"{c.jobs} job(s) on {html_text(c.device)} with "
        + ("unrecorded threads" if c.threads is None else f"{c.threads} thread(s)")
        for c in prov.conditions
    )
    if conditions:
        mixed = len(prov.conditions) > 1
        parts.append(
            f"<p>{'<strong>Mixed conditions:</strong> ' if mixed else 'Conditions: '}"
            f"{conditions}.{' Rows made under different conditions can differ in the last digits for that reason alone.' if mixed else ''}</p>"  # noqa: E501
        )
    rows = []
    for run in prov.runs:
        machine = run.machine
        cpu = machine.get("cpu") or machine.get("processor", "")
        threads = machine.get("executor") or f"{machine.get('torch_threads', '')} torch threads"
        rows.append(
            [
                str(run.run_id),
                html_text(run.started_at),
                html_text(run.status),
                html_text(f"{machine.get('platform', '')}; {cpu}; {threads}"),
                html_text(", ".join(f"{k} {v}" for k, v in sorted(run.versions.items()))),
            ]
        )
    parts.append(_table(["run", "started", "status", "machine", "versions"], rows))
    return "".join(parts)


def _figures(document: Document) -> str:
    if not document.figures and not document.figure_errors:
        return ""
    out = ['<h2 id="figures">Figures</h2>']
    for figure in document.figures:
        out.append(
            f'<figure><img src="{html_text(figure.path)}" alt="{html_text(figure.alt)}" '
            f'loading="lazy"><figcaption>{html_text(figure.alt)}</figcaption></figure>'
        )
    out += [f'<p class="note">figure not drawn: {html_text(e)}</p>' for e in document.figure_errors]
    return "".join(out)


def suite_page(document: Document) -> str:
    """The HTML of one suite's page, its JSON document embedded."""
    data = json_for_script(json.dumps(document.model_dump(mode="json"), separators=(",", ":")))
    body = f"""<p><a href="../index.html">All leaderboards</a> · <a href="README.md">Markdown</a> ·
<a href="data.json">data.json</a> · <a href="results.csv">results.csv</a></p>
<h1>Leaderboard: {html_text(document.suite)}</h1>
<p class="lead">{html_text(document.description)}</p>
<p class="note">Reproduce everything with
<code>bench run --suite {html_text(document.suite_ref)}</code>; click a row for its seeds,
parameters, errors and the command that reruns just that row.
Cells: mean ± std over seeds [95 % interval] (n seeds). {html_text(document.methods["interval"])}.
Ranks: {html_text(document.methods["rank"])}. Sorting a metric puts its best rows first; rows with
no value stay last.</p>
<div class="controls" id="controls"></div>
<p class="count" id="count"></p>
<div class="table-wrap"><table class="board" id="board"></table></div>
{_figures(document)}
<h2 id="glossary">Glossary</h2>
{_glossary(document)}
<h2 id="provenance">Provenance</h2>
{_provenance(document)}
<script type="application/json" id="bench-data">{data}</script>
<script src="../assets/site.js"></script>"""
    return _page(f"{document.suite} leaderboard", body, depth=1)


def write_suite(document: Document, target: Path) -> list[str]:
    """Write ``index.html`` and ``data.json`` of one suite into ``target``; the file names."""
    (target / "data.json").write_text(dumps(document), encoding="utf-8")
    (target / "index.html").write_text(suite_page(document), encoding="utf-8")
    return ["data.json", "index.html"]


def write_index(out_dir: Path) -> Path:
    """``out_dir/index.html`` over every suite folder, the shared assets and the schema.

    A folder with ``data.json`` gets its row count, run dates and a link to its page; a folder
    with only a Markdown ``README.md`` (published before the site existed) is listed as such.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "assets").mkdir(exist_ok=True)
    for name in ASSETS:
        source = resources.files("benchmark.render").joinpath("assets", name)
        with resources.as_file(source) as path:
            shutil.copyfile(path, out_dir / "assets" / name)
    schema_path = out_dir / SCHEMA_FILE
    schema_path.parent.mkdir(parents=True, exist_ok=True)
    schema_path.write_text(json.dumps(schema(), indent=1) + "\n", encoding="utf-8")
    rows = []
    for folder in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        data = folder / "data.json"
        name = html_text(folder.name)
        if data.is_file():
            try:
                document = Document.model_validate_json(data.read_text(encoding="utf-8"))
            except ValueError as exc:
                rows.append([name, "", f"unreadable data.json: {html_text(exc)}", "", ""])
                continue
            jobs = sum(len(r.jobs) for r in document.rows)
            done = sum(j.status == "ok" for r in document.rows for j in r.jobs)
            dates = sorted(run.started_at[:10] for run in document.provenance.runs)
            rows.append(
                [
                    f'<a href="{name}/index.html">{name}</a>',
                    str(len(document.rows)),
                    f"{done} of {jobs} jobs have results",
                    html_text(
                        ""
                        if not dates
                        else dates[0]
                        if dates[0] == dates[-1]
                        else f"{dates[0]} – {dates[-1]}"
                    ),
                    html_text(document.description[:220]),
                ]
            )
        elif (folder / "README.md").is_file():
            rows.append(
                [
                    f'<a href="{name}/README.md">{name}</a>',
                    "",
                    "Markdown only: published before the site; republish it with "
                    f"<code>bench run --suite {name}</code> then <code>bench publish</code>",
                    "",
                    "",
                ]
            )
    body = (
        '<h1>dependable-bench leaderboards</h1>\n<p class="lead">Every number comes from a '
        "run anyone can repeat with the command on its page; each page works offline, and its "
        f'data is in the same folder (<a href="{SCHEMA_FILE}">JSON schema</a>).</p>\n'
        + _table(["suite", "rows", "jobs", "runs", "what it measures"], rows)
    )
    index = out_dir / "index.html"
    index.write_text(_page("dependable-bench leaderboards", body, depth=0), encoding="utf-8")
    return index
