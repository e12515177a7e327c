"""record/logkeys.py writes every line of the reference log byte-for-byte; golfkit/check/logpatterns.py reads them back.

Golden file: tests/fixtures/logs/reference_seed42.log, the 2026-04-27 record's train_seed42.log
(PR #1934's base) with all but three `tttg:` and `ttp:` progress lines dropped.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from golfkit.check.logpatterns import LOG_PATTERNS
from record import logkeys as lk
from tests.conftest import FIXTURES

REFERENCE = FIXTURES / "logs" / "reference_seed42.log"
LINES = REFERENCE.read_text().splitlines()


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


# A regenerator per line kind: (regex over the reference line, rebuild the line with fmt_* from its parts).
Rebuild = Callable[[re.Match[str]], str]
REBUILDERS: list[tuple[str, Rebuild]] = [
    (r"^train_shards: (\d+)$", lambda m: lk.fmt_train_shards(int(m[1]))),
    (r"^val_tokens: (\d+)$", lambda m: lk.fmt_val_tokens(int(m[1]))),
    (r"^model_params:(\d+)$", lambda m: lk.fmt_model_params(int(m[1]))),
    (r"^gptq:reserving (\d+)s, effective=(\d+)ms$", lambda m: lk.fmt_gptq_reserve(float(m[1]), float(m[2]))),
    (
        r"^warmup_cu_buckets:([\d,]+) iters_each:(\d+)$",
        lambda m: lk.fmt_warmup_cu_buckets(_ints(m[1]), int(m[2])),
    ),
    (r"^warmup_step: (\d+)/(\d+)$", lambda m: lk.fmt_warmup_step(int(m[1]), int(m[2]))),
    (
        r"^loop_warmup:enabled encoder:(\[.*?\]) decoder:(\[.*?\])$",
        lambda m: lk.fmt_loop_warmup(_ints(m[1]), _ints(m[2])),
    ),
    (r"^loop_warmup_step: (\d+)/(\d+)$", lambda m: lk.fmt_loop_warmup_step(int(m[1]), int(m[2]))),
    (
        r"^(\d+)/(\d+) train_loss: ([\d.]+) train_time: ([\d.]+)m tok/s: (\d+)$",
        lambda m: lk.fmt_train_step(int(m[1]), int(m[2]), float(m[3]), float(m[4]) * 60000, float(m[5])),
    ),
    (
        r"^layer_loop:enabled step:(\d+) frac:([\d.]+) encoder:(\[.*?\]) decoder:(\[.*?\])$",
        lambda m: lk.fmt_layer_loop(int(m[1]), float(m[2]), _ints(m[3]), _ints(m[4])),
    ),
    (
        r"^(\d+)/(\d+) val_loss: ([\d.]+) val_bpb: ([\d.]+)$",
        lambda m: lk.fmt_train_val(int(m[1]), int(m[2]), float(m[3]), float(m[4])),
    ),
    (
        r"^stopping_early: wallclock_cap train_time: (\d+)ms step: (\d+)/(\d+)$",
        lambda m: lk.fmt_stopping_early(float(m[1]), int(m[2]), int(m[3])),
    ),
    (
        r"^peak memory allocated: (\d+) MiB reserved: (\d+) MiB$",
        lambda m: lk.fmt_peak_memory(int(m[1]) * 2**20 + 12345, int(m[2]) * 2**20),
    ),
    (r"^ema:applying EMA weights$", lambda m: lk.fmt_ema_applying()),
    (
        r"^(.+?) val_loss:([\d.]+) val_bpb:([\d.]+) eval_time:(\d+)ms$",
        lambda m: lk.fmt_eval_result(m[1], float(m[2]), float(m[3]), float(m[4])),
    ),
    (r"^Serialized model: (\d+) bytes$", lambda m: lk.fmt_serialized_model(int(m[1]))),
    (r"^Code size \((\w+)\): (\d+) bytes$", lambda m: lk.fmt_code_size(m[1], int(m[2]))),
    (r"^GPTQ:collecting Hessians from calibration data\.\.\.$", lambda m: lk.fmt_gptq_collecting()),
    (r"^GPTQ:collected (\d+) Hessians in ([\d.]+)s$", lambda m: lk.fmt_gptq_collected(int(m[1]), float(m[2]))),
    (r"^Serialize: per-group lrzip compression\.\.\.$", lambda m: lk.fmt_serialize_start()),
    (r"^Serialize: per-group compression done in ([\d.]+)s$", lambda m: lk.fmt_serialize_done(float(m[1]))),
    (
        r"^Serialized model (quantized\+pergroup): (\d+) bytes$",
        lambda m: lk.fmt_serialized_quantized(m[1], int(m[2])),
    ),
    (
        r"^Total submission size (quantized\+pergroup): (\d+) bytes$",
        lambda m: lk.fmt_total_submission(m[1], int(m[2])),
    ),
    (r"^Deserialize: per-group lrzip decompression\.\.\.$", lambda m: lk.fmt_deserialize_start("pergroup")),
    (r"^Deserialize: decompression done in ([\d.]+)s$", lambda m: lk.fmt_deserialize_done(float(m[1]))),
    (r"^ttt_lora:warming up compile", lambda m: lk.fmt_ttt_compile_start()),
    (r"^ttt_lora:compile warmup done \(([\d.]+)s\)$", lambda m: lk.fmt_ttt_compile_done(float(m[1]))),
    (r"^beginning TTT eval timer$", lambda m: lk.fmt_ttt_timer_start()),
    (
        r"^ttt_phased: total_docs:(\d+) prefix_docs:(\d+) suffix_docs:(\d+) num_phases:(\d+) boundaries:(\[.*\])$",
        lambda m: lk.fmt_ttt_phased(int(m[1]), int(m[2]), int(m[3]), int(m[4]), _ints(m[5])),
    ),
    (
        r"^ttp: b(\d+)/(\d+) bl:([\d.]+) bb:([\d.]+) rl:([\d.]+) rb:([\d.]+) dl:(\d+)-(\d+) gd:(\d+)$",
        lambda m: lk.fmt_ttp(*map(int, m.group(1, 2)), *map(float, m.group(3, 4, 5, 6)), *map(int, m.group(7, 8, 9))),
    ),
    (
        r"^ttpp: phase:(\d+)/(\d+) pd:(\d+) gd:(\d+) t:([\d.]+)s$",
        lambda m: lk.fmt_ttpp(int(m[1]), int(m[2]), int(m[3]), int(m[4]), float(m[5])),
    ),
    (
        r"^tttg: c(\d+)/(\d+) lr:([\d.]+) t:([\d.]+)s$",
        lambda m: lk.fmt_tttg(int(m[1]), int(m[2]), float(m[3]), float(m[4])),
    ),
    (r"^ttpr: phase:(\d+)/(\d+) t:([\d.]+)s$", lambda m: lk.fmt_ttpr(int(m[1]), int(m[2]), float(m[3]))),
    (r"^total_eval_time:([\d.]+)s$", lambda m: lk.fmt_total_eval_time(float(m[1]))),
]


def test_every_program_line_of_the_reference_log_is_rebuilt_exactly() -> None:
    rebuilt = 0
    start = LINES.index("Hyperparameters:")
    quant_block = LINES.index("Quantized weights:")
    for i, line in enumerate(LINES):
        if i < start or (start < i <= start + 200 and line.startswith("  ")) or quant_block < i <= quant_block + 5:
            continue  # torchrun's banner, the dump (tested below), the quantized-weights block (below)
        if not line or line == "Hyperparameters:" or line == "Quantized weights:":
            continue
        for pattern, rebuild in REBUILDERS:
            if m := re.match(pattern, line):
                assert rebuild(m) == line, f"line {i + 1}"
                rebuilt += 1
                break
        else:
            pytest.fail(f"line {i + 1} has no fmt_* function: {line!r}")
    assert rebuilt > 60


def test_hyperparameter_dump_is_rebuilt_byte_for_byte() -> None:
    start = LINES.index("Hyperparameters:")
    end = next(i for i in range(start + 1, len(LINES)) if not LINES[i].startswith("  "))
    dump = dict(line[2:].split(": ", 1) if ": " in line else (line[2:-1], "") for line in LINES[start + 1 : end])
    typed = {k: (float(v) if k == "adam_eps" else v) for k, v in dump.items()}  # 1e-08 prints back as 1e-08
    assert lk.fmt_hyperparameters(typed) == "\n".join(LINES[start:end])
    assert lk.fmt_hyperparameters({"b": False, "a": ""}) == "Hyperparameters:\n  a: \n  b: False"


def test_quantized_weights_block_is_rebuilt() -> None:
    start = LINES.index("Quantized weights:")
    block = LINES[start : start + 6]
    groups = {line[2:].split(": ")[0]: line[2:].split(": ")[1].split(", ") for line in block[1:]}
    assert lk.fmt_quantized_weights(groups) == "\n".join(block)


@pytest.mark.parametrize("name", sorted(LOG_PATTERNS))
def test_each_pattern_reads_a_reference_line(name: str) -> None:
    pattern = LOG_PATTERNS[name]
    if name == "code_size":
        assert pattern.match("Code size: 68246 bytes")["bytes"] == "68246"  # older records, no qualifier
    assert any(pattern.match(line) for line in LINES), name


def test_patterns_read_back_what_the_formatters_write() -> None:
    p = LOG_PATTERNS
    m = p["train_step"].match(lk.fmt_train_step(4500, 20000, 2.27712, 540_000.0, 6589668.4))
    assert (m["step"], m["train_loss"], m["train_time_min"], m["tok_per_s"]) == ("4500", "2.2771", "9.0", "6589668")
    m = p["eval_result"].match(lk.fmt_eval_result(lk.TAG_TTT_PHASED, 2.319442121, 1.059894539, 508785.4))
    assert (m["tag"], m["val_loss"], m["val_bpb"], m["eval_time_ms"]) == (
        "quantized_ttt_phased",
        "2.31944212",
        "1.05989454",
        "508785",
    )
    m = p["stopping_early"].match(lk.fmt_stopping_early(599591.7, 4945, 20000))
    assert (m["reason"], m["train_time_ms"], m["step"]) == ("wallclock_cap", "599592", "4945")
    m = p["total_submission"].match(lk.fmt_total_submission("quantized+pergroup", 15897259))
    assert (m["codec"], m["bytes"]) == ("quantized+pergroup", "15897259")
    assert p["train_step"].match("144/20000 train_loss: 2.9482 train_time: 7.2m tok/s: 7297673 looping:True")


def test_logkeys_imports_only_the_standard_library() -> None:
    """golfkit imports it and the bundler ships it alone, so it must stay dependency-free."""
    tree = ast.parse(Path(lk.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "collections.abc"}


def test_deserialize_line_names_the_compressor_that_ran() -> None:
    assert lk.fmt_deserialize_start("pergroup") == "Deserialize: per-group lrzip decompression..."
    assert lk.fmt_deserialize_start("brotli") == "Deserialize: brotli decompression..."
    assert lk.fmt_deserialize_start("lzma") == "Deserialize: lzma decompression..."
