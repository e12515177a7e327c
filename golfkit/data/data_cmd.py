"""Get the record's data: download the published CaseOps shards, or build shards from documents.

  golfkit data download [--train-shards N] [--dest DIR]
  golfkit data prepare --docs DOCS.jsonl --tokenizer MODEL --out DIR [--val-docs N] [--force]

Both write the layout the trainer reads with DATA_DIR=DIR: DIR/datasets/<dataset>/fineweb_*.bin and
DIR/tokenizers/<model>. See docs/data.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from golfkit.errors import GolfkitError


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", metavar="{download,prepare}", required=True)

    download = commands.add_parser(
        "download",
        help="fetch the published CaseOps dataset and tokenizer from the Hugging Face hub",
        description="Fetch the published CaseOps dataset (romeerp/parameter-golf-caseops-v1) and its "
        "tokenizer, manifest-driven. Complete files are kept, so rerunning resumes.",
    )
    download.add_argument("--train-shards", type=int, default=None, help="train shards to fetch (default: all)")
    download.add_argument("--dest", type=Path, default=Path("data"), help="data folder (default: ./data)")
    download.add_argument("--repo", default=None, help="hub dataset repo (default: the published one)")
    download.add_argument("--revision", default="main", help="hub revision (branch, tag or commit)")
    download.add_argument("--endpoint", default=None, help="hub address (default: HF_ENDPOINT or huggingface.co)")

    prepare = commands.add_parser(
        "prepare",
        help="build shards + validation byte sidecar from a jsonl of documents",
        description="CaseOps-encode and tokenize documents into train/val shards and the val byte sidecar.",
    )
    prepare.add_argument("--docs", type=Path, required=True, help='jsonl, one {"text": ...} per line')
    prepare.add_argument("--tokenizer", type=Path, required=True, help="SentencePiece CaseOps model")
    prepare.add_argument("--out", type=Path, required=True, help="data folder to write (new or empty)")
    prepare.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty --out (removed only once the new folder is complete)",
    )
    prepare.add_argument("--val-docs", type=int, default=None, help="first N documents are validation (50000)")
    prepare.add_argument("--shard-tokens", type=int, default=None, help="tokens per shard (10000000)")
    prepare.add_argument("--max-docs", type=int, default=0, help="stop after N documents (0 = all)")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_download(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from golfkit.data.download import CASEOPS_REPO_ID, download_dataset

    if args.train_shards is not None and args.train_shards < 0:
        raise GolfkitError("--train-shards", "must not be negative", "give 0 or more")

    def log(line: str) -> None:
        print(line, file=err, flush=True)

    report = download_dataset(
        args.dest,
        args.train_shards,
        repo_id=args.repo or CASEOPS_REPO_ID,
        revision=args.revision,
        endpoint=args.endpoint,
        log=log,
    )
    print(
        f"{report.dataset}: {len(report.fetched)} file(s) fetched, {len(report.skipped)} already complete",
        file=out,
    )
    print(f"DATA_DIR={report.dest}", file=out)
    return 0


def _run_prepare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from golfkit.data.dataprep import DEFAULT_SHARD_TOKENS, DEFAULT_VAL_DOCS, prepare_folder

    summary = prepare_folder(
        args.docs,
        args.tokenizer,
        args.out,
        force=args.force,
        val_docs=DEFAULT_VAL_DOCS if args.val_docs is None else args.val_docs,
        shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS,
        max_docs=args.max_docs,
        progress=None if args.no_progress else (err if err is not sys.stdout else sys.stderr),
    )
    for line in summary.lines():
        print(line, file=out)
    print(f"DATA_DIR={args.out} TOKENIZER_PATH={summary.tokenizer_path}", file=out)
    return 0


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.action == "download":
        return _run_download(args, out, err)
    return _run_prepare(args, out, err)
