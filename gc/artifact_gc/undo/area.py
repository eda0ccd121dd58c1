"""Where a manifest's undo data lives: ``<journal>/undo/``, beside the sweep journal.

- ``sweeps/<sweep_id>.json``: one record per sweep that ran with an undo window,
  written before that sweep deletes anything: when it started, its window, and how
  each artifact store keeps its files (``FileUndo.describe()``).
- ``rows/<sweep_id>-<batch>-<attempt>.parquet``: the row segments. Every row a batch's
  transaction deletes, written durably before that transaction commits (undo/rows.py).
  A transaction that is rolled back and run again writes a later attempt; only the
  last attempt of a batch is read.
- ``events/*.parquet``: what ``gc restore`` and ``gc trash empty`` did, append-only
  like the sweep journal (``intent``, ``files_restored``, ``restored`` per item;
  ``purge_intent``, ``purged`` per sweep).

Every file is written once, durably (sweep/journal.py ``write_segment``), and never
rewritten; a purge deletes a sweep's row segments and then journals ``purged``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from artifact_gc.manifest.format import utc_now
from artifact_gc.storage.urls import is_local_fs, url_to_fs
from artifact_gc.sweep.journal import fsync_dir, write_file, write_segment

UNDO_DIR = "undo"

EVENT_INTENT = "intent"
EVENT_FILES_RESTORED = "files_restored"
EVENT_RESTORED = "restored"
EVENT_PURGE_INTENT = "purge_intent"
EVENT_PURGED = "purged"

OP_RESTORE = "restore"
OP_PURGE = "purge"

ROW_SCHEMA = pa.schema([
    pa.field("sweep_id", pa.string()),
    pa.field("batch", pa.int64()),
    pa.field("attempt", pa.int64()),
    #: The order in which the transaction deleted the rows (children first).
    pa.field("step", pa.int64()),
    pa.field("table", pa.string()),
    #: Whose row it is: artifact version ids, and ``artifact:<id>`` for an artifact's.
    pa.field("owners", pa.list_(pa.string())),
    #: The row (codec.py), column -> value, exactly as the driver returned it.
    pa.field("row", pa.string()),
])

EVENT_SCHEMA = pa.schema([
    pa.field("op_id", pa.string()),
    pa.field("op", pa.string()),
    pa.field("sweep_id", pa.string()),
    pa.field("item_kind", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("event", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("at", pa.timestamp("us")),
])

#: ``owners`` prefix of the rows that belong to an artifact (not to one version).
ARTIFACT_OWNER = "artifact:"


@dataclass(frozen=True)
class StoreUndo:
    """How one artifact store kept a sweep's files."""

    root: str
    mode: str
    describe: str


