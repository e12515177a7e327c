"""The GPU image's pinned versions, read from the files that define them, and compared with a run's.

Three files state versions: docker/requirements-gpu.lock (Python packages, written by docker/lock.py),
docker/Dockerfile (base image digest, apt pins, and `io.golfkit.pin.*` labels that `docker inspect`
shows) and docker/README.md (the table people read). `image_pins` derives the pinned value of each
component from the first two; `consistency_problems` lists every place that disagrees, so a version
changed in one file alone fails a test instead of producing an image that differs from its label.

`compare_run_versions` holds those pins against the versions a training log recorded (see
record/envinfo.py), which is how `golfkit verify` tells a reviewer whether a reproduction was exact.
`gpu_stack_problems` holds the lock's torch and Triton against the newest GPU result in
benchmarks/results/, so the image pins the stack the GPU figures were measured with.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

DOCKERFILE = "docker/Dockerfile"
LOCK = "docker/requirements-gpu.lock"
LOCK_IN = "docker/requirements-gpu.in"
README = "docker/README.md"
PYPROJECT = "pyproject.toml"
RESULTS = "benchmarks/results"

LABEL_PREFIX = "io.golfkit.pin."
# Components every place must state; the README also lists the base image and its digest.
LABELLED = ("cuda", "driver-min", "python", "lrzip", "torch", "triton", "flash-attn-4", "nvidia-cutlass-dsl-libs-cu13")
README_COMPONENTS = ("base-image", "base-digest", *LABELLED, "nvidia-cutlass-dsl", "flash-attn-3", "nox")
ABSENT = "absent"

_BASE_ARG = re.compile(r"^ARG BASE_IMAGE=(?P<ref>\S+)\s*$", re.MULTILINE)
_CUDA_TAG = re.compile(r":(?P<version>\d+\.\d+\.\d+)-")
_APT_PIN = re.compile(r"^(?P<name>[a-z0-9][a-z0-9.+-]*)=(?P<version>[0-9][^\s=]*)$")
_TARGET = re.compile(r"^# target: CPython (?P<python>\d+\.\d+),", re.MULTILINE)
_README_ROW = re.compile(r"^\|\s*`(?P<name>[^`]+)`\s*\|\s*`(?P<value>[^`]+)`\s*\|", re.MULTILINE)
_TORCH_CUDA = re.compile(r"\+cu(?P<digits>\d+)$")
_LOCK_PACKAGE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The CUDA runtime wheel torch's requirements bring: CUDA 13's has no suffix, CUDA 12's ends in -cu12.
CUDA_RUNTIME_WHEELS = ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12")
# The oldest Linux driver each CUDA release supports ("CUDA Toolkit and Corresponding Driver Versions",
# table 3 of NVIDIA's CUDA Toolkit release notes): the GA release of the minor version, since the CUDA
# libraries of torch's wheels run on any driver of their major version from there on (minor version
# compatibility). The image states it as a label and in docker/README.md.
DRIVER_MIN = {"13.0": "580.65.06"}


@dataclass(frozen=True, slots=True)
class LockedPackage:
    name: str  # canonical (lower case, dashes)
    version: str  # "" for a direct URL requirement
    url: str | None
    hashes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DockerfilePins:
    base_image: str  # "nvidia/cuda:13.0.2-runtime-ubuntu24.04"
    base_digest: str  # "sha256:..." or "" when the FROM is not pinned by digest
    apt: dict[str, str]  # package -> version as written (may end in "*")
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class ImagePins:
    """The pinned value of each component (names as in README_COMPONENTS) and the lock's own sha256."""

    values: dict[str, str]
    lock_sha256: str = ""

    def __getitem__(self, component: str) -> str:
        return self.values[component]


@dataclass(frozen=True, slots=True)
class VersionDifference:
    component: str
    recorded: str
    pinned: str

    def one_line(self) -> str:
        return f"{self.component} {self.recorded} (image pins {self.pinned})"


@dataclass(frozen=True, slots=True)
class RunComparison:
    differences: list[VersionDifference] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # pinned components the log says nothing about

    @property
    def exact(self) -> bool:
        return not self.differences and not self.unrecorded


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            joined.append(current.strip())
            current = ""
    if current.strip():
        joined.append(current.strip())
    return joined


