"""Escaping of every plugin-provided string for the two published formats.

A label, an error message or a parameter value comes from plugin or suite code we do not
control; written raw, ``<script>`` runs in any renderer that passes HTML through, a ``|``
adds table columns or rows, and a backtick ends a code span early. Markdown has no escaping
function in the standard library or in the libraries we use (markdown-it parses, it does not
write), so these are written here; ``tests/test_escaping.py`` renders the output with a real
CommonMark + GFM-tables parser (markdown-it-py) and with Chromium to check that nothing
injected survives.
"""

from __future__ import annotations

import html
import re

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")
_NEWLINES = re.compile(r"[\r\n\u2028\u2029]+")


def _one_line(value: object) -> str:
    return _NEWLINES.sub(" ", str(value))


def md(value: object) -> str:
    """``value`` as literal Markdown text, on one line (a table cell, a heading, prose).

    ``& < >`` become entities (no raw HTML, no autolink), the punctuation that starts
    emphasis, code, links, strikethrough or a table column is backslash-escaped, and line
    breaks become spaces (no new block, heading or table row can start).
    """
    text = html.escape(_one_line(value), quote=False)
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def md_code(value: object, in_table: bool = False) -> str:
    """``value`` as one inline code span: fenced by more backticks than any run inside it, so
    a backtick cannot close it early. In a GFM table cell ``|`` must still be written ``\\|``
    (the table is split on pipes before code spans are parsed)."""
    text = _one_line(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or longest:
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def html_text(value: object) -> str:
    """``value`` as HTML text or attribute content (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def json_for_script(text: str) -> str:
    """JSON text made safe inside ``<script type="application/json">``: no ``</script>``, no
    ``<!--`` and no HTML-significant character survives (JSON's ``\\u`` escapes mean the same
    to ``JSON.parse``)."""
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
