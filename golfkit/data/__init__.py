"""Data: the CaseOps dataset downloaded, or shards built from documents, and the transform behind them.

`download` fetches the published shards and checks them; `dataprep` builds shards and the validation
byte sidecar from a docs jsonl; `tokenizer` trains and applies the SentencePiece model; `caseops` is
the reversible case transform; `demo_corpus` is the offline text the CPU demo trains on.
Commands: `golfkit data` (data_cmd.py), `golfkit caseops` (caseops_cmd.py).
"""
