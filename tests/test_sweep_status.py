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
from artifact_gc.manifest.reasons import STATUS_CANDIDATE
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
    assert journal.lock.path.read_text() == ""  # cleared before the lock went
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
        journal.append("s", seq, "all", [Event(first, event, bytes=7 if event == EVENT_DELETED
                                               else None, error=f"e{seq}")])
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