def parse_dockerfile(text: str) -> DockerfilePins:
    ref = m["ref"] if (m := _BASE_ARG.search(text)) else ""
    base_image, _, digest = ref.partition("@")
    apt: dict[str, str] = {}
    labels: dict[str, str] = {}
    for instruction in _instructions(text):
        keyword, _, rest = instruction.partition(" ")
        if keyword == "RUN" and "apt-get install" in rest:
            for token in shlex.split(rest):
                if m := _APT_PIN.match(token):
                    apt[m["name"]] = m["version"]
        elif keyword == "LABEL":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                if sep:
                    labels[key] = value
    return DockerfilePins(base_image, digest, apt, labels)


def parse_lock(text: str) -> tuple[str | None, dict[str, LockedPackage]]:
    """(target Python "3.12" from the header, packages by canonical name)."""
    target = m["python"] if (m := _TARGET.search(text)) else None
    packages: dict[str, LockedPackage] = {}
    for line in _instructions(text):
        if line.startswith("-"):  # --index-url and other options
            continue
        tokens = line.split()
        hashes = tuple(t.removeprefix("--hash=") for t in tokens if t.startswith("--hash="))
        spec = " ".join(t for t in tokens if not t.startswith("--hash="))
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            continue
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        name = canonicalize_name(req.name)
        packages[name] = LockedPackage(name, pinned[0] if pinned else "", req.url, hashes)
    return target, packages


def lock_requirers(text: str) -> dict[str, set[str]]:
    """For each locked package, the locked packages that require it (uv's `# via` lines under it;
    the .in file and pyproject.toml, written `-r FILE` and `NAME (pyproject.toml)`, are left out)."""
    via: dict[str, set[str]] = {}
    current = None
    in_via = False
    for line in text.splitlines():
        if m := _LOCK_PACKAGE.match(line):
            current, in_via = canonicalize_name(m["name"]), False
            via[current] = set()
            continue
        stripped = line.strip()
        if current is None or not stripped.startswith("#"):
            continue
        comment = stripped.lstrip("#").strip()
        if comment.startswith("via"):
            in_via = True
            comment = comment.removeprefix("via").strip()
        if in_via and comment and not comment.startswith("-r ") and "(" not in comment:
            via[current].add(canonicalize_name(comment))
    return via


def parse_readme_table(text: str) -> dict[str, str]:
    return {m["name"]: m["value"] for m in _README_ROW.finditer(text)}


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def image_pins(repo_root: Path) -> ImagePins:
    """The pinned version of every component, from the Dockerfile (system side) and the lock (Python side)."""
    docker = parse_dockerfile((repo_root / DOCKERFILE).read_text(encoding="utf-8"))
    lock_bytes = (repo_root / LOCK).read_bytes()
    target, packages = parse_lock(lock_bytes.decode("utf-8"))
    values = {"base-image": docker.base_image, "base-digest": docker.base_digest}
    values["cuda"] = m["version"] if (m := _CUDA_TAG.search(docker.base_image)) else ""
    values["driver-min"] = DRIVER_MIN.get(_major_minor(values["cuda"]), "")
    values["python"] = target or ""
    values["lrzip"] = docker.apt.get("lrzip", "")

    def locked(name: str) -> str:
        package = packages.get(name)
        if package is None:
            return ABSENT
        return package.version or package.url or ""

    torch = locked("torch")
    cuda_runtime = next((v for name in CUDA_RUNTIME_WHEELS if (v := locked(name)) != ABSENT), ABSENT)
    if torch != ABSENT and cuda_runtime != ABSENT:
        torch += "+cu" + _major_minor(cuda_runtime).replace(".", "")
    values["torch"] = torch
    values["cuda-runtime-wheel"] = cuda_runtime
    for name in ("triton", "flash-attn-4", "nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-cu13", "flash-attn-3", "nox"):
        values[name] = locked(name)
    return ImagePins(values, hashlib.sha256(lock_bytes).hexdigest())


