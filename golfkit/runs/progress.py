"""Live progress for a seed: the child's log lines pass through, with a bar over training time.

On a terminal a tqdm bar tracks train time against the wallclock cap (the record stops on time, not on
steps), and log lines print above it. Without a terminal (CI, `nohup`), each step line is followed by a
one-line summary with the remaining training time instead.
"""

from __future__ import annotations

import re
from collections import deque
from typing import TextIO

from tqdm import tqdm

from golfkit.runs.seedrun import parse_step_line

# torchrun's own report when a worker exits non-zero: a log line from its elastic agent, then a Python
# traceback of the launcher and a summary box. The worker's own error line comes before it.
_LAUNCHER_FAILURE = re.compile(
    r"^E\d{4} .*torch/distributed/elastic/multiprocessing/api\.py:\d+\] failed \(exitcode: (-?\d+)\)"
)


def launcher_failure_exit_code(line: str) -> int | None:
    """The worker's exit code if `line` starts torchrun's failure report, else None."""
    match = _LAUNCHER_FAILURE.match(line)
    return int(match.group(1)) if match else None


class SeedProgress:
    """Feed it the child's output lines; it echoes them and keeps the progress display current.

    torchrun's failure report (its own traceback and summary box, which say nothing the worker did not)
    is replaced on the console by one line; the seed's log keeps it whole. The last lines kept for the
    failure summary are then the worker's own, where the reason is."""

    def __init__(self, seed: int, index: int, total: int, cfg: object, out: TextIO) -> None:
        self.seed, self.index, self.total, self.out = seed, index, total, out
        self.cap_s = float(getattr(cfg, "max_wallclock_seconds", 0.0)) or None
        self.tail: deque[str] = deque(maxlen=3)
        self.in_launcher_report = False
        self.bar = tqdm(
            total=round(self.cap_s) if self.cap_s else None,
            desc=f"seed {seed} [{index}/{total}] train",
            unit="s",
            disable=None,  # off when the output is not a terminal
            leave=False,
            bar_format="{desc}: {n:.0f}/{total_fmt} s |{bar}| {postfix}",
        )

    def feed(self, line: str) -> None:
        if self.in_launcher_report:
            return
        exit_code = launcher_failure_exit_code(line)
        if exit_code is not None:
            self.in_launcher_report = True
            line = f"golfkit: a worker exited with code {exit_code}; torchrun's report of it is in the seed's log"
            self._echo(line)
            return
        if line.strip():
            self.tail.append(line.strip())
        self._echo(line)
        step = parse_step_line(line)
        if step is None:
            return
        elapsed_s = step.train_minutes * 60.0
        if not self.bar.disable:
            self.bar.n = min(elapsed_s, self.bar.total or elapsed_s)
            self.bar.set_postfix_str(f"step {step.step}/{step.iterations} loss {step.train_loss:.4f}")
            return
        left = f", ~{max(self.cap_s - elapsed_s, 0.0) / 60:.1f} min of training left" if self.cap_s else ""
        print(
            f"[seed {self.seed} {self.index}/{self.total}] step {step.step}/{step.iterations}, "
            f"train {step.train_minutes:.1f} min{left}",
            file=self.out,
            flush=True,
        )

    def _echo(self, line: str) -> None:
        if self.bar.disable:
            print(line, file=self.out, flush=True)
        else:
            self.bar.write(line, file=self.out)

    def last_lines(self) -> str:
        return " | ".join(self.tail) or "(no output)"

    def close(self) -> None:
        self.bar.close()
