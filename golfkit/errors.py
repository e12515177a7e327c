"""The exception types for user-facing problems: golfkit's own and the record's.

A `GolfkitError` is a mistake in the user's input or environment (a missing file, a truncated log,
a bad value), never a bug. The record program raises `RecordError` (record/errors.py) for the same
kind of mistake, and cannot raise ours: record/ never imports golfkit. `USER_ERRORS` names both, so
golfkit lets a `RecordError` travel up unchanged and the CLI (cli.py) catches both in one place, prints
the one line, ``where: what (fix)``, and exits 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from record.errors import RecordError


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


# The two types the CLI prints as one line (their str() is that line) instead of a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (GolfkitError, RecordError)
