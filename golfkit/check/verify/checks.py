"""The verifier's rules: small numbered checks, each `check(ctx) -> Outcome`, docstring = how to fix.

Every check reads the parsed folder (`VerifyContext`) and the track's limits (`Rules`, from YAML) and
returns pass, fail with a message naming the seed, the number and the margin, or skip when it does not
apply. `CHECKS` lists them in report order; checks kept in other modules (e.g. the version-mismatch
warning of `golfkit/check/verify/version_checks.py`) are found through `EXTRA_CHECK_MODULES`, each module
exposing its own `CHECKS` list.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from golfkit.check.rules import Rules
from golfkit.check.stats import Significance
from golfkit.check.verify.agreement import submission_mismatches
from golfkit.check.verify.folder import RecordFolder, SeedRun
from golfkit.check.verify.reproduce import Reproduction

Status = Literal["pass", "fail", "skip"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    detail: str = ""


def passed(detail: str = "") -> Outcome:
    return Outcome("pass", detail)


def failed(detail: str) -> Outcome:
    return Outcome("fail", detail)


def skipped(detail: str) -> Outcome:
    return Outcome("skip", detail)


@dataclass(slots=True)
class VerifyContext:
    """Everything a check may look at."""

    folder: RecordFolder
    rules: Rules
    require_code: bool = True
    significance: Significance | None = None  # None when no baseline was given
    baseline_label: str = ""
    reproduction: Reproduction | None = None  # None when no --against was given

    @property
    def runs(self) -> list[SeedRun]:
        return self.folder.runs

    def log_name(self, run: SeedRun) -> str:
        return run.log_names(self.folder.path)


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    title: str
    func: Callable[[VerifyContext], Outcome]
    severity: Severity = "error"

    @property
    def fix(self) -> str:
        return " ".join((self.func.__doc__ or "").split())


def _fmt_bytes(n: int) -> str:
    return f"{n:,} B"


def check_required_files(ctx: VerifyContext) -> Outcome:
    """Add README.md, submission.json and train_gpt.py to the folder (the PR must be runnable as is);
    use --no-code only to audit a folder whose code is kept elsewhere."""
    required = [f for f in ctx.rules.required_files if ctx.require_code or f != "train_gpt.py"]
    missing = [f for f in required if f not in ctx.folder.files]
    if missing:
        return failed(f"missing {', '.join(missing)} in {ctx.folder.path.name or ctx.folder.path.resolve()}")
    note = "" if ctx.require_code else " (train_gpt.py not required: --no-code)"
    return passed(f"{', '.join(required)} present{note}")


def check_logs_pair_up(ctx: VerifyContext) -> Outcome:
    """Keep exactly one training log per seed (name it train_seed<N>.log); put an eval-only re-run
    beside the training log of the same seed."""
    if ctx.folder.problems:
        return failed("; ".join(ctx.folder.problems))
    extra = f" ({'; '.join(ctx.folder.notes)})" if ctx.folder.notes else ""
    return passed(f"{len(ctx.runs)} training logs, one per seed{extra}")


def check_seed_names(ctx: VerifyContext) -> Outcome:
    """Name each log after the seed it actually ran with (its Hyperparameters `seed:`), or re-run."""
    wrong = [
        f"{ctx.log_name(r)} is named for seed {r.train.file_seed} but ran with seed {r.seed}"
        for r in ctx.runs
        if r.train.file_seed is not None and r.train.file_seed != r.seed
    ]
    return failed("; ".join(wrong)) if wrong else passed("every log's name matches its seed")


def check_min_seeds(ctx: VerifyContext) -> Outcome:
    """Run more seeds of the same configuration (the track asks for at least this many)."""
    need, have = ctx.rules.min_seeds, len(ctx.runs)
    seeds = ", ".join(str(r.seed) for r in ctx.runs)
    if have < need:
        return failed(f"{have} seed(s) ({seeds}); the track needs at least {need}, {need - have} more")
    return passed(f"{have} seeds: {seeds}")


def check_artifact_size(ctx: VerifyContext) -> Outcome:
    """Shrink the artifact (code + compressed model) under the decimal byte cap on every seed;
    compressed size moves a few KB run to run, so keep slack."""
    cap = ctx.rules.artifact_byte_cap
    if cap is None:
        return skipped("this track has no byte cap")
    problems, sizes = [], []
    for r in ctx.runs:
        size = r.train.artifact_bytes
        if size is None:
            problems.append(f"seed {r.seed}: the log reports no artifact size ({ctx.log_name(r)})")
        elif size > cap:
            problems.append(
                f"seed {r.seed}: artifact {_fmt_bytes(size)} exceeds the {_fmt_bytes(cap)} cap "
                f"by {_fmt_bytes(size - cap)} ({ctx.log_name(r)})"
            )
        else:
            sizes.append(size)
    if problems:
        return failed("; ".join(problems))
    return passed(f"max {_fmt_bytes(max(sizes))}, slack {_fmt_bytes(cap - max(sizes))}")


def _train_time_text(run: SeedRun) -> str:
    t, gptq = run.train.train_time_with_gptq_s, run.train.gptq_calibration_s
    if gptq is None:
        return f"{t:.3f} s"
    return f"{t:.3f} s ({run.train.train_time_s:.3f} s + {gptq:g} s GPTQ calibration)"


def check_train_time(ctx: VerifyContext) -> Outcome:
    """Stop training (GPTQ calibration included) before the limit on every seed: lower the
    wallclock cap or reserve more time for quantization."""
    limit = ctx.rules.train_time_limit_s
    if limit is None:
        return skipped("this track has no training time limit")
    problems, times = [], []
    for r in ctx.runs:
        t = r.train.train_time_with_gptq_s
        if t is None:
            problems.append(f"seed {r.seed}: the log reports no training time ({ctx.log_name(r)})")
        elif t >= limit:
            problems.append(
                f"seed {r.seed}: training took {_train_time_text(r)}, {t - limit:.3f} s over the {limit:g} s "
                f"limit ({ctx.log_name(r)})"
            )
        else:
            times.append((t, r))
    if problems:
        return failed("; ".join(problems))
    worst = max(times, key=lambda tr: tr[0])
    return passed(f"max {_train_time_text(worst[1])} of {limit:g} s")


def check_forced_stop(ctx: VerifyContext) -> Outcome:
    """Let the wallclock cap stop training; a fixed stop step ignores the clock (PR #1908)."""
    keys = ctx.rules.forced_stop_keys
    if not keys:
        return skipped("no forced-stop settings defined for this track")
    hits = [
        f"seed {r.seed}: {key}={r.train.hyperparameters[key]}"
        for r in ctx.runs
        for key in keys
        if r.train.hyperparameters.get(key, "") not in ("", "0", "None", "False")
    ]
    return failed("; ".join(hits)) if hits else passed("no forced stop step set")


def check_eval_time(ctx: VerifyContext) -> Outcome:
    """Make evaluation (including TTT and any precompute) finish within the limit on every seed."""
    limit = ctx.rules.eval_time_limit_s
    if limit is None:
        return skipped("this track has no evaluation time limit")
    problems, times = [], []
    for r in ctx.runs:
        t = r.eval_time_s
        if t is None:
            problems.append(f"seed {r.seed}: the log reports no evaluation time ({ctx.log_name(r)})")
        elif t >= limit:
            problems.append(
                f"seed {r.seed}: evaluation took {t:.1f} s, {t - limit:.1f} s over the {limit:g} s limit "
                f"({ctx.log_name(r)})"
            )
        else:
            times.append(t)
    if problems:
        return failed("; ".join(problems))
    return passed(f"max {max(times):.1f} s of {limit:g} s")


def check_run_settings(ctx: VerifyContext) -> Outcome:
    """Train on the track's hardware (its GPU model and count), with a wallclock cap no longer than
    the limit, and reserve at least the GPTQ calibration time out of that cap."""
    rules, problems, seen = ctx.rules, [], []
    for r in ctx.runs:
        t, where = r.train, f"seed {r.seed}"
        if rules.gpu_model is not None and t.gpu_model is not None and rules.gpu_model not in t.gpu_model:
            problems.append(f"{where}: ran on {t.gpu_model}, the track needs {rules.gpu_model}")
        if rules.gpu_count is not None and t.gpu_count is not None and t.gpu_count != rules.gpu_count:
            problems.append(f"{where}: ran on {t.gpu_count} GPUs, the track needs {rules.gpu_count}")
        limit = rules.train_time_limit_s
        if limit is not None and t.max_wallclock_s is not None and t.max_wallclock_s > limit:
            problems.append(f"{where}: max_wallclock_seconds {t.max_wallclock_s:g} exceeds the {limit:g} s limit")
        reserve, gptq = t.gptq_reserve_s, t.gptq_calibration_s
        if problem := _reserve_problem(limit, t.max_wallclock_s, reserve, gptq):
            problems.append(f"{where}: {problem}")
        gpus = f"{t.gpu_count or '?'}x {t.gpu_model or 'GPU model not logged'}"
        seen.append(f"{gpus}, cap {_num_or_dash(t.max_wallclock_s)} s, GPTQ reserve {_num_or_dash(reserve)} s")
    if problems:
        return failed("; ".join(problems))
    if not any(r.train.gpu_model or r.train.gpu_count or r.train.max_wallclock_s for r in ctx.runs):
        return skipped("the logs record no GPU, wallclock cap or GPTQ reserve")
    return passed("; ".join(sorted(set(seen))))


def _reserve_problem(limit: float | None, cap: float | None, reserve: float | None, gptq: float | None) -> str:
    """Why a run's GPTQ reserve lets training plus calibration run past `limit`, or "" when it does not.

    Training stops at cap - reserve, then calibrates: that must end within the limit. A log that does
    not report the calibration time is judged on its reserve alone (none at all, with a cap at the limit,
    always overruns)."""
    if limit is None or reserve is None:
        return ""
    end = None if cap is None else cap - reserve + (gptq or 0.0)
    if gptq is not None and reserve < gptq and (end is None or end > limit):
        return f"reserves {reserve:g} s for GPTQ calibration that took {gptq:g} s"
    if gptq is None and reserve <= 0 and cap is not None and cap >= limit:
        return f"gptq_reserve_seconds {reserve:g} with a {cap:g} s cap: no time left for GPTQ calibration"
    return ""


def _num_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def check_code_matches_file(ctx: VerifyContext) -> Outcome:
    """Ship the train_gpt.py the seeds ran: its size must be the code bytes the logs count (the file
    itself, or for a log that counts `(compressed)` and `(uncompressed)` bytes, either form)."""
    code = ctx.folder.path / "train_gpt.py"
    if not code.is_file():
        return skipped("no train_gpt.py in the folder")
    counted = {r.train.code_bytes for r in ctx.runs if r.train.code_bytes is not None}
    if not counted:
        return skipped("no log counts its code bytes")
    size = code.stat().st_size
    accepted = counted | {r.train.code_bytes_uncompressed for r in ctx.runs if r.train.code_bytes_uncompressed}
    if size in accepted:
        return passed(f"train_gpt.py is {_fmt_bytes(size)}, as the logs count")
    counts = ", ".join(_fmt_bytes(c) for c in sorted(counted))
    gap = size - min(counted)
    return failed(f"train_gpt.py is {_fmt_bytes(size)} but the logs count {counts} of code ({gap:+,} B)")


def check_reproduction(ctx: VerifyContext) -> Outcome:
    """Re-run the seeds that differ (same code, same seed, the track's hardware) or explain the gap:
    a reproduction must give each published seed's val_bpb within the stated tolerance."""
    rep = ctx.reproduction
    if rep is None:
        return skipped("no --against given")
    return passed(rep.summary()) if rep.ok else failed(rep.summary())


def _odd_ones_out(values: dict[int, str]) -> list[tuple[int, str, str, list[int]]]:
    """(seed, its value, the usual value, seeds with the usual value) for each seed off the majority.

    Naming the odd seed, not the first one, is what tells the author which run to redo."""
    counts: dict[str, list[int]] = {}
    for seed, value in values.items():
        counts.setdefault(value, []).append(seed)
    usual = max(counts, key=lambda v: len(counts[v]))  # ties: the first seed's value (dicts keep order)
    return [(seed, value, usual, counts[usual]) for seed, value in values.items() if value != usual]


def _seeds(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}"


def check_same_config(ctx: VerifyContext) -> Outcome:
    """Run every seed with the same settings (only the seed, run id, ranks and paths may differ);
    re-run the odd seed with the submitted configuration."""
    dumped = [r for r in ctx.runs if r.train.hyperparameters]
    if len(dumped) < 2:
        return skipped("fewer than two logs with a Hyperparameters dump")
    keys = sorted({k for r in dumped for k in r.train.hyperparameters if not ctx.rules.config_key_ignored(k)})
    problems = []
    for key in keys:
        values = {r.seed: r.train.hyperparameters.get(key, "<absent>") for r in dumped}
        problems += [
            f"seed {seed}: {key}={value} ({_seeds(others)}: {usual})"
            for seed, value, usual, others in _odd_ones_out(values)
        ]
    missing = [str(r.seed) for r in ctx.runs if not r.train.hyperparameters]
    if missing:
        problems.append(f"seed(s) {', '.join(missing)} log no Hyperparameters dump to compare")
    return failed("; ".join(problems)) if problems else passed(f"{len(dumped)} identical configurations")


def check_same_code(ctx: VerifyContext) -> Outcome:
    """Run every seed from the same train_gpt.py (equal code bytes); re-run seeds made with other code
    (issue #1594)."""
    sized = {r.seed: r.train.code_bytes for r in ctx.runs if r.train.code_bytes is not None}
    if len(sized) < 2:
        return skipped("fewer than two logs report a code size")
    problems = [
        f"seed {seed}: code {_fmt_bytes(size)} ({_seeds(others)}: {_fmt_bytes(usual)}, {size - usual:+,} B)"
        for seed, size, usual, others in _odd_ones_out(sized)
    ]
    first = next(iter(sized.values()))
    return failed("; ".join(problems)) if problems else passed(f"code {_fmt_bytes(first)} on all")


def check_submission_agrees(ctx: VerifyContext) -> Outcome:
    """Copy every number in submission.json from the logs (per seed and means), to the digits stated."""
    if ctx.folder.submission is None:
        return failed(ctx.folder.submission_problem or "submission.json is missing")
    mismatches, compared = submission_mismatches(ctx.folder.submission, ctx.runs)
    if mismatches:
        return failed("; ".join(mismatches))
    return passed(f"{compared} stated numbers match the logs")


def check_significance(ctx: VerifyContext) -> Outcome:
    """Beat the baseline by the track's margin at its p-value: run more seeds or improve further."""
    sig_rules = ctx.rules.significance
    if sig_rules is None:
        return skipped("this track has no significance rule")
    sig = ctx.significance
    if sig is None:
        return skipped("no --baseline given")
    one = sig.one_sample
    text = (
        f"vs {ctx.baseline_label}: mean val_loss {sig.candidate_mean:.5f} vs {sig.baseline_mean:.5f} "
        f"(improvement {sig.improvement:.5f} nats, need > {sig.margin:g}); one-sample t={one.t:.3f} "
        f"p={decisive_p(one.p, one.alpha)}"
    )
    if sig.welch is not None:
        text += f"; Welch t={sig.welch.t:.3f} p={decisive_p(sig.welch.p, one.alpha)} df={sig.welch.df:.1f}"
    text += f"; decided by the {sig.policy} at p < {one.alpha:g}"
    return passed(text) if sig.significant else failed(text)


def decisive_p(p: float, alpha: float) -> str:
    """`p` with the digits that put it on its side of `alpha`: 0.0099 and 0.0101 print as such, never
    both as 0.01 (three significant digits, more while the printed value would equal alpha)."""
    for digits in range(3, 17):
        text = f"{p:.{digits}g}"
        if float(text) != alpha or p == alpha:
            return text
    return repr(p)


CHECKS: list[Check] = [
    Check("GK101", "required files", check_required_files),
    Check("GK102", "one training log per seed", check_logs_pair_up),
    Check("GK103", "log names match seeds", check_seed_names),
    Check("GK104", "enough seeds", check_min_seeds),
    Check("GK105", "artifact under the byte cap", check_artifact_size),
    Check("GK106", "training under the time limit", check_train_time),
    Check("GK107", "no forced stop step", check_forced_stop),
    Check("GK108", "evaluation under the time limit", check_eval_time),
    Check("GK109", "same configuration on every seed", check_same_config),
    Check("GK110", "same code on every seed", check_same_code),
    Check("GK111", "submission.json agrees with the logs", check_submission_agrees),
    Check("GK112", "significant improvement over the baseline", check_significance),
    Check("GK113", "hardware, wallclock cap and GPTQ reserve within the track", check_run_settings),
    Check("GK114", "train_gpt.py is the code the logs count", check_code_matches_file),
    Check("GK115", "reproduces the published result", check_reproduction),
]

# Modules with more checks (each defines `CHECKS: list[Check]`); missing modules are passed over.
EXTRA_CHECK_MODULES: tuple[str, ...] = ("golfkit.check.verify.version_checks",)


def all_checks() -> list[Check]:
    """The built-in checks followed by those of every installed extra module."""
    checks = list(CHECKS)
    for name in EXTRA_CHECK_MODULES:
        if importlib.util.find_spec(name) is not None:
            checks += list(importlib.import_module(name).CHECKS)
    return checks


def run_checks(ctx: VerifyContext, checks: list[Check] | None = None) -> list[tuple[Check, Outcome]]:
    return [(check, check.func(ctx)) for check in (all_checks() if checks is None else checks)]
