"""Significance tests reproduce a hand-checked example.

Example (real data): the 2026-04-27 record (LQER + SparseGate + BOS SmearFix) against the 2026-04-23
record (PolarNS + MinLR + FusedCE + PR #1767 TTT), per-seed val_loss in nats as their logs print them:

  candidate 2026-04-27, train_seed{42,0,1234}.log `quantized_ttt_phased` lines:
      2.31944212, 2.32239991, 2.32423994        mean 2.32202732
  baseline 2026-04-23, ttt_pr1767/seed_{42,0,1234}.log (the eval-only runs its submission.json uses):
      2.32843161, 2.32641216, 2.32616480        mean 2.32700286

Hand computation (n = 3, margin 0.005 nats):
  candidate sample sd s_c = 0.00242051, s_c / sqrt(3) = 0.00139748
  one-sample: t = (2.32202732 - (2.32700286 - 0.005)) / 0.00139748 = 0.0000245 / 0.00139748 = 0.01751
  df = 2; for df = 2 the t CDF is closed-form, F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = F(0.01751) = 0.5062
  Welch: baseline sd s_b = 0.00124350; se = sqrt(s_c^2/3 + s_b^2/3) = 0.00157111; t = 0.01557, df = 2.987
  Verdict: the improvement is 0.00498 nats, just under the 0.005 margin, so neither test is anywhere near
  p < 0.01. Without the margin (plain "is it better?") t = -3.5604, p = 0.0353.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from golfkit.check.logparse import parse_log
from golfkit.check.stats import mean, one_sample_test, sample_std, significance, welch_test
from golfkit.errors import GolfkitError

CANDIDATE = [2.31944212, 2.32239991, 2.32423994]
BASELINE = [2.32843161, 2.32641216, 2.32616480]


def _t_cdf_df2(t: float) -> float:
    """Student t CDF for 2 degrees of freedom, in closed form (independent of scipy)."""
    return 0.5 + t / (2.0 * math.sqrt(2.0 + t * t))


def _one_sample_t_by_formula(values: list[float], target: float) -> float:
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return (m - target) / (sd / math.sqrt(n))


def _welch_by_formula(a: list[float], b: list[float]) -> tuple[float, float]:
    va, vb = (sample_std(x) ** 2 / len(x) for x in (a, b))
    t = (mean(a) - mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t, df


def test_hand_checked_example_one_sample() -> None:
    sig = significance(CANDIDATE, BASELINE, margin=0.005, alpha=0.01)
    assert sig.candidate_mean == pytest.approx(2.32202732, abs=5e-9)
    assert sig.baseline_mean == pytest.approx(2.32700286, abs=5e-9)
    assert sig.improvement == pytest.approx(0.00497554, abs=5e-8)
    t_formula = _one_sample_t_by_formula(CANDIDATE, mean(BASELINE) - 0.005)
    assert sig.one_sample.t == pytest.approx(t_formula, rel=1e-9)
    assert sig.one_sample.t == pytest.approx(0.01751, abs=5e-5)  # the hand value above
    assert sig.one_sample.p == pytest.approx(_t_cdf_df2(t_formula), rel=1e-9)
    assert sig.one_sample.p == pytest.approx(0.5062, abs=5e-4)
    assert sig.one_sample.df == 2
    assert not sig.significant


def test_hand_checked_example_welch() -> None:
    sig = significance(CANDIDATE, BASELINE, margin=0.005, alpha=0.01)
    t, df = _welch_by_formula(CANDIDATE, [b - 0.005 for b in BASELINE])
    assert sig.welch is not None
    assert sig.welch.t == pytest.approx(t, rel=1e-9) and sig.welch.t == pytest.approx(0.01557, abs=5e-5)
    assert sig.welch.df == pytest.approx(df, rel=1e-9) and sig.welch.df == pytest.approx(2.987, abs=1e-3)
    assert 0.5 < sig.welch.p < 0.52


def test_without_margin_the_same_data_is_better_at_p_0_035() -> None:
    test = one_sample_test(CANDIDATE, mean(BASELINE), alpha=0.05)
    assert test.t == pytest.approx(-3.5604, abs=5e-4)
    assert test.p == pytest.approx(_t_cdf_df2(test.t), rel=1e-9) and test.p == pytest.approx(0.0353, abs=5e-4)
    assert test.significant


def test_a_clear_improvement_is_significant_and_direction_matters() -> None:
    better = [b - 0.02 for b in BASELINE]
    assert significance(better, BASELINE, 0.005, 0.01).significant
    worse = [b + 0.02 for b in BASELINE]
    sig = significance(worse, BASELINE, 0.005, 0.01)
    assert sig.one_sample.p > 0.99 and not sig.significant
    assert welch_test(worse, BASELINE, 0.005, 0.01).p > 0.99


def test_single_number_baseline_has_no_welch_and_one_seed_is_refused() -> None:
    assert significance(CANDIDATE, [2.3400], 0.005, 0.01).welch is None
    with pytest.raises(GolfkitError, match="need >= 2 candidate seeds"):
        significance(CANDIDATE[:1], BASELINE, 0.005, 0.01)


@pytest.mark.shared
def test_example_numbers_are_the_ones_the_logs_print(shared_data: Path) -> None:
    records = shared_data / "records"
    cand = records / "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    base = records / "2026-04-23_SP8192_CaseOps_SparseGate_QuantGate_Loop45_PhasedTTT_PolarNS_MinLR_FusedCE"
    assert [parse_log(cand / f"train_seed{s}.log").val_loss for s in (42, 0, 1234)] == CANDIDATE
    assert [parse_log(base / "ttt_pr1767" / f"seed_{s}.log").val_loss for s in (42, 0, 1234)] == BASELINE


# `golfkit verify` without --baseline computes no significance, so it must not pay for importing scipy
# (3.7 of 4.2 s per folder when it did). A fresh interpreter, as the CLI starts one.
_REPO = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=_REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


def test_the_verify_command_path_does_not_import_scipy() -> None:
    loaded = _modules_after("import golfkit.cli, golfkit.check.verify_cmd, golfkit.check.verify, golfkit.check.stats")
    assert "golfkit.check.stats" in loaded and "golfkit.check.verify_cmd" in loaded
    assert not any(name == "scipy" or name.startswith("scipy.") for name in loaded)


def test_verify_without_a_baseline_does_not_import_scipy(shared_data: Path) -> None:
    folder = shared_data / "records" / "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    run = f"import io\nfrom golfkit import cli\ncli.run(['verify', {str(folder)!r}], io.StringIO(), io.StringIO())"
    loaded = _modules_after(run)
    assert "golfkit.check.verify.report" in loaded or "golfkit.check.verify.checks" in loaded  # it did run the checks
    assert "scipy" not in loaded


def test_significance_still_imports_scipy_when_it_is_needed() -> None:
    loaded = _modules_after(
        "from golfkit.check.stats import significance\nsignificance([1.0, 1.1, 0.9], [2.0], 0.005, 0.01)"
    )
    assert "scipy.stats" in loaded
