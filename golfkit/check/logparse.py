"""Read one training log of the record track into a typed `RunRecord`.

The line formats live in `record.logkeys` (one definition, shared with the trainer that writes them);
this module decides what the lines *mean*: which evaluation is the run's headline score, what counts as
evaluation time, which byte count is the artifact. It reads the real logs of every April 2026 record
(each author logged a slightly different set of lines) and refuses, in one line, a log that stops
before it reports a score or a size.

Headline: the lowest-loss evaluation of the *quantized* artifact the log reports (pre-quantization
diagnostics never count). In every record this is the post-TTT line where TTT ran, else the sliding
window line; it also keeps an abandoned TTT experiment that scored worse (2026-04-04, seed 42) from
replacing the score the author submitted.

Evaluation time: the log's own `total_eval_time` when it prints one (the record's eval timer), else the
sum of every post-quantization evaluation's `eval_time` (no overall timer was logged, so everything
that ran on the artifact counts; this is what 2026-04-03's submission.json reports as 83 s).

Earlier formats (the March 2026 records: `step:N/M ...`, `seed:1337`, `_exact` score twins, fields
after the score, timestamped lines) are read through `golfkit.check.logformats`. A file in which no line
is a known run line is refused naming the first line it could not place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from golfkit.check import logformats as early
from golfkit.check.logpatterns import LOG_PATTERNS
from golfkit.errors import GolfkitError
from record.logkeys import HYPERPARAMETER_INDENT

_SEED_IN_NAME = re.compile(r"seed_?(\d+)")
_VERSION_LINE = re.compile(r"^Running (?P<name>[A-Za-z][\w-]*) (?P<value>\S.*?)\s*$")
_SMI_VERSIONS = re.compile(r"Driver Version: (?P<driver>\S+)\s+CUDA Version: (?P<cuda>\S+)")
_SMI_GPU = re.compile(r"^\|\s+\d+\s+(?P<name>NVIDIA .+?)\s{2,}(?:On|Off)\s+\|")
_TORCH_CUDA = re.compile(r"\+cu(?P<major>\d+?)(?P<minor>\d)$")
_VERSION_NAMES = {"python": "python", "pytorch": "torch", "torch": "torch", "triton": "triton"}


@dataclass(frozen=True, slots=True)
class EvalResult:
    """One `TAG val_loss:X val_bpb:Y eval_time:Zms` line."""

    tag: str
    val_loss: float
    val_bpb: float
    eval_time_s: float
    line_no: int

    @property
    def is_pre_quantization(self) -> bool:
        tag = self.tag.lower()
        return any(marker in tag for marker in early.PRE_QUANT_MARKERS)

    @property
    def is_ttt(self) -> bool:
        return "ttt" in self.tag


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What one training (or eval-only) log says about its run. Times in seconds, sizes in bytes."""

    log: Path
    seed: int | None
    val_bpb: float
    val_loss: float
    headline: str  # tag of the headline line, e.g. "quantized_ttt_phased"
    steps: int | None
    iterations: int | None
    step_avg_ms: float | None
    train_time_s: float | None
    stop_reason: str | None  # "wallclock_cap" | "iterations"
    eval_time_s: float | None
    model_bytes: int | None  # compressed quantized model
    code_bytes: int | None  # the code as counted in the artifact (compressed when the log says so)
    artifact_bytes: int | None  # the log's "Total submission size"
    peak_mem_mib: int | None
    hyperparameters: dict[str, str]
    train_curve: list[tuple[int, float]]  # (step, train_loss)
    val_curve: list[tuple[int, float]]  # (step, val_bpb) during training
    versions: dict[str, str]  # python/torch/cuda/driver/gpu when the log records them
    headline_eval_time_s: float | None = None  # eval_time of the headline line alone
    evals: list[EvalResult] = field(default_factory=list)  # every final evaluation, in log order
    eval_only: bool = False  # a log that loaded a saved artifact and only evaluated it
    codec: str | None = None  # e.g. "quantized+pergroup", "int6+brotli"
    code_bytes_uncompressed: int | None = None
    line_count: int = 0
    file_seed: int | None = None  # the seed the file name claims (train_seed42.log -> 42)
    gptq_calibration_s: float | None = None  # GPTQ calibration after the training loop, as logged
    gptq_reserve_s: float | None = None  # time the run reserved for it out of its wallclock cap
    max_wallclock_s: float | None = None  # the run's own wallclock cap setting
    gpu_model: str | None = None  # e.g. "NVIDIA H100 80GB HBM3"
    gpu_count: int | None = None  # GPUs the run used (world size), else GPUs the log lists

    @property
    def train_time_with_gptq_s(self) -> float | None:
        """Training time as the track counts it: the loop plus GPTQ calibration where logged."""
        if self.train_time_s is None:
            return None
        return self.train_time_s + (self.gptq_calibration_s or 0.0)


