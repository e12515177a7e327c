"""Verify seed logs that are not (yet) in a record folder: a `runs/<preset>/` directory after a run.

`golfkit record` without `--name` leaves only logs behind, with no README.md or submission.json, so the
folder checks (required files, submission agreement) do not apply; every other check (seed naming, seed
count, byte cap, time limits, forced stops, same configuration and code) reads the logs alone. The
result is the same `VerifyReport` as for a folder, so it renders with the same per-seed table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from golfkit.check.logparse import parse_log
from golfkit.check.rules import Rules, load_rules
from golfkit.check.verify import FOLDER_ONLY_CHECKS, VerifyReport
from golfkit.check.verify.checks import VerifyContext, all_checks, run_checks
from golfkit.check.verify.folder import RecordFolder, SeedRun
from golfkit.errors import GolfkitError


def verify_logs(logs: Sequence[str | Path], rules: Rules | str | Path | None = None) -> VerifyReport:
    """Run every check that reads logs alone on one training log per seed (all in one directory)."""
    rules = rules if isinstance(rules, Rules) else load_rules(rules)
    paths = [Path(p) for p in logs]
    if not paths:
        raise GolfkitError("logs", "no logs to verify", "run at least one seed first")
    root = paths[0].parent
    if any(p.parent != root for p in paths):
        raise GolfkitError("logs", "the logs are in different directories", "verify one runs directory at a time")
    folder = RecordFolder(path=root, files={p.name for p in paths}, submission=None, submission_problem=None, runs=[])
    runs: dict[int, SeedRun] = {}
    for record in (parse_log(p) for p in paths):
        if record.seed is None:
            folder.problems.append(f"{record.log.name}: no seed (no `seed:` in its hyperparameters, none in its name)")
        elif record.seed in runs:
            folder.problems.append(
                f"seed {record.seed}: two logs, {runs[record.seed].train.log.name} and {record.log.name}"
            )
        else:
            runs[record.seed] = SeedRun(record.seed, record)
    folder.runs = list(runs.values())
    checks = [c for c in all_checks() if c.id not in FOLDER_ONLY_CHECKS]
    ctx = VerifyContext(folder=folder, rules=rules, require_code=False)
    return VerifyReport(folder=folder, rules=rules, results=run_checks(ctx, checks), significance=None)
