"""What changes during training, as tables: the learning-rate multiplier, Muon's momentum and the layer loop,
plus the explicit training clock and the one function that says when the time budget is spent.

The record schedules by *fraction of the time budget* (elapsed / cap with a wallclock cap, else step /
iterations), so a slower machine runs fewer steps of the same shape. Each schedule is a tuple of `Ramp`
stages read through `TrainingSchedule.lookup`, never `if step > N` scattered through the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ramp:
    """A stage: the value moves linearly from `value_at_start` to `value_at_end` over [start, end]."""

    start: float
    end: float
    value_at_start: float
    value_at_end: float

    def value(self, x: float) -> float:
        if self.end <= self.start:
            return self.value_at_end
        t = min(max((x - self.start) / (self.end - self.start), 0.0), 1.0)
        return self.value_at_start + t * (self.value_at_end - self.value_at_start)


def ramp_table_value(ramps: tuple[Ramp, ...], x: float) -> float:
    """The value of the last stage that has started by `x` (the first stage before any has)."""
    current = ramps[0]
    for ramp in ramps:
        if x >= ramp.start:
            current = ramp
    return current.value(x)


@dataclass(frozen=True, slots=True)
class StepSettings:
    """Everything the schedule decides for one optimizer step."""

    lr_scale: float
    muon_momentum: float
    looping: bool


@dataclass(frozen=True, slots=True)
class TrainingSchedule:
    lr_ramps: tuple[Ramp, ...]  # over the training fraction
    lr_floor: float  # MIN_LR: the warm-down never goes below this multiplier
    momentum_ramps: tuple[Ramp, ...]  # over the step number
    loop_from_frac: float | None  # looping on from this fraction; None = never

    @classmethod
    def from_config(cls, cfg: object) -> TrainingSchedule:
        """The record's schedule: flat LR then a linear warm-down over the last WARMDOWN_FRAC of the
        budget floored at MIN_LR; Muon momentum 0.92 -> 0.97 over the first 1500 steps; loops from 0.35."""
        warmdown = cfg.warmdown_frac
        if warmdown > 0:
            flat_until = 1.0 - warmdown
            lr_ramps = (Ramp(0.0, flat_until, 1.0, 1.0), Ramp(flat_until, 1.0, 1.0, 0.0))
        else:
            lr_ramps = (Ramp(0.0, 1.0, 1.0, 1.0),)
        momentum_ramps = (
            Ramp(0.0, float(cfg.muon_momentum_warmup_steps), cfg.muon_momentum_warmup_start, cfg.muon_momentum),
        )
        loop_from = cfg.enable_looping_at if cfg.num_loops > 0 else None
        return cls(lr_ramps, cfg.min_lr, momentum_ramps, loop_from)

    def momentum_at(self, step: int) -> float:
        """Muon's momentum follows the step number (also during the untimed warm-up steps)."""
        return ramp_table_value(self.momentum_ramps, float(step))

    def lookup(self, step: int, frac: float) -> StepSettings:
        lr = ramp_table_value(self.lr_ramps, frac)
        in_warmdown = len(self.lr_ramps) > 1 and frac >= self.lr_ramps[-1].start
        return StepSettings(
            lr_scale=max(lr, self.lr_floor) if in_warmdown else lr,
            muon_momentum=self.momentum_at(step),
            looping=self.loop_from_frac is not None and frac >= self.loop_from_frac,
        )


@dataclass(frozen=True, slots=True)
class TrainBudget:
    """How much training is allowed: a wallclock cap (minus the GPTQ reserve) or a step count."""

    cap_ms: float | None
    iterations: int

    @classmethod
    def from_config(cls, cfg: object) -> TrainBudget:
        if cfg.max_wallclock_seconds > 0:
            cap_ms = 1000.0 * (cfg.max_wallclock_seconds - cfg.gptq_reserve_seconds)
            return cls(cap_ms=cap_ms, iterations=cfg.iterations)
        return cls(cap_ms=None, iterations=cfg.iterations)

    def fraction(self, step: int, elapsed_ms: float) -> float:
        """How far through training we are: by time under a cap, else by steps."""
        if self.cap_ms is None:
            return step / max(self.iterations, 1)
        return elapsed_ms / max(self.cap_ms, 1e-9)

    def reached(self, elapsed_ms: float) -> bool:
        """The one budget check: training stops after the step during which this turns true."""
        return self.cap_ms is not None and elapsed_ms >= self.cap_ms


class TrainClock:
    """Training time only. Paused around in-training evaluation; `sync` (cuda.synchronize on GPU) runs at
    start, pause and every read that asks for it, so queued kernels are counted when they finish, not
    when they were launched. The loop's per-step reads pass `sync=False`, as the reference's do: a
    synchronize every step drains the GPU's queue, which then idles while the host prepares the next
    step. Unsynced, a read runs ahead of the GPU by at most the work the host has queued."""

    def __init__(self, sync: Callable[[], None], now: Callable[[], float] = time.perf_counter) -> None:
        self._sync, self._now = sync, now
        self._banked_ms = 0.0
        self._started_at: float | None = None

    def start(self) -> None:
        self._sync()
        self._started_at = self._now()

    def pause(self) -> None:
        if self._started_at is not None:
            self._sync()
            self._banked_ms += 1000.0 * (self._now() - self._started_at)
            self._started_at = None

    def elapsed_ms(self, sync: bool = True) -> float:
        if self._started_at is None:
            return self._banked_ms
        if sync:
            self._sync()
        return self._banked_ms + 1000.0 * (self._now() - self._started_at)
