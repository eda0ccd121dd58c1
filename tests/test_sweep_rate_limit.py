"""``gc sweep --max-requests-per-second`` holds on every storage backend (issue 10, defect 1).

The limit used to travel in a ContextVar that the sweep's file thread never saw: in the
default mode the files of a batch are deleted on that thread, so the sweep ran with no
limit at all. Here the real command runs in this process (click's CliRunner) on a
synthetic ZenML store whose artifact store root is

- ``local``: a directory (fsspec's LocalFileSystem: the local backend's os calls);
- ``memory``: ``memory://`` (fsspec's MemoryFileSystem: the generic fsspec backend);
- ``s3``: a bucket on a moto server (s3fs: the S3 backend),

and what the store saw is checked: no window of one second holds more than
``floor(limit) + 1`` requests. On S3 a request is an HTTP request (recorded by the
real client, wrapped); on the others it is one path deleted (seen to vanish by a thread
that polls the store).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from conftest import MotoS3
from s3_support import Faults, register_faulty_s3, upload_store_objects

LIMIT = 5.0
#: The rate limiter's promise (storage/limits.py): at most floor(rate) + 1 a second.
MOST_PER_SECOND = int(LIMIT) + 1


def _store(tmp_path: Path, root: str) -> str:
    url = create_sqlite_store(tmp_path / "zenml.db")
    populate(url, SyntheticSpec(versions=30, orphan_share=0.5, recent_share=0.0,
                                store_root=root, seed=11))
    return url


def _write_files(url: str) -> None:
    """A data file in every version's directory, and its visualization, through fsspec."""
    import fsspec

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        files = [f"{r[0]}/data.bin" for r in connection.execute(
            sa.text("SELECT uri FROM artifact_version"))]
        files += [str(r[0]) for r in connection.execute(
            sa.text("SELECT uri FROM artifact_visualization"))]
    engine.dispose()
    for path in files:
        fs, stripped = fsspec.url_to_fs(path)
        fs.makedirs(fs._parent(stripped), exist_ok=True)
        fs.pipe_file(stripped, b"x")


def _gc(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _mark(url: str, manifest: Path, *options: str) -> list[str]:
    """Mark every orphan; return the candidates' directories (each one footprint path:
    the synthetic visualizations lie inside them)."""
    _gc("mark", "--db", url, "--older-than", "0s", "--out", str(manifest), "--json", *options)
    return [str(r[0]) for r in duckdb.sql(
        f"SELECT uri FROM '{manifest}' WHERE status = 'candidate'").fetchall()]


def _sweep(url: str, manifest: Path, *options: str) -> None:
    # No undo window: the limit is measured on the plain deletes' requests.
    _gc("sweep", str(manifest), "--db", url, "--yes", "--json", "--no-undo",
        "--max-requests-per-second", str(LIMIT), *options)


def _busiest_second(times: list[float]) -> int:
    """The most events in any window of one second that starts at an event."""
    ordered = sorted(times)
    return max(sum(1 for t in ordered if start <= t < start + 1.0) for start in ordered)


class _Vanishing(threading.Thread):
    """Polls ``paths`` every few milliseconds and records when each one is gone."""

    def __init__(self, exists: Callable[[str], bool], paths: list[str]) -> None:
        super().__init__(daemon=True)
        self.exists = exists
        self.pending = set(paths)
        self.gone: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while self.pending and not self.stop.is_set():
            for path in sorted(self.pending):
                try:
                    present = self.exists(path)
                except RuntimeError:  # a dict resized under us (MemoryFileSystem)
                    continue
                if not present:
                    self.gone[path] = time.monotonic()
                    self.pending.discard(path)
            time.sleep(0.002)

    def __enter__(self) -> _Vanishing:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        deadline = time.monotonic() + 5
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stop.set()
        self.join()


@pytest.fixture
def memory_root() -> Iterator[str]:
    import fsspec

    root = f"memory://gc-rate-{uuid.uuid4().hex[:8]}/store"
    yield root
    fs, path = fsspec.url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_limit_holds_for_local_and_fsspec_stores(where: str, tmp_path: Path,
                                                 memory_root: str) -> None:
    import fsspec

    root = str(tmp_path / "store") if where == "local" else memory_root
    url = _store(tmp_path, root)
    _write_files(url)
    manifest = tmp_path / "mark.parquet"
    candidates = _mark(url, manifest)
    assert len(candidates) >= 2 * MOST_PER_SECOND
    fs, _ = fsspec.url_to_fs(root)
    with _Vanishing(lambda p: bool(fs.exists(f"{p}/data.bin")), candidates) as watch:
        _sweep(url, manifest)
    assert set(watch.gone) == set(candidates)  # everything went, one path at a time...
    assert _busiest_second(list(watch.gone.values())) <= MOST_PER_SECOND  # ...in time


@pytest.fixture
def faulty_s3() -> Iterator[Faults]:
    """fsspec's ``s3`` is the recording s3fs wrapper for the test, and s3fs again after."""
    import fsspec

    original = fsspec.get_filesystem_class("s3")
    faults = Faults()
    register_faulty_s3(faults)
    try:
        yield faults
    finally:
        fsspec.register_implementation("s3", original, clobber=True)


def test_limit_holds_for_s3_stores(moto_s3: MotoS3, faulty_s3: Faults, tmp_path: Path) -> None:
    url = _store(tmp_path, moto_s3.url("zenml-store"))
    upload_store_objects(moto_s3.client(), moto_s3.bucket, url, "zenml-store")
    endpoint = ("--storage-option", f"client_kwargs.endpoint_url={moto_s3.endpoint_url}")
    manifest = tmp_path / "mark.parquet"
    candidates = _mark(url, manifest, *endpoint)
    faulty_s3.requests.clear()
    # Batches of three: a ranged LIST, a DeleteObjects and a LIST to verify, each.
    _sweep(url, manifest, "--batch-size", "3", *endpoint)
    times = [r.at for r in faulty_s3.requests]
    assert len(times) >= 2 * MOST_PER_SECOND
    assert _busiest_second(times) <= MOST_PER_SECOND
    left = {o["Key"] for page in moto_s3.client().get_paginator("list_objects_v2").paginate(
        Bucket=moto_s3.bucket) for o in page.get("Contents") or []}
    assert not any(key.startswith(uri.split("/", 3)[3] + "/") for uri in candidates
                   for key in left)
