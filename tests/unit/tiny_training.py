"""A tiny GPT trained for a few seconds on real text, shared by the quantization and artifact tests.

Tokens are the UTF-8 bytes of the real web documents in shared/data/webtext (vocab 256 fits the tiny
config's 512), each document starting with BOS (id 1, a byte plain text never contains), so the
model learns real statistics and quantization error shows up as real loss.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from golfkit.runs.presets import tiny_config
from record.config import Config
from record.model import GPT

BOS = 1


def webtext_byte_tokens(shared_data: Path, count: int, skip_docs: int = 0) -> torch.Tensor:
    """`count` tokens of BOS + document bytes, documents taken in file order after `skip_docs`."""
    out: list[int] = []
    with open(shared_data / "webtext" / "docs.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < skip_docs:
                continue
            out.append(BOS)
            out.extend(json.loads(line)["text"].encode("utf-8"))
            if len(out) >= count:
                break
    return torch.tensor(out[:count], dtype=torch.int64)


def windows(
    tokens: torch.Tensor, seq_len: int, rows: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, tokens.numel() - seq_len - 1, (rows,), generator=generator)
    chunk = torch.stack([tokens[s : s + seq_len + 1] for s in starts.tolist()])
    return chunk[:, :-1], chunk[:, 1:]


def train_tiny(cfg: Config, tokens: torch.Tensor, steps: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(cfg)
    model.use_fused_kernels = False
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        inputs, targets = windows(tokens, cfg.train_seq_len, 8, gen)
        loss = model(inputs, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


@functools.cache
def trained_tiny(shared_data: Path, steps: int) -> tuple[GPT, torch.Tensor, torch.Tensor]:
    """(model, train tokens, held-out tokens), trained once per test process for each step count."""
    train = webtext_byte_tokens(shared_data, 100_000)
    held_out = webtext_byte_tokens(shared_data, 8_192, skip_docs=400)
    return train_tiny(tiny_config(), train, steps), train, held_out


def eval_loss(model: GPT, tokens: torch.Tensor, seq_len: int) -> float:
    """Mean next-token loss (nats) over consecutive windows of `tokens`."""
    usable = (tokens.numel() - 1) // seq_len * seq_len
    inputs = tokens[:usable].view(-1, seq_len)
    targets = tokens[1 : usable + 1].view(-1, seq_len)
    with torch.no_grad():
        return float(model.per_token_loss(inputs, targets).mean())
