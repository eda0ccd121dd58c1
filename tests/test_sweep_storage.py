"""The file side of the sweep: transient faults, the root fence, idempotent deletes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from artifact_gc.errors import StorageError
from artifact_gc.storage.backend import open_backend, register_backend
from artifact_gc.storage.fence import strictly_inside
from artifact_gc.storage.generic import GenericBackend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.local import LocalBackend
from artifact_gc.storage.retry import RetryCounter, is_transient
from artifact_gc.storage.s3 import S3Backend
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.sweep.status import sweep_status
from artifact_gc.zenml.stores import ArtifactStore
from faulty_fs import FaultyFileSystem, SlowDown
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree
from sweep_support import assert_swept, mark_store, uri_paths, version_ids


def _store(root: Path) -> ArtifactStore:
    return ArtifactStore(id="s" * 32, name="t", flavor="local", root=str(root),
                         root_source="test")


def test_transient_faults_are_retried_and_show_in_the_summary(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    made: list[FaultyFileSystem] = []

    def factory(_store: ArtifactStore) -> FaultyFileSystem:
        fs = FaultyFileSystem(fail_first=2)
        made.append(fs)
        return fs

    # No undo window: the faults are injected into the backend's filesystem, which a
    # plain delete goes through (the trash's renames are tested in test_trash_storage).
    plan = plan_sweep(str(manifest), store.sqlalchemy_url,
                      SweepOptions(batch_size=4, workers=2, undo_window=None))
    report = execute(plan, filesystem_factory=factory)
    assert made and made[0].transient_raised > 0
    assert report.retries >= made[0].transient_raised
    assert report.as_dict()["retries"] == report.retries
    assert set(report.deleted) == store.candidates and not report.failures
    assert_swept(store, store.candidates, before, footprints, load=False)


def test_permanent_failure_stops_and_resumes(scenario_store: ScenarioStore, tmp_path: Path
                                             ) -> None:
    """Without --ignore-errors the first batch that fails for good stops the sweep with
    a message naming the version; with it, the failure is journaled and the sweep goes
    on; a later sweep (the fault gone) finishes the job: rows went first, so the
    re-run finds them gone and completes the files."""
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    victim = sorted(store.candidates)[0]
    marker = os.path.basename(footprints[victim][0].rstrip("/"))

    def broken(_store: ArtifactStore) -> FaultyFileSystem:
        return FaultyFileSystem(fail_first=0, permanent=(marker,))

    with pytest.raises(StorageError, match=victim):
        execute(plan_sweep(str(manifest), store.sqlalchemy_url,
                           SweepOptions(batch_size=100, undo_window=None)),
                filesystem_factory=broken)
    assert sweep_status(str(manifest)).as_dict()["failed"] >= 1
    report = execute(
        plan_sweep(str(manifest), store.sqlalchemy_url,
                   SweepOptions(batch_size=2, ignore_errors=True, undo_window=None)),
        filesystem_factory=broken)
    assert [f.artifact_version_id for f in report.failures] == [victim]
    assert "Permission denied" in report.failures[0].cause
    status = sweep_status(str(manifest)).as_dict()
    assert status["failed"] == 1 and status["remaining"] == 1
    assert integrity_problems(store.sqlalchemy_url) == []
    assert victim not in version_ids(store.sqlalchemy_url)  # rows went, files wait
    final = execute(plan_sweep(str(manifest), store.sqlalchemy_url,
                               SweepOptions(undo_window=None)))
    assert final.deleted == [victim]
    assert_swept(store, store.candidates, before, footprints, load=False)


def test_never_outside_the_root(tmp_path: Path) -> None:
    """Invariant 3 at the last fence: the backend refuses anything not strictly inside."""
    import fsspec

    root = tmp_path / "root"
    (root / "inside" / "v1").mkdir(parents=True)
    (root / "inside" / "v1" / "data").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    os.symlink(outside, root / "link")
    files = open_backend(_store(root), str(root), fsspec.filesystem("file"), workers=2,
                         retries=RetryCounter(), limits=RequestLimits())
    try:
        outcome = files.delete([
            str(root), str(root) + "/", str(outside), f"{root}/inside/../../outside",
            f"{root}/link", f"{root}/link/precious", f"{root}x/sibling",
            f"{root}/inside/v1", f"{root}/inside/gone-already",
        ])
    finally:
        files.close()
    assert outcome.deleted == {f"{root}/inside/v1", f"{root}/inside/gone-already"}
    assert len(outcome.failed) == 7
    assert (outside / "precious").read_text() == "keep me"
    assert root.exists() and (root / "link").is_symlink()
    assert not (root / "inside" / "v1").exists()


def test_strictly_inside_rules() -> None:
    assert strictly_inside("s3://b/root/x/y", "s3://b/root")
    assert not strictly_inside("s3://b/root", "s3://b/root")
    assert not strictly_inside("s3://b/rootx/y", "s3://b/root")
    assert not strictly_inside("s3://b/root/../other", "s3://b/root")
    assert not strictly_inside("", "s3://b/root")


def test_transient_classification() -> None:
    assert is_transient(ConnectionResetError(104, "reset"))
    assert is_transient(SlowDown("SlowDown: reduce your request rate"))
    assert is_transient(TimeoutError())
    assert not is_transient(PermissionError(13, "denied"))
    assert not is_transient(FileNotFoundError(2, "gone"))
    assert not is_transient(ValueError("bad"))


def test_backend_is_found_by_protocol(tmp_path: Path) -> None:
    """fsspec's LocalFileSystem and its subclasses get the local backend (which sends a
    subclass through its own rm, see the fault tests above), s3fs the S3 one, and
    anything else, an s3 protocol that is not s3fs included, the generic one."""
    import s3fs
    from fsspec.implementations.memory import MemoryFileSystem

    class OtherS3(MemoryFileSystem):  # type: ignore[misc]
        protocol = ("s3",)
        cachable = False

    cases = [(LocalFileSystem(), LocalBackend), (FaultyFileSystem(), LocalBackend),
             (MemoryFileSystem(), GenericBackend), (OtherS3(), GenericBackend),
             (s3fs.S3FileSystem(anon=True, skip_instance_cache=True), S3Backend)]
    for fs, expected in cases:
        backend = open_backend(_store(tmp_path), str(tmp_path), fs, workers=1,
                               retries=RetryCounter(), limits=RequestLimits())
        try:
            assert type(backend) is expected, fs
        finally:
            backend.close()
    with pytest.raises(ValueError, match="already registered"):
        register_backend("file", GenericBackend)
