"""Find a record folder's logs and group them into one run per seed.

Authors lay folders out differently: `train_seed42.log`, a `train.log` that duplicates one seed's log,
eval-only logs in a subfolder (`ttt_pr1767/seed_42.log`, a saved artifact re-evaluated with a newer TTT)
next to a `summary.log` that is no run log at all. This module turns that into `SeedRun`s: one
training log per seed, plus the eval-only log whose score replaces the training log's headline.
Anything it cannot pair is kept as a problem for the checks to report, not raised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from golfkit.errors import GolfkitError
from golfkit.logparse import RunRecord, file_seed, looks_like_run_log, parse_log


@dataclass(frozen=True, slots=True)
class SeedRun:
    """One seed's training log and, where the author re-evaluated the artifact, its eval-only log."""

    seed: int
    train: RunRecord
    eval_log: RunRecord | None = None

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
        raise GolfkitError(root, "no training logs (*.log) found", "add each seed's train_seed<N>.log")
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


def _parse_logs(root: Path, folder: RecordFolder) -> list[RunRecord]:
    records: list[RunRecord] = []
    seen: dict[str, Path] = {}
    # Seed-named logs first, so of two identical files the one named for its seed is kept.
    for log in sorted(root.rglob("*.log"), key=lambda p: (file_seed(p) is None, p)):
        if not looks_like_run_log(log):
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
    trains: dict[int, RunRecord] = {}
    evals: dict[int, RunRecord] = {}
    for rec in records:
        name = rec.log.relative_to(root)
        if rec.seed is None:
            folder.problems.append(f"{name}: no seed (no `seed:` in its hyperparameters, none in its name)")
            continue
        slot = evals if rec.eval_only else trains
        if rec.seed in slot:
            other = slot[rec.seed].log.relative_to(root)
            folder.problems.append(f"seed {rec.seed}: two different logs, {other} and {name}; keep one per seed")
            continue
        slot[rec.seed] = rec
    for seed, rec in evals.items():
        if seed not in trains:
            folder.problems.append(
                f"{rec.log.relative_to(root)}: eval-only log for seed {seed} has no training log beside it"
            )
    return [SeedRun(seed, trains[seed], evals.get(seed)) for seed in trains]
