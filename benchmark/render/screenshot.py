"""``python -m benchmark.render.screenshot PAGE OUT.png``: a screenshot of a published page in
headless Chromium (the README's picture of the site), with the same browser the tests drive.

Needs playwright (the ``test`` extra) and a Chromium binary (``--chromium``, default the
``chromium`` on PATH); playwright's own browser download is never used.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def screenshot(page: Path, out: Path, chromium: str, width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        tab = browser.new_page(viewport={"width": width, "height": height})
        tab.goto(page.resolve().as_uri())
        tab.wait_for_selector("#board tbody tr.row")
        tab.screenshot(path=str(out))
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=860)
    args = parser.parse_args(argv)
    if not args.chromium:
        print("error: no chromium on PATH; pass --chromium PATH", file=sys.stderr)
        return 2
    if not args.page.is_file():
        print(f"error: {args.page}: no such page", file=sys.stderr)
        return 2
    screenshot(args.page, args.out, args.chromium, args.width, args.height)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
