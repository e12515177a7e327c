"""Find a record folder's logs and group them into one run per seed.

Authors lay folders out differently: `train_seed42.log`, a `train.log` that duplicates one seed's log,
eval-only logs in a subfolder (`ttt_pr1767/seed_42.log`, a saved artifact re-evaluated with a newer TTT)
next to a `summary.log` that is no run log at all. This module turns that into `SeedRun`s: one
training log per seed, plus the eval-only log whose score replaces the training log's headline.
Anything it cannot pair is kept as a problem for the checks to report, not raised.

Logs are `*.log` files and the `*.txt` files that read as run logs (early records kept `train_v0.txt`);
a `*.txt` that is no run log (requirements.txt) is passed over. A `*.log` named for training or a seed
(`train*.log`, `*seed*.log`) or holding binary data must read, or the folder is refused in one line:
passing it over would judge the folder without that run. Two training logs of one seed are allowed when
submission.json explains them (`compliance_rerun`): both are reported, the one it names is judged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from golfkit.check.logparse import RunRecord, file_seed, is_binary, looks_like_run_log, parse_log
from golfkit.errors import GolfkitError


@dataclass(frozen=True, slots=True)
class SeedRun:
    """One seed's training log and, where the author re-evaluated the artifact, its eval-only log."""

    seed: int
    train: RunRecord
    eval_log: RunRecord | None = None
    alternates: tuple[RunRecord, ...] = ()  # other training logs of this seed (a compliance rerun), not judged

    @property
    def scored(self) -> RunRecord:
        """The log whose headline is this seed's score."""
        return self.eval_log or self.train

    @property
    def val_bpb(self) -> float:
        return self.scored.val_bpb

    @property
    def val_loss(self) -> float:
        return self.scored.val_loss

    @property
    def eval_time_s(self) -> float | None:
        return self.scored.eval_time_s

    @property
    def headline_eval_time_s(self) -> float | None:
        return self.scored.headline_eval_time_s

    @property
    def pre_ttt_val_bpb(self) -> float | None:
        """Best post-quantization score before test-time training, from the training log."""
        plain = [e.val_bpb for e in self.train.evals if not e.is_pre_quantization and not e.is_ttt]
        return min(plain) if plain else None

    def log_names(self, root: Path) -> str:
        logs = [self.train.log] + ([self.eval_log.log] if self.eval_log else [])
        return " + ".join(str(p.relative_to(root)) for p in logs)


@dataclass(slots=True)
class RecordFolder:
    path: Path
    files: set[str]  # names present directly in the folder
    submission: dict | None  # floats parsed as Decimal, so the stated digits survive
    submission_problem: str | None  # why submission.json could not be read, if it could not
    runs: list[SeedRun]
    problems: list[str] = field(default_factory=list)  # pairing failures, for the log checks
    notes: list[str] = field(default_factory=list)  # ignored duplicates and non-run logs


def load_folder(path: str | Path) -> RecordFolder:
    """Read a record folder; GolfkitError when it is no folder, has no logs, or a log is truncated."""
    root = Path(path)
    if not root.is_dir():
        raise GolfkitError(root, "not a record folder", "give the records/<track>/<date>_<name>/ directory")
    submission, submission_problem = _read_submission(root / "submission.json")
    folder = RecordFolder(
        path=root,
        files={p.name for p in root.iterdir()},
        submission=submission,
        submission_problem=submission_problem,
        runs=[],
    )
    records = _parse_logs(root, folder)
    if not records:
        raise GolfkitError(root, "no training logs (*.log, *.txt) found", "add each seed's train_seed<N>.log")
    folder.runs = _pair(root, records, folder)
    return folder


def _read_submission(path: Path) -> tuple[dict | None, str | None]:
    if not path.is_file():
        return None, "submission.json is missing"
    try:
        # Decimal keeps the digits the author wrote (1.06400 stays five decimals) for the agreement check.
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"submission.json cannot be read ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"submission.json: line {exc.lineno} column {exc.colno}: {exc.msg}"
    if not isinstance(data, dict):
        return None, "submission.json: top level is not a JSON object"
    return data, None


def _must_be_a_run_log(log: Path) -> bool:
    return log.suffix == ".log" and (log.name.startswith("train") or file_seed(log) is not None)


