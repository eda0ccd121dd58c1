"""gc mark --orphan-files and the sweep of orphan files, on a real ZenML 0.98 store.

The store is built by real ZenML actions (orphan_zenml.py): a version deleted with
``delete_artifact_version``'s default, runs deleted with ``delete_pipeline_run`` (their
log files stay), a step that raises, a step whose process is killed with SIGKILL, a
``save_artifact`` version deleted, and ``zenml artifact prune --only-metadata``. The
traps (live files, logs of live runs, registered data, ``code_uploads/``, an
integration folder, users' files, a registered folder holding a step-output-shaped
path, a fresh step-output directory) are back-dated past the grace period, except the
fresh one, so that age is not what protects them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artifact_gc.errors import StorageError, UsageError
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from orphan_support import (
    OrphanStore,
    add_traps,
    backdate,
    run_zenml,
    tree,
)
from scenarios.helpers import integrity_problems, restore_tree

pytestmark = pytest.mark.slow

GRACE = timedelta(days=1)


@pytest.fixture(scope="session")
def _orphan_pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    config_dir = tmp_path_factory.mktemp("orphan-pristine")
    built = run_zenml(config_dir, "build")
    return config_dir, built


@pytest.fixture
def orphan_store(_orphan_pristine: tuple[Path, dict[str, Any]]
                 ) -> Iterator[tuple[OrphanStore, dict[str, Path]]]:
    """A fresh copy of the built store at the pristine path (ZenML's URIs are absolute),
    with the traps added and everything but the fresh trap back-dated."""
    pristine, built = _orphan_pristine
    saved = pristine.with_name(pristine.name + "-saved")
    if not saved.exists():
        shutil.copytree(pristine, saved, symlinks=True)
    restore_tree(saved, pristine)
    store = OrphanStore(pristine, built)
    traps = add_traps(store.root)
    backdate(store.root, keep_fresh=traps["fresh"].parent)
    yield store, traps


def _mark(store: OrphanStore, out: Path, **options: Any) -> Path:
    options.setdefault("older_than", GRACE)
    mark(store.db_url, str(out), MarkOptions(orphan_files=True, **options))
    return out


def _orphan_rows(manifest: Path) -> dict[str, tuple[str, str, list[str]]]:
    rows = duckdb.sql(
        f"SELECT item_id, status, orphan_class, reasons FROM '{manifest}' "
        "WHERE item_kind = 'orphan_file'").fetchall()
    return {r[0]: (r[1], r[2], list(r[3])) for r in rows}


def test_every_leak_is_a_candidate_and_every_trap_survives(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    store, traps = orphan_store
    root = str(store.root)
    leaks = store.leaks
    manifest = _mark(store, tmp_path / "mark.parquet")
    rows = _orphan_rows(manifest)

    expected_candidates = {
        leaks["delete_artifact_version"]["uri"]: "deleted_run_output",
        leaks["prune_only_metadata"]["uri"]: "deleted_run_output",
        leaks["custom_artifact"]["uri"]: "custom_artifact",
    }
    logs = [u for u in leaks["delete_pipeline_run"]["log_uris"] if os.path.exists(u)]
    assert logs, "the deleted run left no log file to find"
    expected_candidates.update({u: "deleted_run_logs" for u in logs})
    for path, orphan_class in expected_candidates.items():
        assert rows[path][:2] == ("candidate", orphan_class), (path, rows.get(path))
    # The failed step's output directory, emptied by ZenML and left behind.
    failed_runs = leaks["step_raises"]["step_run_ids"]
    failed_dirs = {p for p, (status, cls, _) in rows.items()
                   if status == "candidate" and cls == "empty_directory"
                   and any(_dashed(r) in p for r in failed_runs)}
    assert failed_dirs
    # The deleted failing run: its emptied directory, and its first step's output,
    # whose row prune --only-metadata deleted.
    gone_runs = leaks["delete_pipeline_run"]["step_run_ids"]
    gone_dirs = {p: rows[p][1] for p in rows if any(_dashed(r) in p for r in gone_runs)}
    assert sorted(gone_dirs.values()) == ["deleted_run_output", "empty_directory"]
    assert all(rows[p][0] == "candidate" for p in gone_dirs)
    failed_dirs |= set(gone_dirs)
    # The killed step's directory: its step run still says running, at any age.
    killed = [p for p in rows if any(_dashed(r) in p
                                     for r in leaks["step_killed"]["step_run_ids"])]
    assert killed and all(rows[p][0] == "protected" and "step_running" in rows[p][2]
                          for p in killed)
    fresh_unit = str(traps["fresh"].parent)
    assert rows[fresh_unit][0] == "protected" and "grace_period" in rows[fresh_unit][2]
    for name in ("code_uploads", "mlflow", "my_notes.txt", "user_data"):
        assert rows[f"{root}/{name}"] == ("protected", "unknown", ["unknown_layout"])
    # Live paths have no row: versions of the kept run, registered data, the layout
    # inside a registered folder, logs of live runs.
    live = [*store.built["traps"].values()]
    assert not any(p == path or p.startswith(path + "/") for path in live for p in rows)
    candidates = {p for p, (status, _, _) in rows.items() if status == "candidate"}
    assert candidates == set(expected_candidates) | failed_dirs

    before = tree(store.root)
    # ZenML's own deletes leave run_metadata rows without resources: the sweep of
    # files must add no problem of its own.
    problems = integrity_problems(store.db_url)
    report = execute(plan_sweep(str(manifest), store.db_url, SweepOptions(batch_size=2)))
    assert set(report.deleted) == candidates and not report.failures
    after = tree(store.root)
    gone = {str(Path(p).relative_to(root)) for p in candidates}
    assert not any(p == g or p.startswith(g + "/") for p in after for g in gone)
    # Nothing else went but the directories those deletes left empty.
    lost = before - after
    assert all(any(p == g or p.startswith(g + "/") or g.startswith(p + "/") for g in gone)
               for p in lost)
    for trap in traps.values():
        assert trap.exists()
    for path in [*live, *killed]:
        assert os.path.exists(path)
    assert os.path.isdir(f"{root}/logs") and os.path.isdir(f"{root}/custom_artifacts")
    assert integrity_problems(store.db_url) == problems
    loaded = run_zenml(store.config_dir, "load")
    assert loaded["failed"] == {} and loaded["loaded"] > 0
    # A second mark finds no candidate left.
    again = _orphan_rows(_mark(store, tmp_path / "again.parquet"))
    assert not {p for p, (status, _, _) in again.items() if status == "candidate"}


def _dashed(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def test_a_row_created_between_mark_and_sweep_revives_the_path(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    store, _ = orphan_store
    manifest = _mark(store, tmp_path / "mark.parquet")
    target = store.leaks["custom_artifact"]["uri"]
    assert _orphan_rows(manifest)[target][0] == "candidate"
    run_zenml(store.config_dir, "register", target, "revived_orphan")
    before = tree(store.root)
    dry = execute(plan_sweep(str(manifest), store.db_url, SweepOptions(dry_run=True)))
    assert target in dry.revived and dry.deleted
    # The dry run changed nothing and wrote no journal.
    assert tree(store.root) == before
    assert not Path(str(manifest) + ".journal").exists()
    report = execute(plan_sweep(str(manifest), store.db_url, SweepOptions()))
    assert target in report.revived and "artifact_version.uri" in report.revived[target]
    assert os.path.exists(target)
    assert target not in report.deleted and report.deleted


def test_a_root_that_cannot_be_listed_fails_the_mark(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    store, _ = orphan_store
    # A root that is a file cannot be listed: the mark stops and writes nothing.
    not_a_dir = tmp_path / "root-is-a-file"
    not_a_dir.write_text("x")
    out = tmp_path / "mark.parquet"
    with pytest.raises(StorageError, match="could not list"):
        _mark(store, out, store_roots={store.store_id: str(not_a_dir)})
    assert not out.exists() and not list(tmp_path.glob("*.parquet*"))


def _write_inventory(store: OrphanStore, path: Path, extra: list[tuple[str, int]] = ()
                     ) -> None:  # type: ignore[assignment]
    from datetime import UTC, datetime

    paths, sizes, times = [], [], []
    for directory, _dirs, files in os.walk(store.root):
        for name in files:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            paths.append(full)
            sizes.append(info.st_size)
            times.append(datetime.fromtimestamp(info.st_mtime, UTC).replace(tzinfo=None))
    for extra_path, size in extra:
        paths.append(extra_path)
        sizes.append(size)
        times.append(datetime(2026, 1, 1))
    pq.write_table(pa.table({"path": paths, "size": sizes, "last_modified": times}), path)


def test_inventory_classifies_without_listing(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    store, _ = orphan_store
    listed = _orphan_rows(_mark(store, tmp_path / "listed.parquet"))
    inventory = tmp_path / "inventory.parquet"
    _write_inventory(store, inventory)
    from_inventory = _orphan_rows(_mark(store, tmp_path / "inv.parquet",
                                        inventory=str(inventory)))
    # An inventory has no empty directories: the same candidates otherwise.
    def candidates(rows: dict[str, tuple[str, str, list[str]]]) -> set[str]:
        return {p for p, (s, c, _) in rows.items() if s == "candidate"
                and c != "empty_directory"}

    assert candidates(from_inventory) == candidates(listed) and candidates(listed)

    # Bad inventories change nothing and say why.
    outside = tmp_path / "outside.parquet"
    _write_inventory(store, outside, extra=[("/elsewhere/file.bin", 3)])
    with pytest.raises(UsageError, match="outside every artifact store root"):
        _mark(store, tmp_path / "bad1.parquet", inventory=str(outside))
    malformed = tmp_path / "malformed.parquet"
    malformed.write_bytes(b"not parquet at all")
    with pytest.raises(UsageError, match="inventory"):
        _mark(store, tmp_path / "bad2.parquet", inventory=str(malformed))
    old = tmp_path / "old.parquet"
    _write_inventory(store, old)
    then = os.stat(old).st_mtime - 10 * 86400
    os.utime(old, (then, then))
    with pytest.raises(UsageError, match="max-inventory-age"):
        _mark(store, tmp_path / "bad3.parquet", inventory=str(old),
              max_inventory_age=timedelta(days=2))
    assert not any((tmp_path / f"bad{i}.parquet").exists() for i in (1, 2, 3))


# ---------------------------------------------------------------------------
# S3 (moto): the same store, moved to a bucket
# ---------------------------------------------------------------------------


def _move_to_s3(store: OrphanStore, traps: dict[str, Path], moto_s3: Any) -> str:
    """Upload the store's files to the bucket and rewrite every path the database
    names from the local root to the S3 root. S3 cannot be back-dated, so the fresh
    trap (protected only by its age) stays behind and the marks use a grace of 0: what
    protects every other trap is not its age."""
    import sqlalchemy as sa

    from artifact_gc.mark.orphans.named import location_columns

    root = str(store.root)
    s3_root = moto_s3.url("zenml-store")
    client = moto_s3.client()
    fresh = str(traps["fresh"].parent.parent.parent)
    for directory, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(directory, name)
            if full.startswith(fresh + "/"):
                continue
            key = "zenml-store/" + os.path.relpath(full, root)
            client.put_object(Bucket=moto_s3.bucket, Key=key, Body=Path(full).read_bytes())
    engine = sa.create_engine(store.db_url)
    with engine.begin() as connection:
        for column in location_columns(engine):
            connection.execute(sa.text(
                f'UPDATE "{column.table}" SET "{column.column}" = '
                f':s3 || substr("{column.column}", :n) '
                f'WHERE "{column.column}" LIKE :prefix'),
                {"s3": s3_root, "n": len(root) + 1, "prefix": root + "/%"})
    engine.dispose()
    return s3_root


def _bucket(moto_s3: Any) -> set[str]:
    keys: set[str] = set()
    paginator = moto_s3.client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=moto_s3.bucket):
        keys.update(str(e["Key"]) for e in page.get("Contents") or [])
    return keys


def _s3_inventory(moto_s3: Any, source_bucket: str | None = None, name: str = "inv") -> str:
    """An S3 Inventory report of the bucket (gzipped CSV, URL-encoded keys, as S3 writes
    it) in the bucket itself, outside the store's root; the URL of its manifest.json."""
    import csv
    import gzip
    import io
    import json
    import time
    from urllib.parse import quote

    client = moto_s3.client()
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=moto_s3.bucket, Prefix="zenml-store/"):
        for entry in page.get("Contents") or []:
            writer.writerow([moto_s3.bucket, quote(entry["Key"]), entry["Size"],
                             entry["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z")])
    data_key = f"{name}/data/part-0.csv.gz"
    client.put_object(Bucket=moto_s3.bucket, Key=data_key,
                      Body=gzip.compress(out.getvalue().encode()))
    report = {
        "sourceBucket": source_bucket or moto_s3.bucket,
        "destinationBucket": f"arn:aws:s3:::{moto_s3.bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(time.time() * 1000)),
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate",
        "files": [{"key": data_key, "size": 0, "MD5checksum": ""}],
    }
    client.put_object(Bucket=moto_s3.bucket, Key=f"{name}/manifest.json",
                      Body=json.dumps(report).encode())
    return moto_s3.url(f"{name}/manifest.json")


