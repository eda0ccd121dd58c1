"""``gc status`` and the journal's item state: a read never takes the sweep lock, and
every state is defined once (sweep_state.sql).

These tests need no database: ``gc status`` reads only the manifest and its journal.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.errors import SweepLocked
from artifact_gc.manifest.reasons import ITEM_KIND_VERSION, STATUS_CANDIDATE
from artifact_gc.sweep.journal import (
    EVENT_DELETED,
    EVENT_FAILED,
    EVENT_FILES_DELETED,
    EVENT_INTENT,
    EVENT_PROTECTED,
    EVENT_REVIVED,
    EVENT_ROWS_DELETED,
    FINAL_EVENTS,
    STATE_IN_PROGRESS,
    STATE_PENDING,
    STATE_VIEW,
    Event,
    Journal,
)
from artifact_gc.sweep.status import sweep_status
from sweep_support import JOURNAL_COLUMNS_BEFORE_ITEM_KINDS

FIXTURE = Path(__file__).parent / "fixtures" / "manifest-format-1.0-tool-0.1.0.parquet"


@pytest.fixture
def manifest(tmp_path: Path) -> str:
    return str(shutil.copy(FIXTURE, tmp_path / "mark.parquet"))


def _candidates(manifest: str) -> list[str]:
    import duckdb

    rows = duckdb.sql(f"SELECT artifact_version_id FROM read_parquet('{manifest}') "
                      f"WHERE status = '{STATUS_CANDIDATE}' ORDER BY 1").fetchall()
    return [str(r[0]) for r in rows]


def test_a_status_read_never_turns_away_a_sweep_starting_at_that_instant(
    manifest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 6 of issue 10: ``gc status`` took the sweep lock for a moment to see
    whether a sweep held it, so a sweep that started at that instant was refused
    (exit 7). Here the moment lasts: any flock the status read takes is held until a
    sweep has tried to start. The status read must take none."""
    with Journal(manifest).locked():  # an earlier sweep left its lock file
        pass
    real_flock = fcntl.flock
    holding, tried = threading.Event(), threading.Event()
    reader: dict[str, Any] = {}

    def flock(fd: int, operation: int) -> None:
        real_flock(fd, operation)
        if threading.current_thread() is reader.get("thread") and not operation & fcntl.LOCK_UN:
            holding.set()
            tried.wait(30)

    monkeypatch.setattr(fcntl, "flock", flock)
    reader["thread"] = threading.Thread(
        target=lambda: reader.update(status=sweep_status(manifest)))
    reader["thread"].start()
    try:
        while not holding.is_set() and reader["thread"].is_alive():
            holding.wait(0.01)
        try:
            with Journal(manifest).locked():  # the sweep that starts at that instant
                started = True
        except SweepLocked:
            started = False
    finally:
        tried.set()
        reader["thread"].join(30)
    assert started, "gc status held the sweep lock: a sweep starting then was refused"
    assert not holding.is_set()
    assert reader["status"].running is False