@dataclass(frozen=True)
class SweepUndo:
    """The undo record of one sweep."""

    sweep_id: str
    mark_id: str
    started_at: datetime
    window: timedelta
    #: store id -> how that store keeps the files (none for --only-metadata).
    files: dict[str, StoreUndo] = field(default_factory=dict)

    @property
    def expires_at(self) -> datetime:
        return self.started_at + self.window

    def as_dict(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "mark_id": self.mark_id,
                "started_at": self.started_at.isoformat(),
                "window_seconds": self.window.total_seconds(),
                "expires_at": self.expires_at.isoformat(),
                "files": {k: asdict(v) for k, v in self.files.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepUndo:
        return cls(sweep_id=data["sweep_id"], mark_id=data["mark_id"],
                   started_at=datetime.fromisoformat(data["started_at"]),
                   window=timedelta(seconds=float(data["window_seconds"])),
                   files={k: StoreUndo(**v) for k, v in (data.get("files") or {}).items()})


@dataclass(frozen=True)
class UndoEvent:
    sweep_id: str | None
    item_kind: str | None
    item_id: str | None
    event: str
    detail: str | None = None


class UndoArea:
    """The undo data of one journal location (``<journal>/undo``)."""

    def __init__(self, journal_url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = journal_url.rstrip("/") + "/" + UNDO_DIR
        self.fs, self.path = url_to_fs(self.url, storage_options or {})
        self._local = is_local_fs(self.fs)

    def _dir(self, name: str) -> str:
        return f"{self.path}/{name}"

    def _files(self, name: str, suffix: str) -> list[str]:
        directory = self._dir(name)
        if not self.fs.exists(directory):
            return []
        self.fs.invalidate_cache(directory)
        return sorted(p for p in self.fs.ls(directory, detail=False)
                      if p.endswith(suffix) and not p.rsplit("/", 1)[-1].startswith("."))

    # -- sweeps -------------------------------------------------------------------

    def record_sweep(self, record: SweepUndo) -> None:
        """Write ``record`` durably (before the sweep deletes anything)."""
        write_file(self.fs, self._dir("sweeps"), f"{record.sweep_id}.json",
                   json.dumps(record.as_dict(), indent=1).encode())

    def sweeps(self) -> dict[str, SweepUndo]:
        """Every sweep of this journal that ran with an undo window, by id."""
        found: dict[str, SweepUndo] = {}
        for path in self._files("sweeps", ".json"):
            with self.fs.open(path, "rb") as handle:
                record = SweepUndo.from_dict(json.loads(handle.read()))
            found[record.sweep_id] = record
        return found

    # -- rows ---------------------------------------------------------------------

    def write_rows(self, sweep_id: str, batch: int, attempt: int, table: pa.Table) -> None:
        """Write one batch's row segment durably, before its transaction commits."""
        write_segment(self.fs, self._dir("rows"),
                      f"{sweep_id}-{batch:06d}-{attempt:02d}.parquet", table)

    def row_segments(self, sweep_ids: Iterable[str] | None = None) -> list[str]:
        """The row segments to read: of ``sweep_ids`` (all when None), the last
        attempt of each batch."""
        wanted = None if sweep_ids is None else set(sweep_ids)
        last: dict[tuple[str, str], tuple[str, str]] = {}
        for path in self._files("rows", ".parquet"):
            sweep_id, batch, attempt = path.rsplit("/", 1)[-1][:-len(".parquet")].rsplit("-", 2)
            if wanted is not None and sweep_id not in wanted:
                continue
            key = (sweep_id, batch)
            if key not in last or attempt > last[key][0]:
                last[key] = (attempt, path)
        return [path for _, path in sorted(last.values(), key=lambda a: a[1])]

    def read_rows(self, sweep_ids: Iterable[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        tables = []
        for path in self.row_segments(sweep_ids):
            with self.fs.open(path, "rb") as handle:
                tables.append(pq.read_table(handle, schema=ROW_SCHEMA))
        return pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()

    def delete_rows(self, sweep_id: str) -> int:
        """Delete every row segment of ``sweep_id`` (all attempts); return how many.
        Deleting one already gone is not an error (a resumed purge)."""
        doomed = [p for p in self._files("rows", ".parquet")
                  if p.rsplit("/", 1)[-1].startswith(f"{sweep_id}-")]
        for path in doomed:
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass
        if doomed and self._local:
            fsync_dir(self._dir("rows"))
        return len(doomed)

    # -- events -------------------------------------------------------------------

    def append(self, op_id: str, op: str, events: Sequence[UndoEvent]) -> None:
        """Journal ``events`` of the restore or purge ``op_id`` durably."""
        if not events:
            return
        now = utc_now().replace(tzinfo=None)
        table = pa.table({
            "op_id": [op_id] * len(events),
            "op": [op] * len(events),
            "sweep_id": [e.sweep_id for e in events],
            "item_kind": [e.item_kind for e in events],
            "item_id": [e.item_id for e in events],
            "event": [e.event for e in events],
            "detail": [e.detail for e in events],
            "at": [now] * len(events),
        }, schema=EVENT_SCHEMA)
        stamp = now.strftime("%Y%m%dT%H%M%S%f")
        write_segment(self.fs, self._dir("events"),
                      f"{stamp}-{op_id[:8]}-{uuid.uuid4().hex[:8]}.parquet", table)

    def events(self) -> pa.Table:
        import pyarrow.parquet as pq

        tables = []
        for path in self._files("events", ".parquet"):
            with self.fs.open(path, "rb") as handle:
                tables.append(pq.read_table(handle, schema=EVENT_SCHEMA))
        return pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()

    def purged(self, event: str = EVENT_PURGED) -> set[str]:
        """The sweeps whose undo data ``gc trash empty`` purged (or began to purge,
        with ``event=EVENT_PURGE_INTENT``)."""
        events = self.events()
        return {s for s, e in zip(events.column("sweep_id").to_pylist(),
                                  events.column("event").to_pylist(), strict=True)
                if e == event and s}

    def restored(self) -> set[tuple[str, str]]:
        """The items (kind, id) a restore finished."""
        events = self.events()
        return {(k, i) for k, i, e in zip(events.column("item_kind").to_pylist(),
                                          events.column("item_id").to_pylist(),
                                          events.column("event").to_pylist(), strict=True)
                if e == EVENT_RESTORED}


def sweep_state(record: SweepUndo, purged: set[str], now: datetime | None = None) -> str:
    """``restorable`` (inside its window), ``expired`` (past it, still restorable until
    ``gc trash empty``) or ``purged``."""
    if record.sweep_id in purged:
        return "purged"
    return "restorable" if (now or utc_now()) < record.expires_at else "expired"


def new_op_id() -> str:
    return uuid.uuid4().hex
