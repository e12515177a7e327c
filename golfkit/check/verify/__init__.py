"""`golfkit verify`: check a record folder against its track's rules.

`verify_folder(path, baseline=None, rules=None)` is the entry point for other code (the assembler, the
record orchestration); `golfkit.check.verify_cmd` is the CLI around it. Pieces: `folder` (find and pair
logs), `agreement` (submission.json vs logs), `baseline` (what to beat), `checks` (numbered rules),
`report` (text and JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from golfkit.check.rules import Rules, load_rules, track_rules_name
from golfkit.check.stats import Significance, mean, significance
from golfkit.check.verify.baseline import load_baseline
from golfkit.check.verify.checks import Check, Outcome, VerifyContext, all_checks, run_checks
from golfkit.check.verify.folder import RecordFolder, SeedRun, load_folder
from golfkit.check.verify.reproduce import Reproduction, compare

# Checks that need a PR folder's README.md / submission.json, which a bare runs directory does not have.
FOLDER_ONLY_CHECKS = ("GK101", "GK111")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    folder: RecordFolder
    rules: Rules
    results: list[tuple[Check, Outcome]]
    significance: Significance | None
    rules_from: str = ""  # why these rules: "--rules", "the folder's path", "submission.json", "default"
    reproduction: Reproduction | None = None

    @property
    def runs(self) -> list[SeedRun]:
        return self.folder.runs

    @property
    def failures(self) -> list[tuple[Check, Outcome]]:
        return [(c, o) for c, o in self.results if o.status == "fail" and c.severity == "error"]

    @property
    def warnings(self) -> list[tuple[Check, Outcome]]:
        return [(c, o) for c, o in self.results if o.status == "fail" and c.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def outcome(self, check_id: str) -> Outcome:
        """The outcome of one check by ID (tests and callers use this)."""
        for check, result in self.results:
            if check.id == check_id:
                return result
        raise KeyError(check_id)


def verify_folder(
    path: str | Path,
    baseline: str | Path | None = None,
    rules: Rules | str | Path | None = None,
    require_code: bool = True,
    against: str | Path | None = None,
    tolerance: float | None = None,
) -> VerifyReport:
    """Run every check on a record folder. Raises GolfkitError when the input is unusable (no folder,
    a truncated log, a bad baseline or rule file); rule violations are in the report, not raised.

    Without `rules`, the track is the folder's (`records/track_non_record_16mb/...`), else the one its
    submission.json names (`"track": "non_record_16mb"`), else the 10-minute track. With `against`
    (a published submission.json), the folder is a reproduction: a runs directory without README.md
    and submission.json is checked on its logs alone, and GK115 compares it seed by seed."""
    folder = load_folder(path)
    rules, rules_from = _rules_for(folder, rules)
    ctx = VerifyContext(folder=folder, rules=rules, require_code=require_code)
    checks = all_checks()
    if against is not None:
        ctx.reproduction = compare(against, folder.runs, rules, tolerance)
        if folder.submission is None and "README.md" not in folder.files:
            checks = [c for c in checks if c.id not in FOLDER_ONLY_CHECKS]
    if baseline is not None and rules.significance is not None and len(folder.runs) >= 2:
        losses = [r.val_loss for r in folder.runs]
        nats_per_bpb = mean(losses) / mean([r.val_bpb for r in folder.runs])
        base = load_baseline(baseline, nats_per_bpb)
        ctx.baseline_label = base.label
        ctx.significance = significance(
            losses, base.losses, rules.significance.min_improvement_nats, rules.significance.p_value
        )
    return VerifyReport(
        folder=folder,
        rules=rules,
        results=run_checks(ctx, checks),
        significance=ctx.significance,
        rules_from=rules_from,
        reproduction=ctx.reproduction,
    )


def _rules_for(folder: RecordFolder, rules: Rules | str | Path | None) -> tuple[Rules, str]:
    if isinstance(rules, Rules):
        return rules, "given"
    if rules is not None:
        return load_rules(rules), "--rules"
    for part in reversed(folder.path.resolve().parts):
        if part.startswith("track_") and (name := track_rules_name(part)) is not None:
            return load_rules(name), f"the folder's path ({part}/)"
    track = (folder.submission or {}).get("track")
    if isinstance(track, str) and (name := track_rules_name(track)) is not None:
        return load_rules(name), f'submission.json ("track": "{track}")'
    return load_rules(None), "default"


__all__ = ["VerifyReport", "verify_folder"]
