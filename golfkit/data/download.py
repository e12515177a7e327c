"""Download the published CaseOps dataset and tokenizer from the Hugging Face hub.

The hub repository (`romeerp/parameter-golf-caseops-v1`, a dataset repo) keeps everything under a
`datasets/` root, like the challenge's own `data/cached_challenge_fineweb.py` layout:

    datasets/manifest.json                                   which datasets and tokenizers exist
    datasets/tokenizers/<tokenizer model>                    (the manifest's model_path)
    datasets/datasets/<dataset>/fineweb_{train,val,val_bytes}_NNNNNN.bin

The download is manifest-driven: the manifest gives the dataset's shard counts (stats.files_train,
stats.files_val) and its tokenizer; the hub's file listing gives every file's size and sha256. Files
land under DEST without the `datasets/` root (DEST/manifest.json, DEST/tokenizers/...,
DEST/datasets/<dataset>/...), which is exactly what `DATA_DIR=DEST` expects.

Re-running resumes: a file already in DEST with the expected size (and, for shards, a header that
agrees with it) is skipped without any transfer; anything else is fetched again. Each fetched file is
checked against the hub's size and sha256 before it is moved into place, so DEST never holds a
partial or corrupt file under its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from golfkit.errors import GolfkitError
from record.config import DATASET_NAME
from record.data import shard_token_count
from record.errors import RecordError

CASEOPS_REPO_ID = "romeerp/parameter-golf-caseops-v1"
REMOTE_ROOT = "datasets"
STAGING_DIR = ".download"  # under DEST: the hub client's own working folder


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: its path in the repo, where it goes, and what it must look like."""

    remote: str
    local: Path
    size: int | None
    sha256: str | None


@dataclass
class DownloadReport:
    """What `download_dataset` did."""

    dest: Path
    dataset: str = ""
    fetched: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def _local_path(dest: Path, remote: str) -> Path:
    """DEST path of a repo path: the `datasets/` root is dropped."""
    parts = PurePosixPath(remote).parts
    if parts and parts[0] == REMOTE_ROOT:
        parts = parts[1:]
    return dest.joinpath(*parts)


def _unreachable(endpoint: str, exc: BaseException) -> GolfkitError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return GolfkitError(
        f"hub {endpoint}",
        f"cannot reach the Hugging Face hub ({type(exc).__name__}: {reason[:160]})",
        "check the network or set HF_ENDPOINT to a mirror; rerun to resume, finished files are kept",
    )


def _is_network_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, LocalEntryNotFoundError | OfflineModeIsEnabled | ConnectionError | TimeoutError):
        return True
    name = type(exc).__name__
    return name.endswith(("ConnectError", "TimeoutException", "ConnectTimeout", "ReadTimeout", "NetworkError"))


def _looks_complete(item: RemoteFile) -> bool:
    """A file already in place with the expected size; shards must also agree with their header."""
    if not item.local.is_file() or (item.size is not None and item.local.stat().st_size != item.size):
        return False
    if item.local.suffix == ".bin":
        try:
            shard_token_count(item.local)
        except RecordError:
            return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class HubClient:
    """The few hub calls the download needs, with every hub or network failure turned into one line."""

    def __init__(self, repo_id: str, revision: str, endpoint: str | None, staging: Path) -> None:
        from huggingface_hub import HfApi, constants

        self.repo_id, self.revision, self.staging = repo_id, revision, staging
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.api = HfApi(endpoint=self.endpoint)

    def _call(self, what: str, action: Callable[[], object]) -> object:
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

        try:
            return action()
        except Exception as exc:
            if _is_network_error(exc):  # before the not-found cases: "no local copy" subclasses them
                raise _unreachable(self.endpoint, exc) from None
            if isinstance(exc, RepositoryNotFoundError | EntryNotFoundError):
                raise GolfkitError(
                    f"{self.repo_id}: {what}", f"not on the hub ({type(exc).__name__})", "check --repo and --revision"
                ) from None
            if isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code < 500:
                raise GolfkitError(f"{self.repo_id}: {what}", f"hub answered {exc.response.status_code}", "") from None
            if isinstance(exc, HfHubHTTPError):
                raise _unreachable(self.endpoint, exc) from None
            raise

    def check_reachable(self, remote: str) -> None:
        """One quick request without the client's retries, so an offline machine fails at once."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.repo_id, remote, repo_type="dataset", revision=self.revision, endpoint=self.endpoint)
        self._call(remote, lambda: get_hf_file_metadata(url, endpoint=self.endpoint))

    def fetch(self, remote: str) -> Path:
        """Download one repo file into the staging folder; returns where it landed."""
        from huggingface_hub import hf_hub_download

        return Path(
            self._call(
                remote,
                lambda: hf_hub_download(
                    repo_id=self.repo_id,
                    filename=remote,
                    repo_type="dataset",
                    revision=self.revision,
                    local_dir=self.staging,
                    endpoint=self.endpoint,
                ),
            )
        )

    def sizes_and_hashes(self, remotes: list[str]) -> dict[str, tuple[int | None, str | None]]:
        """remote path -> (size, sha256 or None) from the hub's file listing, in one request."""
        infos = self._call(
            "file listing",
            lambda: self.api.get_paths_info(self.repo_id, remotes, repo_type="dataset", revision=self.revision),
        )
        found: dict[str, tuple[int | None, str | None]] = {}
        for info in infos:  # type: ignore[attr-defined]
            lfs = getattr(info, "lfs", None)
            found[info.path] = (getattr(info, "size", None), lfs.sha256 if lfs is not None else None)
        return found


