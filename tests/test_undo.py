"""The undo window end to end on real ZenML 0.98 stores: sweep, then gc restore, then
ZenML's own client sees every version as before (tags, metadata, model links) and
the database equals the one before the sweep, table by table; partial restores,
refused restores (an id, a unique key, a path reused), gc trash empty, gc history
and --no-undo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.errors import EXIT_NOT_RESTORABLE, EXIT_RESTORE_CONFLICT
from artifact_gc.manifest.reasons import PROTECT_ROWS_DELETED_ELSEWHERE
from artifact_gc.storage.trash import TRASH_DIR
from artifact_gc.sweep import hooks as points
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.hooks import SweepHooks
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.undo.area import UndoArea
from artifact_gc.undo.restore import RestoreOptions, execute_restore, plan_restore
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree, make_engine
from sweep_support import assert_swept, mark_store, uri_paths, version_ids, zenml


def full_snapshot(db_url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, every column (timestamps included), sorted."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            out = {}
            quote = conn.dialect.identifier_preparer.quote
            for table in sorted(sa.inspect(conn).get_table_names()):
                rows = conn.execute(sa.text(f"SELECT * FROM {quote(table)}")).all()
                out[table] = sorted(tuple(map(repr, r)) for r in rows)
            return out
    finally:
        engine.dispose()


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(t for t in set(a) | set(b) if a.get(t) != b.get(t))


def _files(root: Path) -> dict[str, int]:
    """The store's files outside the trash."""
    return {k: v for k, v in list_tree(root).items() if not k.startswith(TRASH_DIR)}


def _gc(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _sweep(store: ScenarioStore, manifest: Path, **options: Any) -> Any:
    return execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions(**options)))


def _round_trip(store: ScenarioStore, tmp_path: Path) -> None:
    db_before = full_snapshot(store.sqlalchemy_url)
    files_before = _files(store.store_root)
    seen_before = zenml(store, "describe")
    manifest = mark_store(store, tmp_path / "mark.parquet")
    footprints = uri_paths(store, store.all_ids)
    report = _sweep(store, manifest, batch_size=4, workers=2)
    assert set(report.deleted) == store.candidates and not report.failures
    # The sweep is what it always was, and its deletes are kept restorable.
    assert_swept(store, store.candidates, files_before, footprints, load=False)
    area = UndoArea(str(manifest) + ".journal")
    assert len(area.sweeps()) == 1 and area.row_segments()
    restored = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes")
    assert restored.exit_code == 0, restored.output
    assert _differences(full_snapshot(store.sqlalchemy_url), db_before) == []
    assert _files(store.store_root) == files_before
    assert integrity_problems(store.sqlalchemy_url) == []
    loaded = zenml(store, "load")
    assert loaded == {"loaded": len(store.all_ids), "failed": {}}
    assert zenml(store, "describe") == seen_before
    # A second restore finds everything back and changes nothing.
    again = plan_restore(str(manifest), store.sqlalchemy_url)
    assert again.items == [] and again.already_restored == len(store.candidates)


