"""The flat listing of a GCS or Azure store root (storage/flat_listing.py), on the emulators.

``gc mark --orphan-files`` lists a GCS bucket or Azure container root with one flat,
paged listing (no delimiter) instead of fsspec's ``walk``, which sent a LIST per folder.
Counted on the wire (tests/emulators.py ``StorageProxy``): a root of N objects in M
folders costs ceil(N / page) LISTs whatever M is (GCS pages hold 1,000 names, Azure's
5,000), and nothing else. The manifest's orphan-file rows are those the walk gave,
and directory markers come out as on S3 and a local disk: an empty one is an empty
directory, a non-empty one is implied by its contents.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.storage import azure as azure_backend
from artifact_gc.storage.backend import open_backend
from artifact_gc.storage.buckets import ObjectStoreBackend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.listing import list_fsspec
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.zenml.stores import ArtifactStore
from cloud_support import new_bucket, object_plan
from emulators import Azurite, Emulator, GCSEmulator, StorageProxy

ROOT_KEY = "store"


@pytest.fixture(params=["gcs", "azure"])
def emulator(request: pytest.FixtureRequest) -> Emulator:
    if request.param == "gcs":
        request.applymarker(pytest.mark.gcs)
        return request.getfixturevalue("gcs_emulator")  # type: ignore[no-any-return]
    request.applymarker(pytest.mark.azure)
    return request.getfixturevalue("azurite")  # type: ignore[no-any-return]


def _page(emulator: Emulator) -> int:
    return 1000 if isinstance(emulator, GCSEmulator) else azure_backend.MAX_LIST_ITEMS


def _listing(emulator: Emulator, bucket: str, endpoint: str) -> pa.Table:
    root = f"{emulator.scheme}://{bucket}/{ROOT_KEY}"
    options = emulator.options(endpoint)
    store = ArtifactStore(id="a" * 32, name="cloud", flavor="test", root=root,
                          root_source="test", storage_options=options)
    backend = open_backend(store, root, emulator.filesystem(endpoint), workers=2,
                           retries=RetryCounter(), limits=RequestLimits())
    try:
        assert isinstance(backend, ObjectStoreBackend)
        return pa.Table.from_batches(list(backend.list_objects()))
    finally:
        backend.close()


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted((r["path"], r["is_dir"], r["size"]) for r in table.to_pylist())


def test_a_root_of_n_objects_in_m_folders_costs_a_list_per_page(emulator: Emulator) -> None:
    bucket = new_bucket(emulator)
    folders, per_folder = 1100, 2  # M folders of the layout, N = 2,200 objects
    keys = [f"{ROOT_KEY}/trainer/output/{uuid.UUID(int=i, version=4)}/{name}"
            for i in range(folders) for name in ("data.bin", "meta/x.json")[:per_folder]]
    emulator.upload(bucket, [(k, b"12345") for k in [*keys, "other/x", "storex"]], threads=16)
    proxy = StorageProxy(emulator.endpoint_url).start()
    try:
        table = _listing(emulator, bucket, proxy.endpoint_url)
        counts = proxy.counts()
    finally:
        proxy.stop()
    base = f"{emulator.scheme}://{bucket}/"
    assert _rows(table) == sorted((base + k, False, 5) for k in keys)
    assert table.column("mtime").null_count == 0
    print(f"{type(emulator).__name__}: {len(keys)} objects in {folders} folders, "
          f"{counts['list']} LISTs")
    assert counts["list"] == math.ceil(len(keys) / _page(emulator))
    assert counts["other"] == 0 and counts["batch"] == 0


def test_markers_as_on_s3_and_pages_joined_in_name_order(
        azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    """Directory markers (zero-length ``k/`` blobs; Azure lets them be uploaded) at
    every place a page can cut them from their contents: pages of 3 names."""
    monkeypatch.setattr(azure_backend, "MAX_LIST_ITEMS", 3)
    bucket = new_bucket(azurite)
    markers = ["empty/", "full/", "k/", "a/b/", "a/", "z/"]
    files = ["full/x", "k", "k-1", "a/b/c", "a/b-d", "z0", "deep/e/f/g"]
    azurite.upload(bucket, [(f"{ROOT_KEY}/{k}", b"" if k.endswith("/") else b"xy")
                            for k in [*markers, *files]]
                   + [(f"{ROOT_KEY}/", b""), ("other/x", b"1")])
    proxy = StorageProxy(azurite.endpoint_url).start()
    try:
        table = _listing(azurite, bucket, proxy.endpoint_url)
        counts = proxy.counts()
    finally:
        proxy.stop()
    base = f"az://{bucket}/{ROOT_KEY}/"
    # The empty ones only ("a/" holds "a/b/...", "full/" holds "full/x"); the root's
    # own marker is not an object under the root.
    expected = [(base + k, False, 2) for k in files] + \
        [(base + k, True, 0) for k in ("empty", "k", "z")]
    assert _rows(table) == sorted(expected)
    assert counts["list"] == math.ceil((len(markers) + len(files) + 1) / 3)


def test_the_manifest_is_the_one_the_walk_gave(emulator: Emulator, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The same store marked with the flat listing and with fsspec's walk (the listing
    before it): the same orphan-file rows, class, bytes, object count and newest time."""
    bucket = new_bucket(emulator)
    base = f"{emulator.scheme}://{bucket}/"
    root = base + ROOT_KEY
    url = create_sqlite_store(tmp_path / "zenml.db")
    populate(url, SyntheticSpec(versions=40, orphan_share=0.4, store_root=root,
                                recent_share=0.0, seed=11))
    objects = object_plan(url, base)
    for i in range(5):
        gone = uuid.UUID(int=1000 + i, version=4)
        objects[f"{ROOT_KEY}/logs/{gone}.log"] = b"log\n"
        objects[f"{ROOT_KEY}/custom_artifacts/thing/{gone}/data.bin"] = b"custom"
        objects[f"{ROOT_KEY}/external_artifacts/external_{gone}/x.csv"] = b"a,b\n"
        objects[f"{ROOT_KEY}/trainer/output/{gone}/abcdef12/data.bin"] = b"step"
        objects[f"{ROOT_KEY}/mlflow/run{i}/model.pkl"] = b"unknown"
    emulator.upload(bucket, objects.items(), threads=16)
    options = emulator.options()

    def manifest_rows(name: str) -> list[tuple[Any, ...]]:
        manifest = tmp_path / f"{name}.parquet"
        mark(url, str(manifest), MarkOptions(older_than=timedelta(0), orphan_files=True,
                                             storage_options=options))
        return sorted(duckdb.sql(
            f"SELECT item_id, status, reasons, orphan_class, file_count, size_bytes, "
            f"newest_mtime FROM '{manifest}' WHERE item_kind = 'orphan_file'").fetchall())

    flat = manifest_rows("flat")
    monkeypatch.setattr(ObjectStoreBackend, "list_objects",
                        lambda self: list_fsspec(self.fs, self.root))
    walked = manifest_rows("walk")
    assert flat == walked
    assert sum(1 for row in flat if row[1] == "candidate") >= 20
