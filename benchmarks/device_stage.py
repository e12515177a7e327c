"""Stage, for a bare GPU box with no network, the wheels and .debs its image lacks, at the lock's pins.

The lent GPU machines run torch 2.11.0+cu130 and Triton 3.6.0 from their own image, which are the
versions docker/requirements-gpu.lock pins (tests/unit/test_docker_pins.py keeps the two equal). Everything
else the record needs comes from this folder, so a GPU figure is measured with the image's packages:

- the wheels of ROOTS and of everything they require (read from the lock's `# via` lines), except
  what the box's torch install already brings (torch's own requirements, also read from the lock)
  and SKIP; each exactly at the lock's version for CPython 3.12 on x86_64 Linux, downloaded by
  `pip download --require-hashes` and checked again here against the lock's sha256 list;
- lrzip's Debian package and the libraries it needs that a Python image may lack (`apt-get download`);
- SHA256SUMS of every whole file; any file over SPLIT_BYTES is then cut into `NAME.partNN` pieces
  (`split -b 46M`), because one device call carries at most 64 MiB.

benchmarks/device_install.sh reassembles the pieces, checks SHA256SUMS and installs the folder.

    python benchmarks/device_stage.py               # writes .whl/ (emptied first)
    python benchmarks/device_stage.py --dest /tmp/stage --no-debs
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from packaging.utils import canonicalize_name  # noqa: E402

from golfkit.image.pins import LOCK, lock_requirers, parse_lock  # noqa: E402

INDEX_URL = "https://pypi.org/simple"
PYTHON = "3.12"
ABI = "cp312"
# Ubuntu 24.04's glibc is 2.39; the staged wheels are built for manylinux_2_17 .. _2_28.
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 40)))
# What the record needs beyond torch: FlashAttention 4 and its CuTe DSL (CUDA 13 libraries), the
# brotli compressor, jsonschema (golfkit validate/verify) and nox (the entry point).
ROOTS = ("flash-attn-4", "nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-cu13", "brotli", "jsonschema", "nox")
# The box's CUDA is 13.0: the DSL's CUDA 12 libraries (which nvidia-cutlass-dsl 4.8.1 requires
# unconditionally) are never loaded there.
SKIP = ("nvidia-cutlass-dsl-libs-cu12",)
# The box's own install: torch and everything the lock says torch requires.
BOX_PROVIDES = ("torch",)
# lrzip (the per-group compressor) and the libraries of `apt-cache depends lrzip` that a Python GPU
# image may lack; libc6, libgcc-s1, libstdc++6, zlib1g and bash are in every such image, and
# extracting them beside the system's would shadow its C library.
DEBS = ("lrzip", "liblz4-1", "liblzo2-2", "libbz2-1.0")
SPLIT_BYTES = 46 * 2**20
SPLIT_SIZE = "46M"


def closure(roots: Iterable[str], via: dict[str, set[str]]) -> set[str]:
    """roots and every package they require, directly or not."""
    found = {canonicalize_name(r) for r in roots}
    todo = list(found)
    while todo:
        parent = todo.pop()
        for child, parents in via.items():
            if parent in parents and child not in found:
                found.add(child)
                todo.append(child)
    return found


def staged_packages(lock_text: str) -> list[str]:
    via = lock_requirers(lock_text)
    wanted = closure(ROOTS, via) - closure(BOX_PROVIDES, via) - {canonicalize_name(s) for s in SKIP}
    missing = wanted - via.keys()
    if missing:
        raise SystemExit(f"device_stage: {LOCK} lacks {', '.join(sorted(missing))} (rerun docker/lock.py)")
    return sorted(wanted)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheels(names: list[str], lock_text: str, dest: Path) -> list[Path]:
    """pip download each package at the lock's version and hashes; returns the wheel files."""
    _, packages = parse_lock(lock_text)
    lines = []
    for name in names:
        hashes = (f"--hash={h}" for h in packages[name].hashes)
        lines.append(" ".join([f"{name}=={packages[name].version}", *hashes]))
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "stage.txt"
        requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
        command = [
            sys.executable, "-m", "pip", "download", "--isolated", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--implementation", "cp", "--python-version", PYTHON, "--abi", ABI,
            *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
            "--index-url", INDEX_URL, "--dest", str(dest), "-r", str(requirements),
        ]  # fmt: skip
        subprocess.run(command, check=True)
    wheels = sorted(dest.glob("*.whl"))
    by_name = {canonicalize_name(w.name.split("-")[0]): w for w in wheels}
    for name in names:
        wheel = by_name.get(name)
        if wheel is None:
            raise SystemExit(f"device_stage: pip downloaded no wheel for {name}")
        if f"sha256:{_sha256(wheel)}" not in packages[name].hashes:
            raise SystemExit(f"device_stage: {wheel.name}: sha256 not in {LOCK} (delete it and rerun)")
    return wheels


def download_debs(dest: Path) -> list[Path]:
    subprocess.run(["apt-get", "download", *DEBS], cwd=dest, check=True, stdout=subprocess.DEVNULL)
    return sorted(dest.glob("*.deb"))


def split_large(dest: Path) -> None:
    for path in sorted(dest.iterdir()):
        if path.is_file() and path.stat().st_size > SPLIT_BYTES:
            pieces = ["split", "-b", SPLIT_SIZE, "-d", "-a", "2", path.name, f"{path.name}.part"]
            subprocess.run(pieces, cwd=dest, check=True)
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=REPO / ".whl", help="staging folder, emptied first (.whl/)")
    parser.add_argument("--no-debs", action="store_true", help="wheels only (no apt-get here)")
    args = parser.parse_args(argv)
    lock_text = (REPO / LOCK).read_text(encoding="utf-8")
    names = staged_packages(lock_text)
    if args.dest.exists():
        shutil.rmtree(args.dest)
    args.dest.mkdir(parents=True)
    files = download_wheels(names, lock_text, args.dest)
    if not args.no_debs:
        files += download_debs(args.dest)
    sums = "".join(f"{_sha256(f)}  {f.name}\n" for f in files)
    (args.dest / "SHA256SUMS").write_text(sums, encoding="utf-8")
    split_large(args.dest)
    print(f"staged {len(files)} files ({', '.join(names)}) in {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
