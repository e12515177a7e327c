"""Print the record's resolved config and its parameter count, without training or allocating weights.

`golfkit params [NAME=VALUE ...]` prints the `Hyperparameters:` block exactly as the record logs it,
then `model_params:N`, counted on the meta device (no memory; about a second, mostly importing torch).
Settings are the record's environment variables (`NUM_LAYERS=9 MATRIX_LR=0.03`); an unknown name is
refused with the closest known one.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from golfkit.errors import GolfkitError

if TYPE_CHECKING:
    from record.config import Config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("settings", nargs="*", metavar="NAME=VALUE", help="override a setting (env var name)")
    parser.add_argument("--tiny", action="store_true", help="start from the CPU demo's tiny model preset")


def _parse_settings(settings: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GolfkitError(item, "expected NAME=VALUE", "write e.g. NUM_LAYERS=9")
        parsed[name] = value
    return parsed


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from golfkit.runs.presets import tiny_config
    from record.config import Config
    from record.logkeys import fmt_model_params

    overrides = _parse_settings(args.settings)
    cfg = Config.from_overrides(overrides, base=tiny_config() if args.tiny else None)
    count = count_parameters(cfg)
    for line in cfg.hyperparameter_lines():
        print(line, file=out)
    print(fmt_model_params(count), file=out)
    return 0


def count_parameters(cfg: Config) -> int:
    """Parameter count of GPT(cfg), built on the meta device (no memory, about a millisecond)."""
    import torch

    from record.model import GPT

    with torch.device("meta"):
        model = GPT(cfg)
    return sum(p.numel() for p in model.parameters())
