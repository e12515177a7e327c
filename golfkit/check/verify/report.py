"""Render a `VerifyReport`: a per-seed table and one line per check for people, JSON for programs.

The text ends with a single PASS/FAIL line (mlperf's SUCCESS/FAILED); every failure is printed with
its fix, so one run shows everything to repair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from golfkit.check.logparse import RunRecord
from golfkit.check.verify import VerifyReport

# Step-time projection: how many steps a seed's measured ms/step gives in the 10-minute budget.
PROJECTION_S = 600.0


def _num(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def projected_steps(step_avg_ms: float | None, seconds: float = PROJECTION_S) -> int | None:
    """Steps `seconds` of training give at `step_avg_ms` (whole steps)."""
    return None if not step_avg_ms else int(seconds * 1000.0 // step_avg_ms)


def _run_facts(rec: RunRecord) -> dict[str, Any]:
    return {
        "gpu": rec.gpu_model,
        "gpu_count": rec.gpu_count,
        "max_wallclock_seconds": rec.max_wallclock_s,
        "gptq_reserve_seconds": rec.gptq_reserve_s,
        "gptq_calibration_s": rec.gptq_calibration_s,
        "train_time_with_gptq_s": rec.train_time_with_gptq_s,
        "projected_steps_600s": projected_steps(rec.step_avg_ms),
    }


def _alternate(rec: RunRecord, root: Path) -> dict[str, Any]:
    return {
        "log": str(rec.log.relative_to(root)),
        "val_bpb": rec.val_bpb,
        "val_loss": rec.val_loss,
        "train_time_s": rec.train_time_s,
        "steps": rec.steps,
        "step_avg_ms": rec.step_avg_ms,
        **_run_facts(rec),
    }


def seed_rows(report: VerifyReport) -> list[dict[str, Any]]:
    """One JSON-ready object per seed (the CLI contract's keys, plus headline and step_avg_ms)."""
    root = report.folder.path
    return [
        {
            "seed": r.seed,
            "val_bpb": r.val_bpb,
            "val_loss": r.val_loss,
            "artifact_bytes": r.train.artifact_bytes,
            "code_bytes": r.train.code_bytes,
            "model_bytes": r.train.model_bytes,
            "train_time_s": r.train.train_time_s,
            "eval_time_s": r.eval_time_s,
            "steps": r.train.steps,
            "log": r.log_names(root),
            "headline": r.scored.headline,
            "step_avg_ms": r.train.step_avg_ms,
            **_run_facts(r.train),
            "alternate_logs": [_alternate(a, root) for a in r.alternates],
        }
        for r in report.runs
    ]


def to_json(report: VerifyReport) -> dict[str, Any]:
    sig = report.significance
    return {
        "ok": report.ok,
        "folder": str(report.folder.path),
        "rules": report.rules.track,
        "rules_from": report.rules_from,
        "seeds": seed_rows(report),
        "checks": [
            {
                "name": f"{check.id} {check.title}",
                "id": check.id,
                "ok": outcome.status != "fail",
                "status": outcome.status,
                "severity": check.severity,
                "detail": outcome.detail,
                **({"fix": check.fix} if outcome.status == "fail" else {}),
            }
            for check, outcome in report.results
        ],
        "warnings": [f"{c.id} {c.title}: {o.detail}" for c, o in report.warnings],
        "significance": None
        if sig is None
        else {
            "policy": sig.policy,
            "candidate_mean_val_loss": sig.candidate_mean,
            "baseline_mean_val_loss": sig.baseline_mean,
            "improvement_nats": sig.improvement,
            "margin_nats": sig.margin,
            "one_sample": {"t": sig.one_sample.t, "p": sig.one_sample.p, "df": sig.one_sample.df},
            "welch": None if sig.welch is None else {"t": sig.welch.t, "p": sig.welch.p, "df": sig.welch.df},
            "significant": sig.significant,
        },
        "reproduction": None if report.reproduction is None else report.reproduction.to_json(),
    }


def to_text(report: VerifyReport) -> str:
    # Where the rules came from, when the user's input chose them (a program that passes its own rules,
    # as the demo does, says nothing more).
    source = f" from {report.rules_from}" if report.rules_from not in ("", "given") else ""
    lines = [f"golfkit verify {report.folder.path} (rules: {report.rules.track}{source})", ""]
    header = f"{'seed':>6}  {'val_bpb':>10}  {'val_loss':>10}  {'artifact B':>11}  {'train s':>8}  {'eval s':>7}"
    header += f"  {'steps':>6}  {'ms/step':>7}  {'@600s':>6}"
    lines += [header + "  log", "-" * (len(header) + 6)]
    for row in seed_rows(report):
        lines.append(
            f"{row['seed']:>6}  {_num(row['val_bpb'], '.8f'):>10}  {_num(row['val_loss'], '.8f'):>10}  "
            f"{_num(row['artifact_bytes'], ','):>11}  {_num(row['train_time_s'], '.3f'):>8}  "
            f"{_num(row['eval_time_s'], '.1f'):>7}  {_num(row['steps'], 'd'):>6}  "
            f"{_num(row['step_avg_ms'], '.2f'):>7}  {_num(row['projected_steps_600s'], 'd'):>6}  {row['log']}"
        )
        for alt in row["alternate_logs"]:
            lines.append(
                f"{'':>6}  {_num(alt['val_bpb'], '.8f'):>10}  {_num(alt['val_loss'], '.8f'):>10}  {'':>11}  "
                f"{_num(alt['train_time_s'], '.3f'):>8}  {'':>7}  {_num(alt['steps'], 'd'):>6}  "
                f"{_num(alt['step_avg_ms'], '.2f'):>7}  {_num(alt['projected_steps_600s'], 'd'):>6}  "
                f"{alt['log']} (also run, not judged)"
            )
    lines.append("@600s: steps 600 s of training give at the seed's ms/step (train time / steps)")
    lines.append("")
    for check, outcome in report.results:
        label = {"pass": "ok  ", "skip": "skip", "fail": "FAIL" if check.severity == "error" else "WARN"}
        lines.append(f"{check.id} {label[outcome.status.lower()]} {check.title}: {outcome.detail}")
        if outcome.status == "fail":
            lines.append(f"      fix: {check.fix}")
    lines.append("")
    failures = len(report.failures)
    lines.append("PASS" if report.ok else f"FAIL ({failures} check{'s' if failures != 1 else ''} failed)")
    return "\n".join(lines)
