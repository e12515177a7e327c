"""Warning check: did each seed run with the versions the pinned GPU image installs?

A reproduction is exact only in the image of docker/Dockerfile. Each training log records its versions
(`Running PyTorch 2.9.1+cu128`, ... written by record/envinfo.py; older logs have Python and PyTorch
only); this check holds them against `golfkit.image.pins.image_pins` and lists, per log, every version that
differs and every pinned component the log does not record. It is a warning, not a failure: a record
trained elsewhere can be valid, but a reviewer should see at once that it was not this image.
"""

from __future__ import annotations

from pathlib import Path

from golfkit.check.verify.checks import Check, Outcome, VerifyContext, failed, passed, skipped
from golfkit.image.pins import DOCKERFILE, LOCK, ImagePins, RunComparison, compare_run_versions, image_pins

REPO = Path(__file__).resolve().parents[3]


def _pins(repo_root: Path = REPO) -> ImagePins | None:
    if not (repo_root / DOCKERFILE).is_file() or not (repo_root / LOCK).is_file():
        return None
    return image_pins(repo_root)


def _describe(comparison: RunComparison) -> str:
    parts = [d.one_line() for d in comparison.differences]
    if comparison.unrecorded:
        parts.append(f"not recorded: {', '.join(comparison.unrecorded)}")
    return "; ".join(parts)


def check_versions_match_image(ctx: VerifyContext) -> Outcome:
    """Run the seeds in the pinned image (`nox -s docker -- run`), whose logs record every version; or say
    in the README which versions differ and why the result still stands."""
    pins = _pins()
    if pins is None:
        return skipped(f"no {DOCKERFILE} and {LOCK} beside this golfkit (an installed copy has no image pins)")
    if not ctx.runs:
        return skipped("no training logs")
    logs_by_finding: dict[str, list[str]] = {}  # logs with the same finding are named together
    for run in ctx.runs:
        comparison = compare_run_versions(run.train.versions, pins)
        if not comparison.exact:
            logs_by_finding.setdefault(_describe(comparison), []).append(run.train.log.name)
    if logs_by_finding:
        return failed(" | ".join(f"{', '.join(logs)}: {finding}" for finding, logs in logs_by_finding.items()))
    return passed(f"every log ran torch {pins['torch']}, Triton {pins['triton']}, lrzip {pins['lrzip']} (the image)")


CHECKS: list[Check] = [
    Check("GK201", "versions match the pinned image", check_versions_match_image, severity="warning"),
]
