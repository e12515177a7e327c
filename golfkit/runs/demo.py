"""The CPU demo's parts: its data (the standard library's documentation, a 512-piece CaseOps tokenizer,
shards), its bundled program, and setting aside a stale folder. `golfkit demo` (demo_cmd.py) runs them
in order; its docstring lists the steps.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from golfkit.errors import GolfkitError
from golfkit.runs.runplan import RunPlan

DEMO_NAME = "golfkit_CPU_demo"
DEMO_VOCAB_SIZE = 512
DEMO_VAL_DOCS = 24  # validation documents: few and short, so phased TTT scores them in seconds on a CPU
DEMO_VAL_DOC_CHARS = (500, 1500)  # length range of the validation documents, in characters
DEMO_SHARD_TOKENS = 400_000  # small shards, so the demo has several, like the real data
DEMO_SPLIT_SEED = 0  # the documents are shuffled once, so validation mixes both kinds of text
MANIFEST_NAME = "demo_data.json"
MANIFEST_VERSION = 1
# CPU threads of the training process (OMP_NUM_THREADS, which torch reads at start-up). One, whatever the
# core count: torch's default (one thread per core) makes every op of the tiny model wait for its slowest
# thread, and on a busy 2-core machine one of the two is always waiting for the CPU. Measured on a shared
# 2-core VM (README.md has the table): default threads 181 s (335 s with one core busy), one thread 68 s
# (80 s).
DEMO_THREADS = 1


def thread_env(threads: int) -> dict[str, str]:
    """The training process's thread settings; they replace any the shell has (the demo sets its own)."""
    if threads < 1:
        raise GolfkitError("--threads", f"{threads} is not a thread count", "give 1 or more")
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


@dataclass(frozen=True, slots=True)
class DemoData:
    data_dir: Path
    tokenizer: Path
    reused: bool


def bundle_demo_program(runs_dir: Path, out: TextIO) -> Path:
    """record/ as the one-file train_gpt.py that the demo runs and its folder ships."""
    try:
        from golfkit.pr.bundle import write_bundle
    except ImportError:
        raise GolfkitError(
            "golfkit demo",
            "golfkit.pr.bundle is missing, so there is no train_gpt.py to run and ship",
            "install golfkit whole",
        ) from None
    target = runs_dir / "train_gpt.py"
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_bundle(target)
    print(f"demo program: record/ bundled into {target} ({target.stat().st_size:,} bytes)", file=out)
    return target


def set_aside_old_folder(plan: RunPlan, out: TextIO) -> None:
    """--force reruns the seeds, whose new logs assemble would refuse to put over the old ones: move the
    previous demo folder of the same date aside (renamed, never deleted)."""
    import datetime as dt

    from golfkit.pr.assemble import folder_slug

    date = dt.datetime.now(dt.UTC).date().isoformat()
    folder = plan.records_dir / "track_non_record_16mb" / f"{date}_{folder_slug(plan.name or DEMO_NAME)}"
    if folder.exists():
        kept = folder.with_name(f"{folder.name}.{time.strftime('%Y%m%d-%H%M%S')}.old")
        folder.rename(kept)
        print(f"--force: previous demo folder kept as {kept}", file=out)


# ---- data -----------------------------------------------------------------------------------------------


def _demo_recipe() -> dict[str, object]:
    """Everything the demo data depends on: a change to any of these rebuilds it."""
    return {
        "version": MANIFEST_VERSION,
        "python": sys.version.split()[0],
        "vocab_size": DEMO_VOCAB_SIZE,
        "val_docs": DEMO_VAL_DOCS,
        "val_doc_chars": list(DEMO_VAL_DOC_CHARS),
        "shard_tokens": DEMO_SHARD_TOKENS,
        "split_seed": DEMO_SPLIT_SEED,
    }