def _parse_logs(root: Path, folder: RecordFolder) -> list[RunRecord]:
    records: list[RunRecord] = []
    seen: dict[str, Path] = {}
    candidates = [p for p in root.rglob("*") if p.suffix in (".log", ".txt") and p.is_file()]
    # Seed-named logs first, so of two identical files the one named for its seed is kept.
    for log in sorted(candidates, key=lambda p: (file_seed(p) is None, p)):
        if log.suffix == ".log" and (_must_be_a_run_log(log) or is_binary(log)):
            pass  # parse_log refuses it in one line if it is no run log
        elif not looks_like_run_log(log):
            if log.suffix == ".log":
                folder.notes.append(f"{log.relative_to(root)}: not a run log (no hyperparameters, steps or scores)")
            continue
        digest = hashlib.sha256(log.read_bytes()).hexdigest()
        if digest in seen:
            folder.notes.append(f"{log.relative_to(root)}: identical to {seen[digest].relative_to(root)}, ignored")
            continue
        seen[digest] = log
        records.append(parse_log(log))
    return records


def _pair(root: Path, records: list[RunRecord], folder: RecordFolder) -> list[SeedRun]:
    trains: dict[int, list[RunRecord]] = {}
    evals: dict[int, RunRecord] = {}
    for rec in records:
        name = rec.log.relative_to(root)
        if rec.seed is None:
            folder.problems.append(f"{name}: no seed (no `seed:` in its hyperparameters, none in its name)")
        elif not rec.eval_only:
            trains.setdefault(rec.seed, []).append(rec)
        elif rec.seed in evals:
            other = evals[rec.seed].log.relative_to(root)
            folder.problems.append(f"seed {rec.seed}: two different logs, {other} and {name}; keep one per seed")
        else:
            evals[rec.seed] = rec
    for seed, rec in evals.items():
        if seed not in trains:
            folder.problems.append(
                f"{rec.log.relative_to(root)}: eval-only log for seed {seed} has no training log beside it"
            )
    runs = []
    for seed, logs in trains.items():
        judged = logs[0] if len(logs) == 1 else _judged_rerun(root, seed, logs, folder)
        if judged is None:
            names = ", ".join(str(r.log.relative_to(root)) for r in logs)
            folder.problems.append(f"seed {seed}: {len(logs)} different training logs ({names}); keep one per seed")
            judged = logs[0]
        others = tuple(r for r in logs if r is not judged)
        runs.append(SeedRun(seed, judged, evals.get(seed), others))
    return runs


def _judged_rerun(root: Path, seed: int, logs: list[RunRecord], folder: RecordFolder) -> RunRecord | None:
    """Of several training logs of one seed, the one submission.json names; None when it explains none.

    Only a folder whose submission.json has `compliance_rerun` may hold reruns. The judged log is the
    one its per-seed entry names, else the only one named anywhere in submission.json, else the one
    whose score is the per-seed val_bpb submission.json states."""
    submission = folder.submission or {}
    if "compliance_rerun" not in submission:
        return None
    names = {r.log: (r.log.name, str(r.log.relative_to(root))) for r in logs}

    def named_in(value: object) -> list[RunRecord]:
        text = " ".join(_strings(value))
        return [r for r in logs if any(n in text for n in names[r.log])]

    per_seed = (per_seed_section(submission) or {}).get(str(seed))
    chosen = named_in(per_seed) if per_seed is not None else []
    if len(chosen) != 1:
        chosen = named_in(submission)
    if len(chosen) != 1 and isinstance(per_seed, dict):
        chosen = [r for r in logs if _states(per_seed, r)]
    if len(chosen) != 1:
        return None
    others = ", ".join(str(r.log.relative_to(root)) for r in logs if r is not chosen[0])
    folder.notes.append(
        f"seed {seed}: compliance rerun, judged {chosen[0].log.relative_to(root)} as submission.json names it "
        f"(also reported: {others})"
    )
    return chosen[0]


def _states(per_seed: dict, rec: RunRecord) -> bool:
    """Whether every per-seed number stated (val_bpb, val_loss, steps) is this log's, to its digits."""
    compared = 0
    for key, actual in (("val_bpb", rec.val_bpb), ("val_loss", rec.val_loss), ("steps", rec.steps)):
        stated = per_seed.get(key)
        if isinstance(stated, int | float | Decimal) and not isinstance(stated, bool) and actual is not None:
            written = Decimal(str(stated))
            if not written.is_finite():
                return False
            half_unit = Decimal(1).scaleb(min(written.as_tuple().exponent, 0)) / 2
            if abs(Decimal(repr(actual)) - written) > half_unit:
                return False
            compared += 1
    return compared > 0


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def per_seed_section(submission: dict) -> dict[str, dict] | None:
    """The per-seed results under whichever key the author used (`seed_results` or `seeds`)."""
    for key in ("seed_results", "seeds"):
        section = submission.get(key)
        if isinstance(section, dict) and all(isinstance(v, dict) for v in section.values()):
            return section
    return None