def test_round_trip_sqlite_local(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    _round_trip(scenario_store, tmp_path)


def test_round_trip_mariadb(mariadb_scenario_store: ScenarioStore, tmp_path: Path) -> None:
    _round_trip(mariadb_scenario_store, tmp_path)


def test_partial_restore_with_where(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    _sweep(store, manifest)
    chosen = store.ids("candidate", scenario="tagged_metadata")
    assert chosen and chosen < store.candidates
    result = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes",
                 "--where", "item_id IN (" + ", ".join(f"'{v}'" for v in sorted(chosen)) + ")")
    assert result.exit_code == 0, result.output
    assert version_ids(store.sqlalchemy_url) == store.all_ids - store.candidates | chosen
    assert integrity_problems(store.sqlalchemy_url) == []
    seen = zenml(store, "describe")
    for vid in chosen:
        assert seen[vid]["tags"] and seen[vid]["metadata"], seen[vid]
    for vid in chosen:
        assert all(Path(p).exists() for p in uri_paths(store, {vid})[vid])
    # The rest comes back with a second restore.
    rest = plan_restore(str(manifest), store.sqlalchemy_url)
    assert {i.item_id for i in rest.items} == store.candidates - chosen
    execute_restore(rest)
    assert version_ids(store.sqlalchemy_url) == store.all_ids
    assert zenml(store, "load")["failed"] == {}


def test_restore_refused_on_an_id_conflict(scenario_store: ScenarioStore,
                                          tmp_path: Path) -> None:
    """A row with a swept row's id and other content: refused, exit 11, naming it."""
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    _sweep(store, manifest)
    victim = sorted(store.candidates)[0]
    engine = make_engine(store.sqlalchemy_url)
    with engine.begin() as conn:
        artifact_id = conn.execute(sa.text(
            "SELECT artifact_id FROM artifact_version LIMIT 1")).scalar_one()
        columns = [c["name"] for c in sa.inspect(conn).get_columns("artifact_version")]
        # A new version that took the swept version's id (a hostile or buggy writer).
        conn.execute(sa.text(
            f"INSERT INTO artifact_version ({', '.join(columns)}) SELECT "
            + ", ".join(":id" if c == "id" else "'reused-9999'" if c == "version"
                        else "9999" if c == "version_number" else c for c in columns)
            + " FROM artifact_version WHERE artifact_id = :a LIMIT 1"),
            {"id": victim, "a": artifact_id})
    engine.dispose()
    db_before = full_snapshot(store.sqlalchemy_url)
    files_before = list_tree(store.store_root)
    result = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes")
    assert result.exit_code == EXIT_RESTORE_CONFLICT, result.output
    assert "artifact_version row " + victim in result.output
    assert len([line for line in result.output.splitlines() if "FAILED" in line]) == 1
    assert full_snapshot(store.sqlalchemy_url) == db_before
    assert list_tree(store.store_root) == files_before


def test_restore_refused_on_a_path_conflict(scenario_store: ScenarioStore,
                                           tmp_path: Path) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    _sweep(store, manifest)
    victim = sorted(store.candidates)[0]
    uri = Path(store.versions[victim]["uri"])
    uri.mkdir(parents=True, exist_ok=True)
    (uri / "someone_elses.txt").write_text("written after the sweep")
    db_before = full_snapshot(store.sqlalchemy_url)
    files_before = list_tree(store.store_root)
    result = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes")
    assert result.exit_code == EXIT_RESTORE_CONFLICT, result.output
    assert str(uri) in result.output
    assert full_snapshot(store.sqlalchemy_url) == db_before
    assert list_tree(store.store_root) == files_before
    # Narrowed past the conflict, the rest comes back.
    result = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes",
                 "--where", f"item_id <> '{victim}'")
    assert result.exit_code == 0, result.output
    assert version_ids(store.sqlalchemy_url) == store.all_ids - {victim}


def test_restore_after_a_sweep_killed_while_it_moved_files(scenario_store: ScenarioStore,
                                                            tmp_path: Path) -> None:
    """``gc sweep`` killed (SIGKILL) after the first chunk of a batch's files went into
    its trash, run again as documented, then ``gc restore``: the sweep that resumed the
    batch writes its final events, but the files the killed one moved are in the killed
    one's trash. The restore finds them there: everything comes back, rows and files."""
    from crash_support import Kill, run_gc

    store = scenario_store
    db_before = full_snapshot(store.sqlalchemy_url)
    files_before = _files(store.store_root)
    manifest = mark_store(store, tmp_path / "mark.parquet")
    command = ["sweep", str(manifest), "--db", store.db_url, "--yes", "--batch-size", "3"]
    killed = run_gc(command, kill=Kill("point", point=points.IN_FILES, hit=1))
    assert killed.killed or killed.returncode == -9, killed.stderr
    trash = store.store_root / TRASH_DIR
    assert len(list(trash.iterdir())) == 1  # the killed sweep's, with part of a batch
    resumed = run_gc(command)
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(trash.iterdir())) == 2
    restored = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes")
    assert restored.exit_code == 0, restored.output
    assert "nothing to bring back" not in restored.output, restored.output
    assert _differences(full_snapshot(store.sqlalchemy_url), db_before) == []
    assert _files(store.store_root) == files_before
    assert integrity_problems(store.sqlalchemy_url) == []


class _StopAfterFirstCommit(SweepHooks):
    """Stop a sweep once its first batch's rows are committed, its files not yet moved
    (what a kill -9 at that instant leaves)."""

    def point(self, name: str) -> None:
        if name == points.AFTER_COMMIT:
            raise _Stopped


class _Stopped(Exception):
    pass