@dataclass(slots=True)
class _Scan:
    """Mutable state while reading one log, turned into a RunRecord at the end."""

    hyperparameters: dict[str, str] = field(default_factory=dict)
    in_hyperparameters: bool = False
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    last_train_ms: float | None = None
    iterations: int | None = None
    stop: tuple[str, float, int] | None = None  # reason, train ms, step
    peak_mem_mib: int | None = None
    evals: list[EvalResult] = field(default_factory=list)
    code_bytes: dict[str, int] = field(default_factory=dict)  # kind ("" when unqualified) -> bytes
    model_bytes: int | None = None
    artifact_bytes: int | None = None
    codec: str | None = None
    total_eval_s: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    gpus: list[str] = field(default_factory=list)
    ttt_begin_line: int = 0
    last_line: str = ""
    last_line_no: int = 0
    settings: dict[str, str] = field(default_factory=dict)  # `key:value` setting lines (early formats)
    gptq_s: float | None = None
    gptq_reserve_s: float | None = None
    launch_gpus: tuple[int, str] | None = None  # (count, model) from a launcher line
    placed: int = 0  # lines read as run lines (dump, steps, stop, scores, sizes)
    first_unplaced: tuple[int, str] | None = None


def parse_log(path: str | Path) -> RunRecord:
    """Parse one training log; raise GolfkitError naming the missing quantity and the last line read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GolfkitError(path, f"cannot read the log ({exc.strerror})", "check the path") from None
    if _holds_binary(data):  # before any pattern: random bytes can happen to match a loose one
        raise GolfkitError(
            path,
            "not a log format golfkit knows: binary data, not the text a trainer prints",
            "attach the run's own training log (text, as the trainer printed it)",
        )
    text = data.decode("utf-8", errors="replace")
    scan = _Scan()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = early.strip_timestamp(raw.rstrip("\r"))
        if line.strip():
            scan.last_line, scan.last_line_no = line, line_no
        if _read_line(scan, line, line_no):
            scan.placed += 1
        elif scan.first_unplaced is None and line.strip():
            scan.first_unplaced = (line_no, line)
    return _finish(path, scan, text.count("\n") + (0 if text.endswith("\n") else 1))


def _read_line(scan: _Scan, line: str, line_no: int) -> bool:
    """Read one line into `scan`; True when it is a run line (a setting, step, stop, score or size)."""
    p = LOG_PATTERNS
    if scan.in_hyperparameters:
        m = p["hyperparameter"].match(line)
        if m and line.startswith(HYPERPARAMETER_INDENT) and not line.startswith(HYPERPARAMETER_INDENT + " "):
            scan.hyperparameters[m["key"]] = m["value"]
            return True
        scan.in_hyperparameters = False
    if p["hyperparameters"].match(line):
        scan.in_hyperparameters = not scan.hyperparameters  # a second dump (logged source) is ignored
        return True
    if m := p["train_step"].match(line):
        scan.train_curve.append((int(m["step"]), float(m["train_loss"])))
        scan.last_train_ms = float(m["train_time_min"]) * 60000.0
        scan.iterations = int(m["iterations"])
    elif m := p["train_val"].match(line):
        scan.val_curve.append((int(m["step"]), float(m["val_bpb"])))
        scan.iterations = int(m["iterations"])
    elif m := p["stopping_early"].match(line):
        scan.stop = (m["reason"], float(m["train_time_ms"]), int(m["step"]))
        scan.iterations = int(m["iterations"])
    elif m := p["peak_memory"].match(line):
        scan.peak_mem_mib = int(m["allocated_mib"])
    elif m := p["eval_result"].match(line):
        scan.evals.append(
            EvalResult(
                tag=m["tag"],
                val_loss=float(m["val_loss"]),
                val_bpb=float(m["val_bpb"]),
                eval_time_s=float(m["eval_time_ms"]) / 1000.0,
                line_no=line_no,
            )
        )
    elif m := p["code_size"].match(line):
        scan.code_bytes[m["kind"] or ""] = int(m["bytes"])
    elif m := p["total_submission"].match(line):
        scan.artifact_bytes, scan.codec = int(m["bytes"]), m["codec"]
    elif p["serialized_model"].match(line):
        return True  # the raw fp checkpoint; not part of the artifact
    elif m := p["serialized_quantized"].match(line):
        scan.model_bytes = int(m["bytes"])
    elif p["ttt_begin"].match(line):
        scan.ttt_begin_line = scan.ttt_begin_line or line_no
    elif m := p["total_eval_time"].match(line):
        scan.total_eval_s = float(m["seconds"])
    else:
        return _read_early_line(scan, line, line_no) or _read_environment_line(scan, line)
    return True


def _read_early_line(scan: _Scan, line: str, line_no: int) -> bool:
    """The formats of `golfkit.check.logformats` (March 2026 records); True when the line was one."""
    if m := early.STOPPING_EARLY.match(line):
        scan.stop = (m["reason"], float(m["train_time_ms"]), int(m["step"]))
        scan.iterations = int(m["iterations"])
    elif m := early.STEP_LINE.match(line):
        return _read_step_fields(scan, int(m["step"]), int(m["iterations"]), early.fields(m["fields"]))
    elif m := early.GPTQ_SECONDS.match(line):
        scan.gptq_s = max(scan.gptq_s or 0.0, float(m["seconds"]))
    elif m := early.GPTQ_RESERVING.match(line):
        scan.gptq_reserve_s = float(m["amount"]) / (1000.0 if m["unit"] == "ms" else 1.0)
    elif m := early.ARTIFACT_MB.match(line):
        # The ternary record logs its artifact in MB with two decimals only: the nearest it states.
        scan.artifact_bytes, scan.codec = round(float(m["mb"]) * 1_000_000), "as logged in MB"
        scan.code_bytes.setdefault("", int(m["code"]))
    elif score := early.split_score_line(line):
        return _read_score(scan, *score, line_no)
    elif early.SETTINGS_LINE.match(line) or early.KV_SETTINGS_LINE.match(line):
        # Settings are printed before training; later `key:value` lines are events (`swa:start step:5950`).
        if not (scan.train_curve or scan.val_curve or scan.stop):
            for key, value in early.fields(line).items():
                scan.settings.setdefault(early.SHORT_SETTING_KEYS.get(key, key), value)
    else:
        return False
    return True


def _read_step_fields(scan: _Scan, step: int, iterations: int, found: dict[str, str]) -> bool:
    """`step:N/M train_loss:X train_time:Tms ...` (or `loss:`/`t:`), or the in-training `val_loss:`."""
    scan.iterations = iterations
    train_ms = early.time_ms(found.get("train_time", found.get("t")))
    if (bpb := early.to_float(found.get("val_bpb"))) is not None:
        scan.val_curve.append((step, bpb))
    elif (loss := early.to_float(found.get("train_loss", found.get("loss")))) is not None:
        scan.train_curve.append((step, loss))
    else:
        return False
    if train_ms is not None:
        scan.last_train_ms = train_ms
    return True


def _read_score(scan: _Scan, tag: str, found: dict[str, str], line_no: int) -> bool:
    if tag.endswith(early.PROGRESS_SUFFIXES):
        return True  # repeats the score line that follows it
    loss, bpb = float(found["val_loss"]), float(found["val_bpb"])
    eval_ms = early.time_ms(found.get("eval_time", found.get("elapsed")))
    if tag.endswith(early.EXACT_SUFFIX):
        base = tag[: -len(early.EXACT_SUFFIX)]
        for i in range(len(scan.evals) - 1, -1, -1):
            if scan.evals[i].tag == base:  # the same evaluation with all its digits
                prior = scan.evals[i]
                scan.evals[i] = EvalResult(base, loss, bpb, prior.eval_time_s, prior.line_no)
                return True
    scan.evals.append(EvalResult(tag, loss, bpb, (eval_ms or 0.0) / 1000.0, line_no))
    return True


def _read_environment_line(scan: _Scan, line: str) -> bool:
    """Versions a self-describing log prints: `Running Python 3.12.3 (...)`, nvidia-smi's table, a
    launcher's `8xH100`. Not run lines: they alone do not make a file a run log (False)."""
    if m := _VERSION_LINE.match(line):
        name = _VERSION_NAMES.get(m["name"].lower(), m["name"].lower())
        value = m["value"].split(" (")[0] if name == "python" else m["value"]
        scan.versions.setdefault(name, value)
    elif m := _SMI_VERSIONS.search(line):
        scan.versions.setdefault("driver", m["driver"])
        scan.versions.setdefault("cuda", m["cuda"])
    elif m := _SMI_GPU.match(line):
        scan.gpus.append(m["name"])
    elif "torchrun" in line and (m := early.GPU_LAUNCH.search(line)):
        scan.launch_gpus = scan.launch_gpus or (int(m["count"]), m["model"])
    return False


