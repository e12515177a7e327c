"""Packaging a PR: the one-file program and the records/<track>/<date>_<name>/ folder around it.

`bundle` turns record/ into train_gpt.py; `assemble` builds the folder from seed logs, with
`readme_render` writing its README.md and `plots` its training-curve PNG.
Commands: `golfkit bundle` (bundle_cmd.py), `golfkit assemble` (assemble_cmd.py).
"""
