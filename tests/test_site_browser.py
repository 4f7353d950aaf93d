"""The published site in a real headless Chromium (Debian's ``chromium``), from ``file://``:
sorting, filters, the CSV download, the permalink, row details, hostile labels, no console
error and no network request. Without Chromium or playwright these tests skip with the reason,
except under ``CI=true``, where they must run."""

import csv
import io
import os
import shutil
from urllib.parse import urlparse

import pytest

from tests.sitekit import HOSTILE, publish_toy_site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_or_reason():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'dependable-bench[test]')"
    if CHROMIUM is None:
        return "no chromium binary on PATH (Debian: apt-get install chromium)"
    return None


REASON = _browser_or_reason()
if REASON and os.environ.get("CI") == "true":
    raise RuntimeError(f"the browser tests must run under CI=true: {REASON}")
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from benchmark.registry import Registry
    from tests import toy_plugin

    registry = Registry.load(extra_plugins=[("toy", toy_plugin)])
    return publish_toy_site(registry, tmp_path_factory.mktemp("browser"), skip_seed=1)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


class Page:
    """A page with every console message, page error, dialog and request recorded."""

    def __init__(self, browser, url):
        self.context = browser.new_context(
            accept_downloads=True, viewport={"width": 1400, "height": 900}
        )
        self.page = self.context.new_page()
        self.errors, self.requests, self.dialogs = [], [], []
        self.page.on(
            "console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text)
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(url)
        self.page.wait_for_selector("#board tbody tr.row")

    def table(self) -> list[list[str]]:
        return self.page.evaluate(
            "Array.from(document.querySelectorAll('#board tbody tr.row'))"
            ".map(tr => Array.from(tr.children).map(td => td.textContent))"
        )

    def headers(self) -> list[str]:
        return self.page.evaluate(
            "Array.from(document.querySelectorAll('#board thead th')).map(th => th.dataset.col)"
        )

    def column(self, name: str) -> list[str]:
        index = self.headers().index(name)
        return [row[index] for row in self.table()]

    def sort_by(self, column: str) -> None:
        self.page.click(f'#board thead th[data-col="{column}"] button')

    def close(self):
        self.context.close()


@pytest.fixture
def page(browser, published):
    opened = Page(browser, published.page.as_uri())
    yield opened
    assert opened.errors == [], opened.errors
    assert opened.dialogs == []  # no hostile label ran as script
    schemes = {urlparse(url).scheme for url in opened.requests}
    assert schemes <= {"file", "blob", "data"}, opened.requests  # no network request at all
    opened.close()


def means(texts: list[str]) -> list[float | None]:
    return [float(t.split(" ")[0]) if t[:1].isdigit() else None for t in texts]


def test_sorting_a_column_orders_rows_by_value_and_direction(page, tmp_path):
    assert len(page.table()) == 12  # every planned row, both datasets
    page.sort_by("norm")  # lower is better: best (smallest) first
    values = means(page.column("norm"))
    known = [v for v in values if v is not None]
    assert known == sorted(known) and len(set(known)) > 3
    assert all(v is None for v in values[len(known) :])  # no value: last
    page.sort_by("norm")  # again: reversed, still no value last
    known_desc = [v for v in means(page.column("norm")) if v is not None]
    assert known_desc == sorted(known, reverse=True)
    page.sort_by("accuracy")  # higher is better: best first
    acc = [v for v in means(page.column("accuracy")) if v is not None]
    assert acc == sorted(acc, reverse=True)
    aria = page.page.get_attribute('#board thead th[data-col="accuracy"]', "aria-sort")
    assert aria == "descending"
    page.page.screenshot(path=str(tmp_path / "site.png"), full_page=True)
    assert (tmp_path / "site.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filters_show_the_right_rows(page):
    page.page.select_option("#facet-dataset", "toy-bars-b")
    assert len(page.table()) == 6
    assert set(page.column("dataset")) == {"toy-bars-b"}
    assert page.page.text_content("#count") == "6 of 12 rows"
    page.page.fill("#search", "LONG")
    assert [r[page.headers().index("debiaser")] for r in page.table()] == ["long"]
    page.page.select_option("#facet-dataset", "")
    assert len(page.table()) == 2
    page.page.fill("#search", "")
    page.page.select_option("#facet-evaluator", "toy-norm")
    assert page.headers() == ["rank", "dataset", "model", "debiaser", "norm", "parameters"]


def test_hostile_labels_are_shown_as_text(page):
    debiasers = page.column("debiaser")
    for label in HOSTILE.values():
        assert debiasers.count(label) == 2  # one row per dataset, the label as typed
    assert page.page.evaluate("document.querySelectorAll('#board img, #board b').length") == 0


def test_csv_download_equals_the_visible_table(page):
    page.page.select_option("#facet-dataset", "toy-bars")
    page.sort_by("norm")
    page.page.click("#columns summary")
    page.page.uncheck('#columns input[data-col="x"]')
    visible = page.table()
    headers = page.headers()
    assert "x" not in headers
    with page.page.expect_download() as download:
        page.page.click("#download-csv")
    with open(download.value.path(), encoding="utf-8") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    head, body = rows[0], rows[1:]
    assert len(body) == len(visible)
    shown = [head.index(h) for h in headers]  # the shown text of each visible column
    for csv_row, table_row in zip(body, visible, strict=True):
        assert [csv_row[i].lstrip("'") for i in shown] == table_row
        for metric in headers[len(headers) - 2 :]:
            text = csv_row[head.index(metric)]
            mean = csv_row[head.index(f"{metric} mean")]
            if mean and metric != "parameters":  # a count is written as a count
                assert text.startswith(f"{float(mean):.4f}")
            elif mean:
                assert text.startswith(f"{float(mean):g} ")


def test_permalink_restores_filters_sort_and_columns(page, browser):
    page.page.fill("#search", "o")
    page.page.select_option("#facet-dataset", "toy-bars-b")
    page.sort_by("norm")
    page.sort_by("norm")
    page.page.click("#columns summary")
    page.page.uncheck('#columns input[data-col="accuracy"]')
    url = page.page.get_attribute("#permalink", "href")
    assert "#" in url and "sort=norm%3Adesc" in url
    expected, expected_headers = page.table(), page.headers()
    again = Page(browser, url)
    try:
        assert again.table() == expected and again.headers() == expected_headers
        assert again.page.input_value("#search") == "o"
        assert again.page.input_value("#facet-dataset") == "toy-bars-b"
        assert again.errors == []
    finally:
        again.close()


def test_row_details_show_every_seed_and_the_command(page, published):
    import json

    doc = json.loads((published.page.parent / "data.json").read_text())
    row = next(r for r in doc["rows"] if r["debiaser"] == "short" and r["dataset"] == "toy-bars")
    page.page.click(f'#board tbody tr.row[data-row="{row["id"]}"]')
    details = page.page.locator("tr.details")
    assert details.locator("code.command").text_content() == row["command"]
    statuses = details.locator("tr.job").evaluate_all("rows => rows.map(r => r.className)")
    assert sorted(statuses) == sorted(f"job {j['status']}" for j in row["jobs"])
    assert "missing" in " ".join(statuses) and "failed" in " ".join(statuses)
    assert "row=" in page.page.get_attribute("#permalink", "href")