def _finish(path: Path, scan: _Scan, line_count: int) -> RunRecord:
    if not scan.hyperparameters and "seed" in scan.settings:
        # Early logs print their settings as `key:value` lines, `seed:1337` among them.
        scan.hyperparameters = dict(scan.settings)
    else:
        for key in ("seed", "world_size", "max_wallclock_seconds"):
            if key in scan.settings:
                scan.hyperparameters.setdefault(key, scan.settings[key])
    final_evals = [e for e in scan.evals if not e.is_pre_quantization]
    if not final_evals and scan.placed == 0:
        _unknown_format(path, scan)
    if not final_evals:
        _missing(path, scan, "a final val_loss/val_bpb line of the quantized model")
    if scan.ttt_begin_line and not any(e.is_ttt and e.line_no > scan.ttt_begin_line for e in final_evals):
        _missing(
            path,
            scan,
            f"the post-TTT val_loss/val_bpb line (TTT evaluation began on line {scan.ttt_begin_line})",
        )
    head = min(final_evals, key=lambda e: (e.val_bpb, -e.line_no))
    trained = bool(scan.train_curve or scan.val_curve or scan.stop)
    if trained and scan.artifact_bytes is None:
        _missing(path, scan, "the 'Total submission size ...: N bytes' line (artifact size)")
    if trained and scan.stop is None and not scan.train_curve:
        _missing(path, scan, "the training steps")

    steps, train_ms, reason = _training_end(scan)
    code_bytes = scan.code_bytes.get("compressed", scan.code_bytes.get(""))
    if scan.model_bytes is None and scan.artifact_bytes is not None and code_bytes is not None:
        scan.model_bytes = scan.artifact_bytes - code_bytes
    eval_s = scan.total_eval_s
    if eval_s is None:
        eval_s = round(sum(e.eval_time_s for e in final_evals), 3)
    versions = dict(scan.versions)
    if scan.gpus:
        versions.setdefault("gpu", f"{len(scan.gpus)}x {scan.gpus[0]}")
    if "cuda" not in versions and (m := _TORCH_CUDA.search(versions.get("torch", ""))):
        versions["cuda"] = f"{m['major']}.{m['minor']}"
    iterations = scan.iterations
    if "iterations" in scan.hyperparameters and scan.hyperparameters["iterations"].isdigit():
        iterations = int(scan.hyperparameters["iterations"])
    gpu_model, gpu_count = _gpus(scan, versions)
    reserve = early.to_float(scan.hyperparameters.get("gptq_reserve_seconds"))
    return RunRecord(
        log=path,
        seed=_seed(path, scan.hyperparameters),
        val_bpb=head.val_bpb,
        val_loss=head.val_loss,
        headline=head.tag,
        steps=steps,
        iterations=iterations,
        step_avg_ms=(train_ms / steps) if train_ms is not None and steps else None,
        train_time_s=train_ms / 1000.0 if train_ms is not None else None,
        stop_reason=reason,
        eval_time_s=eval_s,
        model_bytes=scan.model_bytes,
        code_bytes=code_bytes,
        artifact_bytes=scan.artifact_bytes,
        peak_mem_mib=scan.peak_mem_mib,
        hyperparameters=scan.hyperparameters,
        train_curve=scan.train_curve,
        val_curve=scan.val_curve,
        versions=versions,
        headline_eval_time_s=head.eval_time_s,
        evals=list(scan.evals),
        eval_only=not trained,
        codec=scan.codec,
        code_bytes_uncompressed=scan.code_bytes.get("uncompressed", scan.code_bytes.get("")),
        line_count=line_count,
        file_seed=file_seed(path),
        gptq_calibration_s=scan.gptq_s,
        gptq_reserve_s=reserve if reserve is not None else scan.gptq_reserve_s,
        max_wallclock_s=early.to_float(scan.hyperparameters.get("max_wallclock_seconds")),
        gpu_model=gpu_model,
        gpu_count=gpu_count,
    )


