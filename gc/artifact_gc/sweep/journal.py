"""The sweep journal: what a sweep did to each candidate, durable per batch.

The journal of ``mark.parquet`` is the directory ``mark.parquet.journal/`` beside it,
on the manifest's own filesystem (local or any fsspec URL). It is a set of immutable
Parquet segments, each written once and never rewritten; an item's state is its last
event by ``seq`` (see manifests/FORMAT.md, "The sweep journal").

An item's state (pending, in progress, half done, failed or final) is defined once,
in SQL: the view ``sweep_state`` of ``sweep_state.sql`` (shipped as
``manifests/sweep_state.sql``), which the plan, ``gc status`` and the review read.

Events are keyed by item (``item_kind``, ``item_id``), like the manifest's rows; an
artifact version's events also carry its ``artifact_version_id``, so that a release
from before item kinds still reads the journal. A segment written by such a release
has no item columns: every event in it is an artifact version's (sweep_state.sql).

Only one sweep of a manifest may run at a time: see lock.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pyarrow as pa

from artifact_gc.manifest.format import utc_now
from artifact_gc.manifest.reasons import ITEM_KIND_VERSION
from artifact_gc.manifest.views import connect_duckdb, create_manifest_view, duckdb_for
from artifact_gc.storage.urls import is_local_fs, protocols, url_to_fs
from artifact_gc.sweep.lock import SweepLock, lock_path

JOURNAL_SUFFIX = ".journal"

EVENT_INTENT = "intent"
EVENT_ROWS_DELETED = "rows_deleted"
EVENT_FILES_DELETED = "files_deleted"
EVENT_DELETED = "deleted"
EVENT_REVIVED = "revived"
EVENT_PROTECTED = "protected"
EVENT_FAILED = "failed"

#: Events after which nothing is left to do for an item, whatever the mode.
FINAL_EVENTS = (EVENT_DELETED, EVENT_REVIVED, EVENT_PROTECTED)

#: States of the view ``sweep_state`` that are not an event (see sweep_state.sql).
STATE_PENDING = "pending"
STATE_IN_PROGRESS = "in_progress"

#: The view of every candidate with its state, over the views ``manifest`` and ``journal``.
STATE_VIEW = "sweep_state"

SCHEMA = pa.schema(
    [
        pa.field("sweep_id", pa.string()),
        pa.field("batch", pa.int64()),
        pa.field("seq", pa.int64()),
        pa.field("artifact_version_id", pa.string()),
        pa.field("event", pa.string()),
        pa.field("mode", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("at", pa.timestamp("us")),
        # Added columns (FORMAT.md allows readers to ignore what they don't know):
        pa.field("reason", pa.string()),
        pa.field("files", pa.int64()),
        pa.field("item_kind", pa.string()),
        pa.field("item_id", pa.string()),
    ]
)


def journal_url(manifest_url: str) -> str:
    """``MANIFEST.journal``: the journal directory beside the manifest."""
    return manifest_url.rstrip("/") + JOURNAL_SUFFIX


@dataclass(frozen=True)
class Event:
    """One line of the journal: an event of the item (``item_kind``, ``item_id``)."""

    item_kind: str
    item_id: str
    event: str
    bytes: int | None = None
    error: str | None = None
    reason: str | None = None
    files: int | None = None

    @property
    def artifact_version_id(self) -> str | None:
        """The version's id for an artifact version (what a release from before item
        kinds keys on); None for an item of any other kind."""
        return self.item_id if self.item_kind == ITEM_KIND_VERSION else None


def state_sql() -> str:
    """``sweep_state.sql``: the one definition of an item's state."""
    return (resources.files("artifact_gc.sweep") / "sweep_state.sql").read_text(encoding="utf-8")