def test_restore_of_a_sweep_whose_files_another_sweep_took(scenario_store: ScenarioStore,
                                                           tmp_path: Path) -> None:
    """Two manifests of one store (two marks, or a mark and its gc filter), the sweep of
    the first stopped after a batch's commit, then the second swept: the second finds
    that batch's rows gone and its files present, and moves the files into its own
    trash. Restoring the first sweep must then bring back every version whole, or
    refuse: never rows whose files are elsewhere, with a success. The second sweep
    leaves those files (``rows_deleted_elsewhere``); the first one's resume takes them."""
    store = scenario_store
    footprints = uri_paths(store, store.all_ids)
    first = mark_store(store, tmp_path / "first.parquet")
    second = mark_store(store, tmp_path / "second.parquet")
    with pytest.raises(_Stopped):
        execute(plan_sweep(str(first), store.sqlalchemy_url, SweepOptions(batch_size=2)),
                hooks=_StopAfterFirstCommit())
    taken = store.candidates - version_ids(store.sqlalchemy_url)
    assert len(taken) == 2 and all(Path(p).exists() for v in taken for p in footprints[v])
    second_report = _sweep(store, second)
    assert not second_report.failures
    assert second_report.protected == dict.fromkeys(taken, PROTECT_ROWS_DELETED_ELSEWHERE)
    assert all(Path(p).exists() for v in taken for p in footprints[v])
    assert not _sweep(store, first, batch_size=2).failures
    assert not any(Path(p).exists() for v in taken for p in footprints[v])
    result = _gc("restore", str(first), "--db", store.sqlalchemy_url, "--yes")
    back = version_ids(store.sqlalchemy_url) & taken
    without_files = sorted(v for v in back if not all(Path(p).exists() for p in footprints[v]))
    assert result.exit_code == 0, result.output
    assert back == taken and not without_files, (without_files, result.output)


def test_no_undo_keeps_todays_behaviour(scenario_store: ScenarioStore, tmp_path: Path
                                        ) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    result = _gc("sweep", str(manifest), "--db", store.sqlalchemy_url, "--yes", "--no-undo")
    assert result.exit_code == 0, result.output
    assert "Undo: none" in result.output
    assert_swept(store, store.candidates, before, footprints, load=False)
    assert not (store.store_root / TRASH_DIR).exists()
    assert not (Path(str(manifest) + ".journal") / "undo").exists()
    result = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes")
    assert result.exit_code == EXIT_NOT_RESTORABLE, result.output
    assert "--no-undo" in result.output


