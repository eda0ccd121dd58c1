"""The undo window's files (storage/trash*.py) on real backends.

- local disks (tmp dirs): delete -> restore brings back identical bytes; a path reused
  since the sweep is a conflict and none of it is touched; delete, restore and purge
  cut short (half their steps done by hand) converge when run again; the root fence
  refuses paths outside the root and a trash folder that leads out of it;
- S3 on a moto server, a versioned bucket (delete markers) and an unversioned one
  (CopyObject into the trash prefix): the same round trip, conflict and resumption,
  purge leaving no version behind, and the requests per 1,000 objects of a delete
  with undo against a plain delete, counted exactly;
- GCS (gcp-storage-emulator) and Azure Blob (Azurite): the copy trash's round trip,
  conflict and purge.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.errors import StorageError
from artifact_gc.storage.backend import Backend, open_backend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.storage.trash import TRASH_DIR, FileUndo, open_file_undo
from artifact_gc.zenml.stores import ArtifactStore
from conftest import MotoS3

FILES = (("artifact.bin", b"0123456789" * 10), ("metadata.json", b'{"n": 1}\n'))


def _store(root: str) -> ArtifactStore:
    return ArtifactStore(id="b" * 32, name="trash-test", flavor="test", root=root,
                         root_source="test")


def _open(root: str, fs: Any) -> tuple[Backend, FileUndo]:
    store = _store(root)
    backend = open_backend(store, root, fs, workers=4, retries=RetryCounter(),
                           limits=RequestLimits())
    return backend, open_file_undo(store, root, fs, backend)


def _version(i: int) -> str:
    return f"step/out/v{i:04d}"


def _plan(versions: int) -> dict[str, bytes]:
    """Root-relative key -> bytes: two files per version, and one file nobody sweeps."""
    plan = {f"{_version(i)}/{name}": body + str(i).encode()
            for i in range(versions) for name, body in FILES}
    plan["logs/keep.log"] = b"keep me\n"
    return plan


# ---------------------------------------------------------------------------
# Local disks
# ---------------------------------------------------------------------------


def _write_tree(root: Path, plan: dict[str, bytes]) -> None:
    for relative, body in plan.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def _tree(root: Path, *, trash: bool = False) -> dict[str, bytes]:
    out = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and (trash or not relative.startswith(TRASH_DIR)):
            out[relative] = path.read_bytes()
    return out


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[Path, FileUndo]]:
    from fsspec.implementations.local import LocalFileSystem

    root = tmp_path / "store"
    _write_tree(root, _plan(6))
    backend, undo = _open(str(root), LocalFileSystem())
    yield root, undo
    undo.close()
    backend.close()


def test_local_round_trip_restores_identical_bytes(local: tuple[Path, FileUndo]) -> None:
    root, undo = local
    before = _tree(root)
    paths = [str(root / _version(i)) for i in range(4)]
    assert undo.mode == "trash" and "rename, no copy" in undo.describe()

    outcome = undo.delete("sweep-1", paths)
    assert outcome.deleted == set(paths) and not outcome.failed
    assert not any((root / _version(i)).exists() for i in range(4))
    in_trash = _tree(root / TRASH_DIR / "sweep-1")
    assert in_trash == {k: v for k, v in before.items()
                        if k.startswith(tuple(_version(i) + "/" for i in range(4)))}
    assert set(undo.trashed_sweeps()) == {"sweep-1"}

    restored = undo.restore("sweep-1", paths)
    assert restored.restored == set(paths) and not restored.conflicts and not restored.failed
    assert _tree(root) == before
    assert undo.trashed_sweeps() == {}

    # A path and a path inside it, inner one first: the outer move takes it along.
    inner = str(root / _version(5) / "metadata.json")
    both = [inner, str(root / _version(5))]
    assert undo.delete("sweep-2", both).deleted == set(both)
    restored = undo.restore("sweep-2", both)
    assert restored.restored == {both[1]} and restored.already == {inner}
    assert _tree(root) == before


def test_local_restore_refuses_a_reused_path_and_touches_none_of_it(
    local: tuple[Path, FileUndo],
) -> None:
    root, undo = local
    before = _tree(root)
    paths = [str(root / _version(i)) for i in range(3)]
    undo.delete("sweep-1", paths)
    reused = root / _version(1)
    reused.mkdir(parents=True)
    (reused / "artifact.bin").write_bytes(b"a new version wrote here")

    assert set(undo.conflicts("sweep-1", paths)) == {paths[1]}
    outcome = undo.restore("sweep-1", paths)
    assert set(outcome.conflicts) == {paths[1]} and "reused" in outcome.conflicts[paths[1]]
    assert outcome.restored == {paths[0], paths[2]}
    assert _tree(reused) == {"artifact.bin": b"a new version wrote here"}
    # The trashed copy of the conflicting path is still there, whole, until purged.
    assert _tree(root / TRASH_DIR / "sweep-1" / _version(1)) == {
        name: before[f"{_version(1)}/{name}"] for name, _ in FILES}
    assert undo.purge("sweep-1") == 2
    assert undo.purge("sweep-1") == 0 and undo.trashed_sweeps() == {}


def test_local_interrupted_steps_converge(local: tuple[Path, FileUndo]) -> None:
    root, undo = local
    before = _tree(root)
    paths = [str(root / _version(i)) for i in range(5)]
    trash = root / TRASH_DIR / "sweep-1"
    # A delete cut short: two paths moved, and one copied across filesystems (the
    # fallback's state: the copy in the trash, the original not yet removed).
    undo.delete("sweep-1", paths[:2])
    shutil.copytree(root / _version(2), trash / _version(2))
    outcome = undo.delete("sweep-1", paths)
    assert outcome.deleted == set(paths) and not outcome.failed
    assert not any((root / _version(i)).exists() for i in range(5))
    assert _tree(trash) == {k: v for k, v in before.items()
                            if k.startswith(tuple(_version(i) + "/" for i in range(5)))}

    # A restore cut short: one path back, one copied back but its trash copy not dropped.
    undo.restore("sweep-1", paths[:1])
    shutil.copytree(trash / _version(1), root / _version(1))
    outcome = undo.restore("sweep-1", paths)
    assert outcome.already == {paths[0], paths[1]}
    assert outcome.restored == set(paths[2:]) and not outcome.conflicts and not outcome.failed
    assert _tree(root) == before and not trash.exists()

    # A purge cut short: a second run purges the rest and a third finds nothing.
    undo.delete("sweep-2", paths)
    assert undo.purge("sweep-2", paths[:2]) == 4
    assert undo.purge("sweep-2") == 6
    assert undo.purge("sweep-2") == 0
    # Nothing left to bring back (gc's own purge is refused above this layer).
    purged = undo.restore("sweep-2", paths[:1])
    assert purged.absent == set(paths[:1]) and not purged.failed and not purged.restored


def test_local_fence_refuses_outside_paths_and_a_trash_that_leads_out(
    local: tuple[Path, FileUndo], tmp_path: Path,
) -> None:
    root, undo = local
    before = _tree(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"not ours")
    hostile = [str(outside), str(root / ".." / "outside"), str(root), str(root / TRASH_DIR),
               str(root / TRASH_DIR / "sweep-0" / "x")]
    outcome = undo.delete("sweep-1", hostile)
    assert set(outcome.failed) == set(hostile) and not outcome.deleted
    assert undo.restore("sweep-1", hostile).failed.keys() == set(hostile)
    assert _tree(root) == before and (outside / "precious").read_bytes() == b"not ours"
    with pytest.raises(StorageError):
        undo.delete("../escape", [str(root / _version(0))])

    # The trash folder swapped for a symlink out of the root: nothing moves through it.
    shutil.rmtree(root / TRASH_DIR, ignore_errors=True)
    os.symlink(outside, root / TRASH_DIR)
    outcome = undo.delete("sweep-1", [str(root / _version(0))])
    assert set(outcome.failed) == {str(root / _version(0))}
    assert _tree(root) == before and sorted(os.listdir(outside)) == ["precious"]


# ---------------------------------------------------------------------------
# S3 (moto server): a versioned and an unversioned bucket
# ---------------------------------------------------------------------------


def _bucket(moto_s3: MotoS3, name: str, versioned: bool) -> str:
    client = moto_s3.client()
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _upload(client: Any, bucket: str, root_key: str, plan: dict[str, bytes]) -> None:
    from s3_support import upload

    upload(client, bucket, [(f"{root_key}/{k}", v) for k, v in plan.items()], threads=32)


def _current(client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    """Key -> bytes of every current object under ``prefix``."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents") or []:
            key = entry["Key"]
            out[key] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return out


