"""The sweep journal: what a sweep did to each candidate, durable per batch.

The journal of ``mark.parquet`` is the directory ``mark.parquet.journal/`` beside it,
on the manifest's own filesystem (local or any fsspec URL). It is a set of immutable
Parquet segments, each written once and never rewritten; an item's state is its last
event by ``seq`` (see manifests/FORMAT.md, "The sweep journal").

Only one sweep of a manifest may run at a time. The lock is an ``fcntl.flock`` on a
local file: the kernel drops it when the process dies, so a sweep killed with
SIGKILL leaves no stale lock behind. A remote journal's lock file lives in a local
cache directory keyed by the journal's URL (the lock guards against a second sweep
on the same machine; two machines sweeping one manifest at once is still safe for
the data, because every batch is re-verified under the database's own lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from artifact_gc.errors import SweepLocked
from artifact_gc.manifest.format import connect_duckdb, utc_now
from artifact_gc.storage.urls import protocols, url_to_fs

JOURNAL_SUFFIX = ".journal"
LOCK_NAME = ".sweep.lock"

EVENT_INTENT = "intent"
EVENT_ROWS_DELETED = "rows_deleted"
EVENT_FILES_DELETED = "files_deleted"
EVENT_DELETED = "deleted"
EVENT_REVIVED = "revived"
EVENT_PROTECTED = "protected"
EVENT_FAILED = "failed"

#: Events after which nothing is left to do for an item, whatever the mode.
FINAL_EVENTS = (EVENT_DELETED, EVENT_REVIVED, EVENT_PROTECTED)

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
    ]
)


def journal_url(manifest_url: str) -> str:
    """``MANIFEST.journal``: the journal directory beside the manifest."""
    return manifest_url.rstrip("/") + JOURNAL_SUFFIX


@dataclass(frozen=True)
class Event:
    """One line of the journal."""

    artifact_version_id: str
    event: str
    bytes: int | None = None
    error: str | None = None
    reason: str | None = None
    files: int | None = None


def _lock_path(url: str) -> Path:
    if "://" not in url or url.startswith("file://"):
        local = url[len("file://") :] if url.startswith("file://") else url
        return Path(local) / LOCK_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(url.encode()).hexdigest()[:32]
    return cache / "artifact-gc" / "locks" / f"{key}.lock"


class Journal:
    """Append-only Parquet segments in ``MANIFEST.journal/``."""

    def __init__(self, manifest_url: str, storage_options: dict[str, Any] | None = None):

        self.manifest_url = manifest_url
        self.url = journal_url(manifest_url)
        self.storage_options = storage_options or {}
        self.fs, self.path = url_to_fs(self.url, self.storage_options)
        self._local = "file" in protocols(self.fs)
        self._next_seq: int | None = None
        self._lock_fd: int | None = None

    # -- the lock ---------------------------------------------------------

    def lock_path(self) -> Path:
        return _lock_path(self.url)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sweep lock of this manifest, or raise :class:`SweepLocked`."""
        path = self.lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise SweepLocked(
                    f"another gc sweep of {self.manifest_url} is running (lock {path}); "
                    "wait for it to finish, or see its progress with gc status"
                ) from exc
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._lock_fd = fd
            try:
                yield
            finally:
                self._lock_fd = None
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def check_unlocked(self) -> None:
        """Raise :class:`SweepLocked` if a sweep holds the lock now (then let it go)."""
        path = self.lock_path()
        if not path.exists():
            return
        with self.locked():
            pass

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
            sources = [s for s in segments]
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

    def max_seq(self) -> int:
        con = connect_duckdb()
        try:
            if not self._local:
                con.register_filesystem(self.fs)
            if self.register(con) == 0:
                return 0
            row = con.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()
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