@pytest.mark.s3
def test_s3_mark_and_sweep_of_orphan_files(
    orphan_store: tuple[OrphanStore, dict[str, Path]], moto_s3: Any, tmp_path: Path
) -> None:
    store, traps = orphan_store
    # S3 has no empty directories: give the killed step's directory what a killed
    # step leaves when it had begun writing.
    for run in store.leaks["step_killed"]["step_run_ids"]:
        for unit in store.root.glob(f"*/*/{_dashed(run)}/*"):
            (unit / "partial.bin").write_bytes(b"p" * 10)
    s3_root = _move_to_s3(store, traps, moto_s3)
    options = {"store_roots": {store.store_id: s3_root},
               "storage_options": dict(moto_s3.storage_options)}
    manifest = _mark(store, tmp_path / "mark.parquet", older_than=timedelta(0), **options)
    rows = _orphan_rows(manifest)
    leaks = store.leaks
    local = str(store.root)

    def on_s3(path: str) -> str:
        return s3_root + path[len(local):]

    expected = {on_s3(leaks["delete_artifact_version"]["uri"]),
                on_s3(leaks["prune_only_metadata"]["uri"]),
                on_s3(leaks["custom_artifact"]["uri"])}
    expected |= {on_s3(u) for u in leaks["delete_pipeline_run"]["log_uris"]
                 if os.path.exists(u)}
    candidates = {p for p, (status, _, _) in rows.items() if status == "candidate"}
    # The deleted failing run's first output; S3 has no empty directories, so the
    # emptied one of its failed step (and of the kept failing run) does not exist there.
    gone = {p for p in candidates
            if any(_dashed(r) in p for r in leaks["delete_pipeline_run"]["step_run_ids"])}
    assert gone and all(rows[p][1] == "deleted_run_output" for p in gone)
    expected |= gone
    assert candidates == expected
    killed = [p for p in rows if "killed_step" in p]
    assert killed and all(rows[p][0] == "protected" for p in killed)
    for name in ("code_uploads", "mlflow", "my_notes.txt", "user_data"):
        assert rows[f"{s3_root}/{name}"][0] == "protected"

    # The same decision from an S3 Inventory report, with no LIST of the root.
    inventory = _s3_inventory(moto_s3)
    from_inventory = _orphan_rows(_mark(store, tmp_path / "inv.parquet", older_than=timedelta(0),
                                        inventory=inventory, **options))
    assert {p for p, (s, _, _) in from_inventory.items() if s == "candidate"} == expected
    other = _s3_inventory(moto_s3, source_bucket="someone-elses-bucket", name="other")
    with pytest.raises(UsageError, match="inventory of bucket"):
        _mark(store, tmp_path / "bad.parquet", older_than=timedelta(0), inventory=other,
              **options)

    before = _bucket(moto_s3)
    report = execute(plan_sweep(str(manifest), store.db_url, SweepOptions(
        batch_size=3, storage_options=dict(moto_s3.storage_options))))
    assert set(report.deleted) == expected and not report.failures
    # The sweep's undo window (on by default) copies what it deletes into the store's
    # trash prefix (the bucket has no versioning): exactly the deleted keys, nothing else.
    trash = "zenml-store/.artifact-gc-trash/"
    after = {k for k in _bucket(moto_s3) if not k.startswith(trash)}
    trashed = {"zenml-store/" + k[len(trash):].split("/", 1)[1]
               for k in _bucket(moto_s3) if k.startswith(trash)
               and "/versioned/" not in k}
    prefix = f"s3://{moto_s3.bucket}/"
    gone = {k for k in before
            if any(k == p[len(prefix):] or k.startswith(p[len(prefix):] + "/")
                   for p in expected)}
    assert gone and after == before - gone
    assert trashed == gone