def _all_versions(client: Any, bucket: str, prefix: str) -> list[str]:
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                      Prefix=prefix):
        out += [v["Key"] for v in page.get("Versions") or []]
        out += [m["Key"] for m in page.get("DeleteMarkers") or []]
    return out


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
def test_s3_round_trip_conflict_resume_and_purge(moto_s3: MotoS3, versioned: bool) -> None:
    client = moto_s3.client()
    bucket = _bucket(moto_s3, f"trash-{'v' if versioned else 'u'}-{moto_s3.bucket[-8:]}",
                     versioned)
    root = f"s3://{bucket}/store"
    plan = _plan(6)
    _upload(client, bucket, "store", plan)
    before = _current(client, bucket, "store/")
    backend, undo = _open(root, moto_s3.filesystem())
    try:
        assert undo.mode == ("bucket-versioning" if versioned else "trash")
        assert ("delete markers" in undo.describe()) == versioned
        assert ("+1 CopyObject per object" in undo.describe()) == (not versioned)
        paths = [f"{root}/{_version(i)}" for i in range(5)]

        # A delete cut short: half the paths done first (and, without versioning, one
        # path's objects copied into the trash but not deleted).
        undo.delete("sweep-1", paths[:2])
        if not versioned:
            for name, _ in FILES:
                client.copy_object(Bucket=bucket, Key=f"store/{TRASH_DIR}/sweep-1/"
                                   f"{_version(2)}/{name}",
                                   CopySource={"Bucket": bucket,
                                               "Key": f"store/{_version(2)}/{name}"})
        outcome = undo.delete("sweep-1", paths + [f"s3://{bucket}/other/x", root])
        assert outcome.deleted == set(paths)
        assert set(outcome.failed) == {f"s3://{bucket}/other/x", root}
        visible = {k for k in _current(client, bucket, "store/") if TRASH_DIR not in k}
        assert visible == {k for k in before
                           if not k.startswith(tuple(f"store/{_version(i)}/" for i in range(5)))}
        assert set(undo.trashed_sweeps()) == {"sweep-1"}

        # The path reused since the sweep: refused, and its new object left as written.
        client.put_object(Bucket=bucket, Key=f"store/{_version(3)}/artifact.bin", Body=b"new")
        assert set(undo.conflicts("sweep-1", paths)) == {paths[3]}
        # A restore cut short: one path first, then all.
        first = undo.restore("sweep-1", paths[:1])
        assert first.restored == {paths[0]}
        outcome = undo.restore("sweep-1", paths)
        assert outcome.already == {paths[0]} and set(outcome.conflicts) == {paths[3]}
        assert outcome.restored == {paths[1], paths[2], paths[4]} and not outcome.failed
        after = {k: v for k, v in _current(client, bucket, "store/").items()
                 if TRASH_DIR not in k}
        reused = f"store/{_version(3)}/artifact.bin"
        assert after.pop(reused) == b"new"
        assert after == {k: v for k, v in before.items()
                         if not k.startswith(f"store/{_version(3)}/")}

        if versioned:
            # A file deleted by someone else, not by the sweep: never brought back by it.
            foreign = f"store/{_version(5)}/artifact.bin"
            client.delete_object(Bucket=bucket, Key=foreign)
            outcome = undo.restore("sweep-1", [f"{root}/{_version(5)}"])
            assert set(outcome.failed) == {f"{root}/{_version(5)}"} and not outcome.restored
            assert foreign not in _current(client, bucket, "store/")
            client.put_object(Bucket=bucket, Key=foreign, Body=before[foreign])

        # Purge: what the sweep still holds goes for good (the conflicting path's
        # trashed objects), and nothing else; a second purge finds nothing.
        purged = undo.purge("sweep-1")
        assert purged == (1 if versioned else 2)
        assert undo.purge("sweep-1") == 0 and undo.trashed_sweeps() == {}
        assert not [k for k in _all_versions(client, bucket, "store/") if TRASH_DIR in k]
        if versioned:
            # metadata.json of the reused path: its data version and the marker are gone.
            assert f"store/{_version(3)}/metadata.json" not in _all_versions(
                client, bucket, "store/")
    finally:
        undo.close()
        backend.close()


