"""gc mark reads one consistent snapshot of the store, waits for locks, and fails
cleanly past its lock timeout (issue 14, item 1).

- A reference moved from one table to another between two of the mark's table reads
  is seen before or after the move, never neither (SQLite and MariaDB).
- A SQLite store write-locked for a moment is waited for; locked past
  ``--lock-timeout`` the mark exits 3 with one line.
- Marks in a loop while real ZenML pipelines write to the SQLite store: none fails,
  and each manifest decides every version as a mark taken at rest does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.mark import inputs
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.progress import NullProgress
from artifact_gc.zenml.schema import discover
from scenarios.helpers import BUILD_ENV, ScenarioStore, make_engine

ZENML_SCRIPT = Path(__file__).with_name("sweep_zenml.py")

#: (table, artifact column, reason) of the two references the consistency test moves.
MODEL_LINK = ("model_versions_artifacts", "artifact_version_id", "model_link")
STEP_OUTPUT = ("step_run_output_artifact", "artifact_id", "step_output")


def _decisions(url: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {row["artifact_version_id"]: (row["status"], tuple(sorted(row["reasons"])))
            for row in pq.read_table(url).to_pylist()}


def _copy_reference(cursor: Any, marker: str, table: str, column: str, version: str) -> None:
    """A new row of ``table`` referring to ``version``: a copy of one of its rows with
    the artifact column (and the row's own id, if it has one) replaced."""
    cursor.execute(f"SELECT * FROM {table} LIMIT 1")
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone(), strict=True))
    row[column] = version
    if "id" in row:
        row["id"] = uuid.uuid4().hex
    cursor.execute(f"INSERT INTO {table} ({', '.join(row)}) "
                   f"VALUES ({', '.join(marker for _ in row)})", list(row.values()))


class _MoveBetweenReads(NullProgress):
    """Progress that, right after the mark has read table number ``after``, moves a
    version's only reference from a table read later to one read already, in a
    transaction of its own that it commits if the store lets it."""

    def __init__(self, after: int, move: Callable[[], None]) -> None:
        self.after, self.move = after, move
        self.stage_name = ""
        self.read = 0
        self.outcome: str | None = None

    def stage(self, name: str, total: int | None = None, unit: str = "items") -> None:
        self.stage_name, self.read = name, 0

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        if self.stage_name != "reading metadata":
            return
        self.read += count
        if self.read == self.after and self.outcome is None:
            try:
                self.move()
                self.outcome = "committed"
            except (sa.exc.OperationalError, sqlite3.OperationalError) as exc:
                # SQLite: the mark's read transaction holds the shared lock, so no
                # commit can land in the middle of its reads.
                assert "locked" in str(exc), exc
                self.outcome = "blocked"


