"""`golfkit verify`: check a record folder against its track's rules.

`verify_folder(path, baseline=None, rules=None)` is the entry point for other code (the assembler, the
record orchestration); `golfkit.verify.command` is the CLI around it. Pieces: `folder` (find and pair
logs), `agreement` (submission.json vs logs), `baseline` (what to beat), `checks` (numbered rules),
`report` (text and JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from golfkit.rules import Rules, load_rules
from golfkit.stats import Significance, mean, significance
from golfkit.verify.baseline import load_baseline
from golfkit.verify.checks import Check, Outcome, VerifyContext, run_checks
from golfkit.verify.folder import RecordFolder, SeedRun, load_folder


@dataclass(frozen=True, slots=True)
class VerifyReport:
    folder: RecordFolder
    rules: Rules
    results: list[tuple[Check, Outcome]]
    significance: Significance | None

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
) -> VerifyReport:
    """Run every check on a record folder. Raises GolfkitError when the input is unusable (no folder,
    a truncated log, a bad baseline or rule file); rule violations are in the report, not raised."""
    rules = rules if isinstance(rules, Rules) else load_rules(rules)
    folder = load_folder(path)
    ctx = VerifyContext(folder=folder, rules=rules, require_code=require_code)
    if baseline is not None and rules.significance is not None and len(folder.runs) >= 2:
        losses = [r.val_loss for r in folder.runs]
        nats_per_bpb = mean(losses) / mean([r.val_bpb for r in folder.runs])
        base = load_baseline(baseline, nats_per_bpb)
        ctx.baseline_label = base.label
        ctx.significance = significance(
            losses, base.losses, rules.significance.min_improvement_nats, rules.significance.p_value
        )
    return VerifyReport(folder=folder, rules=rules, results=run_checks(ctx), significance=ctx.significance)


__all__ = ["VerifyReport", "verify_folder"]
