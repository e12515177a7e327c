"""Running the record: plan the seeds, check the machine first, run each seed, then verify and assemble.

`runplan` (what to run), `presets` (named settings: the record, the CPU demo, the tiny test model),
`preflight` (checks before a GPU minute is spent), `seedrun` (one seed's process and log), `progress`
(the live line), `runner` (all of it in order), `demo` (the CPU demo's data and program).
Commands: `golfkit record` (record_cmd.py), `golfkit params` (params_cmd.py), `golfkit demo` (demo_cmd.py).
"""