def plan_files(manifest: dict, dest: Path, train_shards: int | None, dataset: str) -> tuple[list[str], str]:
    """The repo paths to fetch for `dataset`, from the manifest (all val shards + sidecars, the first
    `train_shards` train shards (None = all), the tokenizer model and vocab)."""
    entries = manifest.get("datasets") or []
    entry = next((d for d in entries if d.get("name") == dataset), None)
    if entry is None:
        names = ", ".join(str(d.get("name")) for d in entries) or "none"
        raise GolfkitError("manifest.json", f"no dataset {dataset!r} (has: {names})", "check --dataset")
    stats = entry.get("stats") or {}
    try:
        total_train, total_val = int(stats["files_train"]), int(stats["files_val"])
    except (KeyError, TypeError, ValueError):
        raise GolfkitError("manifest.json", f"{dataset}: stats lack files_train/files_val", "") from None
    wanted = total_train if train_shards is None else train_shards
    if not 0 <= wanted <= total_train:
        raise GolfkitError(
            "--train-shards", f"{wanted} asked, the dataset has {total_train} train shards", "choose fewer"
        )
    tokenizer_name = entry.get("tokenizer_name")
    tokenizer = next((t for t in manifest.get("tokenizers") or [] if t.get("name") == tokenizer_name), None)
    if tokenizer is None:
        raise GolfkitError("manifest.json", f"{dataset}: tokenizer {tokenizer_name!r} is not listed", "")
    folder = f"{REMOTE_ROOT}/datasets/{dataset}"
    remotes = [f"{folder}/fineweb_val_{i:06d}.bin" for i in range(total_val)]
    remotes += [f"{folder}/fineweb_val_bytes_{i:06d}.bin" for i in range(total_val)]
    remotes += [f"{folder}/fineweb_train_{i:06d}.bin" for i in range(wanted)]
    remotes += [f"{REMOTE_ROOT}/{tokenizer[key]}" for key in ("model_path", "vocab_path") if tokenizer.get(key)]
    return remotes, str(tokenizer.get("model_path"))


def download_dataset(
    dest: Path,
    train_shards: int | None = None,
    *,
    repo_id: str = CASEOPS_REPO_ID,
    revision: str = "main",
    endpoint: str | None = None,
    dataset: str = DATASET_NAME,
    log: Callable[[str], None] = lambda line: None,
) -> DownloadReport:
    """Fetch the CaseOps dataset into `dest` (see the module docstring); returns what was done."""
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / STAGING_DIR
    client = HubClient(repo_id, revision, endpoint, staging)
    manifest_remote = f"{REMOTE_ROOT}/manifest.json"
    manifest_path = _local_path(dest, manifest_remote)
    client.check_reachable(manifest_remote)
    _move_into_place(client.fetch(manifest_remote), manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GolfkitError(manifest_path, f"unreadable manifest ({exc})", "rerun the download") from None
    remotes, _ = plan_files(manifest, dest, train_shards, dataset)
    listing = client.sizes_and_hashes(remotes)
    report = DownloadReport(dest=dest, dataset=dataset)
    for number, remote in enumerate(remotes, start=1):
        if remote not in listing:
            raise GolfkitError(f"{repo_id}: {remote}", "listed by the manifest but not on the hub", "")
        size, sha256 = listing[remote]
        item = RemoteFile(remote=remote, local=_local_path(dest, remote), size=size, sha256=sha256)
        if _looks_complete(item):
            report.skipped.append(item.local)
            continue
        log(f"[{number}/{len(remotes)}] {remote}")
        fetched = client.fetch(remote)
        _verify(item, fetched)
        _move_into_place(fetched, item.local)
        report.fetched.append(item.local)
    shutil.rmtree(staging, ignore_errors=True)
    return report


def _verify(item: RemoteFile, fetched: Path) -> None:
    actual = fetched.stat().st_size
    if item.size is not None and actual != item.size:
        fetched.unlink(missing_ok=True)
        raise GolfkitError(item.remote, f"got {actual} bytes, the hub lists {item.size}", "rerun the download")
    if item.sha256 and _sha256(fetched) != item.sha256:
        fetched.unlink(missing_ok=True)
        raise GolfkitError(item.remote, "sha256 differs from the hub's", "rerun the download")


def _move_into_place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() != target.resolve():
        os.replace(source, target)