def test_s3_versioned_undo_keeps_what_was_deleted_before_the_sweep(moto_s3: MotoS3) -> None:
    """A key someone deleted before the sweep (its delete marker is older than the
    sweep's record) stays deleted through a restore and is left alone by a purge; a
    key the sweep deleted comes back as its newest version, and its purge leaves no
    version of it that could become current again."""
    import time

    client = moto_s3.client()
    bucket = _bucket(moto_s3, f"trash-old-{moto_s3.bucket[-8:]}", True)
    root = f"s3://{bucket}/store"
    gone, kept = f"store/{_version(0)}/gone.bin", f"store/{_version(0)}/kept.bin"
    client.put_object(Bucket=bucket, Key=gone, Body=b"deleted by its owner")
    client.put_object(Bucket=bucket, Key=kept, Body=b"v1")
    client.put_object(Bucket=bucket, Key=kept, Body=b"v2")
    client.delete_object(Bucket=bucket, Key=gone)
    path, prefix = f"{root}/{_version(0)}", f"store/{_version(0)}/"
    owners = sorted(v for v in _all_versions(client, bucket, prefix) if v == gone)
    time.sleep(1.1)  # markers are told apart by time, to the second
    backend, undo = _open(root, moto_s3.filesystem())
    try:
        # The mark recorded both keys (gone was listed before its owner deleted it).
        known = {path: [f"s3://{bucket}/{gone}", f"s3://{bucket}/{kept}"]}
        assert undo.delete("s1", [path], known=known).deleted == {path}
        assert _current(client, bucket, prefix) == {}
        assert undo.restore("s1", [path]).restored == {path}
        assert _current(client, bucket, prefix) == {kept: b"v2"}
        time.sleep(1.1)
        assert undo.delete("s2", [path]).deleted == {path}
        undo.purge("s2")
        left = _all_versions(client, bucket, prefix)
        assert kept not in left and _current(client, bucket, prefix) == {}
        assert sorted(v for v in left if v == gone) == owners
    finally:
        undo.close()
        backend.close()


