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

A journal belongs to one mark. Every event carries the ``mark_id`` of the manifest
whose sweep wrote it, and a journal is read bound to one mark: events of another mark
(a manifest published at the same path, a shared ``--journal`` location) are never
counted or resumed. An event from a release before ``mark_id`` belongs to the mark
only if it was written after that mark started (a sweep follows its mark).

``gc sweep --journal LOCATION`` puts the journal elsewhere (a manifest in a read-only
folder). The sweep records that location under the mark's id in a small local index
(``$XDG_STATE_HOME/artifact-gc/journals/``), where ``gc status``, ``gc report`` and
``gc history`` look on this machine; elsewhere they take ``--journal`` too.

Only one sweep of a manifest may run at a time: see lock.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from artifact_gc.manifest.format import utc_now
from artifact_gc.manifest.reasons import ITEM_KIND_VERSION
from artifact_gc.manifest.views import (
    connect_duckdb,
    create_manifest_view,
    duckdb_for,
    register_fs,
)
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
#: The item was gone before this mark's sweep touched it: its rows were deleted by
#: someone else (another sweep, ZenML) and none of its files was left.
EVENT_ALREADY_GONE = "already_gone"

#: Events after which nothing is left to do for an item, whatever the mode.
FINAL_EVENTS = (EVENT_DELETED, EVENT_REVIVED, EVENT_PROTECTED, EVENT_ALREADY_GONE)

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
        pa.field("mark_id", pa.string()),
    ]
)

#: The name of a segment (:meth:`Journal.append`): ``<first seq>-<sweep id>-<batch>``.
SEGMENT_NAME = re.compile(r"^\d{12,}-[0-9A-Za-z]{1,8}-\d{6,}\.parquet$")

#: Where a journal put elsewhere (``--journal``) is recorded, by mark id.
INDEX_DIR_NAME = "journals"