def consistency_problems(repo_root: Path) -> list[str]:
    """Every disagreement between the lock, the Dockerfile, docker/README.md and pyproject's train extra."""
    pins = image_pins(repo_root)
    docker = parse_dockerfile((repo_root / DOCKERFILE).read_text(encoding="utf-8"))
    problems: list[str] = []
    if not pins["base-digest"].startswith("sha256:"):
        problems.append(f"{DOCKERFILE}: ARG BASE_IMAGE has no @sha256: digest (pin the base image by digest)")
    if _major_minor(pins["cuda"]) != _major_minor(pins["cuda-runtime-wheel"]):
        problems.append(
            f"{DOCKERFILE}: base image CUDA {pins['cuda']} but {LOCK} has nvidia-cuda-runtime "
            f"{pins['cuda-runtime-wheel']} (use one CUDA minor version in both)"
        )
    if not pins["driver-min"]:
        problems.append(
            f"{DOCKERFILE}: base image CUDA {pins['cuda']} has no driver minimum in golfkit.image.pins.DRIVER_MIN "
            f"(add it from the CUDA release notes' driver table)"
        )
    dsl_libs = f"nvidia-cutlass-dsl-libs-cu{pins['cuda'].split('.')[0]}"
    if pins["nvidia-cutlass-dsl"] != ABSENT and dsl_libs not in _locked_names(repo_root):
        problems.append(
            f"{LOCK}: nvidia-cutlass-dsl without {dsl_libs}, the CuTe DSL's libraries for the image's CUDA "
            f"{pins['cuda']} (require nvidia-cutlass-dsl[cu{pins['cuda'].split('.')[0]}] in {LOCK_IN})"
        )
    if f"python{pins['python']}" not in docker.apt:
        problems.append(
            f"{DOCKERFILE}: no apt pin for python{pins['python']}, the lock's target "
            f"(install that interpreter or relock for the one installed)"
        )
    if not pins["lrzip"]:
        problems.append(f"{DOCKERFILE}: lrzip is not installed at a pinned version (apt-get install lrzip=VERSION)")
    expected_labels = {
        "org.opencontainers.image.base.name": pins["base-image"],
        "org.opencontainers.image.base.digest": pins["base-digest"],
        **{LABEL_PREFIX + name: pins[name] for name in LABELLED},
    }
    for label, expected in expected_labels.items():
        actual = docker.labels.get(label)
        if actual != expected:
            problems.append(
                f"{DOCKERFILE}: LABEL {label}={actual or '(missing)'} but the pins say {expected} "
                f"(update the label, or the lock/apt pin it mirrors)"
            )
    readme = parse_readme_table((repo_root / README).read_text(encoding="utf-8"))
    for name in README_COMPONENTS:
        if readme.get(name) != pins[name]:
            problems.append(
                f"{README}: pinned-versions row `{name}` says {readme.get(name, '(missing)')} "
                f"but the image pins {pins[name]} (update the table)"
            )
    problems += _pyproject_problems(repo_root)
    return problems


def _locked_names(repo_root: Path) -> set[str]:
    return set(parse_lock((repo_root / LOCK).read_text(encoding="utf-8"))[1])


def _pyproject_problems(repo_root: Path) -> list[str]:
    """The project's `train` extra must accept the versions the image installs."""
    path = repo_root / PYPROJECT
    if not path.is_file():
        return []
    extras = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {}).get("optional-dependencies", {})
    _, packages = parse_lock((repo_root / LOCK).read_text(encoding="utf-8"))
    problems = []
    for spec in extras.get("train", []):
        req = Requirement(spec)
        package = packages.get(canonicalize_name(req.name))
        if package is None:
            problems.append(f"{PYPROJECT}: train extra needs {req.name} but {LOCK} lacks it (rerun docker/lock.py)")
        elif package.version and not req.specifier.contains(package.version, prereleases=True):
            problems.append(
                f"{PYPROJECT}: train extra wants {spec} but {LOCK} pins {package.version} "
                f"(change one of them and rerun docker/lock.py)"
            )
    return problems


@dataclass(frozen=True, slots=True)
class GpuResult:
    path: Path
    date: str  # YYYY-MM-DD
    torch: str  # "2.11.0+cu130"
    triton: str | None  # None in results written before the benchmarks recorded it


def gpu_results(results_dir: Path) -> list[GpuResult]:
    """The GPU results in results_dir: JSON objects with a `date` (YYYY-MM-DD) and a `torch` built for
    CUDA (`+cuNNN`, as torch.__version__ reads on a CUDA build); CPU results (`+cpu`) are not."""
    found = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict):
            continue
        torch, date, triton = report.get("torch"), report.get("date"), report.get("triton")
        if isinstance(torch, str) and _TORCH_CUDA.search(torch) and isinstance(date, str) and _ISO_DATE.match(date):
            found.append(GpuResult(path, date, torch, triton if isinstance(triton, str) else None))
    return found


