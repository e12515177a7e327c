"""Challenge limits as data: load a track's YAML rule file into a typed `Rules`.

The numbers (byte cap, time limits, seeds, significance) change between tracks and between the real
challenge and the CPU demo, so they live in `golfkit/check/rules/<track>.yaml` and the verifier's checks read
them from here. A rule file with an unknown or missing key is refused, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from golfkit.errors import GolfkitError

RULES_DIR = Path(__file__).resolve().parent
DEFAULT_TRACK = "track_10min_16mb"


@dataclass(frozen=True, slots=True)
class Significance:
    min_improvement_nats: float  # the candidate must beat the baseline's val_loss by this much
    p_value: float  # one-sided significance level


@dataclass(frozen=True, slots=True)
class Rules:
    """One track's limits. A `None` limit is not checked (the non-record track has no time limits)."""

    track: str
    artifact_byte_cap: int | None
    train_time_limit_s: float | None
    eval_time_limit_s: float | None
    min_seeds: int
    significance: Significance | None
    required_files: tuple[str, ...]
    config_ignore_keys: tuple[str, ...]
    config_ignore_suffixes: tuple[str, ...]
    forced_stop_keys: tuple[str, ...]
    gpu_model: str | None = None  # every seed must run on this GPU (a substring of the logged name)
    gpu_count: int | None = None  # ... and this many of them
    source: str = ""  # the file these rules came from

    def config_key_ignored(self, key: str) -> bool:
        """Whether a hyperparameter may differ between the seeds of one configuration."""
        return key in self.config_ignore_keys or key.endswith(self.config_ignore_suffixes)


def available_tracks() -> list[str]:
    return sorted(p.stem for p in RULES_DIR.glob("*.yaml"))


def load_rules(name_or_path: str | Path | None = None) -> Rules:
    """Rules by track name (`track_10min_16mb`, `10min_16mb`) or from a YAML file path."""
    path = _resolve(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GolfkitError(path, f"cannot read the rule file ({exc.strerror})", "check the path") from None
    except yaml.YAMLError as exc:
        raise GolfkitError(path, f"not valid YAML ({exc})", "fix the rule file's syntax") from None
    if not isinstance(data, dict):
        raise GolfkitError(path, "a rule file must be a mapping of key: value", "see track_10min_16mb.yaml")
    return _build(path, data)


def _resolve(name_or_path: str | Path | None) -> Path:
    if name_or_path is None:
        return RULES_DIR / f"{DEFAULT_TRACK}.yaml"
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return candidate
    for stem in (str(name_or_path), f"track_{name_or_path}"):
        if (RULES_DIR / f"{stem}.yaml").is_file():
            return RULES_DIR / f"{stem}.yaml"
    raise GolfkitError(
        "--rules",
        f"no rule file or track named {str(name_or_path)!r}",
        f"give a YAML path or one of {', '.join(available_tracks())}",
    )


# Keys added after rule files were first written: a file without them leaves the check they feed off.
OPTIONAL_KEYS = ("gpu_model", "gpu_count")


def _build(path: Path, data: dict) -> Rules:
    known = {f.name for f in fields(Rules)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise GolfkitError(path, f"unknown rule key {unknown[0]!r}", f"known keys: {', '.join(sorted(known))}")
    missing = sorted(known - set(data) - set(OPTIONAL_KEYS))
    if missing:
        raise GolfkitError(path, f"missing rule key {missing[0]!r}", "every key of track_10min_16mb.yaml is required")
    sig = data["significance"]
    try:
        significance = None if sig is None else Significance(float(sig["min_improvement_nats"]), float(sig["p_value"]))
        return Rules(
            track=str(data["track"]),
            artifact_byte_cap=_optional(data["artifact_byte_cap"], int),
            train_time_limit_s=_optional(data["train_time_limit_s"], float),
            eval_time_limit_s=_optional(data["eval_time_limit_s"], float),
            min_seeds=int(data["min_seeds"]),
            significance=significance,
            required_files=tuple(str(x) for x in data["required_files"]),
            config_ignore_keys=tuple(str(x) for x in data["config_ignore_keys"]),
            config_ignore_suffixes=tuple(str(x) for x in data["config_ignore_suffixes"]),
            forced_stop_keys=tuple(str(x) for x in data["forced_stop_keys"]),
            gpu_model=_optional(data.get("gpu_model"), str),
            gpu_count=_optional(data.get("gpu_count"), int),
            source=str(path),
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise GolfkitError(path, f"malformed rule value ({exc})", "numbers for limits, lists for keys") from None


def track_rules_name(name: str) -> str | None:
    """The rule file stem for a track named in a folder path or submission.json (`track_10min_16mb`,
    `10min_16mb`), or None when no rule file has that name."""
    for stem in (name, f"track_{name}"):
        if stem.startswith("track_") and (RULES_DIR / f"{stem}.yaml").is_file():
            return stem
    return None


def _optional(value: object, kind: type) -> int | float | str | None:
    return None if value is None else kind(value)
