"""The record program's one exception type for problems the user can fix.

`record/` is bundled alone into `train_gpt.py`, so it cannot import golfkit; `train.main()` prints a
`RecordError` as one line (where: what (fix)) and exits 2 instead of showing a traceback.
"""

from __future__ import annotations


class RecordError(Exception):
    """A bad setting, a missing or corrupt file: where it is, what is wrong, how to fix it."""

    def __init__(self, where: str, what: str, fix: str = "") -> None:
        self.where, self.what, self.fix = str(where), what, fix
        line = f"{self.where}: {what}" if self.where else what
        super().__init__(f"{line} ({fix})" if fix else line)
