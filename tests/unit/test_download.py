"""`golfkit data download` end to end against a local stand-in of the hub (no network needed).

The stand-in is a small HTTP server on 127.0.0.1 that answers the two hub calls the real client
makes: HEAD/GET `/datasets/<repo>/resolve/<revision>/<path>` (with the hub's X-Repo-Commit and ETag
headers, and byte ranges) and POST `/api/datasets/<repo>/paths-info/<revision>` (sizes and sha256).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from golfkit import cli
from golfkit.data.dataprep import write_shard
from golfkit.data.download import CASEOPS_REPO_ID, HubClient, download_dataset
from golfkit.errors import GolfkitError
from record.config import DATASET_NAME
from record.data import read_shard

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKENIZER = "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"


def _build_repo(root: Path, train_shards: int = 3) -> None:
    """A miniature of the published repo: manifest, tokenizer, val + sidecar + train shards."""
    data = root / "datasets" / "datasets" / DATASET_NAME
    data.mkdir(parents=True)
    (root / "datasets" / "tokenizers").mkdir(parents=True)
    (root / "datasets" / "tokenizers" / TOKENIZER).write_bytes(b"model bytes " * 50)
    rng = np.random.default_rng(1)
    write_shard(data / "fineweb_val_000000.bin", np.concatenate(([1], rng.integers(2, 8192, 99))))
    write_shard(data / "fineweb_val_bytes_000000.bin", np.concatenate(([0], rng.integers(1, 6, 99))))
    for i in range(train_shards):
        write_shard(data / f"fineweb_train_{i:06d}.bin", np.concatenate(([1], rng.integers(2, 8192, 299))))
    manifest = {
        "datasets": [
            {
                "name": DATASET_NAME,
                "tokenizer_name": "sp8192_caseops",
                "stats": {"files_train": train_shards, "files_val": 1},
            }
        ],
        "tokenizers": [{"name": "sp8192_caseops", "model_path": f"tokenizers/{TOKENIZER}", "vocab_size": 8192}],
        "num_val_docs": 50000,
    }
    (root / "datasets" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


class _HubStandIn(BaseHTTPRequestHandler):
    root: Path
    repo_id: str
    requests: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def _file(self) -> Path | None:
        prefix = f"/datasets/{self.repo_id}/resolve/"
        path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
        if not path.startswith(prefix):
            return None
        relative = path[len(prefix) :].split("/", 1)[1]
        target = self.root / relative
        return target if target.is_file() else None

    def _head(self) -> bytes | None:
        target = self._file()
        if target is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        body = target.read_bytes()
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return body

    def do_HEAD(self) -> None:
        self.requests.append(f"HEAD {self.path}")
        self._head()

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        target = self._file()
        if target is None:
            self._head()
            return
        body = target.read_bytes()
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def do_POST(self) -> None:
        self.requests.append(f"POST {self.path}")
        length = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        infos = []
        for path in form.get("paths", []):
            target = self.root / path
            if target.is_file():
                body = target.read_bytes()
                sha = hashlib.sha256(body).hexdigest()
                infos.append(
                    {
                        "type": "file",
                        "path": path,
                        "size": len(body),
                        "oid": sha[:40],
                        "lfs": {"oid": sha, "size": len(body), "pointerSize": 134},
                    }
                )
        payload = json.dumps(infos).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, Path, list[str]]]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    root = tmp_path / "hub"
    _build_repo(root)
    requests: list[str] = []
    handler = type("Handler", (_HubStandIn,), {"root": root, "repo_id": CASEOPS_REPO_ID, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, requests
    server.shutdown()
    server.server_close()


def test_download_fetches_the_manifests_files_into_the_data_layout(hub, tmp_path: Path) -> None:
    endpoint, root, _ = hub
    dest = tmp_path / "data"
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["data", "download", "--train-shards", "2", "--dest", str(dest), "--endpoint", endpoint], out, err)
    assert code == 0, err.getvalue()
    shards = dest / "datasets" / DATASET_NAME
    assert sorted(p.name for p in shards.iterdir()) == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_val_000000.bin",
        "fineweb_val_bytes_000000.bin",
    ]
    remote = root / "datasets" / "datasets" / DATASET_NAME
    for shard in shards.iterdir():
        assert shard.read_bytes() == (remote / shard.name).read_bytes()
    assert (dest / "tokenizers" / TOKENIZER).read_bytes() == (root / "datasets" / "tokenizers" / TOKENIZER).read_bytes()
    assert (dest / "manifest.json").is_file() and not (dest / ".download").exists()
    assert "5 file(s) fetched, 0 already complete" in out.getvalue()
    assert read_shard(shards / "fineweb_val_000000.bin")[0] == 1


def test_rerun_skips_complete_files_and_refetches_damaged_ones(hub, tmp_path: Path) -> None:
    endpoint, _, requests = hub
    dest = tmp_path / "data"
    download_dataset(dest, 2, endpoint=endpoint)
    damaged = dest / "datasets" / DATASET_NAME / "fineweb_train_000001.bin"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # an interrupted copy
    requests.clear()
    report = download_dataset(dest, 3, endpoint=endpoint)
    assert sorted(p.name for p in report.fetched) == ["fineweb_train_000001.bin", "fineweb_train_000002.bin"]
    assert len(report.skipped) == 4
    fetched = {r.split("/")[-1] for r in requests if r.startswith("GET")}
    assert fetched == {"manifest.json", "fineweb_train_000001.bin", "fineweb_train_000002.bin"}
    assert read_shard(damaged).size == 300


def test_a_file_that_differs_from_the_listing_is_refused(hub, tmp_path: Path, monkeypatch) -> None:
    """The hub lists one sha256, then serves other bytes: the file must not land in the data folder."""
    endpoint, root, _ = hub
    served = root / "datasets" / "datasets" / DATASET_NAME / "fineweb_val_bytes_000000.bin"
    real_listing = HubClient.sizes_and_hashes

    def listing_then_corrupt(self, remotes):
        found = real_listing(self, remotes)
        served.write_bytes(served.read_bytes()[:-2] + b"\xff\xff")  # same size, other content
        return found

    monkeypatch.setattr(HubClient, "sizes_and_hashes", listing_then_corrupt)
    with pytest.raises(GolfkitError, match="sha256 differs"):
        download_dataset(tmp_path / "data", 0, endpoint=endpoint)
    assert not (tmp_path / "data" / "datasets" / DATASET_NAME / served.name).exists()


def test_asking_for_more_train_shards_than_published_is_a_usage_error(hub, tmp_path: Path) -> None:
    endpoint, _, _ = hub
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(
        ["data", "download", "--train-shards", "9", "--dest", str(tmp_path), "--endpoint", endpoint], out, err
    )
    assert code == 2
    assert "9 asked, the dataset has 3 train shards" in err.getvalue()


def test_unreachable_hub_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["data", "download", "--dest", str(tmp_path), "--endpoint", f"http://127.0.0.1:{port}"], out, err)
    message = err.getvalue().strip()
    assert code == 2 and out.getvalue() == ""
    assert len(message.splitlines()) == 1, message
    assert "cannot reach the Hugging Face hub" in message and "Traceback" not in message