def _gpus(scan: _Scan, versions: dict[str, str]) -> tuple[str | None, int | None]:
    """(model, count): a `Running GPU 8x NVIDIA H200` line, else nvidia-smi's table or a launcher line;
    the count is the run's world size when it logs one (GPUs it used, not GPUs the machine has)."""
    model, count = None, None
    if m := re.fullmatch(r"(?:(?P<count>\d+) ?x ?)?(?P<model>.+)", versions.get("gpu", "").strip()):
        model, count = m["model"], int(m["count"]) if m["count"] else None
    elif scan.launch_gpus is not None:
        count, model = scan.launch_gpus
    world = scan.hyperparameters.get("world_size", "")
    if world.isdigit():
        count = int(world)
    return model, count


def _training_end(scan: _Scan) -> tuple[int | None, float | None, str | None]:
    """(steps, train ms, stop reason): from `stopping_early`, else from the last step line."""
    if scan.stop is not None:
        reason, train_ms, step = scan.stop
        return step, train_ms, reason
    if not scan.train_curve:
        return None, None, None
    last_step = scan.train_curve[-1][0]
    reason = "iterations" if scan.iterations is not None and last_step >= scan.iterations else None
    return last_step, scan.last_train_ms, reason


def _seed(path: Path, hyperparameters: dict[str, str]) -> int | None:
    value = hyperparameters.get("seed", "")
    if value.lstrip("-").isdigit():
        return int(value)
    return file_seed(path)


