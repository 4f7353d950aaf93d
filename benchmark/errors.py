"""The one error type that means "the user's input is wrong" (CLI: message, exit 2, no traceback).

Everything else that goes wrong is either a plugin's failure (recorded as a failed job or a
broken plugin) or a bug in the core (a traceback is the right answer there).
"""

from __future__ import annotations


class BenchInputError(Exception):
    """Bad user input: names the file, line and field where known."""

    def __init__(self, message: str, where: str = "", line: int | None = None) -> None:
        self.message = message
        self.where = where
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        location = self.where
        if location and self.line is not None:
            location = f"{location}:{self.line}"
        return f"{location}: {self.message}" if location else self.message
