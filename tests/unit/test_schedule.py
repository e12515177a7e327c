"""The LR / momentum / looping table, the time budget and the explicit training clock."""

from __future__ import annotations

import pytest

from golfkit.runs.presets import tiny_config
from record.config import Config
from record.schedule import Ramp, TrainBudget, TrainClock, TrainingSchedule, ramp_table_value


@pytest.mark.parametrize(
    ("frac", "lr_scale"),
    [
        (0.0, 1.0),
        (0.2, 1.0),
        (0.25, 1.0),  # warm-down starts at 1 - 0.75
        (0.5, 0.5 / 0.75),
        (0.85, 0.15 / 0.75),
        (0.95, 0.1),  # (1 - 0.95) / 0.75 = 0.067 is under the MIN_LR floor
        (1.0, 0.1),
        (1.01, 0.1),  # the last step can overshoot the cap a little
    ],
)
def test_record_lr_multiplier(frac: float, lr_scale: float) -> None:
    schedule = TrainingSchedule.from_config(Config())
    assert schedule.lookup(step=0, frac=frac).lr_scale == pytest.approx(lr_scale)


@pytest.mark.parametrize(("step", "momentum"), [(0, 0.92), (750, 0.945), (1500, 0.97), (4000, 0.97)])
def test_record_muon_momentum_warmup(step: int, momentum: float) -> None:
    schedule = TrainingSchedule.from_config(Config())
    assert schedule.lookup(step=step, frac=0.0).muon_momentum == pytest.approx(momentum)


def test_looping_switches_on_at_the_configured_fraction() -> None:
    schedule = TrainingSchedule.from_config(Config())
    assert not schedule.lookup(0, 0.349).looping
    assert schedule.lookup(0, 0.35).looping and schedule.lookup(0, 0.9).looping
    never = TrainingSchedule.from_config(tiny_config(num_loops=0))
    assert not never.lookup(0, 1.0).looping


def test_no_warmdown_keeps_full_lr_and_floor_only_applies_in_warmdown() -> None:
    flat = TrainingSchedule.from_config(tiny_config(warmdown_frac=0.0, min_lr=0.5))
    assert flat.lookup(0, 0.99).lr_scale == 1.0
    assert ramp_table_value((Ramp(0.0, 1.0, 2.0, 4.0), Ramp(1.0, 2.0, 4.0, 0.0)), 1.5) == pytest.approx(2.0)


def test_budget_keeps_the_gptq_reserve_and_falls_back_to_steps() -> None:
    budget = TrainBudget.from_config(Config())
    assert budget.cap_ms == pytest.approx(599_500.0)
    assert budget.fraction(step=10, elapsed_ms=299_750.0) == pytest.approx(0.5)
    assert not budget.reached(599_499.0) and budget.reached(599_500.0)
    steps = TrainBudget.from_config(tiny_config(max_wallclock_seconds=0, iterations=40))
    assert steps.cap_ms is None and steps.fraction(10, 1e9) == 0.25 and not steps.reached(1e12)


def test_clock_syncs_at_every_read_and_excludes_paused_time() -> None:
    now = [100.0]
    syncs = []
    clock = TrainClock(sync=lambda: syncs.append(now[0]), now=lambda: now[0])
    clock.start()
    now[0] += 2.0
    assert clock.elapsed_ms() == pytest.approx(2000.0)
    clock.pause()
    now[0] += 50.0  # an evaluation: not training time
    assert clock.elapsed_ms() == pytest.approx(2000.0)
    clock.start()
    now[0] += 1.0
    assert clock.elapsed_ms() == pytest.approx(3000.0)
    assert len(syncs) == 5
