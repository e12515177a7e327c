"""Patterns that read the record's log lines back: one compiled regex per parsed line, by name.

record/logkeys.py writes each line (one `fmt_*` per line); these read them. They are a little wider
than the formatters: they also accept the variants earlier April 2026 record authors logged (other
quantization tags, a `looping:` token on step lines, `Code size:` without a qualifier), so the same
regexes read every real record log. They live in golfkit because only the kit reads logs: the record
program ships without them.
"""

from __future__ import annotations

import re

# A signed decimal number as Python prints floats ("2.3194", "1e-08", "-0.5", "nan").
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"


def _num(name: str) -> str:
    return rf"(?P<{name}>{_NUM})"


# name -> pattern. Each matches a whole line (use `.match` on the line without its newline).
LOG_PATTERNS: dict[str, re.Pattern[str]] = {
    "hyperparameters": re.compile(r"^Hyperparameters:\s*$"),
    "hyperparameter": re.compile(r"^  (?P<key>[A-Za-z_][A-Za-z0-9_]*): ?(?P<value>.*)$"),
    "train_shards": re.compile(r"^train_shards: (?P<count>\d+)$"),
    "val_tokens": re.compile(r"^val_tokens: (?P<count>\d+)$"),
    "model_params": re.compile(r"^model_params:(?P<count>\d+)$"),
    "warmup_step": re.compile(r"^warmup_step: (?P<step>\d+)/(?P<total>\d+)$"),
    "train_step": re.compile(
        rf"^(?P<step>\d+)/(?P<iterations>\d+) train_loss: {_num('train_loss')} "
        rf"train_time: {_num('train_time_min')}m tok/s: {_num('tok_per_s')}(?: .*)?$"
    ),
    "train_val": re.compile(
        rf"^(?P<step>\d+)/(?P<iterations>\d+) val_loss: {_num('val_loss')} "
        rf"val_bpb: {_num('val_bpb')}(?: .*)?$"
    ),
    "layer_loop": re.compile(rf"^layer_loop:enabled step:(?P<step>\d+) frac:{_num('frac')}\b.*$"),
    "stopping_early": re.compile(
        rf"^stopping_early: (?P<reason>\w+) train_time: {_num('train_time_ms')}ms "
        r"step: (?P<step>\d+)/(?P<iterations>\d+)$"
    ),
    "peak_memory": re.compile(
        r"^peak memory allocated: (?P<allocated_mib>\d+) MiB reserved: (?P<reserved_mib>\d+) MiB$"
    ),
    "eval_result": re.compile(
        rf"^(?P<tag>[A-Za-z][\w+\- ]*?) val_loss:{_num('val_loss')} "
        rf"val_bpb:{_num('val_bpb')} eval_time:{_num('eval_time_ms')}ms$"
    ),
    "serialized_model": re.compile(r"^Serialized model: (?P<bytes>\d+) bytes$"),
    "code_size": re.compile(r"^Code size(?: \((?P<kind>\w+)\))?: (?P<bytes>\d+) bytes$"),
    "serialized_quantized": re.compile(r"^Serialized model (?P<codec>\S+): (?P<bytes>\d+) bytes$"),
    "total_submission": re.compile(r"^Total submission size (?P<codec>\S+): (?P<bytes>\d+) bytes$"),
    # Any test-time-training evaluation starting (phased, sliding, chunked): a log that shows one
    # starting must also show its result line, or the run was cut short.
    "ttt_begin": re.compile(r"^(?:beginning TTT eval timer|ttt_phased: |ttt_sliding:start|ttt:start)"),
    "ttt_phased": re.compile(r"^ttt_phased: total_docs:(?P<total_docs>\d+) prefix_docs:(?P<prefix_docs>\d+) .*$"),
    "ttp": re.compile(
        rf"^ttp: b(?P<batch>\d+)/(?P<num_batches>\d+) bl:{_num('batch_loss')} "
        rf"bb:{_num('batch_bpb')} rl:{_num('running_loss')} "
        rf"rb:{_num('running_bpb')}.*$"
    ),
    "tttg": re.compile(rf"^tttg: c(?P<chunk>\d+)/(?P<num_chunks>\d+) lr:{_num('lr')} t:.*$"),
    "total_eval_time": re.compile(rf"^total_eval_time:{_num('seconds')}s$"),
}
