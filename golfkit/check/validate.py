"""Checks of a submission.json document: the JSON schema's two profiles, the cross-field checks a
schema cannot express, and the input no schema sees (numbers that are not finite, invisible characters).

Each problem is a `Problem` that prints as one line, `FILE: $.json.path: what (fix)`. `golfkit validate`
(validate_cmd.py) runs these checks on files; its docstring says what each profile asks for.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match

from golfkit.errors import GolfkitError

PROFILES = ("strict", "lenient")
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "submission.schema.json"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document: where (a JSON path), what, and how to fix it."""

    path: str
    what: str
    fix: str

    def line(self, where: str | Path) -> str:
        return f"{where}: {self.path}: {self.what} ({self.fix})"


def json_path(parts: Iterable[str | int]) -> str:
    """A JSON path written the way jsonschema's `ValidationError.json_path` writes it."""
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}"
        else:
            path += f"[{part!r}]"
    return path


@cache
def load_schema() -> dict[str, Any]:
    """The schema file, read once; a missing or broken file is an installation problem."""
    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GolfkitError(str(SCHEMA_PATH), f"cannot load the schema: {exc}", "reinstall golfkit") from exc
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def validator_for(profile: str) -> Draft202012Validator:
    """A validator whose root is the profile's `$defs` entry (refs stay local to the one file)."""
    if profile not in PROFILES:
        raise GolfkitError("--profile", f"unknown profile {profile!r}", f"choose from {', '.join(PROFILES)}")
    root = dict(load_schema())
    root["$ref"] = f"#/$defs/{profile}"
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _short(value: Any, limit: int = 60) -> str:
    """A value as JSON for a message, with invisible characters escaped so the line prints as it reads."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = "".join(f"\\u{ord(c):04x}" if _refused_char(c, multiline=False) else c for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _fix_of(error: ValidationError) -> str:
    """The schema's own fix hint (`x-fix`) where it gives one, else a generic hint per keyword."""
    hint = error.schema.get("x-fix") if isinstance(error.schema, Mapping) else None
    if hint:
        return hint
    generic = {
        "type": f"write a JSON {error.validator_value}",
        "uniqueItems": "list each value once",
        "minProperties": "add at least one entry",
        "const": f"use {_short(error.validator_value)}",
    }
    return generic.get(str(error.validator), "see schemas/submission.schema.json")


def _what_of(error: ValidationError) -> str:
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind == "type":
        return f"expected {value}, got {_json_type(instance)} {_short(instance)}"
    if kind in ("maximum", "exclusiveMaximum"):
        return f"{_short(instance)} is over the {'limit' if kind == 'maximum' else 'bound'} {value:,}"
    if kind in ("minimum", "exclusiveMinimum"):
        return f"{_short(instance)} is below the {'minimum' if kind == 'minimum' else 'bound'} {value}"
    if kind == "enum":
        return f"{_short(instance)} is not one of {', '.join(map(str, value))}"
    if kind == "pattern":
        return f"{_short(instance)} is malformed"
    if kind == "format":
        return f"{_short(instance)} is not a valid {value}"
    if kind == "minItems":
        return f"has {len(instance)} item(s), needs at least {value}"
    if kind == "uniqueItems":
        return f"{_short(instance)} repeats a value"
    return error.message if len(error.message) <= 160 else error.message[:157] + "..."


def _required_problems(error: ValidationError) -> list[Problem]:
    """One problem per missing property, each with the property's own path and description."""
    properties = error.schema.get("properties", {})
    missing = [name for name in error.validator_value if name not in error.instance]
    problems = []
    for name in missing:
        described = properties.get(name, {}).get("description")
        fix = f"add {name}: {described}" if described else f"add {name}"
        problems.append(Problem(json_path([*error.absolute_path, name]), "missing", fix))
    return problems


def _render(error: ValidationError) -> list[Problem]:
    if error.validator == "required":
        return _required_problems(error)
    if error.validator in ("anyOf", "oneOf"):
        described = error.schema.get("description")
        if described:
            return [Problem(error.json_path, f"needs {described}", _fix_of(error))]
        if error.context:
            return _render(best_match(error.context))
    return [Problem(error.json_path, _what_of(error), _fix_of(error))]


def schema_problems(document: Any, profile: str = "strict") -> list[Problem]:
    """Every schema violation, best_match first, then in document order."""
    errors = sorted(validator_for(profile).iter_errors(document), key=lambda e: [str(p) for p in e.path])
    if not errors:
        return []
    best = best_match(errors)
    ordered = [best, *(e for e in errors if e is not best)]
    problems: list[Problem] = []
    for error in ordered:
        for problem in _render(error):
            # One line per place and fix: a date that fails both `format` and `pattern` is one problem.
            if all((p.path, p.fix) != (problem.path, problem.fix) for p in problems):
                problems.append(problem)
    return problems


