"""Run one seed of the record as a child process, keeping its log safe whatever happens.

The log is written line by line to `train_seed<S>.partial.log` while the run is going and renamed to
`train_seed<S>.log` only once the run has printed its final score line, so a complete log is never
overwritten and an interrupted run is plainly named as such. The child runs in its own process group:
Ctrl-C reaches us, and we stop the whole group (torchrun and its workers) cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The reference's step line: `500/20000 train_loss: 2.5615 train_time: 0.8m tok/s: 8217810`.
_STEP_LINE = re.compile(r"^(\d+)/(\d+) train_loss: ([0-9.]+) train_time: ([0-9.]+)m")
# A run is complete once its final score and the total evaluation time have been printed.
_FINAL_LINE = re.compile(r"^total_eval_time:[0-9.]+s")


def final_log_path(runs_dir: Path, seed: int) -> Path:
    return runs_dir / f"train_seed{seed}.log"


def partial_log_path(runs_dir: Path, seed: int) -> Path:
    return runs_dir / f"train_seed{seed}.partial.log"


def is_complete_log(path: Path) -> bool:
    """True when `path` holds a finished run: its final `total_eval_time:` line is there."""
    if not path.is_file():
        return False
    with path.open(errors="replace") as handle:
        return any(_FINAL_LINE.match(line) for line in handle)


@dataclass(frozen=True, slots=True)
class StepProgress:
    step: int
    iterations: int
    train_loss: float
    train_minutes: float


def parse_step_line(line: str) -> StepProgress | None:
    match = _STEP_LINE.match(line)
    if not match:
        return None
    step, iterations, loss, minutes = match.groups()
    return StepProgress(int(step), int(iterations), float(loss), float(minutes))


def launch_command(nproc: int, use_torchrun: bool, program: Path | None = None) -> list[str]:
    """The command that starts the record program: torchrun for GPUs, plain Python for a CPU demo.

    `program` runs a script (a bundled train_gpt.py) instead of the installed `record` package.
    """
    target = [str(program)] if program is not None else ["-m", "record"]
    if use_torchrun:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        return [*torchrun, *target]
    return [sys.executable, *target]


class SeedInterrupted(Exception):
    """Ctrl-C stopped a seed; its partial log is kept under the name in `partial_log`."""

    def __init__(self, partial_log: Path) -> None:
        super().__init__(str(partial_log))
        self.partial_log = partial_log


@dataclass(frozen=True, slots=True)
class SeedOutcome:
    seed: int
    log: Path
    complete: bool
    returncode: int
    seconds: float


def run_seed(
    seed: int,
    command: Sequence[str],
    env: Mapping[str, str],
    runs_dir: Path,
    on_line: Callable[[str], None] = lambda line: None,
) -> SeedOutcome:
    """Run one seed to the end, streaming each output line to `on_line` and to the partial log."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    partial = partial_log_path(runs_dir, seed)
    if partial.exists():  # an earlier interrupted attempt: keep it, it may hold the clue to a crash
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(partial.stat().st_mtime))
        partial.replace(runs_dir / f"{partial.name}.{stamp}.old")
    started = time.monotonic()
    with partial.open("w", encoding="utf-8") as log:
        child = subprocess.Popen(
            list(command),
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        try:
            assert child.stdout is not None
            for line in child.stdout:
                log.write(line)
                log.flush()
                on_line(line.rstrip("\n"))
            returncode = child.wait()
        except KeyboardInterrupt:
            _stop_group(child)
            log.write("golfkit: interrupted by the user (Ctrl-C); this log is partial\n")
            raise SeedInterrupted(partial) from None
    seconds = time.monotonic() - started
    if returncode == 0 and is_complete_log(partial):
        final = final_log_path(runs_dir, seed)
        partial.replace(final)
        return SeedOutcome(seed, final, True, returncode, seconds)
    return SeedOutcome(seed, partial, False, returncode, seconds)


def _stop_group(child: subprocess.Popen[str]) -> None:
    """Ask the child's process group to stop (SIGINT, then SIGTERM, then SIGKILL)."""
    for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if child.poll() is not None:
            return
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def set_aside_complete_log(runs_dir: Path, seed: int) -> Path | None:
    """With --force, keep the old complete log under a dated name instead of overwriting it."""
    final = final_log_path(runs_dir, seed)
    if not final.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(final.stat().st_mtime))
    kept = runs_dir / f"train_seed{seed}.log.{stamp}.old"
    final.replace(kept)
    return kept