def gpu_stack_problems(repo_root: Path) -> list[str]:
    """The lock's torch and Triton against the newest GPU result in benchmarks/results/.

    The newest results are those with the latest `date`; they must agree with each other. torch must
    equal their `torch` (version and CUDA tag, "2.11.0+cu130"). Triton must equal their `triton`;
    results from before the benchmarks recorded Triton have none, and then the Triton that ran is the
    one torch's wheel pins, so the lock's `triton` must be there because torch requires it.
    """
    pins = image_pins(repo_root)
    results = gpu_results(repo_root / RESULTS)
    if not results:
        return [f"{RESULTS}: no GPU result (a JSON with `date` and a CUDA `torch`) to check the lock against"]
    newest_date = max(r.date for r in results)
    newest = [r for r in results if r.date == newest_date]
    names = ", ".join(r.path.name for r in newest)
    problems = []
    torches = {r.torch for r in newest}
    if len(torches) > 1:
        problems.append(f"{RESULTS}: the results of {newest_date} ({names}) disagree on torch: {sorted(torches)}")
    elif pins["torch"] not in torches:
        problems.append(
            f"{LOCK}: torch {pins['torch']} but the newest GPU results ({newest_date}: {names}) ran "
            f"{torches.pop()} (pin that torch in {LOCK_IN}, or take GPU figures with this one)"
        )
    tritons = {r.triton for r in newest if r.triton}
    triton_required_by = lock_requirers((repo_root / LOCK).read_text(encoding="utf-8")).get("triton", set())
    if len(tritons) > 1:
        problems.append(f"{RESULTS}: the results of {newest_date} ({names}) disagree on triton: {sorted(tritons)}")
    elif tritons and pins["triton"] not in tritons:
        problems.append(
            f"{LOCK}: triton {pins['triton']} but the newest GPU results ({newest_date}: {names}) ran "
            f"{tritons.pop()} (pin that triton in {LOCK_IN}, or take GPU figures with this one)"
        )
    elif not tritons and "torch" not in triton_required_by:
        problems.append(
            f"{LOCK}: triton {pins['triton']} is not torch's own Triton and the newest GPU results "
            f"({newest_date}: {names}) record none (take GPU figures that record it)"
        )
    return problems


def _expected_attention(pins: ImagePins) -> str:
    """What the image's trainer picks on Hopper (record.attention prefers FlashAttention 4, then 3)."""
    if pins["flash-attn-4"] != ABSENT:
        return f"fa4 {pins['flash-attn-4']}"
    if pins["flash-attn-3"] != ABSENT:
        return f"fa3 {pins['flash-attn-3']}"
    return "sdpa"


def compare_run_versions(recorded: Mapping[str, str], pins: ImagePins) -> RunComparison:
    """Differences between a log's recorded versions (keys as golfkit.check.logparse reads them) and the pins."""
    comparison = RunComparison()

    def check(component: str, recorded_value: str | None, pinned: str, same: bool) -> None:
        if recorded_value is None:
            comparison.unrecorded.append(component)
        elif not same:
            comparison.differences.append(VersionDifference(component, recorded_value, pinned))

    python = recorded.get("python")
    check("python", python, pins["python"], python is not None and _major_minor(python) == pins["python"])
    torch = recorded.get("torch")
    torch_public = torch.split("+")[0] if torch else None
    check("torch", torch, pins["torch"], torch_public == pins["torch"].split("+")[0])
    cuda = _recorded_cuda(recorded)
    check(
        "cuda", cuda, _major_minor(pins["cuda"]), cuda is not None and _major_minor(cuda) == _major_minor(pins["cuda"])
    )
    triton = recorded.get("triton")
    check("triton", triton, pins["triton"], triton == pins["triton"])
    attention = recorded.get("flashattention")
    expected = _expected_attention(pins)
    check("flashattention", attention, expected, attention == expected)
    lrzip = recorded.get("lrzip")
    pinned_lrzip = pins["lrzip"].split("-")[0]
    check("lrzip", lrzip, pinned_lrzip, lrzip is not None and lrzip.split("-")[0] == pinned_lrzip)
    image = recorded.get("image")
    if image is not None and pins.lock_sha256 and f"lock=sha256:{pins.lock_sha256}" not in image:
        comparison.differences.append(VersionDifference("image", image, f"lock=sha256:{pins.lock_sha256}"))
    return comparison


def _recorded_cuda(recorded: Mapping[str, str]) -> str | None:
    """torch's CUDA: the +cuXY tag of the torch version wins over a `cuda` entry (which older logs took
    from nvidia-smi, i.e. the newest CUDA the *driver* supports)."""
    if (torch := recorded.get("torch")) and (m := _TORCH_CUDA.search(torch)):
        digits = m["digits"]
        return f"{digits[:-1]}.{digits[-1]}"
    return recorded.get("cuda")
