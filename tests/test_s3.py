"""S3 artifact stores on a real S3 API (moto server on loopback).

- mark --sizes and sweep end to end (CLI, ZenML-schema SQLite store, store root on
  S3): exactly the candidates' objects go, sizes come from one listing, credentials
  from the component's configuration never reach the manifest, journal or output;
- the deletes at the API's limit: at most 1,000 keys per DeleteObjects, per-key
  errors retried or reported, SlowDown backed off, the rate limit honoured, glob
  characters in keys, the root fence.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from artifact_gc.storage import s3
from artifact_gc.storage.backend import open_backend
from artifact_gc.storage.limits import (
    STRATEGY_PREFIX,
    STRATEGY_RANGE,
    RateLimiter,
    RequestLimits,
)
from artifact_gc.storage.options import parse_storage_options
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.zenml.stores import ArtifactStore
from conftest import MotoS3
from s3_support import (
    DATA_FILES,
    VIS_BODY,
    Faults,
    FaultyS3FileSystem,
    list_bucket,
    upload,
    upload_store_objects,
)
from scenarios.helpers import integrity_problems

GC = str(Path(sys.executable).with_name("gc"))
KEY_ID = "AKIAGCTESTKEYID7Q2Z"
SECRET = "gc-test-secret-Zk8vQ3mP0wXy"


def _set_component_config(db_url: str, store_id: str, config: dict[str, Any]) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE stack_component SET configuration = :c WHERE id = :i"),
                           {"c": base64.b64encode(json.dumps(config).encode()), "i": store_id})
    engine.dispose()


def _gc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    return subprocess.run([GC, *args], capture_output=True, text=True, env=env, timeout=300,
                          check=False)


def test_mark_sizes_and_sweep_end_to_end(moto_s3: MotoS3, tmp_path: Path) -> None:
    url = create_sqlite_store(tmp_path / "zenml.db")
    root = moto_s3.url("zenml-store")
    store = populate(url, SyntheticSpec(versions=240, store_root=root, recent_share=0.0,
                                        seed=3))
    # The component's configuration holds credentials and a wrong endpoint; the
    # right endpoint comes from --storage-option, so both sources are exercised.
    _set_component_config(url, store.artifact_store_id, {
        "path": root, "key": KEY_ID, "secret": SECRET,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},
    })
    client = moto_s3.client()
    uploaded = upload_store_objects(client, moto_s3.bucket, url, "zenml-store")
    # A key with glob characters inside a candidate's directory (s3fs would skip it).
    expected = store.orphan_ids - store.preexisting_ids
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        uris = dict(connection.execute(sa.text("SELECT id, uri FROM artifact_version")).all())
    engine.dispose()
    globby_owner = sorted(expected)[0]
    globby = uris[globby_owner][len(f"s3://{moto_s3.bucket}/"):] + "/odd[1]*?.bin"
    upload(client, moto_s3.bucket, [(globby, b"x" * 7)])
    uploaded[globby] = 7
    before = list_bucket(client, moto_s3.bucket)
    assert before == uploaded

    manifest = tmp_path / "mark.parquet"
    endpoint = f"client_kwargs.endpoint_url={moto_s3.endpoint_url}"
    marked = _gc("mark", "--db", url, "--older-than", "0s", "--sizes", "--out", str(manifest),
                 "--storage-option", endpoint, "--json")
    assert marked.returncode == 0, marked.stderr
    rows = duckdb.sql(
        f"SELECT artifact_version_id, size_bytes, file_count FROM '{manifest}' "
        "WHERE status = 'candidate'").fetchall()
    assert {r[0] for r in rows} == expected
    per_version = sum(len(b) for _, b in DATA_FILES) + len(VIS_BODY)
    for vid, size, count in rows:
        extra = 7 if vid == globby_owner else 0
        assert (size, count) == (per_version + extra, 3 + (1 if extra else 0))

    swept = _gc("sweep", str(manifest), "--db", url, "--yes", "--json",
                "--storage-option", endpoint, "--workers", "4", "--batch-size", "50")
    assert swept.returncode == 0, swept.stderr
    summary = json.loads(swept.stdout)["summary"]
    assert summary["deleted"] == len(expected) and summary["failed"] == 0

    # The undo window (on by default) copies what the sweep deletes into the store's
    # trash prefix first (this bucket has no versioning): exactly those keys.
    trash = "zenml-store/.artifact-gc-trash/"
    listed = list_bucket(client, moto_s3.bucket)
    after = {k: v for k, v in listed.items() if not k.startswith(trash)}
    trashed = {"zenml-store/" + k[len(trash):].split("/", 1)[1]: v
               for k, v in listed.items() if k.startswith(trash)}
    prefixes = [uris[v][len(f"s3://{moto_s3.bucket}/"):] + "/" for v in expected]
    gone = {k for k in before if any(k.startswith(p) for p in prefixes)}
    assert gone and set(after) == set(before) - gone
    assert trashed == {k: before[k] for k in gone}
    assert all(after[k] == before[k] for k in after)
    for unmanaged in ("logs/pipelines/run-1.log", "code_uploads/abc123.tar.gz"):
        assert f"zenml-store/{unmanaged}" in after
    assert integrity_problems(url) == []

    # Credentials: nowhere in the manifest, the journal or anything printed.
    blobs = [manifest.read_bytes(), marked.stdout.encode(), marked.stderr.encode(),
             swept.stdout.encode(), swept.stderr.encode()]
    journal = Path(str(manifest) + ".journal")
    files = [p for p in journal.rglob("*") if p.is_file()]
    assert files
    blobs += [p.read_bytes() for p in files]
    for blob in blobs:
        assert KEY_ID.encode() not in blob and SECRET.encode() not in blob


def _store(root: str) -> ArtifactStore:
    return ArtifactStore(id="a" * 32, name="s3", flavor="s3", root=root, root_source="test",
                         storage_options={"secret": SECRET})


def _seed(moto_s3: MotoS3, prefixes: int, per_prefix: int) -> tuple[list[str], set[str]]:
    keys = [f"root/v{p:03d}/f{i:04d}" for p in range(prefixes) for i in range(per_prefix)]
    keep = {"root/v0000/kept", "root/logs/x.log", "other/v000/f0000", "root/v000x/sibling"}
    upload(moto_s3.client(), moto_s3.bucket, [(k, b"1") for k in [*keys, *keep]])
    return [moto_s3.url(f"root/v{p:03d}") for p in range(prefixes)], keep


@pytest.mark.parametrize("strategy", [STRATEGY_RANGE, STRATEGY_PREFIX])
def test_delete_cap_per_key_errors_and_slowdown(moto_s3: MotoS3, strategy: str) -> None:
    paths, keep = _seed(moto_s3, prefixes=3, per_prefix=900)
    faults = Faults(slow_down_first=3, key_errors={
        "root/v001/f0005": ["InternalError", "SlowDown"],  # transient: retried
        "root/v002/f0007": ["AccessDenied"] * 20,  # permanent: reported
        "root/v000/f0001": ["NoSuchKey"],  # already gone: deleted
    })
    fs = FaultyS3FileSystem(faults, **moto_s3.storage_options)
    retries = RetryCounter()
    files = open_backend(_store(moto_s3.url("root")), moto_s3.url("root"), fs, workers=4,
                         retries=retries, limits=RequestLimits(s3_strategy=strategy))
    try:
        outcome = files.delete([*paths, moto_s3.url("other/v000"), moto_s3.url("root")])
    finally:
        files.close()
    deletes = [r for r in faults.requests if r.method == "delete_objects"]
    assert deletes and max(r.keys for r in deletes) <= s3.MAX_DELETE_KEYS
    assert faults.slow_downs == 3 and retries.count >= 3 + 2
    assert outcome.deleted == {paths[0], paths[1]}
    assert set(outcome.failed) == {paths[2], moto_s3.url("other/v000"), moto_s3.url("root")}
    assert "AccessDenied" in outcome.failed[paths[2]]
    assert SECRET not in json.dumps(outcome.failed)
    left = set(list_bucket(moto_s3.client(), moto_s3.bucket))
    assert left == keep | {"root/v002/f0007"}


def test_rate_limit_is_honoured(moto_s3: MotoS3) -> None:
    paths, _ = _seed(moto_s3, prefixes=8, per_prefix=2)
    faults = Faults()
    fs = FaultyS3FileSystem(faults, **moto_s3.storage_options)
    limit = 8.0
    files = open_backend(_store(moto_s3.url("root")), moto_s3.url("root"), fs, workers=8,
                         retries=RetryCounter(),
                         limits=RequestLimits(max_requests_per_second=limit,
                                              s3_strategy=STRATEGY_PREFIX))
    try:
        outcome = files.delete(paths)
    finally:
        files.close()
    assert outcome.deleted == set(paths)
    times = sorted(r.at for r in faults.requests)
    assert len(times) >= 3 * limit  # enough requests to span several seconds
    # Count the requests in every window of one second that starts at a request.
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= int(limit) + 1


def test_rate_limiter_adapts_to_throttling() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(None, clock=lambda: now[0], sleep=sleep)
    for _ in range(40):
        limiter.acquire()
    assert limiter.rate is None and not slept
    limiter.throttled()
    assert limiter.rate is not None and limiter.rate <= 20
    cut = limiter.rate
    limiter.throttled()  # the same burst of answers counts once
    assert limiter.rate == cut
    for _ in range(50):
        limiter.succeeded()
    assert limiter.rate is None or limiter.rate > cut


def test_parse_storage_options() -> None:
    assert parse_storage_options([
        "client_kwargs.endpoint_url=http://127.0.0.1:9000", "key=12345", "anon=false",
        "config_kwargs.retries.max_attempts=10", "client_kwargs.region_name=eu-west-1",
    ]) == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000",
                             "region_name": "eu-west-1"},
           "key": "12345", "anon": False, "config_kwargs": {"retries": {"max_attempts": 10}}}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_storage_options(["novalue"])


@pytest.mark.parametrize("undo", [False, True])
def test_a_listed_delete_takes_only_the_objects_listed(moto_s3: MotoS3, undo: bool) -> None:
    """The orphan sweep checks the grace period on one listing and hands it to the delete
    (``ListedObjects``): exactly those objects go. An object written under the path
    since was never checked against the grace period: it stays, with an undo window
    (the trash copies, then deletes) as without one."""
    import s3fs

    from artifact_gc.storage.trash import open_file_undo
    from artifact_gc.undo.files import TrashingFiles

    upload(moto_s3.client(), moto_s3.bucket,
           [("root/unit/old", b"1"), ("root/unit/new", b"2"), ("root/unit-x/sibling", b"3")])
    root = moto_s3.url("root")
    store = _store(root)
    fs = s3fs.S3FileSystem(**moto_s3.storage_options)
    backend = open_backend(store, root, fs, workers=2, retries=RetryCounter(),
                           limits=RequestLimits())
    files: Any = TrashingFiles(backend, open_file_undo(store, root, fs, backend),
                               "0123456789abcdef0123456789abcdef") if undo else backend
    path = moto_s3.url("root/unit")
    try:
        outcome = files.delete([path], known=s3.ListedObjects(
            {path: [moto_s3.url("root/unit/old")]}))
    finally:
        files.close()
    assert path in outcome.deleted and not outcome.failed
    left = {k for k in list_bucket(moto_s3.client(), moto_s3.bucket)
            if "/.artifact-gc-trash/" not in "/" + k}
    assert left == {"root/unit/new", "root/unit-x/sibling"}


def test_a_remote_journal_with_no_writable_lock_folder_is_a_storage_error(
    moto_s3: MotoS3, tmp_path: Path
) -> None:
    """A journal on S3 is locked through a file in the local cache folder. Where that
    folder cannot be written (a container with a read-only home, say), the sweep stops
    with exit 9 naming the folder to set, deleting nothing: not exit 1, unexpected."""
    url = create_sqlite_store(tmp_path / "zenml.db")
    store = populate(url, SyntheticSpec(versions=20, store_root=str(tmp_path / "root"),
                                        write_files=True, recent_share=0.0, seed=3))
    assert store.expected_candidates
    manifest = tmp_path / "mark.parquet"
    marked = _gc("mark", "--db", url, "--older-than", "0s", "--out", str(manifest))
    assert marked.returncode == 0, marked.stderr
    (tmp_path / "a-file").write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "a-file" / "cache")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "root").rglob("*"))
    swept = subprocess.run(
        [GC, "sweep", str(manifest), "--db", url, "--yes", "--journal", moto_s3.url("journal"),
         "--storage-option", f"client_kwargs.endpoint_url={moto_s3.endpoint_url}"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert swept.returncode == 9, swept.stderr
    assert "XDG_CACHE_HOME" in swept.stderr and "unexpected" not in swept.stderr, swept.stderr
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        left = {r[0] for r in connection.execute(sa.text("SELECT id FROM artifact_version"))}
    engine.dispose()
    assert store.expected_candidates <= left
    assert sorted(p.relative_to(tmp_path).as_posix()
                  for p in (tmp_path / "root").rglob("*")) == before
