"""Is a candidate record significantly better than its baseline?

The challenge's rule: beat the state of the art by at least 0.005 nats (val_loss) at p < 0.01. Records
have applied it two ways, so both are reported and the policy that decides is named:

* one-sample (PR #1915): one-sided t-test of the candidate's per-seed losses against the number
  `baseline mean - margin`; works when the baseline is only a leaderboard figure. This decides.
* Welch (PR #1967): one-sided two-sample t-test with unequal variances of the candidate's per-seed
  losses against the baseline's per-seed losses shifted down by the margin; needs >= 2 baseline seeds.

Both ask "is the candidate's mean loss below baseline - margin?", i.e. H1: mu_c < mu_b - margin.

scipy is imported by the two tests only: it takes seconds to import, and `golfkit verify` without a
baseline (which imports this module for `mean` and the types) computes no significance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from golfkit.errors import GolfkitError

DECIDING_POLICY = "one-sample t-test vs (baseline mean - margin), one-sided (PR #1915 practice)"


@dataclass(frozen=True, slots=True)
class TTest:
    """One test's result: statistic, one-sided p-value, degrees of freedom, and whether p < alpha."""

    name: str
    t: float
    p: float
    df: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p < self.alpha


@dataclass(frozen=True, slots=True)
class Significance:
    """Both tests on val_loss (nats) and the verdict of the deciding one."""

    candidate_mean: float
    baseline_mean: float
    margin: float
    improvement: float  # baseline mean - candidate mean (positive = candidate better)
    one_sample: TTest
    welch: TTest | None  # None when the baseline has fewer than two per-seed values
    policy: str = DECIDING_POLICY

    @property
    def significant(self) -> bool:
        return self.one_sample.significant


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation with n - 1 in the denominator (what records quote as `*_std`)."""
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def one_sample_test(candidate: Sequence[float], target: float, alpha: float) -> TTest:
    """One-sided one-sample t-test, H1: mean(candidate) < target."""
    if len(candidate) < 2:
        raise GolfkitError("significance", f"need >= 2 candidate seeds, got {len(candidate)}", "run more seeds")
    from scipy import stats as scipy_stats

    result = scipy_stats.ttest_1samp(list(candidate), popmean=target, alternative="less")
    return TTest("one-sample", float(result.statistic), float(result.pvalue), len(candidate) - 1.0, alpha)


def welch_test(candidate: Sequence[float], baseline: Sequence[float], margin: float, alpha: float) -> TTest:
    """One-sided Welch t-test, H1: mean(candidate) < mean(baseline) - margin."""
    from scipy import stats as scipy_stats

    shifted = [b - margin for b in baseline]
    result = scipy_stats.ttest_ind(list(candidate), shifted, equal_var=False, alternative="less")
    return TTest("welch", float(result.statistic), float(result.pvalue), float(result.df), alpha)


def significance(candidate: Sequence[float], baseline: Sequence[float], margin: float, alpha: float) -> Significance:
    """Run both tests of `candidate` per-seed losses against `baseline` (one or more values, nats)."""
    if not baseline:
        raise GolfkitError("--baseline", "the baseline has no val_loss values", "give a record, json or number")
    base_mean = mean(baseline)
    return Significance(
        candidate_mean=mean(candidate),
        baseline_mean=base_mean,
        margin=margin,
        improvement=base_mean - mean(candidate),
        one_sample=one_sample_test(candidate, base_mean - margin, alpha),
        welch=welch_test(candidate, baseline, margin, alpha) if len(baseline) >= 2 else None,
    )
