"""Markdown for a record folder's README.md, rendered from the generated submission.json and the logs.

The README restates only numbers that submission.json and the logs already carry, so the three can
never disagree (the "logs disagree with claims" failure of PRs #2076 and #2118). Each section is one
function so tests can check it alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfkit.check.logparse import RunRecord
from golfkit.check.rules import Rules


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    size: int
    what: str


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _bytes(value: float | None) -> str:
    return "–" if value is None else f"{round(value):,}"


def _stage_bpb(record: RunRecord, *, pre_quant: bool) -> float | None:
    """The pre-quantization diagnostic, or the first post-quantization evaluation before TTT."""
    for result in record.evals:
        if result.is_pre_quantization == pre_quant and not result.is_ttt:
            return result.val_bpb
    return None


def header(submission: Mapping[str, Any]) -> list[str]:
    record = submission["track"] == "10min_16mb"
    lines = [f"# {'Record' if record else 'Non-record'}: {submission['name']}", ""]
    if not record:
        lines += [f"> **Not a record.** {submission.get('non_record_reason', '')}", ""]
    seeds = len(submission["seeds"])
    lines += [
        f"**val_bpb: {submission['val_bpb']:.5f}** ({seeds}-seed mean, std {submission['val_bpb_std']:.5f}) | "
        f"**val_loss: {submission['val_loss']:.5f} nats** (std {submission['val_loss_std']:.5f}) | "
        f"**{submission['artifact_bytes_max']:,} bytes** (largest artifact) | {submission['hardware']}",
        "",
        f"By {submission['author']} (@{submission['github_id']}), {submission['date']}.",
        "",
        submission["blurb"],
        "",
    ]
    return lines


def results_table(submission: Mapping[str, Any], records: Sequence[RunRecord]) -> list[str]:
    lines = [
        "## Results",
        "",
        "| Seed | Steps | ms/step | Train time (s) | Pre-quant val_bpb | Quantized val_bpb | **Final val_bpb** "
        "| val_loss (nats) | Eval time (s) | Artifact bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for record in records:
        lines.append(
            f"| {record.seed} | {record.steps if record.steps is not None else '–'} "
            f"| {_fmt(record.step_avg_ms, 1)} | {_fmt(record.train_time_s, 1)} "
            f"| {_fmt(_stage_bpb(record, pre_quant=True), 5)} | {_fmt(_stage_bpb(record, pre_quant=False), 5)} "
            f"| **{record.val_bpb:.8f}** | {record.val_loss:.8f} | {_fmt(record.eval_time_s, 1)} "
            f"| {_bytes(record.artifact_bytes)} |"
        )
    lines += [
        f"| **Mean** | | | | | | **{submission['val_bpb']:.8f}** | {submission['val_loss']:.8f} | "
        f"| {_bytes(submission['artifact_bytes_mean'])} |",
        f"| **Std** | | | | | | {submission['val_bpb_std']:.8f} | {submission['val_loss_std']:.8f} | | |",
        "",
        "Final val_bpb is the log's headline evaluation of the quantized artifact "
        f"(`{records[0].headline}`); the standard deviation is the sample (n-1) deviation over seeds.",
        "",
    ]
    return lines


def plot_section(plot_name: str) -> list[str]:
    return [
        "## Curves",
        "",
        f"![Training loss and validation BPB per seed]({plot_name})",
        "",
    ]


def _row(check: str, limit: str, worst: str, margin: str, ok: bool) -> str:
    return f"| {check} | {limit} | {worst} | {margin} | {'pass' if ok else '**FAIL**'} |"


def compliance_table(records: Sequence[RunRecord], rules: Rules) -> list[str]:
    """Worst seed against each limit of the track's rules, with the margin left (negative = over)."""
    lines = ["## Compliance", "", "| Check | Limit | Worst seed | Margin | Status |", "|---|---:|---:|---:|---|"]
    sizes = [r.artifact_bytes for r in records if r.artifact_bytes is not None]
    if sizes and rules.artifact_byte_cap is not None:
        worst = max(sizes)
        margin = rules.artifact_byte_cap - worst
        lines.append(
            _row(
                "Artifact bytes (code + model)",
                f"{rules.artifact_byte_cap:,}",
                f"{worst:,}",
                f"{margin:,}",
                margin >= 0,
            )
        )
    for label, values, limit in (
        ("Training time (s)", [r.train_time_s for r in records], rules.train_time_limit_s),
        ("Evaluation time (s)", [r.eval_time_s for r in records], rules.eval_time_limit_s),
    ):
        known = [v for v in values if v is not None]
        if known and limit is not None:
            worst_s = max(known)
            lines.append(_row(label, f"{limit:g}", f"{worst_s:.1f}", f"{limit - worst_s:.1f}", worst_s <= limit))
    seeds = len(records)
    lines.append(
        _row("Seeds", f"≥ {rules.min_seeds}", str(seeds), str(seeds - rules.min_seeds), seeds >= rules.min_seeds)
    )
    stops = sorted({r.stop_reason or "unknown" for r in records})
    lines += ["", f"Training stopped by: {', '.join(stops)}. Limits from `{Path(rules.source).name}`.", ""]
    return lines


def significance_section(lines: Sequence[str]) -> list[str]:
    return ["## Significance", "", *lines, ""]


def reproduction_section(submission: Mapping[str, Any], nproc: int) -> list[str]:
    seeds = " ".join(str(s) for s in submission["seeds"])
    launcher = f"torchrun --standalone --nproc_per_node={nproc} train_gpt.py" if nproc > 1 else "python3 train_gpt.py"
    return [
        "## Reproduction",
        "",
        "```bash",
        "apt-get install -y lrzip            # the per-group compressor shells out to lrzip",
        "pip install -r requirements.txt",
        f"for SEED in {seeds}; do",
        f"  SEED=$SEED {launcher} > train_seed${{SEED}}.log 2>&1",
        "done",
        "golfkit verify .                    # rules: sizes, times, seeds, logs vs submission.json",
        "golfkit validate submission.json    # schema (strict profile)",
        "```",
        "",
        "Data: `DATA_DIR` must hold the CaseOps SP8192 shards and the validation byte sidecar (`golfkit data --help`).",
        "",
    ]


def files_section(files: Sequence[FileEntry]) -> list[str]:
    lines = ["## Files", "", "| File | Bytes | What |", "|---|---:|---|"]
    lines += [f"| `{f.name}` | {f.size:,} | {f.what} |" for f in files]
    return [*lines, ""]


def render_readme(
    submission: Mapping[str, Any],
    records: Sequence[RunRecord],
    *,
    limits: Rules,
    plot_name: str,
    files: Sequence[FileEntry],
    significance: Sequence[str] | None = None,
    nproc: int = 8,
) -> str:
    """The whole README.md text."""
    lines = header(submission) + results_table(submission, records) + plot_section(plot_name)
    lines += compliance_table(records, limits)
    if significance:
        lines += significance_section(significance)
    lines += reproduction_section(submission, nproc) + files_section(files)
    lines += ["Assembled by `golfkit assemble` from the logs above; every number here is read from them.", ""]
    return "\n".join(lines)
