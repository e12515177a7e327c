"""`golfkit verify RUN_DIR --against PUBLISHED/submission.json`: does a reproduction give the published
numbers, seed by seed?

Each seed the published submission.json states (its `seed_results`/`seeds` section) is matched with the
reproduction's run of the same seed, and the two val_bpb must agree within a tolerance the report
states. The default tolerance is the track's record margin (0.005 nats) in bits per byte at the
reproduction's own nats-per-bpb ratio: a gap smaller than that margin cannot decide whether a result is
a record, a larger one means the run did not reproduce. Without a significance rule (non-record track)
it is `FALLBACK_TOLERANCE_BPB`. `--tolerance` replaces either.

A published file with a mean only is compared on the mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from golfkit.check.rules import Rules
from golfkit.check.verify.folder import SeedRun, per_seed_section
from golfkit.errors import GolfkitError

FALLBACK_TOLERANCE_BPB = 0.002
FIX = "give the published folder's submission.json"


@dataclass(frozen=True, slots=True)
class SeedComparison:
    seed: int
    published_bpb: float
    reproduced_bpb: float
    tolerance: float

    @property
    def delta(self) -> float:
        return self.reproduced_bpb - self.published_bpb

    @property
    def ok(self) -> bool:
        return abs(self.delta) <= self.tolerance


@dataclass(slots=True)
class Reproduction:
    published: str  # the file compared against
    tolerance_bpb: float
    tolerance_reason: str
    seeds: list[SeedComparison] = field(default_factory=list)
    mean: SeedComparison | None = None  # when the published file states a mean only
    unpublished: list[int] = field(default_factory=list)  # reproduced seeds the file does not state
    missing: list[int] = field(default_factory=list)  # published seeds not reproduced

    @property
    def compared(self) -> list[SeedComparison]:
        return self.seeds or ([self.mean] if self.mean else [])

    @property
    def ok(self) -> bool:
        return bool(self.compared) and all(c.ok for c in self.compared)

    def summary(self) -> str:
        head = f"vs {self.published}, tolerance ±{self.tolerance_bpb:.5f} bpb per seed ({self.tolerance_reason})"
        parts = [
            f"seed {c.seed}: {c.reproduced_bpb:.8f} vs {c.published_bpb:.8f} ({c.delta:+.5f}{'' if c.ok else ', OUT'})"
            for c in self.seeds
        ]
        if self.mean is not None:
            parts.append(
                f"mean only: {self.mean.reproduced_bpb:.8f} vs {self.mean.published_bpb:.8f} ({self.mean.delta:+.5f})"
            )
        if self.missing:
            parts.append(f"not reproduced: seed(s) {', '.join(map(str, self.missing))}")
        if self.unpublished:
            parts.append(f"not in the published file: seed(s) {', '.join(map(str, self.unpublished))}")
        if not self.compared:
            parts.append("no seed in common to compare")
        return head + ": " + "; ".join(parts)

    def to_json(self) -> dict:
        return {
            "published": self.published,
            "tolerance_bpb": self.tolerance_bpb,
            "tolerance_reason": self.tolerance_reason,
            "ok": self.ok,
            "seeds": [
                {
                    "seed": c.seed,
                    "published_val_bpb": c.published_bpb,
                    "reproduced_val_bpb": c.reproduced_bpb,
                    "delta": c.delta,
                    "ok": c.ok,
                }
                for c in self.seeds
            ],
            "mean": None
            if self.mean is None
            else {"published_val_bpb": self.mean.published_bpb, "reproduced_val_bpb": self.mean.reproduced_bpb},
            "not_reproduced": self.missing,
            "not_published": self.unpublished,
        }


def compare(published: str | Path, runs: list[SeedRun], rules: Rules, tolerance: float | None) -> Reproduction:
    """Compare `runs` with the published submission.json at `published` (a file or its folder)."""
    path = Path(published)
    if path.is_dir():
        path = path / "submission.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise GolfkitError(f"--against {path}", f"cannot read it ({exc.strerror})", FIX) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GolfkitError(f"--against {path}", f"not valid JSON ({exc})", FIX) from None
    if not isinstance(data, dict):
        raise GolfkitError(f"--against {path}", "top level is not a JSON object", FIX)
    if tolerance is not None and not tolerance > 0:
        raise GolfkitError("--tolerance", f"{tolerance} is not a positive number of bpb", "e.g. --tolerance 0.002")
    tol, reason = _tolerance(runs, rules, tolerance)
    rep = Reproduction(published=f"{path.parent.name}/{path.name}", tolerance_bpb=tol, tolerance_reason=reason)
    stated = _stated_bpb(data)
    by_seed = {r.seed: r for r in runs}
    for seed, bpb in stated.items():
        if seed in by_seed:
            rep.seeds.append(SeedComparison(seed, bpb, by_seed[seed].val_bpb, tol))
        else:
            rep.missing.append(seed)
    rep.unpublished = [r.seed for r in runs if stated and r.seed not in stated]
    if not stated:
        mean_bpb = data.get("val_bpb", data.get("mean_bpb"))
        if not _is_number(mean_bpb):
            raise GolfkitError(f"--against {path}", "states no per-seed or mean val_bpb", FIX)
        reproduced = sum(r.val_bpb for r in runs) / len(runs)
        rep.mean = SeedComparison(-1, float(mean_bpb), reproduced, tol)
    return rep


def _tolerance(runs: list[SeedRun], rules: Rules, given: float | None) -> tuple[float, str]:
    if given is not None:
        return given, "--tolerance"
    if rules.significance is None or not runs:
        return FALLBACK_TOLERANCE_BPB, f"golfkit's default for a track without a record margin ({rules.track})"
    ratio = sum(r.val_loss for r in runs) / sum(r.val_bpb for r in runs)
    margin = rules.significance.min_improvement_nats
    return margin / ratio, f"the track's {margin:g}-nat record margin at this run's {ratio:.3f} nats/bpb"


def _stated_bpb(data: dict) -> dict[int, float]:
    out: dict[int, float] = {}
    for seed, values in (per_seed_section(data) or {}).items():
        if str(seed).lstrip("-").isdigit() and _is_number(values.get("val_bpb")):
            out[int(seed)] = float(values["val_bpb"])
    seeds, scores = data.get("seeds"), data.get("seed_scores")
    if not out and isinstance(seeds, list) and isinstance(scores, list) and len(seeds) == len(scores):
        pairs = zip(seeds, scores, strict=True)
        out = {int(s): float(v) for s, v in pairs if str(s).lstrip("-").isdigit() and _is_number(v)}
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