def test_trash_empty_and_history(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    store = scenario_store
    location = tmp_path / "manifests"
    location.mkdir()
    manifest = mark_store(store, location / "mark.parquet")
    result = _gc("sweep", str(manifest), "--db", store.sqlalchemy_url, "--yes",
                 "--undo-window", "1d")
    assert result.exit_code == 0, result.output
    assert "Undo window: 1d" in result.output and TRASH_DIR in result.output
    history = json.loads(_gc("history", "--dir", str(location), "--json").output)
    (undo,) = history[0]["undo"]
    assert undo["state"] == "restorable" and undo["window"] == "1d"
    trash = store.store_root / TRASH_DIR
    assert any(trash.rglob("*"))
    # Inside the window nothing goes.
    result = _gc("trash", "empty", str(location), "--db", store.sqlalchemy_url, "--yes")
    assert result.exit_code == 0 and "0 sweep(s) to purge, 1 still" in result.output
    assert any(trash.rglob("*"))
    dry = _gc("trash", "empty", str(location), "--db", store.sqlalchemy_url,
              "--older-than", "0", "--dry-run")
    assert dry.exit_code == 0 and "would purge 1 sweep" in dry.output
    assert any(trash.rglob("*"))
    result = _gc("trash", "empty", str(location), "--db", store.sqlalchemy_url, "--yes",
                 "--older-than", "0")
    assert result.exit_code == 0, result.output
    assert not [p for p in trash.rglob("*") if p.is_file()]
    assert not UndoArea(str(manifest) + ".journal").row_segments()
    history = json.loads(_gc("history", "--dir", str(location), "--json").output)
    assert history[0]["undo"][0]["state"] == "purged"
    result = _gc("restore", str(manifest), "--db", store.sqlalchemy_url, "--yes")
    assert result.exit_code == EXIT_NOT_RESTORABLE and "purged" in result.output
    assert integrity_problems(store.sqlalchemy_url) == []
    assert zenml(store, "load")["failed"] == {}


def test_restore_dry_run_changes_nothing(scenario_store: ScenarioStore, tmp_path: Path
                                         ) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    _sweep(store, manifest)
    db_before = full_snapshot(store.sqlalchemy_url)
    tree_before = list_tree(store.store_root, include_dirs=True)
    journal = sorted(os.listdir(str(manifest) + ".journal/undo"))
    report = execute_restore(plan_restore(str(manifest), store.sqlalchemy_url,
                                          RestoreOptions(dry_run=True)))
    assert report.items == len(store.candidates)
    # The dry run names the files it would bring back, as the restore itself counts them.
    assert report.files_restored > 0
    assert full_snapshot(store.sqlalchemy_url) == db_before
    assert list_tree(store.store_root, include_dirs=True) == tree_before
    assert sorted(os.listdir(str(manifest) + ".journal/undo")) == journal


def _bucket(client: Any, bucket: str) -> dict[str, bytes]:
    """Every current object of the bucket with its body, outside the trash prefix
    (where the versioned undo keeps the version ids it recorded)."""
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            if f"/{TRASH_DIR}/" in f"/{entry['Key']}":
                continue
            out[entry["Key"]] = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    return out


def test_round_trip_mariadb_s3_versioned(mariadb_scenario_store: ScenarioStore,
                                         moto_s3: Any, tmp_path: Path) -> None:
    """The MariaDB scenario store with its files moved to a versioned bucket (moto):
    the sweep only adds delete markers, the restore removes them, and the database
    and the bucket's current objects equal the ones before, table by table, key by
    key. (ZenML's client is not asked to load here: the scenario's artifact store
    component is the local flavor, so its loads read local paths; the local round
    trips above run that check.)"""
    from s3_support import upload

    store = mariadb_scenario_store
    client = moto_s3.client()
    bucket = moto_s3.bucket
    client.put_bucket_versioning(Bucket=bucket,
                                 VersioningConfiguration={"Status": "Enabled"})
    root = moto_s3.url("zenml-store")
    local = str(store.store_root)
    upload(client, bucket, [(f"zenml-store/{rel}", (store.store_root / rel).read_bytes())
                            for rel in list_tree(store.store_root)])
    engine = make_engine(store.sqlalchemy_url)
    with engine.begin() as conn:
        for table in ("artifact_version", "artifact_visualization"):
            conn.execute(sa.text(f"UPDATE {table} SET uri = REPLACE(uri, :a, :b)"),
                         {"a": local, "b": root})
    engine.dispose()
    db_before = full_snapshot(store.sqlalchemy_url)
    bucket_before = _bucket(client, bucket)
    manifest = mark_store(store, tmp_path / "mark.parquet",
                          store_roots={store.artifact_store_id: root},
                          storage_options=moto_s3.storage_options)
    plan = plan_sweep(str(manifest), store.sqlalchemy_url,
                      SweepOptions(batch_size=4, storage_options=moto_s3.storage_options))
    assert plan.as_dict()["undo"]["files"][store.artifact_store_id].startswith(
        "S3 bucket versioning")
    report = execute(plan)
    assert set(report.deleted) == store.candidates and not report.failures
    swept = _bucket(client, bucket)
    gone = set(bucket_before) - set(swept)
    assert gone and all(swept[k] == bucket_before[k] for k in swept)
    assert integrity_problems(store.sqlalchemy_url) == []
    restore = execute_restore(plan_restore(
        str(manifest), store.sqlalchemy_url,
        RestoreOptions(storage_options=moto_s3.storage_options)))
    assert restore.items == len(store.candidates)
    assert _differences(full_snapshot(store.sqlalchemy_url), db_before) == []
    assert _bucket(client, bucket) == bucket_before
    markers = [m["Key"] for page in client.get_paginator("list_object_versions").paginate(
        Bucket=bucket) for m in page.get("DeleteMarkers", []) if m["IsLatest"]]
    assert [k for k in markers if f"/{TRASH_DIR}/" not in k] == []


def test_policy_undo_window() -> None:
    """``[undo]`` in a policy: the default, a window, off, and errors with line and key;
    the shipped example sets it."""
    from datetime import timedelta

    from artifact_gc.collect.policy import PolicyError, load_policy, parse_policy

    base = '[manifests]\nlocation = "/tmp/m"\n'
    assert parse_policy(base, {}).undo_window == timedelta(days=7)
    assert parse_policy(base + '[undo]\nwindow = "36h"\n', {}).undo_window == timedelta(hours=36)
    assert parse_policy(base + '[undo]\nwindow = "0"\n', {}).undo_window is None
    assert parse_policy(base + "[undo]\nenabled = false\n", {}).undo_window is None
    for text, line, key in (('[undo]\nwindow = "soon"\n', 4, "undo.window"),
                            ("[undo]\nwindow = 7\n", 4, "undo.window"),
                            ("[undo]\nenabled = 1\n", 4, "undo.enabled"),
                            ('[undo]\nenabled = false\nwindow = "1d"\n', 5, "undo.window"),
                            ("[undo]\nwindw = 1\n", 4, "undo.windw")):
        with pytest.raises(PolicyError) as caught:
            parse_policy(base + text, {}, source="p.toml")
        assert (caught.value.line, caught.value.key) == (line, key), caught.value.message
        assert caught.value.message.startswith(f"p.toml:{line}: {key}: ")
    example = Path(__file__).resolve().parent.parent / "examples" / "artifact-gc.toml"
    policy = load_policy(example, {"ZENML_DB_PASSWORD": "x", "AWS_ACCESS_KEY_ID": "x",
                                   "AWS_SECRET_ACCESS_KEY": "x"})
    assert policy.undo_window == timedelta(days=7)
    assert policy.as_dict()["undo_window"] == "1w"