# ---- what JSON Schema cannot see: non-finite numbers and invisible characters --------------------------

# Python's json module reads NaN, Infinity and -Infinity (not JSON) and turns 1e999 into infinity; the
# schema's bounds then let infinity through. The reader keeps such a number as written (_NonFinite), and
# every profile refuses it with its path.
# Refused in every string: C0 and C1 controls (NUL, BEL, ESC...), lone surrogates (not text: they cannot
# even be written as UTF-8), the bidirectional controls (U+202E makes a title display reversed) and the
# Unicode line and paragraph separators. Tab, LF and CR are allowed in the multi-line fields only.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MULTILINE_FIELDS = frozenset({"blurb", "technique_summary", "non_record_reason"})
_CHARACTER_KINDS = {
    "Cc": "a control character",
    "Cs": "a lone surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


class _NonFinite(float):
    """A number JSON cannot hold, kept with the token the file wrote (`NaN`, `Infinity`, `1e999`)."""

    def __new__(cls, token: str) -> _NonFinite:
        number = super().__new__(cls, token)
        number.token = token
        return number


def _parse_float(token: str) -> float:
    number = float(token)
    return number if math.isfinite(number) else _NonFinite(token)


def _refused_char(char: str, multiline: bool) -> bool:
    if char in "\t\n\r":
        return not multiline
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS


def _describe_char(char: str) -> str:
    kind = unicodedata.category(char)
    label = _CHARACTER_KINDS.get(kind, "a bidirectional control")
    name = unicodedata.name(char, "") if kind != "Cs" else ""
    return f"U+{ord(char):04X} {name}, {label}" if name else f"U+{ord(char):04X}, {label}"


def _leaves(value: Any, path: tuple[str | int, ...] = ()) -> Iterable[tuple[tuple[str | int, ...], Any, bool]]:
    """Every scalar and every object key of a document: (path, value, is_key)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield (*path, key), key, True
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value, False


def input_problems(document: Any) -> list[Problem]:
    """Non-finite numbers and refused characters (in values and keys), one problem per place."""
    problems = []
    for path, value, is_key in _leaves(document):
        if isinstance(value, float) and not math.isfinite(value):
            written = getattr(value, "token", None) or (
                "NaN" if math.isnan(value) else f"{value:f}".replace("inf", "Infinity")
            )
            problems.append(
                Problem(json_path(path), f"{written} is not a finite number", "write the measured value as a number")
            )
        elif isinstance(value, str):
            multiline = not is_key and bool(path) and path[-1] in _MULTILINE_FIELDS
            bad = [i for i, char in enumerate(value) if _refused_char(char, multiline)]
            if bad:
                more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
                problems.append(
                    Problem(
                        json_path(path),
                        f"{'the key' if is_key else 'the text'} holds {_describe_char(value[bad[0]])}, "
                        f"at character {bad[0] + 1}{more}",
                        "remove it: text must be printable, with no control or bidirectional-override characters",
                    )
                )
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _stated_tolerance(value: float) -> float:
    """Half a unit in the last decimal written: a mean stated as 1.0611 may differ by 5e-5."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        return 1e-9
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0**-decimals + 1e-9 * max(1.0, abs(value))


def _seed_problems(document: Mapping[str, Any]) -> list[Problem]:
    seeds, results = document.get("seeds"), document.get("seed_results")
    if not isinstance(seeds, list) or not isinstance(results, Mapping):
        return []
    listed = [str(s) for s in seeds if isinstance(s, int) and not isinstance(s, bool)]
    problems = [
        Problem(json_path(["seeds"]), f"seed {seed} has no entry in seed_results", f"add seed_results[{seed!r}]")
        for seed in listed
        if seed not in results
    ]
    problems += [
        Problem(
            json_path(["seed_results", key]),
            f"seed {key} is not in the seeds list {_short(seeds)}",
            "list the seed in seeds or drop this entry",
        )
        for key in results
        if key not in listed
    ]
    return problems


def _per_seed(document: Mapping[str, Any], field: str) -> list[float] | None:
    """A field's per-seed values, or None when any seed lacks a usable number (the schema reports it)."""
    results = document.get("seed_results")
    if not isinstance(results, Mapping) or not results:
        return None
    values = [entry.get(field) if isinstance(entry, Mapping) else None for entry in results.values()]
    return [float(v) for v in values] if all(_number(v) for v in values) else None


def _mean_problems(document: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for field in ("val_bpb", "val_loss"):
        values, stated = _per_seed(document, field), document.get(field)
        if values is None or not _number(stated):
            continue
        mean = statistics.fmean(values)
        if abs(stated - mean) > _stated_tolerance(stated):
            problems.append(
                Problem(
                    json_path([field]),
                    f"{stated} differs from the mean of seed_results[*].{field}, {mean:.8f}",
                    f"write the per-seed mean, {mean:.8f}",
                )
            )
        spread = document.get(f"{field}_std")
        if not _number(spread):
            continue
        # Authors report either the sample (n-1) or the population (n) deviation; accept the nearer,
        # with slack for per-seed values that were themselves rounded before being written down.
        candidates = [statistics.stdev(values), statistics.pstdev(values)] if len(values) > 1 else [0.0]
        nearest = min(candidates, key=lambda c: abs(c - spread))
        if abs(spread - nearest) > _stated_tolerance(spread) + 0.1 * nearest:
            problems.append(
                Problem(
                    json_path([f"{field}_std"]),
                    f"{spread} matches neither the sample nor the population deviation of the per-seed "
                    f"values ({candidates[0]:.8f}, {candidates[-1]:.8f})",
                    "recompute it from seed_results",
                )
            )
    return problems


def _byte_problems(document: Mapping[str, Any]) -> list[Problem]:
    values = _per_seed(document, "artifact_bytes")
    if values is None:
        return []
    problems = []
    largest, smallest, mean = max(values), min(values), statistics.fmean(values)
    stated_max = document.get("artifact_bytes_max")
    if _number(stated_max) and stated_max != largest:
        problems.append(
            Problem(
                json_path(["artifact_bytes_max"]),
                f"{stated_max:,} is not the largest per-seed artifact_bytes, {int(largest):,}",
                f"write {int(largest)}",
            )
        )
    stated_mean = document.get("artifact_bytes_mean")
    if _number(stated_mean) and abs(stated_mean - mean) > 1.0:
        problems.append(
            Problem(
                json_path(["artifact_bytes_mean"]),
                f"{stated_mean:,} is not the mean per-seed artifact_bytes, {mean:,.1f}",
                f"write {round(mean)}",
            )
        )
    total = document.get("bytes_total")
    if _number(total) and not smallest <= total <= largest:
        problems.append(
            Problem(
                json_path(["bytes_total"]),
                f"{total:,} lies outside the per-seed artifact_bytes range {int(smallest):,}..{int(largest):,}",
                f"write the largest per-seed size, {int(largest)}",
            )
        )
    return problems


def _delta_problems(document: Mapping[str, Any]) -> list[Problem]:
    baseline, score, delta = (
        document.get(k) for k in ("comparison_baseline_bpb", "val_bpb", "delta_vs_leaderboard_bpb")
    )
    if not (_number(baseline) and _number(score) and _number(delta)):
        return []
    expected = score - baseline
    if abs(delta - expected) > _stated_tolerance(delta) + _stated_tolerance(score) + _stated_tolerance(baseline):
        return [
            Problem(
                json_path(["delta_vs_leaderboard_bpb"]),
                f"{delta} is not val_bpb - comparison_baseline_bpb = {expected:.8f}",
                f"write {expected:.5f}",
            )
        ]
    return []


def semantic_problems(document: Any, profile: str = "strict") -> list[Problem]:
    """Cross-field checks the schema cannot express; they skip fields the schema already rejects."""
    if not isinstance(document, Mapping):
        return []
    problems = _seed_problems(document)
    if profile == "strict":
        problems += _mean_problems(document) + _byte_problems(document) + _delta_problems(document)
    return problems


def validate_document(document: Any, profile: str = "strict") -> list[Problem]:
    """All problems of one parsed submission.json under a profile; empty when it is valid.

    A non-finite number or a refused character comes first, and alone at its path: the schema's verdict
    on `NaN` (below the bound 0) or on a name holding NUL would only blur it.
    """
    unusable = input_problems(document)
    marked = {p.path for p in unusable}
    found = [p for p in schema_problems(document, profile) if p.path not in marked]
    found += [p for p in semantic_problems(document, profile) if p not in found and p.path not in marked]
    return unusable + found


def read_json(path: Path) -> Any:
    """Parse a file, turning unreadable or malformed JSON into a one-line GolfkitError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GolfkitError(str(path), f"not UTF-8 at byte {exc.start}: {exc.reason}", "save the file as UTF-8") from exc
    except OSError as exc:
        raise GolfkitError(str(path), f"cannot read: {exc.__class__.__name__}: {exc}", "check the path") from exc
    try:
        return json.loads(text, parse_float=_parse_float, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise GolfkitError(
            str(path), f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", "fix the JSON syntax"
        ) from exc
    except RecursionError:
        raise GolfkitError(str(path), "nested too deeply to read", "write a flat submission.json") from None
    except ValueError:  # only an integer of more digits than Python converts (4,300) gets here
        raise GolfkitError(
            str(path), "an integer has too many digits to read", "write numbers of ordinary size"
        ) from None


def validate_file(path: str | Path, profile: str = "strict") -> list[Problem]:
    return validate_document(read_json(Path(path)), profile)
