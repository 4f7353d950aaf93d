"""File names the writers derive from labels (shared by the figures and the site)."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    """A label as a safe file-name part: runs of anything but ``A-Za-z0-9_.-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "figure"