def file_seed(path: Path) -> int | None:
    """The seed a log's file name claims (train_seed42.log, seed_42.log -> 42), or None."""
    m = _SEED_IN_NAME.search(path.stem)
    return int(m.group(1)) if m else None


def _missing(path: Path, scan: _Scan, what: str) -> None:
    last = scan.last_line.strip()
    if len(last) > 120:
        last = last[:117] + "..."
    where = f"{path}:{scan.last_line_no}" if scan.last_line_no else str(path)
    raise GolfkitError(
        where,
        f"log ends without {what}; last line read: {last!r}" if last else f"log is empty, no {what}",
        "the run was cut short or this is not a record-track training log; re-run or attach the full log",
    )


def _unknown_format(path: Path, scan: _Scan) -> None:
    if scan.first_unplaced is None:
        raise GolfkitError(path, "log is empty", "attach the run's full log")
    line_no, line = scan.first_unplaced
    shown = line.strip()
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise GolfkitError(
        f"{path}:{line_no}",
        f"not a log format golfkit knows; first line it could not place: {shown!r}",
        "attach the run's own training log (text, as the trainer printed it)",
    )


def looks_like_run_log(path: str | Path) -> bool:
    """Whether a file is a run's log at all (a dump, step lines or scores), so a folder's `summary.log`
    or a shell transcript can be passed over instead of being reported as a truncated run."""
    p = LOG_PATTERNS
    probes = (p["hyperparameters"], p["train_step"], p["stopping_early"], p["eval_result"])
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                line = early.strip_timestamp(raw.rstrip("\r\n"))
                if any(probe.match(line) for probe in probes):
                    return True
                if early.STOPPING_EARLY.match(line) or early.STEP_LINE.match(line):
                    return True
                if (score := early.split_score_line(line)) and not score[0].endswith(early.PROGRESS_SUFFIXES):
                    return True
            return False
    except OSError as exc:
        raise GolfkitError(path, f"cannot read the log ({exc.strerror})", "check the path") from None


def is_binary(path: str | Path) -> bool:
    """Whether a file holds bytes no text log has (NUL, or mostly invalid UTF-8)."""
    try:
        data = Path(path).read_bytes()[:65536]
    except OSError as exc:
        raise GolfkitError(path, f"cannot read the log ({exc.strerror})", "check the path") from None
    return _holds_binary(data)


def _holds_binary(data: bytes) -> bool:
    """NUL bytes, or more than 1% of the first 64 KiB not valid UTF-8."""
    head = data[:65536]
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    return text.count("\ufffd") > max(8, len(text) // 100)
