"""The one exception type for user-facing problems.

A `GolfkitError` is a mistake in the user's input or environment (a missing file, a truncated log,
a bad value), never a bug. The CLI prints it as one line, ``where: what (fix)``, and exits 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class GolfkitError(Exception):
    """A problem the user can fix: where it is, what is wrong, and how to fix it."""

    def __init__(self, where: str, what: str, fix: str = "") -> None:
        self.where = str(where)
        self.what = what
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        line = f"{self.where}: {self.what}" if self.where else self.what
        return f"{line} ({self.fix})" if self.fix else line