def _counts(backend: Any, undo: Any) -> dict[str, int]:
    """Requests sent by the backend and by the undo, by kind (nonzero ones)."""
    mine = undo.ops.stats
    counts = {"LIST": backend.client.stats.lists + mine.lists, "CopyObject": mine.copies,
              "PUT": mine.writes, "GET": mine.reads, "GetBucketVersioning": mine.probes,
              "DeleteObjects": backend.client.stats.deletes + mine.deletes}
    return {k: v for k, v in counts.items() if v}


def test_s3_requests_per_thousand_objects(moto_s3: MotoS3) -> None:
    """1,000 objects (500 versions of two files) deleted with undo in one call, on a
    versioned bucket and on an unversioned one. A plain delete of the same layout is
    2 LISTs (the ranged listing, the proof listing) and 1 DeleteObjects; the undo asks
    for the bucket's versioning once, and adds exactly 1 PUT (the sweep's record) with
    versioning. Without versioning it copies each object listed (1 CopyObject per
    object) and deletes exactly those, with no proof listing: an object written after
    the listing has no trash copy, so it is left in place. Counted, not timed."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    client = moto_s3.client()
    plan = {k: v for k, v in _plan(500).items() if k.startswith("step/")}
    assert len(plan) == 1000
    fs = moto_s3.filesystem()
    # Filled straight into the in-process server's backend: 1,000 PUTs over HTTP would
    # take most of the test's time, and they are not what is counted.
    moto_backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    plain = {"LIST": 2, "DeleteObjects": 1, "GetBucketVersioning": 1}
    expected = {"versioned": {**plain, "PUT": 1},
                "unversioned": {**plain, "LIST": 1, "CopyObject": 1000}}
    for case, counts in expected.items():
        bucket = _bucket(moto_s3, f"count-{case}-{moto_s3.bucket[-8:]}", case == "versioned")
        for key, body in plan.items():
            moto_backend.put_object(bucket, f"store/{key}", body)
        root = f"s3://{bucket}/store"
        backend, undo = _open(root, fs)
        paths = [f"{root}/{_version(i)}" for i in range(500)]
        try:
            assert undo.delete("s1", paths).deleted == set(paths)
            assert _counts(backend, undo) == counts, case
        finally:
            undo.close()
            backend.close()
        assert not [k for k in _current(client, bucket, "store/step/")]


# ---------------------------------------------------------------------------
# GCS and Azure Blob (emulators): the copy trash
# ---------------------------------------------------------------------------


@pytest.fixture(params=["gcs", "azure"])
def emulator(request: pytest.FixtureRequest) -> Any:
    fixture = "gcs_emulator" if request.param == "gcs" else "azurite"
    return request.getfixturevalue(fixture)


def test_cloud_copy_trash_round_trip_resume_conflict_and_purge(emulator: Any) -> None:
    from cloud_support import new_bucket

    bucket = new_bucket(emulator)
    plan = _plan(4)
    emulator.upload(bucket, [(f"store/{k}", v) for k, v in plan.items()])
    fs = emulator.filesystem()
    root = f"{emulator.scheme}://{bucket}/store"

    def current() -> dict[str, bytes]:
        fs.invalidate_cache()
        return {k: fs.cat_file(f"{bucket}/{k}") for k in emulator.listing(bucket)
                if TRASH_DIR not in k}

    before = current()
    backend, undo = _open(root, fs)
    try:
        assert undo.mode == "trash" and "server-side copy" in undo.describe()
        paths = [f"{root}/{_version(i)}" for i in range(3)]
        # A delete cut short: one path's objects copied into the trash, not yet deleted.
        emulator.upload(bucket, [(f"store/{TRASH_DIR}/sweep-1/{_version(0)}/{name}",
                                  before[f"store/{_version(0)}/{name}"]) for name, _ in FILES])
        outcome = undo.delete("sweep-1", paths + [f"{emulator.scheme}://{bucket}/x"])
        assert outcome.deleted == set(paths) and len(outcome.failed) == 1
        assert set(current()) == {k for k in before
                                  if not k.startswith(tuple(f"store/{_version(i)}/"
                                                            for i in range(3)))}
        assert set(undo.trashed_sweeps()) == {"sweep-1"}
        emulator.upload(bucket, [(f"store/{_version(2)}/artifact.bin", b"new")])
        # A restore cut short: one path copied back, its trash copy not yet dropped.
        emulator.upload(bucket, [(f"store/{_version(1)}/{name}",
                                  before[f"store/{_version(1)}/{name}"]) for name, _ in FILES])
        outcome = undo.restore("sweep-1", paths)
        assert outcome.restored == {paths[0]} and outcome.already == {paths[1]}
        assert set(outcome.conflicts) == {paths[2]}
        after = current()
        assert after.pop(f"store/{_version(2)}/artifact.bin") == b"new"
        assert after == {k: v for k, v in before.items()
                         if not k.startswith(f"store/{_version(2)}/")}
        assert undo.restore("sweep-1", paths[:2]).already == set(paths[:2])
        assert undo.purge("sweep-1") == 2
        assert undo.purge("sweep-1") == 0 and undo.trashed_sweeps() == {}
    finally:
        undo.close()
        backend.close()


def test_orphan_file_marking_never_takes_the_trash() -> None:
    """A trashed path shaped like a step output's (a sweep id, then a UUID and an
    8-hex folder) is no unit of orphan-file marking: the trash is reserved."""
    import duckdb

    from artifact_gc.mark.orphans.layout import kind_sql

    shaped = [TRASH_DIR, "sweep-1", "0f2d8c5e-1b7a-4c3e-9d2f-5a6b7c8d9e0f", "abcdef12", "a.bin"]
    query = f"SELECT {kind_sql('seg', 'false')} FROM (SELECT ?::VARCHAR[] AS seg)"
    with duckdb.connect() as con:
        assert con.execute(query, [shaped]).fetchone() == (None,)
        outside = ["step", *shaped[1:]]
        assert con.execute(query, [outside]).fetchone() != (None,)
