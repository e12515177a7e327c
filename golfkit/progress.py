"""Live progress for a seed: the child's log lines pass through, with a bar over training time.

On a terminal a tqdm bar tracks train time against the wallclock cap (the record stops on time, not on
steps), and log lines print above it. Without a terminal (CI, `nohup`), each step line is followed by a
one-line summary with the remaining training time instead.
"""

from __future__ import annotations

from collections import deque
from typing import TextIO

from tqdm import tqdm

from golfkit.seedrun import parse_step_line


class SeedProgress:
    """Feed it the child's output lines; it echoes them and keeps the progress display current."""

    def __init__(self, seed: int, index: int, total: int, cfg: object, out: TextIO) -> None:
        self.seed, self.index, self.total, self.out = seed, index, total, out
        self.cap_s = float(getattr(cfg, "max_wallclock_seconds", 0.0)) or None
        self.tail: deque[str] = deque(maxlen=3)
        self.bar = tqdm(
            total=round(self.cap_s) if self.cap_s else None,
            desc=f"seed {seed} [{index}/{total}] train",
            unit="s",
            disable=None,  # off when the output is not a terminal
            leave=False,
            bar_format="{desc}: {n:.0f}/{total_fmt} s |{bar}| {postfix}",
        )

    def feed(self, line: str) -> None:
        if line.strip():
            self.tail.append(line.strip())
        if self.bar.disable:
            print(line, file=self.out, flush=True)
        else:
            self.bar.write(line, file=self.out)
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

    def last_lines(self) -> str:
        return " | ".join(self.tail) or "(no output)"

    def close(self) -> None:
        self.bar.close()
