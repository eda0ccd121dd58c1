"""``gc status``: where the sweeps of a manifest stand, read from its journal.

A read only: it never takes the sweep lock, so it cannot turn away a sweep that
starts while it runs (see journal.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from artifact_gc.errors import ItemFailure
from artifact_gc.manifest import format as mf
from artifact_gc.sweep.journal import (
    EVENT_ALREADY_GONE,
    EVENT_DELETED,
    EVENT_FAILED,
    EVENT_FILES_DELETED,
    EVENT_PROTECTED,
    EVENT_REVIVED,
    EVENT_ROWS_DELETED,
    FINAL_EVENTS,
    STATE_IN_PROGRESS,
    STATE_PENDING,
    STATE_VIEW,
    Journal,
)


@dataclass
class SweepStatus:
    """Progress of the sweeps of one manifest, from its journal."""

    manifest_url: str
    journal_url: str
    candidates: int
    states: dict[str, int]
    bytes_freed: int | None
    failures: list[ItemFailure]
    sweeps: int
    running: bool

    @property
    def remaining(self) -> int:
        return sum(n for state, n in self.states.items() if state not in FINAL_EVENTS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_url,
            "journal": self.journal_url,
            "candidates": self.candidates,
            "done": self.states.get(EVENT_DELETED, 0),
            "already_gone": self.states.get(EVENT_ALREADY_GONE, 0),
            "revived": self.states.get(EVENT_REVIVED, 0),
            "protected": self.states.get(EVENT_PROTECTED, 0),
            "failed": self.states.get(EVENT_FAILED, 0),
            "in_progress": self.states.get(STATE_IN_PROGRESS, 0),
            "rows_only_deleted": self.states.get(EVENT_ROWS_DELETED, 0),
            "files_only_deleted": self.states.get(EVENT_FILES_DELETED, 0),
            "pending": self.states.get(STATE_PENDING, 0),
            "remaining": self.remaining,
            "bytes_freed": self.bytes_freed,
            "sweeps": self.sweeps,
            "running": self.running,
            "failures": [asdict(f) for f in self.failures],
        }


def sweep_status(manifest_url: str, storage_options: dict[str, Any] | None = None, *,
                 journal_location: str | None = None) -> SweepStatus:
    """Where the sweeps of ``manifest_url`` stand, from its journal (DuckDB): the one
    at ``journal_location`` (``--journal``), else where a sweep of its mark recorded
    one, else beside the manifest. Only this mark's events count."""
    storage = storage_options or {}
    info = mf.read_info(manifest_url, storage)
    mf.check_format(info, manifest_url)
    journal = Journal.of(manifest_url, info, storage, journal_location)
    with journal.reading_state() as con:
        states = {str(s): int(n) for s, n in con.execute(
            f"SELECT state, count(*) FROM {STATE_VIEW} GROUP BY 1").fetchall()}
        row = con.execute(
            f"SELECT sum(bytes_freed), count(*) FILTER (WHERE bytes_freed IS NULL) "
            f"FROM {STATE_VIEW} WHERE state = '{EVENT_DELETED}'"
        ).fetchone()
        freed = None if row is None or row[0] is None or row[1] else int(row[0])
        failures = [
            ItemFailure(str(item_id), "sweep", str(err or ""))
            for item_id, err in con.execute(
                f"SELECT item_id, error FROM {STATE_VIEW} "
                f"WHERE state = '{EVENT_FAILED}' ORDER BY item_kind, item_id LIMIT 100"
            ).fetchall()
        ]
        sweeps_row = con.execute("SELECT count(DISTINCT sweep_id) FROM journal").fetchone()
    return SweepStatus(
        manifest_url=manifest_url, journal_url=journal.url,
        candidates=sum(states.values()), states=states, bytes_freed=freed,
        failures=failures, sweeps=int(sweeps_row[0]) if sweeps_row else 0,
        running=journal.lock.holder() is not None,
    )
