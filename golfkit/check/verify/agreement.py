"""Does submission.json say what the logs say?

Authors name the same number differently (`artifact_bytes` / `bytes_total`, `ttt_time_ms` /
`ttt_eval_time_s`, per-seed results under `seed_results` or under `seeds`), so each known key maps to
the log quantity it must equal. A stated number agrees when the log's value rounds to it at the digits
the author wrote (1.0728 accepts 1.07280131). Keys the logs cannot confirm are left alone.

Two quantities are *derived* (the logs never print them): step_avg_ms and its mean. Authors compute
them their own way, so they only have to agree within 1 %.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from golfkit.check.stats import mean
from golfkit.check.verify.folder import SeedRun, per_seed_section

DERIVED_TOLERANCE = 0.01


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


# per-seed key -> the log value(s) it may equal
PER_SEED: dict[str, Callable[[SeedRun], list[float | None]]] = {
    "val_bpb": lambda r: [r.val_bpb],
    "val_loss": lambda r: [r.val_loss],
    "artifact_bytes": lambda r: [r.train.artifact_bytes],
    "bytes_total": lambda r: [r.train.artifact_bytes],
    "code_bytes": lambda r: [r.train.code_bytes],
    "bytes_code": lambda r: [r.train.code_bytes],
    "model_bytes": lambda r: [r.train.model_bytes],
    "steps": lambda r: [r.train.steps],
    "train_time_s": lambda r: [r.train.train_time_s],
    "train_time_ms": lambda r: [_times(r.train.train_time_s, 1000.0)],
    "eval_time_s": lambda r: [r.eval_time_s],
    "ttt_eval_time_s": lambda r: [r.headline_eval_time_s],
    "ttt_time_ms": lambda r: [_times(r.headline_eval_time_s, 1000.0)],
    "pre_ttt_val_bpb": lambda r: [r.pre_ttt_val_bpb],
    "pre_ttt_sliding_bpb": lambda r: [r.pre_ttt_val_bpb],
}
PER_SEED_DERIVED: dict[str, Callable[[SeedRun], list[float | None]]] = {
    "step_avg_ms": lambda r: [r.train.step_avg_ms],
}
# top-level mean key -> per-seed key: authors often average the rounded per-seed values they state
# (2026-04-05: 1.08563 is the mean of five 5-decimal values, the logs' mean rounds to 1.08562), so the
# mean of the stated per-seed values is accepted too; those values are themselves checked above.
MEAN_OF_STATED = {
    "val_bpb": "val_bpb",
    "mean_bpb": "val_bpb",
    "val_loss": "val_loss",
    "mean_val_loss_nats": "val_loss",
    "val_loss_nats": "val_loss",
    "artifact_bytes_mean": "artifact_bytes",
    "train_time_s_mean": "train_time_s",
    "eval_time_s_mean": "eval_time_s",
    "train_steps_mean": "steps",
    "step_avg_ms_mean": "step_avg_ms",
}
# list keys aligned with the `seeds` list (2026-04-03 style)
PER_SEED_LISTS = {"seed_scores": "val_bpb", "eval_time_seconds": "eval_time_s"}


def _stats(values: Sequence[float | None]) -> list[float | None]:
    return [mean(values), max(values)] if values and None not in values else [None]


def _top_level(runs: list[SeedRun]) -> dict[str, list[float | None]]:
    bpb, loss = [r.val_bpb for r in runs], [r.val_loss for r in runs]
    artifact = [r.train.artifact_bytes for r in runs]
    code = [r.train.code_bytes for r in runs]
    model = [r.train.model_bytes for r in runs]
    mean_of = lambda xs: [mean(xs)] if xs and None not in xs else [None]  # noqa: E731
    max_of = lambda xs: [max(xs)] if xs and None not in xs else [None]  # noqa: E731
    return {
        "val_bpb": mean_of(bpb),
        "mean_bpb": mean_of(bpb),
        "val_loss": mean_of(loss),
        "mean_val_loss_nats": mean_of(loss),
        "val_loss_nats": mean_of(loss),
        "artifact_bytes_mean": mean_of(artifact),
        "artifact_bytes_max": max_of(artifact),
        "bytes_total": _stats(artifact),
        "bytes_code": [*code, *_stats(code)],
        "bytes_model_compressed": [*model, *_stats(model)],
        "train_time_s_mean": mean_of([r.train.train_time_s for r in runs]),
        "eval_time_s_mean": mean_of([r.eval_time_s for r in runs]),
        "train_steps_mean": mean_of([r.train.steps for r in runs]),
    }


def _top_level_derived(runs: list[SeedRun]) -> dict[str, list[float | None]]:
    steps = [r.train.step_avg_ms for r in runs]
    return {"step_avg_ms_mean": [mean(steps)] if steps and None not in steps else [None]}


def _decimals(stated: float | int | Decimal) -> int:
    exponent = (stated if isinstance(stated, Decimal) else Decimal(repr(stated))).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def agrees(stated: float | int | Decimal, actual: float) -> bool:
    """`actual` rounds to `stated` at the number of decimals `stated` was written with (give a Decimal
    or int to keep trailing zeros; a float is read by its shortest repr)."""
    half_unit = 0.5 * 10.0 ** -_decimals(stated)
    return abs(actual - float(stated)) <= half_unit * (1 + 1e-9) + 1e-12


def _agrees_derived(stated: float | int | Decimal, actual: float) -> bool:
    return abs(actual - float(stated)) <= DERIVED_TOLERANCE * abs(float(stated))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _compare(
    where: str, key: str, stated: object, candidates: list[float | None], derived: bool, out: list[str]
) -> int:
    """Append a message to `out` when `stated` matches none of `candidates`; return 1 if compared."""
    if not _is_number(stated) or not candidates or candidates[0] is None:
        return 0
    test = _agrees_derived if derived else agrees
    if any(c is not None and test(stated, float(c)) for c in candidates):
        return 1
    actual = float(candidates[0])
    shown = f"{actual:,.0f}" if actual.is_integer() else f"{actual:.8g}"
    out.append(
        f"{where}{key} is {stated} in submission.json, the logs give {shown} (off by {actual - float(stated):+.6g})"
    )
    return 1


def per_seed_results(submission: dict) -> dict[str, dict] | None:
    """The per-seed section under whichever key the author used."""
    return per_seed_section(submission)


def stated_seeds(submission: dict) -> list[str] | None:
    section = per_seed_results(submission)
    if section is not None:
        return [str(k) for k in section]
    seeds = submission.get("seeds")
    if isinstance(seeds, list):
        return [str(s) for s in seeds]
    return None


def match_runs(submission: dict, runs: list[SeedRun]) -> tuple[dict[str, SeedRun], list[str]]:
    """Stated seed -> its run: by the seed the log ran with, else by the seed in its file name."""
    by_seed = {str(r.seed): r for r in runs}
    by_name = {str(r.train.file_seed): r for r in runs if r.train.file_seed is not None}
    matched, problems = {}, []
    for seed in stated_seeds(submission) or []:
        run = by_seed.get(seed) or by_name.get(seed)
        if run is None:
            problems.append(f"seed {seed} is in submission.json but no log ran it")
        else:
            matched[seed] = run
    claimed = {id(r) for r in matched.values()}
    if stated_seeds(submission) is not None:
        problems += [f"seed {r.seed} has a log but submission.json omits it" for r in runs if id(r) not in claimed]
    return matched, problems


def submission_mismatches(submission: dict, runs: list[SeedRun]) -> tuple[list[str], int]:
    """(messages, number of stated values compared) for every number the logs can confirm."""
    matched, out = match_runs(submission, runs)
    compared = 0
    section = per_seed_results(submission) or {}
    for seed, values in section.items():
        run = matched.get(str(seed))
        if run is None:
            continue
        for key, stated in values.items():
            if key in PER_SEED:
                compared += _compare(f"seed {seed}: ", key, stated, PER_SEED[key](run), False, out)
            elif key in PER_SEED_DERIVED:
                compared += _compare(f"seed {seed}: ", key, stated, PER_SEED_DERIVED[key](run), True, out)
    seed_list = submission.get("seeds")
    for key, quantity in PER_SEED_LISTS.items():
        values = submission.get(key)
        if isinstance(values, list) and isinstance(seed_list, list) and len(values) == len(seed_list):
            for seed, stated in zip(seed_list, values, strict=True):
                if (run := matched.get(str(seed))) is not None:
                    compared += _compare(f"seed {seed}: ", key, stated, PER_SEED[quantity](run), False, out)
    scored = list(matched.values()) or runs
    for derived, table in ((False, _top_level(scored)), (True, _top_level_derived(scored))):
        for key, candidates in table.items():
            if key in submission:
                extra = _mean_of_stated(section, MEAN_OF_STATED.get(key))
                before = len(out)
                compared += _compare("", key, submission[key], [*candidates, *extra], derived, out)
                if len(out) > before and (one := _one_seeds_value(key, submission[key], scored)):
                    out[-1] += f"; it is {one}, not the mean of {len(scored)} logs"
    return out, compared


def _one_seeds_value(key: str, stated: object, runs: list[SeedRun]) -> str:
    """Which single seed's value a stated mean is (early records stated their first run's score)."""
    per_seed = MEAN_OF_STATED.get(key)
    if per_seed not in ("val_bpb", "val_loss") or not _is_number(stated) or len(runs) < 2:
        return ""
    for run in runs:
        if agrees(stated, PER_SEED[per_seed](run)[0]):
            return f"seed {run.seed}'s alone ({run.train.log.name})"
    return ""


def _mean_of_stated(section: dict[str, dict], per_seed_key: str | None) -> list[float]:
    values = [v.get(per_seed_key) for v in section.values()] if per_seed_key else []
    if not values or not all(_is_number(v) for v in values):
        return []
    return [mean([float(v) for v in values])]