@pytest.mark.s3
def test_s3_bucket_that_cannot_be_listed_fails_the_mark(
    orphan_store: tuple[OrphanStore, dict[str, Path]], moto_s3: Any, tmp_path: Path
) -> None:
    store, _ = orphan_store
    out = tmp_path / "mark.parquet"
    with pytest.raises(StorageError, match="could not list"):
        _mark(store, out, older_than=timedelta(0),
              store_roots={store.store_id: "s3://no-such-bucket-here/zenml-store"},
              storage_options=dict(moto_s3.storage_options))
    assert not out.exists()


def test_only_metadata_leaves_orphan_files_and_says_how_to_collect_them(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from artifact_gc.cli import cli

    store, _ = orphan_store
    manifest = _mark(store, tmp_path / "mark.parquet")
    before = tree(store.root)
    result = CliRunner().invoke(cli, ["sweep", str(manifest), "--db", store.db_url,
                                      "--only-metadata", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert "gc mark --orphan-files" in result.output
    assert tree(store.root) == before
    pending = plan_sweep(str(manifest), store.db_url, SweepOptions())
    assert pending.orphan_files == len(
        [p for p, (s, _, _) in _orphan_rows(manifest).items() if s == "candidate"])


def test_code_uploads_are_candidates_only_with_the_opt_in(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    store, traps = orphan_store
    root = str(store.root)
    archives = store.leaks["code_uploads"]
    unreferenced, referenced = archives["unreferenced"], archives["referenced"]
    assert unreferenced != referenced and os.path.exists(unreferenced)
    assert os.path.exists(referenced)
    # Without the opt-in every archive is unknown: one protected row for the folder.
    rows = _orphan_rows(_mark(store, tmp_path / "plain.parquet"))
    assert rows[f"{root}/code_uploads"] == ("protected", "unknown", ["unknown_layout"])
    assert not any(p.startswith(f"{root}/code_uploads/") for p in rows)

    manifest = _mark(store, tmp_path / "opt-in.parquet", orphan_code_uploads=True)
    rows = _orphan_rows(manifest)
    assert rows[unreferenced][:2] == ("candidate", "unreferenced_code_upload")
    # The archive a snapshot names is live (no row); a file of another name in the
    # folder (the trap) is still unknown.
    assert referenced not in rows
    assert rows[f"{root}/code_uploads"] == ("protected", "unknown", ["unknown_layout"])
    report = execute(plan_sweep(str(manifest), store.db_url, SweepOptions()))
    assert unreferenced in report.deleted and not report.failures
    assert not os.path.exists(unreferenced)
    assert os.path.exists(referenced) and traps["code_upload"].exists()
    assert os.path.isdir(f"{root}/code_uploads")


def test_the_undo_trash_is_never_a_candidate_and_reported_on_its_own(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    from artifact_gc.manifest.format import read_info

    store, _ = orphan_store
    root = store.root
    # The undo window's trash mirrors what it holds: a step output and a log file
    # whose rows are gone, exactly what would be candidates outside it.
    trash = root / ".artifact-gc-trash" / "sweep-1"
    shaped = [trash / "trainer" / "model" / "0b6c2f2e-6a8e-4e0c-9a55-3f5a0f0f9c12" /
              "abcdef12" / "data.bin",
              trash / "logs" / "0b6c2f2e-6a8e-4e0c-9a55-3f5a0f0f9c13.log"]
    for path in shaped:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"z" * 50)
    backdate(trash, keep_fresh=None)
    manifest = _mark(store, tmp_path / "mark.parquet")
    rows = _orphan_rows(manifest)
    assert rows[f"{root}/.artifact-gc-trash"] == ("protected", "undo_trash", ["undo_trash"])
    assert not any(p.startswith(f"{root}/.artifact-gc-trash/") for p in rows)
    summary = read_info(str(manifest)).orphan_files
    assert summary is not None
    assert summary["undo_trash"] == {"objects": 2, "bytes": 100}
    assert {"orphan_class": "undo_trash", "status": "protected", "paths": 1, "objects": 2,
            "bytes": 100} in summary["by_class"]
    execute(plan_sweep(str(manifest), store.db_url, SweepOptions()))
    assert all(path.exists() for path in shaped)


def test_code_upload_opt_in_is_refused_where_no_snapshot_can_name_an_archive(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    """A schema whose snapshot table has no ``code_path`` column could never vouch for
    an archive: every one would look unnamed. The opt-in is refused before anything is
    written; without it the same store marks as usual."""
    import shutil
    import sqlite3

    from click.testing import CliRunner

    from artifact_gc.cli import cli
    from artifact_gc.errors import EXIT_USAGE

    store, _ = orphan_store
    db = tmp_path / "zenml.db"
    shutil.copyfile(store.db_url.removeprefix("sqlite:///"), db)
    with sqlite3.connect(db) as con:
        con.execute("ALTER TABLE pipeline_snapshot DROP COLUMN code_path")
    out = tmp_path / "mark.parquet"
    args = ["mark", "--db", f"sqlite:///{db}", "--out", str(out), "--orphan-files",
            "--older-than", "0s", "--store-root", f"{store.store_id}={store.root}"]
    refused = CliRunner().invoke(cli, [*args, "--orphan-code-uploads"])
    assert refused.exit_code == EXIT_USAGE, refused.output
    message = [line for line in refused.output.splitlines() if "code_path" in line]
    assert len(message) == 1 and "pipeline_snapshot" in message[0], refused.output
    assert "--orphan-code-uploads" in message[0]
    assert not out.exists()
    marked = CliRunner().invoke(cli, args)
    assert marked.exit_code == 0, marked.output
    assert out.exists()


def test_a_store_root_of_slash_is_refused_before_anything_is_listed(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path
) -> None:
    """Paths are classified relative to ``root + '/'``: a root of ``/`` (every file of
    the machine) is refused with a one-line error, and no manifest is written."""
    from click.testing import CliRunner

    from artifact_gc.cli import cli
    from artifact_gc.errors import EXIT_USAGE

    store, _ = orphan_store
    out = tmp_path / "mark.parquet"
    result = CliRunner().invoke(cli, [
        "mark", "--db", store.db_url, "--out", str(out), "--orphan-files",
        "--store-root", f"{store.store_id}=/"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "the whole filesystem" in result.output
    assert not out.exists()


@pytest.mark.s3
def test_s3_directory_marker_with_contents_is_not_an_empty_directory(
    orphan_store: tuple[OrphanStore, dict[str, Path]], moto_s3: Any, tmp_path: Path
) -> None:
    """A "directory marker" key (ending in "/") that has objects under it is implied by
    them, not an empty directory of the layout: a marker at a custom artifact's folder
    over a user's file must not make that folder an empty-directory candidate, whose
    delete would take the file under it."""
    store, traps = orphan_store
    s3_root = _move_to_s3(store, traps, moto_s3)
    client = moto_s3.client()
    marker = "zenml-store/custom_artifacts/my_marker/"
    inside = marker + "notes.txt"
    client.put_object(Bucket=moto_s3.bucket, Key=marker, Body=b"")
    client.put_object(Bucket=moto_s3.bucket, Key=inside, Body=b"a user's notes")
    # A marker alone is an empty directory of the layout, as before.
    client.put_object(Bucket=moto_s3.bucket, Key="zenml-store/custom_artifacts/empty_one/",
                      Body=b"")
    options = {"store_roots": {store.store_id: s3_root},
               "storage_options": dict(moto_s3.storage_options)}
    manifest = _mark(store, tmp_path / "mark.parquet", older_than=timedelta(0), **options)
    rows = _orphan_rows(manifest)
    folder = f"{s3_root}/custom_artifacts/my_marker"
    assert rows.get(folder, ("", "", []))[0] != "candidate"
    empty = f"{s3_root}/custom_artifacts/empty_one"
    assert rows[empty][:2] == ("candidate", "empty_directory")
    # A file put in the empty directory after the mark, as old as the grace period
    # asks (0 here): the sweep's listing shows the directory no longer empty, and the
    # prefix delete would take the file. (A manifest that took a marker with contents
    # for an empty directory is stopped here the same way.)
    late = "zenml-store/custom_artifacts/empty_one/late.txt"
    client.put_object(Bucket=moto_s3.bucket, Key=late, Body=b"written since")

    report = execute(plan_sweep(str(manifest), store.db_url, SweepOptions(
        batch_size=3, storage_options=dict(moto_s3.storage_options))))
    assert not report.failures
    assert report.protected.get(empty) == "not_empty"
    assert {inside, late} <= _bucket(moto_s3)