def split_for_validation(documents: list[str]) -> list[str]:
    """The documents reordered so the first DEMO_VAL_DOCS (which dataprep makes the validation set) are
    a seeded sample of short ones; per-document TTT runs one chunk after another through each document,
    so long validation documents would dominate the demo's time."""
    order = list(range(len(documents)))
    random.Random(DEMO_SPLIT_SEED).shuffle(order)
    low, high = DEMO_VAL_DOC_CHARS
    val = [i for i in order if low <= len(documents[i]) <= high][:DEMO_VAL_DOCS]
    if len(val) < DEMO_VAL_DOCS:
        raise GolfkitError("demo corpus", f"only {len(val)} documents of {low}-{high} characters", "use Python 3.11+")
    chosen = set(val)
    return [documents[i] for i in val] + [documents[i] for i in order if i not in chosen]


def _file_sizes(data_dir: Path, files: list[Path]) -> dict[str, int]:
    return {str(p.relative_to(data_dir)): p.stat().st_size for p in files}


def demo_data_complete(data_dir: Path) -> Path | None:
    """The tokenizer path when the data of the current recipe is all there, file sizes as recorded."""
    manifest = data_dir / MANIFEST_NAME
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(recorded, dict) or recorded.get("recipe") != _demo_recipe():
        return None
    files = recorded.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, size in files.items():
        path = data_dir / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    tokenizer = data_dir / str(recorded.get("tokenizer", ""))
    return tokenizer if tokenizer.is_file() else None


def prepare_demo_data(data_dir: Path, out: TextIO) -> DemoData:
    """Corpus, tokenizer and shards under `data_dir` (DATA_DIR for the demo), reused when complete."""
    tokenizer = demo_data_complete(data_dir)
    if tokenizer is not None:
        print(f"demo data: complete in {data_dir}, reused", file=out)
        return DemoData(data_dir, tokenizer, reused=True)

    from golfkit.data.dataprep import prepare_shards
    from golfkit.data.demo_corpus import demo_documents
    from golfkit.data.tokenizer import train_demo_tokenizer

    started = time.monotonic()
    (data_dir / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until the manifest is written again
    documents = split_for_validation(demo_documents())
    docs_path = data_dir / "docs_demo.jsonl"
    data_dir.mkdir(parents=True, exist_ok=True)
    docs_path.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents), encoding="utf-8")
    print(f"demo data: {len(documents)} standard-library documents -> {docs_path}", file=out)
    model_prefix = data_dir / "tokenizers" / f"golfkit_demo_caseops_{DEMO_VOCAB_SIZE}"
    tokenizer = train_demo_tokenizer(documents, DEMO_VOCAB_SIZE, model_prefix)
    print(f"demo data: {DEMO_VOCAB_SIZE}-piece CaseOps tokenizer -> {tokenizer}", file=out)
    summary = prepare_shards(docs_path, tokenizer, data_dir, val_docs=DEMO_VAL_DOCS, shard_tokens=DEMO_SHARD_TOKENS)
    for line in summary.lines():
        print(f"demo data: {line}", file=out)
    files = [docs_path, tokenizer, *summary.files]
    manifest = {
        "recipe": _demo_recipe(),
        "tokenizer": str(tokenizer.relative_to(data_dir)),
        "docs_sha256": hashlib.sha256(docs_path.read_bytes()).hexdigest(),
        "files": _file_sizes(data_dir, files),
    }
    staging = data_dir / f".{MANIFEST_NAME}.tmp"
    staging.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    staging.replace(data_dir / MANIFEST_NAME)
    print(f"demo data: built in {time.monotonic() - started:.0f} s", file=out)
    return DemoData(data_dir, tokenizer, reused=False)


def ran_other_code(runs_dir: Path, seeds: list[int], program: Path) -> bool:
    """Whether a complete seed log in `runs_dir` counts other code bytes than `program` (a demo rerun
    after the record changed)."""
    from golfkit.check.logparse import parse_log
    from golfkit.runs.seedrun import final_log_path, is_complete_log

    done = [log for log in (final_log_path(runs_dir, seed) for seed in seeds) if is_complete_log(log)]
    return bool(done) and any(parse_log(log).code_bytes not in (None, program.stat().st_size) for log in done)
