"""Every plugin-provided string is escaped in the Markdown page and in the site page: hostile
labels, a hostile metric header and a hostile error message, read back by a real CommonMark +
GFM-tables parser (markdown-it-py) and by Python's HTML parser."""

import json
import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from benchmark.render.escape import html_text, json_for_script, md, md_code
from tests.sitekit import ERROR, HOSTILE, publish_toy_site

PARSER = MarkdownIt("commonmark", {"html": True}).enable("table")  # raw HTML passes, as GitHub's


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from benchmark.registry import Registry
    from tests import toy_plugin

    registry = Registry.load(extra_plugins=[("toy", toy_plugin)])
    return publish_toy_site(registry, tmp_path_factory.mktemp("escape"))


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


@pytest.mark.parametrize("text", [*HOSTILE.values(), ERROR, "a\nb | c\r\n### d", "*x* _y_ ~z~"])
def test_md_renders_to_exactly_the_text(text):
    html = PARSER.render(f"| h |\n|---|\n| {md(text)} |\n")
    tags = parsed(html)
    assert [t for t, _ in tags.tags] == ["table", "thead", "tr", "th", "tbody", "tr", "td"]
    shown = "".join(tags.text).strip().split("\n")[-1]  # the body cell, after the header
    assert shown == re.sub(r"[\r\n]+", " ", text)


@pytest.mark.parametrize("text", ["x`y", "``a``", "`", "a | b", "plain"])
def test_md_code_keeps_backticks_inside_one_code_span(text):
    for in_table in (False, True):
        source = md_code(text, in_table)
        html = PARSER.render(f"| h |\n|---|\n| {source} |\n" if in_table else source)
        tags = parsed(html)
        assert [t for t, _ in tags.tags].count("code") == 1
        code = html.split("<code>")[1].split("</code>")[0]
        assert code.replace("&amp;", "&").strip() == text.strip()


def test_json_for_script_cannot_close_the_script_element():
    text = json_for_script(json.dumps({"a": "</script><script>alert(1)</script> & <!--"}))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><script>alert(1)</script> & <!--"}
    assert html_text('"><img onerror=x>') == "&quot;&gt;&lt;img onerror=x&gt;"


def test_markdown_page_keeps_hostile_strings_as_text(published):
    readme = (published.page.parent / "README.md").read_text(encoding="utf-8")
    html = PARSER.render(readme)
    tags = parsed(html)
    assert not [t for t, _ in tags.tags if t in ("script", "img", "b")]
    # the only link is the page's own link to the site
    assert [a.get("href") for t, a in tags.tags if t == "a"] == ["index.html"]
    text = "".join(tags.text)
    for value in (*HOSTILE.values(), ERROR, "acc <b>|</b> `x`"):
        assert value in text, value
    # no injected table rows or columns: each ranked table has 6 rows of 1 + 2 + 3 cells
    tables = html.split("<table>")[1:]
    ranked = tables[0], tables[2]  # ranked table, rank table, per dataset
    for table in ranked:
        rows = table.split("</thead>")[1].split("</table>")[0].count("<tr>")
        assert rows == 6
        first_row = table.split("<tbody>")[1].split("</tr>")[0]
        assert first_row.count("<td") == 1 + 2 + 4  # rank, model, debiaser; 4 metrics
    failures = tables[-1]
    assert failures.count("<tr>") == 1 + 2 * 6 * 2  # header + every toy-raise job
    assert all(row.count("<td") == 3 for row in failures.split("<tbody>")[1].split("</tr>")[:-1])


def test_site_page_keeps_hostile_strings_as_text(published):
    page = published.page.read_text(encoding="utf-8")
    tags = parsed(page)
    scripts = [a for t, a in tags.tags if t == "script"]
    assert scripts == [
        {"type": "application/json", "id": "bench-data"},
        {"src": "../assets/site.js"},
    ]
    assert not [t for t, _ in tags.tags if t in ("img", "b", "iframe", "object")]
    embedded = page.split('id="bench-data">')[1].split("</script>")[0]
    assert json.loads(embedded) == json.loads((published.page.parent / "data.json").read_text())
    index = (published.out / "index.html").read_text(encoding="utf-8")
    assert "<b>" not in index and "&lt;b&gt;with&lt;/b&gt;" in index