def journal_index_dir() -> Path:
    """``$XDG_STATE_HOME/artifact-gc/journals`` (default ``~/.local/state/...``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "artifact-gc" / INDEX_DIR_NAME


def recorded_journal(mark_id: str) -> str | None:
    """The journal location a sweep of mark ``mark_id`` recorded on this machine."""
    try:
        data = json.loads((journal_index_dir() / f"{mark_id}.json").read_text())
    except (OSError, ValueError):
        return None
    url = data.get("journal") if isinstance(data, dict) else None
    return str(url) if url else None


def record_journal(mark_id: str, manifest_url: str, url: str) -> bool:
    """Record that the journal of mark ``mark_id`` lives at ``url``; False if the
    index cannot be written (the sweep goes on: ``--journal`` still finds it)."""
    directory = journal_index_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{mark_id}.json"
        partial = directory / f".{mark_id}.{uuid.uuid4().hex[:8]}.partial"
        partial.write_text(json.dumps({"mark_id": mark_id, "manifest": manifest_url,
                                       "journal": url}))
        os.replace(partial, target)
    except OSError:
        return False
    return True


def locate_journal(manifest_url: str, mark_id: str | None, explicit: str | None = None) -> str:
    """Where the journal of a manifest is: ``explicit`` (``--journal``), else where a
    sweep of its mark recorded one, else ``MANIFEST.journal`` beside it."""
    if explicit:
        return explicit.rstrip("/")
    recorded = recorded_journal(mark_id) if mark_id else None
    return recorded or journal_url(manifest_url)


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
    """Append-only Parquet segments in ``MANIFEST.journal/`` (or where ``url`` says),
    read and written for one mark: ``mark_id`` (by default the manifest's own)."""

    def __init__(self, manifest_url: str, storage_options: dict[str, Any] | None = None, *,
                 url: str | None = None, mark_id: str | None = None,
                 mark_started: datetime | None = None) -> None:
        self.manifest_url = manifest_url
        self.url = (url or journal_url(manifest_url)).rstrip("/")
        self.storage_options = storage_options or {}
        self.fs, self.path = url_to_fs(self.url, self.storage_options)
        self._local = is_local_fs(self.fs)
        self._next_seq: int | None = None
        self._mark: tuple[str, datetime] | None = (
            (mark_id, mark_started or datetime.min) if mark_id else None)
        self.lock = SweepLock(lock_path(self.url), manifest_url)

    @classmethod
    def of(cls, manifest_url: str, info: Any, storage_options: dict[str, Any] | None = None,
           location: str | None = None) -> Journal:
        """The journal of the manifest at ``manifest_url`` (its ``ManifestInfo``
        ``info``), found by :func:`locate_journal`."""
        return cls(manifest_url, storage_options,
                   url=locate_journal(manifest_url, info.mark_id, location),
                   mark_id=info.mark_id, mark_started=info.started)

    @property
    def is_default(self) -> bool:
        """Whether the journal lives beside its manifest."""
        return self.url == journal_url(self.manifest_url)

    @property
    def mark(self) -> tuple[str, datetime]:
        """(mark id, mark start): the mark whose events this journal reads and writes."""
        if self._mark is None:
            from artifact_gc.manifest.format import read_info

            info = read_info(self.manifest_url, self.storage_options)
            self._mark = (info.mark_id, info.started)
        return self._mark

    def locked(self) -> AbstractContextManager[None]:
        """Hold the sweep lock of this manifest (``self.lock``), or raise ``SweepLocked``."""
        return self.lock.held()

    # -- reading ----------------------------------------------------------

    def segments(self) -> list[str]:
        if not self.fs.exists(self.path):
            return []
        self.fs.invalidate_cache(self.path)
        found = sorted(
            p for p in self.fs.ls(self.path, detail=False)
            if p.rsplit("/", 1)[-1].endswith(".parquet")
            and not p.rsplit("/", 1)[-1].startswith(".")
        )
        # Every Parquet file of the folder is read as a segment (FORMAT.md): a folder
        # shared with manifests (``--journal`` where ``--out`` writes) would have them
        # read as events. Refused before anything is read or written, never guessed.
        strangers = [p.rsplit("/", 1)[-1] for p in found
                     if not SEGMENT_NAME.match(p.rsplit("/", 1)[-1])]
        if strangers:
            from artifact_gc.errors import UsageError

            shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
            raise UsageError(
                f"the journal location {self.url} holds Parquet files that are not sweep "
                f"journal segments ({shown}); give the journal a folder of its own "
                "(gc sweep --journal LOCATION)")
        return found

    def register(self, connection: Any, view: str = "journal", *, bound: bool = True,
                 segments: list[str] | None = None) -> int:
        """Create the DuckDB view ``view`` over every segment (only this mark's events
        when ``bound``); return how many segments there are. ``segments``: those
        :meth:`segments` just returned, not listed again."""
        segments = self.segments() if segments is None else segments
        if not segments:
            connection.register(f"{view}_empty", SCHEMA.empty_table())
            connection.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {view}_empty")
            return 0
        connection.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {self._events_sql(segments)}"
                           + (f" WHERE {self._mark_predicate()}" if bound else ""))
        return len(segments)

    def _events_sql(self, segments: list[str]) -> str:
        if self._local:
            sources = segments
        else:
            protocol = protocols(self.fs)[0]
            sources = [s if "://" in s else f"{protocol}://{s}" for s in segments]
        listed = ", ".join("'" + s.replace("'", "''") + "'" for s in sources)
        # union_by_name: segments written by a later release may carry more columns.
        # The empty relation gives mark_id to a journal whose segments all predate it.
        return (f"SELECT * FROM (SELECT * FROM read_parquet([{listed}], union_by_name = true) "
                "UNION ALL BY NAME SELECT NULL::VARCHAR AS mark_id WHERE false)")

    def _mark_predicate(self) -> str:
        mark_id, started = self.mark
        quoted = mark_id.replace("'", "''")
        # An event of a release before mark_id is this mark's only if written after
        # the mark started: a sweep of an older mark at the same path wrote it before.
        # Never NULL (NOT of it must select the other events): coalesce the comparison.
        return (f"(coalesce(mark_id = '{quoted}', false) OR (mark_id IS NULL AND \"at\" >= "
                f"TIMESTAMP '{started.replace(tzinfo=None).isoformat(sep=' ')}'))")

    def foreign_marks(self) -> dict[str, int]:
        """Events in this journal's location that belong to another mark, by mark id
        (``?`` for an event of an older release written before this mark started).
        They are never counted or resumed."""
        segments = self.segments()
        if not segments:
            return {}  # no DuckDB to start for an empty journal (a first sweep)
        con = connect_duckdb()
        try:
            if not self._local:
                register_fs(con, self.fs)
            self.register(con, "all_events", bound=False, segments=segments)
            return {str(m): int(n) for m, n in con.execute(
                f"SELECT coalesce(mark_id, '?'), count(*) FROM all_events "
                f"WHERE NOT {self._mark_predicate()} GROUP BY 1 ORDER BY 1").fetchall()}
        finally:
            con.close()

    def unwritable(self) -> str | None:
        """Why a sweep could not write this journal, if it could not, found without
        writing anything (the dry run asks): a local location whose nearest existing
        folder the kernel refuses to write (a read-only mount, permissions), or a
        file in the way. A remote location is not probed here."""
        if not self._local:
            return None
        path = Path(self.path)
        for candidate in (path, *path.parents):
            if candidate.exists():
                if not candidate.is_dir():
                    return f"{candidate} is a file, not a folder"
                if not os.access(candidate, os.W_OK | os.X_OK):
                    return f"{candidate} is not writable"
                return None
        return None

    def check_writable(self) -> None:
        """Raise ``StorageError`` (exit 9) with the ``--journal`` hint when this journal
        cannot be written. A probe is written and removed (the one test every refusal
        fails, root included), and a folder made for it removed again."""
        from artifact_gc.errors import StorageError
        from artifact_gc.manifest.locations import check_writable

        created = self._local and not os.path.exists(self.path)
        try:
            check_writable(f"{self.url}/.probe", "sweep journal",
                           storage_options=self.storage_options)
            if created:
                # Leave nothing behind for a sweep declined at its prompt.
                with contextlib.suppress(OSError):
                    os.rmdir(self.path)
        except StorageError as exc:
            said = exc.message.replace(f"{self.url}/.probe", self.url)
            raise StorageError(
                f"{said}; put the journal elsewhere with gc sweep --journal LOCATION "
                "(any folder or URL you can write)", path=self.url) from exc

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
        segments = self.segments()
        if not segments:
            return 0  # a first sweep's first write starts no DuckDB
        con = connect_duckdb()
        try:
            if not self._local:
                register_fs(con, self.fs)
            # Over every mark's events: seq and batch numbers stay unique in a location.
            self.register(con, bound=False, segments=segments)
            row = con.execute(f"SELECT coalesce(max({column}), 0) FROM journal").fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()

    # -- writing ----------------------------------------------------------

    def append(self, sweep_id: str, batch: int, mode: str, events: Sequence[Event]) -> None:
        """Write ``events`` as one new segment, durably, before returning.

        See :func:`write_segment` for why a crash leaves the whole segment or none.
        """
        if not events:
            return
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
                "mark_id": [self.mark[0]] * len(events),
            },
            schema=SCHEMA,
        )
        name = f"{first:012d}-{sweep_id[:8]}-{batch:06d}.parquet"
        write_segment(self.fs, self.path, name, table)


def write_segment(fs: Any, directory: str, name: str, table: pa.Table) -> None:
    """Write ``table`` as the Parquet file ``directory/name``, durably (:func:`write_file`)."""
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    write_file(fs, directory, name, buffer.getvalue().to_pybytes())


def write_file(fs: Any, directory: str, name: str, data: bytes) -> None:
    """Write ``data`` as the file ``directory/name``, durably, before returning.

    Local files are written to a hidden temporary name, fsynced, renamed into place and
    the directory fsynced: a crash leaves either the whole file or nothing that a
    reader would take (readers skip names that start with a dot). Object stores
    publish an object only when its upload completes, which gives the same guarantee.
    """
    if is_local_fs(fs):
        os.makedirs(directory, exist_ok=True)
        final = os.path.join(directory, name)
        partial = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.partial")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, final)
        fsync_dir(directory)
    else:
        fs.makedirs(directory, exist_ok=True)
        with fs.open(f"{directory}/{name}", "wb") as handle:
            handle.write(data)


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in the local ``directory`` durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
