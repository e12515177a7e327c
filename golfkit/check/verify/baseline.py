"""The baseline a candidate must beat: a record folder, a submission.json, or one number.

Significance is judged on val_loss in nats (the challenge's unit). A baseline that states only BPB
(a leaderboard figure such as 1.0810, or a submission.json without val_loss) is converted with the
candidate's own nats-per-BPB ratio, which assumes both runs score the same validation bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from golfkit.check.verify.agreement import per_seed_results
from golfkit.check.verify.folder import load_folder
from golfkit.errors import GolfkitError

NUMBER_HELP = "give a record folder, a submission.json, a val_loss in nats (2.327) or bpb:1.0810"


@dataclass(frozen=True, slots=True)
class Baseline:
    label: str
    losses: list[float]  # per-seed val_loss in nats (one value for a single leaderboard number)


def load_baseline(spec: str | Path, nats_per_bpb: float) -> Baseline:
    """Read `spec`; `nats_per_bpb` converts BPB-only baselines (the candidate's mean loss / mean bpb)."""
    text = str(spec)
    number = _parse_number(text, nats_per_bpb)
    if number is not None:
        return Baseline(f"the number {text}", [number])
    path = Path(text)
    if path.is_dir():
        if (path / "submission.json").is_file() and not any(path.rglob("*.log")):
            return _from_json(path / "submission.json", nats_per_bpb)
        folder = load_folder(path)
        return Baseline(f"{path.name} ({len(folder.runs)} seeds from its logs)", [r.val_loss for r in folder.runs])
    if path.is_file():
        return _from_json(path, nats_per_bpb)
    raise GolfkitError("--baseline", f"{text!r} is neither a file, a folder nor a number", NUMBER_HELP)


def _parse_number(text: str, nats_per_bpb: float) -> float | None:
    unit, _, value = text.rpartition(":")
    try:
        number = float(value)
    except ValueError:
        return None
    if unit in ("", "nats", "loss"):
        return number
    if unit == "bpb":
        return number * nats_per_bpb
    raise GolfkitError("--baseline", f"unknown unit {unit!r} in {text!r}", NUMBER_HELP)


def _from_json(path: Path, nats_per_bpb: float) -> Baseline:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GolfkitError(path, f"cannot read the baseline ({exc})", NUMBER_HELP) from None
    if not isinstance(data, dict):
        raise GolfkitError(path, "top level is not a JSON object", NUMBER_HELP)
    label = f"{path.parent.name}/{path.name}"
    section = per_seed_results(data) or {}
    losses = [v["val_loss"] for v in section.values() if _number(v.get("val_loss"))]
    if losses and len(losses) == len(section):
        return Baseline(f"{label} ({len(losses)} seeds)", [float(x) for x in losses])
    bpbs = [v["val_bpb"] for v in section.values() if _number(v.get("val_bpb"))]
    if bpbs and len(bpbs) == len(section):
        return Baseline(f"{label} ({len(bpbs)} seeds, bpb converted)", [float(x) * nats_per_bpb for x in bpbs])
    for key in ("val_loss", "mean_val_loss_nats", "val_loss_nats"):
        if _number(data.get(key)):
            return Baseline(f"{label} (mean only)", [float(data[key])])
    if _number(data.get("val_bpb")):
        return Baseline(f"{label} (mean bpb only, converted)", [float(data["val_bpb"]) * nats_per_bpb])
    raise GolfkitError(path, "states no val_loss or val_bpb", NUMBER_HELP)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