def test_status_tells_a_running_sweep_from_a_finished_or_killed_one(manifest: str) -> None:
    journal = Journal(manifest)
    assert sweep_status(manifest).running is False  # never swept: no lock file
    with journal.locked():
        assert sweep_status(manifest).running is True
        assert journal.lock.holder() == os.getpid()
        with pytest.raises(SweepLocked, match=f"pid {os.getpid()}"):
            journal.lock.refuse_if_held()
    assert sweep_status(manifest).running is False
    assert not journal.lock.path.exists()  # emptied and removed before the lock went
    # A sweep killed with SIGKILL leaves its record behind: its process is gone.
    code = ("import os, signal, sys\n"
            "from artifact_gc.sweep.journal import Journal\n"
            "with Journal(sys.argv[1]).locked():\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.Popen([sys.executable, "-c", code, manifest])
    assert killed.wait(60) == -signal.SIGKILL
    assert journal.lock.path.read_text().split()[0] == str(killed.pid)
    assert sweep_status(manifest).running is False
    journal.lock.refuse_if_held()
    # A pid that now belongs to a process started at another time (this one) is not
    # the sweep's; nor is the bare pid an older release left and never cleared.
    journal.lock.path.write_text(f"{os.getpid()} 1\n")
    assert journal.lock.holder() is None
    journal.lock.path.write_text(f"{os.getpid()}\n")
    assert journal.lock.holder() is None


@pytest.mark.parametrize(("events", "state"), [
    ([], STATE_PENDING),
    ([EVENT_INTENT], STATE_IN_PROGRESS),
    ([EVENT_INTENT, EVENT_DELETED], EVENT_DELETED),
    ([EVENT_INTENT, EVENT_REVIVED], EVENT_REVIVED),
    ([EVENT_PROTECTED], EVENT_PROTECTED),
    ([EVENT_INTENT, EVENT_FAILED], EVENT_FAILED),
    ([EVENT_INTENT, EVENT_FAILED, EVENT_INTENT], STATE_IN_PROGRESS),
    ([EVENT_INTENT, EVENT_ROWS_DELETED], EVENT_ROWS_DELETED),
    ([EVENT_INTENT, EVENT_FILES_DELETED], EVENT_FILES_DELETED),
    ([EVENT_ROWS_DELETED, EVENT_INTENT, EVENT_DELETED], EVENT_DELETED),
    (["an_event_of_a_later_release"], STATE_IN_PROGRESS),
])
def test_an_items_state_is_its_last_event(manifest: str, events: list[str], state: str) -> None:
    """The view ``sweep_state`` that the plan, gc status and the review all read."""
    first, *others = _candidates(manifest)
    journal = Journal(manifest)
    for seq, event in enumerate(events):
        journal.append("s", seq, "all", [Event(ITEM_KIND_VERSION, first, event,
                                               bytes=7 if event == EVENT_DELETED else None,
                                               error=f"e{seq}")])
    with journal.reading_state() as con:
        states = dict(con.execute(
            f"SELECT artifact_version_id, state FROM {STATE_VIEW}").fetchall())
        error, freed = con.execute(
            f"SELECT error, bytes_freed FROM {STATE_VIEW} WHERE artifact_version_id = ?",
            [first]).fetchall()[0]
    assert states == {first: state, **{vid: STATE_PENDING for vid in others}}
    assert error == (f"e{len(events) - 1}" if events else None)
    assert freed == (7 if state == EVENT_DELETED else None)
    status = sweep_status(manifest)
    assert status.remaining == len(others) + (state not in FINAL_EVENTS)


# ---------------------------------------------------------------------------
# Item keys: journals written before them, and releases that predate them
# ---------------------------------------------------------------------------

#: Segments written by the journal writer from before item kinds, for the candidates of
#: the 1.0 manifest fixture (tests/fixtures/README.md).
OLD_JOURNAL = FIXTURE.parent / "journal-before-item-kinds"

OLD_COLUMNS = JOURNAL_COLUMNS_BEFORE_ITEM_KINDS

#: The old fixture's events, candidate by candidate (sorted ids): the state each left.
OLD_STATES = [EVENT_DELETED, EVENT_DELETED, EVENT_DELETED, EVENT_REVIVED, EVENT_PROTECTED,
              EVENT_FAILED, STATE_IN_PROGRESS, EVENT_ROWS_DELETED, EVENT_FILES_DELETED,
              STATE_PENDING, STATE_PENDING, STATE_PENDING]


def _with_old_journal(manifest: str) -> Journal:
    shutil.copytree(OLD_JOURNAL, manifest + ".journal")
    journal = Journal(manifest)
    import pyarrow.parquet as pq

    for segment in journal.segments():  # what the old writer wrote, nothing more
        assert pq.read_schema(segment).names == OLD_COLUMNS
    return journal


def _states(journal: Journal) -> dict[str, tuple[str, str, str]]:
    with journal.reading_state() as con:
        return {str(vid): (str(kind), str(item), str(state)) for vid, kind, item, state in
                con.execute(f"SELECT artifact_version_id, item_kind, item_id, state "
                            f"FROM {STATE_VIEW}").fetchall()}


def _cli_json(*args: str) -> Any:
    import json

    from click.testing import CliRunner

    from artifact_gc.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_journal_written_before_item_kinds_reads_as_versions(manifest: str) -> None:
    """Segments without item columns are artifact versions, keyed by their own id: the
    plan's pending read, gc status and gc show read them as the old release did, alone
    and mixed with segments that carry item columns."""
    import duckdb

    from artifact_gc.sweep.options import SweepOptions
    from artifact_gc.sweep.plan import read_pending

    candidates = _candidates(manifest)
    journal = _with_old_journal(manifest)
    assert _states(journal) == {vid: (ITEM_KIND_VERSION, vid, state)
                                for vid, state in zip(candidates, OLD_STATES, strict=True)}
    sizes = dict(duckdb.sql(f"SELECT artifact_version_id, size_bytes FROM "
                            f"read_parquet('{manifest}')").fetchall())
    status = _cli_json("status", manifest, "--json")
    assert {k: status[k] for k in ("candidates", "done", "revived", "protected", "failed",
                                   "in_progress", "rows_only_deleted", "files_only_deleted",
                                   "pending", "remaining", "bytes_freed", "sweeps")} == {
        "candidates": 12, "done": 3, "revived": 1, "protected": 1, "failed": 1,
        "in_progress": 1, "rows_only_deleted": 1, "files_only_deleted": 1, "pending": 3,
        "remaining": 7, "bytes_freed": sum(sizes[vid] for vid in candidates[:3]),
        "sweeps": 3}
    assert [(f["artifact_version_id"], f["cause"]) for f in status["failures"]] == [
        (candidates[5], "OSError: boom")]
    show = _cli_json("show", manifest, "--format", "json")["sweep"]
    assert (show["state"], show["by_state"]) == ("failed", {
        EVENT_DELETED: 3, EVENT_REVIVED: 1, EVENT_PROTECTED: 1, EVENT_FAILED: 1,
        STATE_IN_PROGRESS: 1, EVENT_ROWS_DELETED: 1, EVENT_FILES_DELETED: 1,
        STATE_PENDING: 3})
    _, _, pending = read_pending(journal, SweepOptions())
    assert sorted(pending.column("item_id").to_pylist()) == candidates[5:]
    # A newer release resumes: its segments carry item columns, and the last event of an
    # item wins across both kinds of segment.
    journal.append("new", 4, "all", [
        Event(ITEM_KIND_VERSION, vid, event, bytes=1 if event == EVENT_DELETED else None)
        for vid in candidates[5:]
        for event in (EVENT_INTENT, EVENT_DELETED)])
    assert {state for _, _, state in _states(journal).values()} == {
        EVENT_DELETED, EVENT_REVIVED, EVENT_PROTECTED}
    assert _cli_json("show", manifest, "--format", "json")["sweep"]["state"] == "done"
    assert read_pending(journal, SweepOptions())[2].num_rows == 0
    assert sweep_status(manifest).remaining == 0


def test_a_release_from_before_item_kinds_reads_a_newer_journal(manifest: str) -> None:
    """Events of versions keep their artifact_version_id and the old columns keep their
    place: the state view of the old release, over the raw manifest and the new
    segments, gives every candidate the state this release gives it."""
    import duckdb
    import pyarrow.parquet as pq

    candidates = _candidates(manifest)
    journal = Journal(manifest)
    for seq, (vid, state) in enumerate(zip(candidates, OLD_STATES, strict=True)):
        events = {STATE_PENDING: [], STATE_IN_PROGRESS: [EVENT_INTENT],
                  EVENT_PROTECTED: [EVENT_PROTECTED]}.get(state, [EVENT_INTENT, state])
        if events:
            journal.append("new", seq, "all", [Event(ITEM_KIND_VERSION, vid, event)
                                               for event in events])
    for segment in journal.segments():
        schema = pq.read_schema(segment)
        assert schema.names[:len(OLD_COLUMNS)] == OLD_COLUMNS
        rows = pq.read_table(segment).to_pylist()
        assert all(r["item_kind"] == ITEM_KIND_VERSION
                   and r["item_id"] == r["artifact_version_id"] for r in rows)
    old = duckdb.connect()
    old.execute(f"CREATE VIEW manifest AS SELECT * FROM read_parquet('{manifest}')")
    old.execute(f"CREATE VIEW journal AS SELECT * FROM read_parquet('{journal.path}/*.parquet'"
                ", union_by_name = true)")
    old.execute((FIXTURE.parent / "sweep_state-before-item-kinds.sql").read_text())
    old_states = dict(old.execute("SELECT artifact_version_id, state FROM sweep_state")
                      .fetchall())
    assert old_states == {vid: state for vid, (_, _, state) in _states(journal).items()}
    assert old_states == dict(zip(candidates, OLD_STATES, strict=True))


def test_events_of_an_older_release_count_only_if_written_after_the_mark(
    manifest: str, tmp_path: Path
) -> None:
    """Issue 14, item 4: a journal belongs to one mark. Segments without ``mark_id`` (an
    older release) belong to the manifest only if written after its mark started: the
    same segments, dated before the mark, are another mark's and never counted."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from artifact_gc.manifest import format as mf

    journal = _with_old_journal(manifest)
    assert sweep_status(manifest).states.get(EVENT_DELETED) == 3  # written after the mark
    assert journal.foreign_marks() == {}
    started = mf.read_info(manifest).started.replace(tzinfo=None)
    events = 0
    for segment in journal.segments():
        table = pq.read_table(segment)
        earlier = pc.subtract(pa.scalar(started, pa.timestamp("us")),
                              pa.scalar(60_000_000, pa.duration("us")))
        at = pa.array([earlier.as_py()] * table.num_rows, pa.timestamp("us"))
        pq.write_table(table.set_column(table.schema.get_field_index("at"), "at", at),
                       segment)
        events += table.num_rows
    status = sweep_status(manifest)
    assert status.states == {STATE_PENDING: 12} and status.sweeps == 0
    assert Journal(manifest).foreign_marks() == {"?": events}
