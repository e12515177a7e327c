"""Bookkeeping of phased TTT, apart from any model: documents, batches, phases, the shared work queue.

Kept pure (token arrays and counters in, lists out) so the schedule that decides which tokens are
scored when, and which scored documents global SGD may train on, is tested on its own.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch.distributed as torch_dist
from torch import Tensor

from record.dist import is_dist_active

TTT_BOS_ID = 1


@dataclass(frozen=True, slots=True)
class DocSpan:
    """A document: its BOS at `start`, running to (and including) the next document's BOS."""

    start: int
    length: int

    @property
    def predictions(self) -> int:
        return self.length - 1


def find_documents(tokens: np.ndarray | Tensor) -> list[DocSpan]:
    """Documents of the validation stream. Each includes the next BOS, which its last prediction
    targets, so every target after the first BOS belongs to exactly one document. A stream-final BOS
    (nothing left to predict) forms no document."""
    tokens = np.asarray(tokens)
    bos = np.flatnonzero(tokens == TTT_BOS_ID).tolist()
    ends = [*(p + 1 for p in bos[1:]), int(tokens.size)]
    return [DocSpan(s, e - s) for s, e in zip(bos, ends, strict=True) if e - s >= 2]


def select_documents(docs: list[DocSpan], fraction: float, seed: int) -> list[DocSpan]:
    """All documents, or a seeded random subset in stream order (VAL_DOC_FRACTION < 1)."""
    if fraction >= 1.0:
        return list(docs)
    keep = max(1, round(len(docs) * fraction))
    return [docs[i] for i in sorted(random.Random(seed).sample(range(len(docs)), keep))]


def build_batches(docs: Sequence[DocSpan], batch_size: int) -> list[list[DocSpan]]:
    """Documents sorted by length (stable) and cut into batches; the list index is the batch id, so
    similar lengths share a batch and short ones come first."""
    ordered = sorted(docs, key=lambda d: d.length)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def batch_queue(batches: Sequence[Sequence[DocSpan]], ascending: bool = False) -> list[int]:
    """Batch ids in processing order: longest documents first (they take longest, so no rank ends
    with a long batch); `ascending` (debug TTT_EVAL_BATCHES) keeps id order."""
    ids = list(range(len(batches)))
    return ids if ascending else sorted(ids, key=lambda i: -max(d.length for d in batches[i]))


def phase_boundaries(prefix_docs: int, num_phases: int) -> list[int]:
    """How many (already scored) documents global SGD trains on after each phase: cumulative thirds."""
    return [prefix_docs * (i + 1) // num_phases for i in range(num_phases)]


def parse_batch_filter(spec: str) -> set[int] | None:
    """TTT_EVAL_BATCHES: comma-separated 1-based batch numbers whose `ttp:` lines are printed."""
    ids = {int(part) for part in spec.split(",") if part.strip()}
    return ids or None


class TttObserver(Protocol):
    """Optional witness of the evaluation order, for legality tests and per-token analysis."""

    def scored(self, positions: Tensor, losses: Tensor) -> None:
        """Targets at these stream positions were just scored with these losses (nats)."""

    def trained(self, positions: Tensor) -> None:
        """A gradient step is about to use the tokens at these stream positions."""


# ---------------------------------------------------------------------------------------------------------
# Work queue shared by the ranks: batch claims, the scored-document counter, phase pause flags


class TttWorkQueue:
    """Counters every rank sees: which batch is next, how many documents are scored, which phase
    pause was requested. One process keeps them in memory; several use the process group's store,
    whose `add` is atomic, so a rank that finishes early simply takes the next batch."""

    def __init__(self, store: torch_dist.Store | None, key: str) -> None:
        self._store, self._key = store, key
        self._local = {"claim": 0, "scored": 0}
        self._flags: set[str] = set()

    @classmethod
    def for_run(cls) -> TttWorkQueue:
        """A fresh queue: local in one process, else on the default store under a key rank 0 picks."""
        if not is_dist_active():
            return cls(None, "")
        key = [uuid.uuid4().hex]
        torch_dist.broadcast_object_list(key, src=0)
        return cls(torch_dist.distributed_c10d._get_default_store(), f"ttt_{key[0]}")

    def _add(self, name: str, amount: int) -> int:
        if self._store is None:
            self._local[name] += amount
            return self._local[name]
        return int(self._store.add(f"{self._key}_{name}", amount))

    def claim(self) -> int:
        """The next queue index for this rank (>= queue length once all batches are taken)."""
        return self._add("claim", 1) - 1

    def claimed(self) -> int:
        return self._add("claim", 0)

    def add_scored(self, docs: int) -> int:
        """Count documents this rank finished scoring; returns the total over ranks."""
        return self._add("scored", docs)

    def request_pause(self, phase: int) -> None:
        if self._store is None:
            self._flags.add(f"pause{phase}")
        else:
            self._store.set(f"{self._key}_pause{phase}", "1")

    def pause_requested(self, phase: int) -> bool:
        if self._store is None:
            return f"pause{phase}" in self._flags
        return self._store.check([f"{self._key}_pause{phase}"])

    def wait_for_pause(self, phase: int, boundary: int, poll_seconds: float = 0.005) -> None:
        """Idle until phase `phase`'s pause is requested. It will be: every claimed batch is counted when
        done, and the scored total reaches each boundary (<= the document count) at the latest when
        the last batch is; an idle rank requests the pause itself once the total is there."""
        while not self.pause_requested(phase):
            if self.add_scored(0) >= boundary:
                self.request_pause(phase)
            else:
                time.sleep(poll_seconds)
