"""A step configuration that names a candidate, committed while the sweep is inside its
batch transaction on MariaDB (issue 10, defect 4).

On MySQL/MariaDB the batch transaction locks the version rows FOR UPDATE, which holds
back new foreign-key references to them and nothing else. A step configuration names
a version in JSON (``external_input_artifacts``), so a snapshot stored while the batch
is between its check and its commit is held back by nothing. These tests store such a
snapshot from another connection at that moment, on a real ZenML store (the MariaDB
scenario store, built by ZenML's own pipelines), against a real ``gc sweep``:

- committed while the sweep is stopped after its deletes: the sweep sees it before
  its commit and keeps the version;
- still being written when the sweep checks: the sweep waits for it, then keeps the
  version;
- written after the last check: the writer waits for the sweep's commit, so the
  version was unnamed for as long as it existed.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.engine import create_engine
from artifact_gc.sweep.verify import BatchItem, verify_references
from artifact_gc.zenml.references import config_filter
from artifact_gc.zenml.schema import VERSION_TABLE, discover
from scenarios.helpers import (
    MARIADB_USER,
    ScenarioStore,
    integrity_problems,
    mariadb_admin_connect,
)
from sweep_hooks import KILL_ENV, PAUSE_ENV, gc_command
from sweep_support import mark_store, version_ids

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]


# ---------------------------------------------------------------------------
# The sweep, stopped inside its batch transaction
# ---------------------------------------------------------------------------


@contextmanager
def _sweep_stopped_before_commit(store: ScenarioStore, manifest: Path, pause: Path
                                 ) -> Iterator[subprocess.Popen[str]]:
    """A real ``gc sweep`` subprocess, stopped inside the transaction of its first batch
    (the batch's rows deleted, not committed); it goes on when the block is left.

    The only use of the sweep's test hooks in this file (``ARTIFACT_GC_TEST_PAUSE_AT``,
    point ``in_db_batch``: the sweep creates ``paused``, then waits for ``resume``)."""
    pause.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZENML_") and k not in (KILL_ENV, PAUSE_ENV)}
    env[PAUSE_ENV] = f"in_db_batch:1:{pause}"
    proc = subprocess.Popen(
        [*gc_command(env), "sweep", str(manifest), "--db", store.db_url, "--yes", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until(lambda: (pause / "paused").exists(), "the sweep's pause", proc)
        yield proc
    except BaseException:
        proc.kill()
        raise
    finally:
        (pause / "resume").touch()


def _wait_until(condition: Callable[[], bool], what: str,
                proc: subprocess.Popen[str] | None = None, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _summary(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, f"gc sweep exited {proc.returncode}:\n{err[-4000:]}"
    summary: dict[str, Any] = json.loads(out)["summary"]
    return summary


def _lock_waits(database: str, user: str) -> int:
    """Transactions of ``user`` in ``database`` waiting for a lock. InnoDB refreshes this
    view only when nobody read it for 100 ms (anyone on the server), so it may lag."""
    admin = mariadb_admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.innodb_trx t"
                " JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id"
                " WHERE p.user = %s AND p.db = %s AND t.trx_state = 'LOCK WAIT'",
                (user, database))
            row = cur.fetchone()
    finally:
        admin.close()
    return int(row[0])


# ---------------------------------------------------------------------------
# The writer: a new snapshot whose step configuration names the victim
# ---------------------------------------------------------------------------


def _database(store: ScenarioStore) -> str:
    return store.sqlalchemy_url.rsplit("/", 1)[1]


def _store_snapshot_naming(cur: Any, victim: str) -> None:
    """Insert (without committing) a new snapshot with one step configuration that
    names ``victim`` as an external input artifact: a copy of the rows ZenML wrote for
    the ``config_reference`` scenario, with the victim's dashed id in place of the one
    it named (what ``ExternalArtifact`` leaves in a snapshot that a schedule or a rerun
    will use)."""
    cur.execute(f"SELECT * FROM step_configuration WHERE {config_filter('config')} LIMIT 1")
    columns = [d[0] for d in cur.description]
    step = dict(zip(columns, cur.fetchone(), strict=True))
    named = json.loads(step["config"])["step_config_overrides"]["external_input_artifacts"]
    old_ids = {entry["id"] for entry in named.values()}
    assert old_ids and victim not in {i.replace("-", "") for i in old_ids}
    cur.execute("SELECT * FROM pipeline_snapshot WHERE id = %s", (step["snapshot_id"],))
    snapshot_columns = [d[0] for d in cur.description]
    snapshot = dict(zip(snapshot_columns, cur.fetchone(), strict=True))
    now = datetime.now(UTC).replace(tzinfo=None)
    snapshot.update(id=uuid.uuid4().hex, name=None, created=now, updated=now)
    config = step["config"]
    for old in old_ids:
        config = config.replace(old, str(uuid.UUID(victim)))
    step.update(id=uuid.uuid4().hex, snapshot_id=snapshot["id"], step_run_id=None,
                config=config, created=now, updated=now)
    for table, row in (("pipeline_snapshot", snapshot), ("step_configuration", step)):
        names = ", ".join(f"`{c}`" for c in row)
        marks = ", ".join(["%s"] * len(row))
        cur.execute(f"INSERT INTO `{table}` ({names}) VALUES ({marks})", tuple(row.values()))


@contextmanager
def _writer(store: ScenarioStore) -> Iterator[Any]:
    """Another session on the store (root, autocommit off): the test commits it."""
    conn = mariadb_admin_connect(_database(store))
    try:
        conn.autocommit(False)
        yield conn
    finally:
        conn.close()


def _assert_kept(store: ScenarioStore, victim: str, summary: dict[str, Any]) -> None:
    assert summary["revived_versions"] == {victim: "config_reference"}, summary
    assert summary["retries"] >= 1, summary  # the batch was rolled back and run again
    assert summary["deleted"] == len(store.candidates) - 1 and summary["failed"] == 0
    remaining = version_ids(store.sqlalchemy_url)
    assert victim in remaining
    assert not (store.candidates - {victim}) & remaining
    assert Path(store.versions[victim]["uri"]).exists()
    assert integrity_problems(store.sqlalchemy_url) == []


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_configuration_committed_inside_the_batch_transaction_keeps_the_version(
    mariadb_scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """The sweep stops with the victim's rows deleted and not committed; another session
    stores and commits a snapshot naming the victim. The sweep must not commit the
    delete: it finds the configuration before its commit, rolls the batch back, runs it
    again and keeps the victim, revived by ``config_reference``."""
    store = mariadb_scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    victim = sorted(store.candidates)[0]
    with _sweep_stopped_before_commit(store, manifest, tmp_path / "pause") as proc, \
            _writer(store) as writer:
        with writer.cursor() as cur:
            _store_snapshot_naming(cur, victim)
        writer.commit()
    _assert_kept(store, victim, _summary(proc))


def test_configuration_being_written_when_the_sweep_checks_keeps_the_version(
    mariadb_scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """The snapshot naming the victim is inserted while the sweep is stopped, and not
    committed until the sweep, resumed, waits for it. The sweep's last check must wait
    for that writer (a plain read would not see its rows and would not wait) and then
    keep the victim."""
    store = mariadb_scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    victim = sorted(store.candidates)[0]
    with _writer(store) as writer:
        with _sweep_stopped_before_commit(store, manifest, tmp_path / "pause") as proc:
            with writer.cursor() as cur:
                _store_snapshot_naming(cur, victim)
        # Resumed: the sweep's last check waits for the writer's rows (at most 5 s, then
        # the batch runs again). Before the fix the sweep committed at once and exited.
        deadline = time.monotonic() + 3
        while (proc.poll() is None and time.monotonic() < deadline
               and not _lock_waits(_database(store), MARIADB_USER)):
            time.sleep(0.25)
        writer.commit()
    _assert_kept(store, victim, _summary(proc))


def test_configuration_written_after_the_last_check_waits_for_the_commit(
    mariadb_scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """What the sweep does at the end of a batch, driven step by step: the version rows
    locked FOR UPDATE, the references checked, then the last check under the reference
    guard. A snapshot naming the version, stored from another session after that
    check, must wait until the batch has committed; it lands after the commit."""
    from artifact_gc.sweep.verify import verify_before_commit  # added with the fix

    store = mariadb_scenario_store
    victim = sorted(store.candidates)[0]
    facts = store.versions[victim]
    item = BatchItem(victim, facts["artifact_id"], (facts["uri"],))
    engine = create_engine(store.sqlalchemy_url)
    schema = discover(engine)
    dialect = dialect_of(engine)
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    committed: dict[str, float] = {}
    errors: list[BaseException] = []
    connected = threading.Event()

    def write() -> None:
        try:
            with _writer(store) as writer:
                connected.set()
                with writer.cursor() as cur:
                    _store_snapshot_naming(cur, victim)
                writer.commit()
                committed["writer"] = time.monotonic()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=write)
    try:
        with dialect.reference_guard(engine) as guard:
            with dialect.locked_transaction(engine, VERSION_TABLE, [victim]) as connection:
                live = verify_references(connection, schema, [item])
                verify_before_commit(guard, connection, schema, [item], since, live,
                                     deleted=[victim])
                assert live.keep_reason(victim) is None
                thread.start()
                assert connected.wait(30)
                # Unheld, two inserts and a commit take milliseconds.
                time.sleep(2)
                assert not errors and "writer" not in committed and thread.is_alive()
            # The batch has committed; the guard lets go only now.
            committed["sweep"] = time.monotonic()
            assert "writer" not in committed
        thread.join(30)
    finally:
        engine.dispose()
    assert not errors, errors
    assert committed["sweep"] < committed["writer"]


# ---------------------------------------------------------------------------
# The URI guard's kept reads (verify.NewPaths): a path created between two batches
# ---------------------------------------------------------------------------


def _sweep_order(store: ScenarioStore, manifest: Path) -> list[str]:
    """Candidates in the order the sweep takes them (plan.sweep_order: on MariaDB, a
    local store's versions by id)."""
    from artifact_gc.sweep.plan import sweep_order

    return sweep_order(str(manifest), store.sqlalchemy_url)


def _live(store: ScenarioStore) -> str:
    """A version that no sweep deletes."""
    return sorted(store.all_ids - store.candidates)[0]


def _store_row_inside(cur: Any, table: str, path: str, **changes: Any) -> str:
    """Insert a copy of a row ZenML wrote to ``table``, with a new id, created now,
    whose ``uri`` is ``path`` (and ``changes``); return its id."""
    cur.execute(f"SELECT * FROM `{table}` LIMIT 1")
    columns = [d[0] for d in cur.description]
    row = dict(zip(columns, cur.fetchone(), strict=True))
    now = datetime.now(UTC).replace(tzinfo=None)
    row.update(id=uuid.uuid4().hex, uri=path, created=now, updated=now, **changes)
    names = ", ".join(f"`{c}`" for c in row)
    marks = ", ".join(["%s"] * len(row))
    cur.execute(f"INSERT INTO `{table}` ({names}) VALUES ({marks})", tuple(row.values()))
    return str(row["id"])


def test_path_created_between_batches_keeps_the_files(
    mariadb_scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """A real ``gc sweep`` (one version a batch) is stopped between two batches, when
    the URI guard has read the new rows and kept its answer. Another session then
    commits a version whose URI lies inside a candidate ahead, and a visualization
    inside another: the next batches must see both (the digest of the ids changed),
    keep those two candidates with their files, and delete the rest."""
    store = mariadb_scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    order = _sweep_order(store, manifest)
    assert len(order) >= 8, order
    nest_version, nest_visualization = order[5], order[7]
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZENML_") and k not in (KILL_ENV, PAUSE_ENV)}
    env[PAUSE_ENV] = f"after_intent:3:{pause}"
    proc = subprocess.Popen(
        [*gc_command(env), "sweep", str(manifest), "--db", store.db_url, "--yes", "--json",
         "--batch-size", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until(lambda: (pause / "paused").exists(), "the sweep's pause", proc)
        with _writer(store) as writer:
            with writer.cursor() as cur:
                _store_row_inside(
                    cur, "artifact_version",
                    os.path.join(store.versions[nest_version]["uri"], "nested_since_mark"),
                    version=f"nested-{uuid.uuid4().hex[:8]}", version_number=None)
                _store_row_inside(
                    cur, "artifact_visualization",
                    os.path.join(store.versions[nest_visualization]["uri"], "viz_since_mark"),
                    artifact_version_id=_live(store))
            writer.commit()
    finally:
        (pause / "resume").touch()
    summary = _summary(proc)
    kept = {nest_version, nest_visualization}
    assert set(summary["protected_versions"]) == kept, summary
    assert all(reason.startswith("uri_overlap_since_mark")
               for reason in summary["protected_versions"].values()), summary
    assert summary["deleted"] == len(store.candidates) - 2 and summary["failed"] == 0
    remaining = version_ids(store.sqlalchemy_url)
    assert kept <= remaining and not (store.candidates - kept) & remaining
    for vid in kept:
        assert Path(store.versions[vid]["uri"]).exists()
    assert integrity_problems(store.sqlalchemy_url) == []


def test_kept_new_paths_are_read_again_when_a_row_is_added(
    mariadb_scenario_store: ScenarioStore,
) -> None:
    """NewPaths, driven batch by batch: the first read is in full; while nothing but
    the batches' own rows goes, the next reads are kept (and give what a full read
    would); a row added by someone else makes the next read a full one, which finds it."""
    from artifact_gc.sweep.rows import Cascade
    from artifact_gc.sweep.verify import NewPaths, _read_new_paths

    store = mariadb_scenario_store
    engine = create_engine(store.sqlalchemy_url)
    schema = discover(engine)
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    kept = NewPaths.of(engine, schema, since)
    assert kept is not None
    victims = sorted(store.candidates)[:2]

    def item(vid: str) -> BatchItem:
        return BatchItem(vid, store.versions[vid]["artifact_id"], (store.versions[vid]["uri"],))

    def read(vid: str) -> set[tuple[str, str]]:
        with engine.connect() as connection:
            found = set(kept.read(connection, [item(vid)]))
            assert found == set(_read_new_paths(connection, schema, since))
        return found

    def delete(vid: str) -> None:
        # As a batch deletes: the version and every row that goes with it.
        with engine.begin() as connection:
            Cascade.discover(engine, schema).delete(connection, [vid])

    try:
        first = read(victims[0])
        assert (kept.full_reads, kept.kept_reads) == (1, 0)
        delete(victims[0])  # the batch's own rows, reported: the digest still vouches
        kept.deleted([victims[0]])
        second = read(victims[1])
        assert (kept.full_reads, kept.kept_reads) == (1, 1)
        assert second == {p for p in first if p[1] != victims[0]}
        with _writer(store) as writer:
            with writer.cursor() as cur:
                _store_row_inside(cur, "artifact_visualization", "/elsewhere/new",
                                  artifact_version_id=_live(store))
            writer.commit()
        third = read(victims[1])
        assert (kept.full_reads, kept.kept_reads) == (2, 1)
        assert third - second == {("/elsewhere/new", _live(store))}
        read(victims[1])
        assert (kept.full_reads, kept.kept_reads) == (2, 2)
    finally:
        engine.dispose()

