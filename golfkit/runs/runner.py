"""Run a RunPlan: preflight, then every seed in turn, then verify and assemble (`run_plan`).

A seed whose log is already complete is skipped; Ctrl-C stops the current seed and keeps its log as
`train_seed<S>.partial.log`. `golfkit record` (record_cmd.py) and `golfkit demo` (demo_cmd.py) call it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from golfkit.errors import GolfkitError
from golfkit.runs import presets
from golfkit.runs.preflight import load_run_config, run_preflight
from golfkit.runs.progress import SeedProgress
from golfkit.runs.runplan import RunPlan
from golfkit.runs.seedrun import (
    SeedInterrupted,
    final_log_path,
    is_complete_log,
    launch_command,
    run_seed,
    set_aside_complete_log,
)


def run_plan(
    plan: RunPlan,
    out: TextIO,
    err: TextIO,
    extra_env: Mapping[str, str] | None = None,
    process_env: Mapping[str, str] | None = None,
) -> int:
    """Run a whole plan; return 0 when every seed finished and the logs verify, 1 otherwise.

    `extra_env`: record settings added to the preset's (checked as the record's config);
    `process_env`: settings of the seeds' processes that are not the record's (the demo's thread count).
    """
    base_env = {**presets.preset_env(plan.preset, plan.runs_dir), **(extra_env or {})}
    cfg = load_run_config(plan, base_env)  # a bad ENV=VALUE raises the record's one-line RecordError
    print(
        f"golfkit record: preset {plan.preset}, seeds {' '.join(map(str, plan.seeds))}, "
        f"{plan.nproc} process(es), logs in {plan.runs_dir}",
        file=out,
    )
    findings = run_preflight(plan, cfg)
    for finding in findings:
        mark = "skip" if finding.skipped else "ok  " if finding.ok else "FAIL"
        print(f"  preflight {mark} {finding.check}: {finding.detail}", file=out if finding.ok else err)
    if not all(f.ok for f in findings):
        print("golfkit record: preflight failed; nothing was run", file=err)
        return 2
    if plan.name and (reason := _why_no_folder(plan)):
        print(f"golfkit record: note: --name {plan.name}: {reason}; the logs will still be verified", file=out)

    command = launch_command(plan.nproc, presets.uses_torchrun(plan.preset, plan.nproc), plan.program)
    status = run_seeds(plan, command, {**base_env, **(process_env or {})}, cfg, out, err)
    if status != 0:
        return status
    return _verify_and_assemble(plan, out, err)


def run_seeds(
    plan: RunPlan, command: list[str], base_env: Mapping[str, str], cfg: object, out: TextIO, err: TextIO
) -> int:
    """Run every seed of the plan in turn, skipping complete ones; 0, 1 (a seed failed) or 130 (Ctrl-C)."""
    for index, seed in enumerate(plan.seeds, start=1):
        final = final_log_path(plan.runs_dir, seed)
        if is_complete_log(final) and not plan.force:
            print(
                f"seed {seed} ({index}/{len(plan.seeds)}): complete log {final} kept, skipping (--force reruns it)",
                file=out,
            )
            continue
        kept = set_aside_complete_log(plan.runs_dir, seed) if plan.force else None
        if kept:
            print(f"seed {seed}: --force: previous complete log kept as {kept}", file=out)
        env = {
            **os.environ,
            # Each seed's model files go beside its log, not into the current directory (a later seed
            # would overwrite them there); an ARTIFACT_DIR override still wins.
            "ARTIFACT_DIR": str(plan.runs_dir / f"seed{seed}"),
            **base_env,
            **plan.overrides,
            "SEED": str(seed),
            "RUN_ID": f"{plan.preset}_seed{seed}",
            "PYTHONUNBUFFERED": "1",
        }
        progress = SeedProgress(seed, index, len(plan.seeds), cfg, out)
        print(f"seed {seed} ({index}/{len(plan.seeds)}): {' '.join(command)}", file=out)
        try:
            outcome = run_seed(seed, command, env, plan.runs_dir, on_line=progress.feed)
        except SeedInterrupted as stop:
            progress.close()
            print(
                f"golfkit record: interrupted during seed {seed}; partial log kept at {stop.partial_log}. "
                "Run the same command again to resume.",
                file=err,
            )
            return 130
        progress.close()
        if not outcome.complete:
            print(
                f"golfkit record: seed {seed} failed (exit {outcome.returncode}) after {outcome.seconds:.0f} s; "
                f"its log is kept at {outcome.log}: {progress.last_lines()}",
                file=err,
            )
            return 1
        print(f"seed {seed}: done in {outcome.seconds:.0f} s, log {outcome.log}", file=out)
    return 0


def _verify_and_assemble(plan: RunPlan, out: TextIO, err: TextIO) -> int:
    """Verify the seeds' logs and print the report; with --name, also assemble the PR folder and verify it whole.

    The report is printed whatever happens to the folder: an hour of GPU time must never end in a
    single error line. A folder is not assembled when the track needs more seeds than were run (the
    strict submission schema would refuse it) or when assembling fails for a reason the user can fix;
    the logs' report and that reason are printed instead.
    """
    from golfkit.check.rules import load_rules
    from golfkit.check.verify.report import to_text

    logs = [final_log_path(plan.runs_dir, seed) for seed in plan.seeds]
    rules = load_rules(presets.rules_for(plan.preset))  # the run's own rules, not the user's --rules
    if plan.name:
        reason = _why_no_folder(plan)
        if reason is None:
            from golfkit.check.verify import verify_folder
            from golfkit.pr.assemble import assemble_record

            try:
                folder = assemble_record(**presets.assemble_kwargs(plan, logs, shipped_code(plan, out)))
            except GolfkitError as exc:
                reason = exc.one_line()
            else:
                print(f"assembled {folder}", file=out)
                report = verify_folder(folder, rules=rules)
                print(to_text(report), file=out)
                return 0 if report.ok else 1
    from golfkit.check.verify.logs import verify_logs

    report = verify_logs(logs, rules=rules)
    print(to_text(report), file=out)
    if plan.name:
        print(f"golfkit record: no PR folder assembled for {plan.name!r}: {reason}", file=err)
        return 1
    return 0 if report.ok else 1


def _why_no_folder(plan: RunPlan) -> str | None:
    """Why --name cannot give a folder for this plan's seeds, known before any seed runs; None if it can."""
    from golfkit.check.rules import load_rules

    need = load_rules(presets.rules_for(plan.preset)).min_seeds
    if len(plan.seeds) >= need:
        return None
    return (
        f"{len(plan.seeds)} seed(s) listed, the track needs at least {need}; add seeds to the same command "
        "(complete seeds are skipped) and the folder is assembled at the end"
    )


def shipped_code(plan: RunPlan, out: TextIO) -> Path:
    """The train_gpt.py the folder ships: the program the seeds ran, or a fresh bundle of record/."""
    if plan.program is not None:
        return plan.program
    from golfkit.pr.bundle import write_bundle

    target = plan.runs_dir / "train_gpt.py"
    write_bundle(target)
    print(f"bundled record/ into {target}", file=out)
    return target
