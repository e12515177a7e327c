"""The PR #1934 record's training and evaluation program.

`golfkit bundle` concatenates the modules below, in this order, into one `train_gpt.py`; a module may
import only modules listed before it (as `from record.<mod> import ...`). Nothing runs at import time.
"""

BUNDLE_ORDER: tuple[str, ...] = (
    "errors",
    "logkeys",
    "envinfo",
    "config",
    "dist",
    "tokenizer",
    "data",
    "kernels",
    "attention",
    "model",
    "optim",
    "schedule",
    "quant",
    "sizes",
    "artifact",
    "export",
    "evaluate",
    "ttt_plan",
    "lora",
    "ttt",
    "eval_phase",
    "train",
)