def _reference_moved_between_reads(store: ScenarioStore, tmp_path: Path) -> None:
    engine = make_engine(store.sqlalchemy_url)
    schema = discover(engine)
    tables = [reference.table for reference in schema.references]
    first, second = sorted([MODEL_LINK, STEP_OUTPUT], key=lambda r: tables.index(r[0]))
    # The victim's only reference is in the table read second; the move adds one in
    # the table read first, then deletes it from the second: a mark that read the
    # first table before the move and the second after it sees no reference at all.
    victim = sorted(v for v, facts in store.versions.items()
                    if facts["status"] == "reachable" and facts["reasons"] == [second[2]])[0]
    names = [read.name for read
             in inputs._reads(engine, dialect_of(engine), schema, sa.inspect(engine), None)]
    after = names.index(f"ref_{tables.index(first[0])}") + 1
    assert after < names.index(f"ref_{tables.index(second[0])}") + 1

    writer = sa.create_engine(store.sqlalchemy_url, poolclass=sa.pool.NullPool)

    def change(cursor: Any, marker: str) -> None:
        _copy_reference(cursor, marker, first[0], first[1], victim)
        cursor.execute(f"DELETE FROM {second[0]} WHERE {second[1]} = {marker}", [victim])

    def move() -> None:
        if store.backend != "sqlite":
            with writer.begin() as connection:
                change(connection.connection.cursor(), "%s")
            return
        # An exclusive transaction from the start, as a ZenML commit ends: it keeps
        # every new reader out while it waits for the readers it found, so a mark
        # whose table reads are transactions of their own cannot read past it.
        holder = sqlite3.connect(_sqlite_file(store), timeout=0.2, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            change(holder.cursor(), "?")
            holder.execute("COMMIT")
        finally:
            holder.close()

    progress = _MoveBetweenReads(after, move)
    out = tmp_path / "during.parquet"
    mark(store.sqlalchemy_url, str(out), MarkOptions(older_than=timedelta(0)),
         progress=progress)
    assert progress.outcome in ("committed", "blocked")
    status, reasons = _decisions(str(out))[victim]
    # The snapshot began before the move: the mark saw the store as it was.
    assert status == "reachable" and second[2] in reasons and first[2] not in reasons, (
        progress.outcome, status, reasons)
    if progress.outcome == "blocked":
        move()
    after_move = tmp_path / "after.parquet"
    mark(store.sqlalchemy_url, str(after_move), MarkOptions(older_than=timedelta(0)))
    status, reasons = _decisions(str(after_move))[victim]
    assert status == "reachable" and first[2] in reasons and second[2] not in reasons, (
        status, reasons)
    writer.dispose()
    engine.dispose()


def test_a_reference_moved_between_two_table_reads_is_not_missed_sqlite(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    _reference_moved_between_reads(scenario_store, tmp_path)


@pytest.mark.mariadb
def test_a_reference_moved_between_two_table_reads_is_not_missed_mariadb(
    mariadb_scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    _reference_moved_between_reads(mariadb_scenario_store, tmp_path)


def _sqlite_file(store: ScenarioStore) -> str:
    return store.sqlalchemy_url.removeprefix("sqlite:///")


def test_a_briefly_locked_sqlite_store_is_waited_for(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """A writer holds the store's write lock when the mark starts, links a candidate
    to a model, and commits a moment later: the mark waits and sees the link."""
    victim = sorted(scenario_store.candidates)[0]
    holder = sqlite3.connect(_sqlite_file(scenario_store), isolation_level=None,
                             check_same_thread=False)
    assert holder.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # ZenML's
    holder.execute("BEGIN EXCLUSIVE")
    _copy_reference(holder.cursor(), "?", *MODEL_LINK[:2], victim)
    committed = threading.Event()

    def commit() -> None:
        holder.execute("COMMIT")
        committed.set()

    timer = threading.Timer(1.0, commit)
    timer.start()
    try:
        out = tmp_path / "m.parquet"
        mark(scenario_store.sqlalchemy_url, str(out),
             MarkOptions(older_than=timedelta(0), lock_timeout=timedelta(seconds=60)))
    finally:
        timer.join()
        holder.close()
    assert committed.is_set()
    # An exclusive lock keeps every reader out until the commit: the mark read after it.
    assert _decisions(str(out))[victim] == ("reachable", ("model_link",))


def test_a_store_locked_past_the_lock_timeout_fails_with_exit_3(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    holder = sqlite3.connect(_sqlite_file(scenario_store), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = CliRunner().invoke(cli, [
            "mark", "--db", scenario_store.sqlalchemy_url, "--out",
            str(tmp_path / "m.parquet"), "--lock-timeout", "1s"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "--lock-timeout" in lines[0] and "1 s" in lines[0], lines[0]
    assert not (tmp_path / "m.parquet").exists()


def test_marks_while_real_pipelines_write_never_fail_and_decide_as_at_rest(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """Real ZenML pipelines (each consumes a reachable version, so no decision of the
    store's own versions changes) run while marks run back to back. Versions created
    since the writer started are inside every mark's grace period."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(BUILD_ENV)
    env.update(scenario_store.env())
    consumed = sorted(scenario_store.reachable)[:3]
    spec = tmp_path / "writer.json"
    spec.write_text(json.dumps({"name": "snapshot", "ready": None, "go": None,
                                "actions": [{"kind": "consume", "id": v} for v in consumed]}))
    started = datetime.now()
    writer = subprocess.Popen([sys.executable, str(ZENML_SCRIPT), "writer", str(spec)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)

    def grace() -> timedelta:
        # Everything created before the writer started is decided by its references.
        return datetime.now() - started + timedelta(seconds=1)

    during: list[dict[str, tuple[str, tuple[str, ...]]]] = []
    failures: list[str] = []
    try:
        while writer.poll() is None or not during:
            out = tmp_path / f"during-{len(during)}.parquet"
            try:
                mark(scenario_store.sqlalchemy_url, str(out), MarkOptions(older_than=grace()))
                during.append(_decisions(str(out)))
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(0.1)
        stdout, stderr = writer.communicate(timeout=600)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()
    assert writer.returncode == 0, stderr[-3000:]
    results = json.loads(stdout.strip().splitlines()[-1])["results"]
    assert all(r["ok"] for r in results), results
    assert not failures, failures
    assert len(during) >= 3, f"only {len(during)} marks ran while the pipelines wrote"

    rest = tmp_path / "rest.parquet"
    mark(scenario_store.sqlalchemy_url, str(rest), MarkOptions(older_than=grace()))
    at_rest = _decisions(str(rest))
    # The store's own versions are decided as at rest. A version the pipelines made is
    # in the grace period: protected while its step runs (ZenML writes the version
    # before its output link), reachable once the link is there; never a candidate.
    own = scenario_store.all_ids
    for decisions in during:
        assert set(decisions) <= set(at_rest)
        assert {v: decisions[v][0] for v in own} == {v: at_rest[v][0] for v in own}
        candidates = {v for v, d in decisions.items() if d[0] == "candidate"}
        assert candidates == {v for v, d in at_rest.items() if d[0] == "candidate"}
        assert all(decisions[v][0] in ("protected", "reachable") for v in set(decisions) - own)
