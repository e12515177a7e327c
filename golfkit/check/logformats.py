"""Line formats of record logs that our trainer does not write: the March 2026 records and their kin.

`record.logkeys` holds the lines our trainer writes (and the April 2026 variants). Earlier records
logged the original baseline's formats, which this module reads so that `golfkit.check.logparse` can give
every real record folder a verdict:

- `step:13780/20000 train_loss:2.06 train_time:600038ms step_avg:43.54ms` (and `loss:`/`t:` short forms),
  `step:N/M val_loss:X val_bpb:Y train_time:...`; `stopping_early: wallclock_cap train_time:600038ms
  step:13780/20000` (no space after the colons);
- settings as `key:value` tokens on one line (`seed:1337`, `world_size:8 grad_accum_steps:1`, `...
  max_wallclock_seconds:600.000`) or as `key=value` tokens (the ternary record's config line);
- score lines with fields before or after the score (`final_int6_sliding_window val_loss:1.8828
  val_bpb:1.1151 stride:64 eval_time:105090ms`, `final_sliding_window_eval stride:64 val_loss:...`,
  `ttt_sliding:done val_loss=1.89 val_bpb=1.12 elapsed=407.5s`) and their `_exact` twins that repeat
  the same evaluation with eight decimals;
- GPTQ calibration and reserve lines of every vintage, GPU lines (`Running GPU 8x NVIDIA H200`,
  `[modal] Launching torchrun on 8xH100...`);
- a unix timestamp before each line (`1776142360.538 Hyperparameters:`), removed before reading.

Only the standard library, so tests and `golfkit verify` stay light.
"""

from __future__ import annotations

import re

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"

# `1776142360.538 ` before a line: a unix time in seconds (10 digits in 2001-2286), one space.
TIMESTAMP_PREFIX = re.compile(r"^\d{10}(?:\.\d+)? ")

STEP_LINE = re.compile(r"^step:(?P<step>\d+)/(?P<iterations>\d+) (?P<fields>.*)$")
STOPPING_EARLY = re.compile(
    rf"^stopping_early: (?P<reason>\w+) train_time: ?(?P<train_time_ms>{NUMBER})ms "
    r"step: ?(?P<step>\d+)/(?P<iterations>\d+)\s*$"
)
# `key:value` or `key=value`; the value stops at whitespace, a comma or a parenthesis.
FIELD = re.compile(r"(?P<key>[A-Za-z_][\w.]*)[:=](?P<value>[^\s,()]+)")
NUMERIC_FIELD = re.compile(rf"^[A-Za-z_][\w.]*[:=]\(?{NUMBER}")
SETTINGS_LINE = re.compile(r"^[A-Za-z_]\w*:[^\s'\"]+(?: [A-Za-z_]\w*:[^\s'\"]+)*\s*$")
KV_SETTINGS_LINE = re.compile(r"^[A-Za-z_]\w*=[^\s'\"]+(?: [A-Za-z_]\w*=[^\s'\"]+){2,}\s*$")
# A score tag: words of letters, digits, `_ + - :` (e.g. `final_int8_zlib_roundtrip`, `DIAGNOSTIC
# post_ema`, `ttt_sliding:done`); no quotes or brackets, so logged source code never counts.
SCORE_TAG = re.compile(r"^[A-Za-z][\w+\-:]*(?: [A-Za-z][\w+\-:]*)*$")
EXACT_SUFFIX = "_exact"

ARTIFACT_MB = re.compile(rf"^artifact:(?P<mb>{NUMBER})MB\b.*\bcode:(?P<code>\d+)\s*$")
GPTQ_SECONDS = re.compile(
    rf"^(?:GPTQ:collected \d+ Hessians in|gptq:calibrated \d+ layers in|gptq:done in"
    rf"|gptq:generated \d+ sequences in) (?P<seconds>{NUMBER})s\b"
)
GPTQ_RESERVING = re.compile(rf"^gptq:reserving (?P<amount>{NUMBER})(?P<unit>ms|s)\b")
GPU_LAUNCH = re.compile(r"\b(?P<count>\d+) ?x ?(?P<model>(?:NVIDIA )?[A-Z]\d{2,3}[A-Za-z]*)\b")
# Short setting names of the ternary record's summary line (`params:73685840 L:10 ... ws:8 ga:1 s:42`).
SHORT_SETTING_KEYS = {"s": "seed", "ws": "world_size", "ga": "grad_accum_steps"}
# Markers of an evaluation of the unquantized (EMA) weights: a diagnostic, never the score.
PRE_QUANT_MARKERS = ("pre-quant", "post_ema")
# Progress lines that repeat the score printed on the next line (`ttt_sliding:done` -> `legal_ttt`).
PROGRESS_SUFFIXES = (":done",)


def strip_timestamp(line: str) -> str:
    return TIMESTAMP_PREFIX.sub("", line, count=1)


def fields(text: str) -> dict[str, str]:
    """Every `key:value` / `key=value` token of `text` (first occurrence of a key wins)."""
    out: dict[str, str] = {}
    for m in FIELD.finditer(text):
        out.setdefault(m["key"], m["value"])
    return out


def to_float(value: str | None) -> float | None:
    """A token's number (`600038ms` -> 600038.0, `1.1151` -> 1.1151); None when it is no number."""
    if value is None:
        return None
    m = re.match(rf"^{NUMBER}", value)
    return float(m.group(0)) if m else None


def time_ms(value: str | None) -> float | None:
    """A duration token in milliseconds: `105090ms` -> 105090, `407.5s` -> 407500."""
    if value is None:
        return None
    m = re.fullmatch(rf"(?P<n>{NUMBER})(?P<unit>ms|s)", value)
    if not m:
        return None
    return float(m["n"]) * (1.0 if m["unit"] == "ms" else 1000.0)


def split_score_line(line: str) -> tuple[str, dict[str, str]] | None:
    """(tag, fields) of a score line `TAG [fields] val_loss:X val_bpb:Y [fields]`, else None.

    The tag is every leading token that is not a numeric field; the score needs numeric val_loss and
    val_bpb, so a logged f-string (`val_loss:{q_val_loss:.4f}`) is no score."""
    tokens = line.split()
    tag_words: list[str] = []
    for token in tokens:
        if NUMERIC_FIELD.match(token):
            break
        tag_words.append(token)
    tag = " ".join(tag_words)
    if not tag or len(tag_words) == len(tokens) or not SCORE_TAG.match(tag):
        return None
    found = fields(" ".join(tokens[len(tag_words) :]))
    if to_float(found.get("val_loss")) is None or to_float(found.get("val_bpb")) is None:
        return None
    return tag, found
