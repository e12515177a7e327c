"""Checking: is a log, a submission.json or a whole record folder what the challenge accepts?

`logparse` (with `logformats` and `logpatterns`) reads a training log into a `RunRecord`; `validate`
checks submission.json against the schema; `stats` holds the means, spreads and significance test;
`rules/` holds each track's limits as data; `verify/` runs the numbered checks on a record folder.
Commands: `golfkit verify` (verify_cmd.py), `golfkit validate` (validate_cmd.py).
"""