class Journal:
    """Append-only Parquet segments in ``MANIFEST.journal/``."""

    def __init__(self, manifest_url: str, storage_options: dict[str, Any] | None = None):
        self.manifest_url = manifest_url
        self.url = journal_url(manifest_url)
        self.storage_options = storage_options or {}
        self.fs, self.path = url_to_fs(self.url, self.storage_options)
        self._local = is_local_fs(self.fs)
        self._next_seq: int | None = None
        self.lock = SweepLock(lock_path(self.url), manifest_url)

    def locked(self) -> AbstractContextManager[None]:
        """Hold the sweep lock of this manifest (``self.lock``), or raise ``SweepLocked``."""
        return self.lock.held()

    # -- reading ----------------------------------------------------------

    def segments(self) -> list[str]:
        if not self.fs.exists(self.path):
            return []
        self.fs.invalidate_cache(self.path)
        return sorted(
            p for p in self.fs.ls(self.path, detail=False)
            if p.rsplit("/", 1)[-1].endswith(".parquet")
            and not p.rsplit("/", 1)[-1].startswith(".")
        )

    def register(self, connection: Any, view: str = "journal") -> int:
        """Create the DuckDB view ``view`` over every segment; return how many there are."""
        segments = self.segments()
        if not segments:
            connection.register(f"{view}_empty", SCHEMA.empty_table())
            connection.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {view}_empty")
            return 0
        if self._local:
            sources = segments
        else:
            protocol = protocols(self.fs)[0]
            sources = [s if "://" in s else f"{protocol}://{s}" for s in segments]
        listed = ", ".join("'" + s.replace("'", "''") + "'" for s in sources)
        # union_by_name: segments written by a later release may carry more columns.
        connection.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS "
            f"SELECT * FROM read_parquet([{listed}], union_by_name = true)"
        )
        return len(segments)

    def register_state(self, connection: Any) -> int:
        """:meth:`register` the journal and create the view ``sweep_state`` over it and
        the view ``manifest``, which must exist; return the number of segments."""
        segments = self.register(connection)
        connection.execute(state_sql())
        return segments

    @contextmanager
    def reading_state(self) -> Iterator[Any]:
        """A DuckDB connection with the views ``manifest``, ``journal`` and
        ``sweep_state`` over this journal's manifest."""
        with duckdb_for(self.manifest_url, self.storage_options) as connection:
            # In the current shape: sweep_state joins on the item columns, which a
            # manifest of format 1.0 implies.
            create_manifest_view(connection, self.manifest_url)
            self.register_state(connection)
            yield connection

    def max_seq(self) -> int:
        return self._max("seq")

    def last_batch(self) -> int:
        """The highest batch number journaled so far (0 for none)."""
        return self._max("batch")

    def _max(self, column: str) -> int:
        con = connect_duckdb()
        try:
            if not self._local:
                con.register_filesystem(self.fs)
            if self.register(con) == 0:
                return 0
            row = con.execute(f"SELECT coalesce(max({column}), 0) FROM journal").fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()

    # -- writing ----------------------------------------------------------

    def append(self, sweep_id: str, batch: int, mode: str, events: Sequence[Event]) -> None:
        """Write ``events`` as one new segment, durably, before returning.

        Local segments are written to a hidden temporary name, fsynced, renamed into
        place and the directory fsynced: a crash leaves either the whole segment or
        nothing that a reader would take. Object stores publish an object only when
        its upload completes, which gives the same guarantee.
        """
        if not events:
            return
        import pyarrow.parquet as pq

        if self._next_seq is None:
            self._next_seq = self.max_seq() + 1
        first = self._next_seq
        self._next_seq += len(events)
        now = utc_now()
        table = pa.table(
            {
                "sweep_id": [sweep_id] * len(events),
                "batch": [batch] * len(events),
                "seq": list(range(first, first + len(events))),
                "artifact_version_id": [e.artifact_version_id for e in events],
                "event": [e.event for e in events],
                "mode": [mode] * len(events),
                "bytes": [e.bytes for e in events],
                "error": [e.error for e in events],
                "at": [now] * len(events),
                "reason": [e.reason for e in events],
                "files": [e.files for e in events],
                "item_kind": [e.item_kind for e in events],
                "item_id": [e.item_id for e in events],
            },
            schema=SCHEMA,
        )
        name = f"{first:012d}-{sweep_id[:8]}-{batch:06d}.parquet"
        if self._local:
            os.makedirs(self.path, exist_ok=True)
            final = os.path.join(self.path, name)
            partial = os.path.join(self.path, f".{name}.{uuid.uuid4().hex[:8]}.partial")
            with open(partial, "wb") as handle:
                pq.write_table(table, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
            directory = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        else:
            self.fs.makedirs(self.path, exist_ok=True)
            with self.fs.open(f"{self.path}/{name}", "wb") as handle:
                pq.write_table(table, handle)


