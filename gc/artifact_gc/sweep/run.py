"""gc sweep: delete a manifest's candidates, re-verified live, in journaled batches.

The plan is data: :func:`plan_sweep` checks the manifest (and refuses it if it must),
reads its journal and returns a :class:`SweepPlan` that says what is left to do;
:func:`execute` carries it out and returns a :class:`SweepReport`; :func:`sweep_status`
reads the journal. Nothing here prints: progress goes to the injected ``Progress``.

Why the order of a batch (mode ``all``) is safe:

1. ``intent`` is journaled, durably, before anything is deleted. A crash at any later
   point leaves an item whose last event is ``intent``; the next sweep re-runs it.
2. One database transaction that first takes the write lock (SQLite ``BEGIN
   IMMEDIATE``; MySQL ``SELECT ... FOR UPDATE`` on the version rows, which blocks the
   shared lock every new foreign-key reference must take on its parent row). Under
   that lock it re-verifies every candidate (liveness.py) and deletes the dependents,
   the polymorphic rows, the versions and the artifacts left with no version, then
   commits. No writer can add a reference between the check and the delete
   (invariant 1). A crash before the commit rolls everything back.
3. The files are deleted only after the commit: from then on no row names them, so
   no reader can be handed a version whose files are gone. A crash between the commit
   and the end of the file deletes leaves ``intent`` as the last event; the re-run
   finds the rows gone, re-checks the URI guard and finishes the files (invariant 6).
4. ``deleted`` is journaled. Deleting a file twice is harmless (invariant 7).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar

import pyarrow as pa

from artifact_gc.errors import (
    DatabaseError,
    GCError,
    ItemFailure,
    ManifestRefused,
    StorageError,
    UsageError,
)
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.reasons import (
    PROTECT_NO_STORE,
    PROTECT_OUTSIDE_ROOT,
    PROTECT_ROOT_CHANGED,
    STATUS_CANDIDATE,
)
from artifact_gc.mark.sizes import footprint_paths
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.engine import create_engine, redact
from artifact_gc.metadb.fingerprint import DatabaseFingerprint, fingerprint
from artifact_gc.metadb.statements import execute_in, quoter, select_in
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.storage.backend import Backend, default_filesystem, open_backend
from artifact_gc.storage.fence import RealDirs, strictly_inside
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter, retry_transient
from artifact_gc.storage.urls import protocols
from artifact_gc.sweep.journal import (
    EVENT_DELETED,
    EVENT_FAILED,
    EVENT_FILES_DELETED,
    EVENT_INTENT,
    EVENT_PROTECTED,
    EVENT_REVIVED,
    EVENT_ROWS_DELETED,
    FINAL_EVENTS,
    Event,
    Journal,
)
from artifact_gc.sweep.verify import (
    BatchItem,
    Liveness,
    foreign_key_children,
    verify_batch,
    verify_references,
    verify_unreferenced,
)
from artifact_gc.zenml.config import resolve_database_url
from artifact_gc.zenml.schema import (
    ARTIFACT_TABLE,
    KNOWN_SCHEMA_VERSIONS,
    VERSION_TABLE,
    Dependent,
    ZenMLSchema,
    discover,
)
from artifact_gc.zenml.stores import ArtifactStore, load_artifact_stores

MODE_ALL = "all"
MODE_ONLY_ARTIFACT = "only-artifact"
MODE_ONLY_METADATA = "only-metadata"
MODES = (MODE_ALL, MODE_ONLY_ARTIFACT, MODE_ONLY_METADATA)

DEFAULT_WORKERS = 16
DEFAULT_MAX_AGE = timedelta(days=7)

#: The URI guard looks at rows created since the mark started, minus this margin, so
#: that a clock on the ZenML side running behind ours cannot hide a new row.
CLOCK_MARGIN = timedelta(hours=1)

#: Test hook: ``point:n[,point:n]`` kills the process with SIGKILL the n-th time it
#: reaches ``point`` (after_intent, in_db_batch, after_commit, in_files, before_final).
KILL_ENV = "ARTIFACT_GC_TEST_KILL_AT"

#: Test hook: ``point:n:DIR`` pauses the n-th time ``point`` is reached: it creates
#: ``DIR/paused`` and waits (up to 120 s) for ``DIR/resume`` (lock and race tests).
PAUSE_ENV = "ARTIFACT_GC_TEST_PAUSE_AT"

#: The event that ends an item, per mode (besides revived and protected).
DONE_EVENT = {
    MODE_ALL: EVENT_DELETED,
    MODE_ONLY_ARTIFACT: EVENT_FILES_DELETED,
    MODE_ONLY_METADATA: EVENT_ROWS_DELETED,
}




# ---------------------------------------------------------------------------
# Options, plan, report
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOptions:
    """How to sweep, passed explicitly from the CLI down to every call that uses it."""

    mode: str = MODE_ALL
    dry_run: bool = False
    batch_size: int | None = None
    workers: int = DEFAULT_WORKERS
    ignore_errors: bool = False
    max_manifest_age: timedelta | None = DEFAULT_MAX_AGE
    #: ``--storage-option`` values: for remote artifact stores, and for the manifest and
    #: its journal when they are remote. Never written anywhere.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    limits: RequestLimits = field(default_factory=RequestLimits)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown sweep mode {self.mode!r}; use one of {', '.join(MODES)}")
        if (self.batch_size is not None and self.batch_size < 1) or self.workers < 1:
            raise UsageError("--batch-size and --workers must be at least 1")


@dataclass
class SweepPlan:
    """What a sweep of a manifest will do: checked, and not yet started."""

    manifest_url: str
    journal_url: str
    db_url: str
    info: mf.ManifestInfo
    options: SweepOptions
    candidates: int
    journal_states: dict[str, int]
    items: pa.Table
    stores: dict[str, ArtifactStore]

    @property
    def versions(self) -> int:
        return int(self.items.num_rows)

    @property
    def resuming(self) -> int:
        """Pending items that an earlier sweep started (or failed) and did not finish."""
        events = self.items.column("last_event").to_pylist()
        return sum(1 for e in events if e is not None)

    @property
    def bytes(self) -> int | None:
        sizes = self.items.column("size_bytes").to_pylist()
        return None if any(s is None for s in sizes) else int(sum(sizes))

    @property
    def files(self) -> int | None:
        counts = self.items.column("file_count").to_pylist()
        return None if any(c is None for c in counts) else int(sum(counts))

    @property
    def batches(self) -> int:
        return -(-self.versions // self.batch_size)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or dialect_of(self.db_url).default_batch_size

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_url,
            "journal": self.journal_url,
            "database": redact(self.db_url),
            "mark_id": self.info.mark_id,
            "mark_started_at": self.info.started_at,
            "mode": self.options.mode,
            "dry_run": self.options.dry_run,
            "candidates": self.candidates,
            "journal_states": dict(self.journal_states),
            "versions": self.versions,
            "resuming": self.resuming,
            "bytes": self.bytes,
            "files": self.files,
            "batches": self.batches,
            "batch_size": self.batch_size,
            "workers": self.options.workers,
        }


@dataclass
class SweepReport:
    """What a sweep did (or, in a dry run, would do)."""

    sweep_id: str
    manifest_url: str
    mode: str
    dry_run: bool
    deleted: list[str] = field(default_factory=list)
    revived: dict[str, str] = field(default_factory=dict)
    protected: dict[str, str] = field(default_factory=dict)
    failures: list[ItemFailure] = field(default_factory=list)
    bytes_freed: int = 0
    bytes_unknown: int = 0
    files_deleted: int = 0
    paths_deleted: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    batches: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.deleted) / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id,
            "manifest": self.manifest_url,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "deleted": len(self.deleted),
            "revived": len(self.revived),
            "protected": len(self.protected),
            "failed": len(self.failures),
            "bytes_freed": self.bytes_freed,
            "bytes_unknown_versions": self.bytes_unknown,
            "files_deleted": self.files_deleted,
            "paths_deleted": self.paths_deleted,
            "rows_deleted": dict(self.rows_deleted),
            "retries": self.retries,
            "batches": self.batches,
            "elapsed_seconds": round(self.elapsed, 3),
            "versions_per_second": round(self.rate, 1),
            "revived_versions": dict(self.revived),
            "protected_versions": dict(self.protected),
            "failures": [asdict(f) for f in self.failures],
        }


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
        return sum(n for s, n in self.states.items() if s in ("pending", "in_progress", "failed",
                                                               EVENT_ROWS_DELETED,
                                                               EVENT_FILES_DELETED))

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_url,
            "journal": self.journal_url,
            "candidates": self.candidates,
            "done": self.states.get(EVENT_DELETED, 0),
            "revived": self.states.get(EVENT_REVIVED, 0),
            "protected": self.states.get(EVENT_PROTECTED, 0),
            "failed": self.states.get(EVENT_FAILED, 0),
            "in_progress": self.states.get("in_progress", 0),
            "rows_only_deleted": self.states.get(EVENT_ROWS_DELETED, 0),
            "files_only_deleted": self.states.get(EVENT_FILES_DELETED, 0),
            "pending": self.states.get("pending", 0),
            "remaining": self.remaining,
            "bytes_freed": self.bytes_freed,
            "sweeps": self.sweeps,
            "running": self.running,
            "failures": [asdict(f) for f in self.failures],
        }


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def plan_sweep(
    manifest_url: str, db_url: str | None = None, options: SweepOptions | None = None
) -> SweepPlan:
    """Check the manifest against the live store and work out what is left to sweep.

    Refuses (``ManifestRefused``, exit 5) a manifest that is incomplete, fails its
    checksum, has an unknown format or schema version, comes from another database
    or is older than ``max_manifest_age``. Reads only.
    """
    import warnings

    options = options or SweepOptions()
    storage = options.storage_options
    info = mf.verify(manifest_url, storage)
    manifest_schema = info.database.get("schema_version") or info.schema.get("version")
    if manifest_schema not in KNOWN_SCHEMA_VERSIONS:
        raise ManifestRefused(
            f"{manifest_url} was marked on ZenML schema {manifest_schema or 'unknown'}, which "
            f"this release does not know (known: {', '.join(sorted(KNOWN_SCHEMA_VERSIONS))})",
            manifest_url, "unknown_schema_version",
        )
    if options.max_manifest_age is not None:
        age = mf.utc_now() - info.started
        if age > options.max_manifest_age:
            raise ManifestRefused(
                f"{manifest_url} is {_age(age)} old, older than --max-manifest-age "
                f"({_age(options.max_manifest_age)}); mark again, or raise the limit",
                manifest_url, "too_old",
            )
    url = _database_url(db_url, info)
    if options.batch_size is None:
        options = replace(options, batch_size=dialect_of(url).default_batch_size)
    engine = create_engine(url, readonly=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema = discover(engine)
        live = fingerprint(engine, schema.version)
        marked = DatabaseFingerprint.from_dict(info.database)
        if not live.same_store(marked):
            raise ManifestRefused(
                f"{manifest_url} was marked on {marked.describe()}, not on the database "
                f"being swept ({live.describe()})",
                manifest_url, "other_database",
            )
        if schema.version not in KNOWN_SCHEMA_VERSIONS:
            raise ManifestRefused(
                f"the live store has ZenML schema {schema.version or 'unknown'}, which this "
                "release does not know; it may hold references we cannot see",
                manifest_url, "unknown_schema_version",
            )
        overrides = dict(info.parameters.get("store_roots") or {})
        stores = load_artifact_stores(engine, url, overrides, options.storage_options)
    finally:
        engine.dispose()
    journal = Journal(manifest_url, storage)
    if not options.dry_run:
        journal.check_unlocked()
    candidates, states, items = _read_pending(manifest_url, journal, options.mode, storage)
    return SweepPlan(
        manifest_url=manifest_url, journal_url=journal.url, db_url=url, info=info,
        options=options, candidates=candidates, journal_states=states, items=items,
        stores=stores,
    )


def _age(delta: timedelta) -> str:
    from artifact_gc.durations import format_duration

    return format_duration(delta)


def _database_url(explicit: str | None, info: mf.ManifestInfo) -> str:
    """``--db``, else mark's defaults, else the SQLite file the manifest was marked on."""
    if explicit:
        return resolve_database_url(explicit)
    try:
        return resolve_database_url(None)
    except DatabaseError:
        path = info.database.get("database")
        if info.database.get("dialect") == "sqlite" and path and os.path.exists(path):
            return f"sqlite:///{path}"
        raise


def _read_pending(
    manifest_url: str, journal: Journal, mode: str, storage: dict[str, Any]
) -> tuple[int, dict[str, int], pa.Table]:
    """Candidates not finished in ``mode``, by an anti-join with the journal (DuckDB)."""
    finals = ", ".join(f"'{e}'" for e in (*FINAL_EVENTS, DONE_EVENT[mode]))
    with mf.duckdb_for(manifest_url, storage) as con:
        journal.register(con)
        source = f"read_parquet({mf.parquet_source(manifest_url)})"
        con.execute(
            f"""
            CREATE TEMP VIEW state AS
            WITH last AS (
                SELECT artifact_version_id, arg_max(event, seq) AS event
                FROM journal GROUP BY artifact_version_id
            )
            SELECT m.*, last.event AS last_event
            FROM {source} m LEFT JOIN last USING (artifact_version_id)
            WHERE m.status = '{STATUS_CANDIDATE}'
            """
        )
        states = {
            str(state): int(n) for state, n in con.execute(
                "SELECT coalesce(last_event, 'pending'), count(*) FROM state GROUP BY 1"
            ).fetchall()
        }
        candidates = sum(states.values())
        # Sorted by URI so that nested paths and neighbours land in the same batch.
        items = con.sql(
            f"""
            SELECT artifact_version_id, artifact_id, uri, artifact_store_id, store_root,
                   coalesce(visualization_uris, []::VARCHAR[]) AS visualization_uris,
                   size_bytes, file_count, last_event
            FROM state
            WHERE last_event IS NULL OR last_event NOT IN ({finals})
            ORDER BY uri, artifact_version_id
            """
        ).to_arrow_table()
    return candidates, states, items


# ---------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------


def execute(
    plan: SweepPlan,
    *,
    progress: Progress | None = None,
    filesystem_factory: Any = None,
) -> SweepReport:
    """Carry out ``plan``; return what was done. A dry run writes nothing at all.

    A sweep that stops raises its ``GCError`` with what it did until then in
    ``error.done`` (``SweepReport.as_dict()``); the journal has the same."""
    progress = progress or NullProgress()
    runner = _Sweeper(plan, progress, filesystem_factory or default_filesystem)
    try:
        return runner.run()
    except GCError as error:
        report = runner.report
        # Only a sweep that got to its batches has something to show (a refused lock
        # or an unreachable database has not).
        if report.batches or report.failures or report.deleted:
            error.done = report.as_dict()
        raise
    finally:
        progress.close()


class _Killer:
    """The crash points of the kill -9 tests (a no-op unless ``KILL_ENV`` is set)."""

    def __init__(self) -> None:
        self.targets: dict[str, int] = {}
        for part in os.environ.get(KILL_ENV, "").split(","):
            name, _, count = part.strip().partition(":")
            if name:
                self.targets[name] = int(count or 1)
        self.seen: dict[str, int] = {}
        self.pause: tuple[str, int, str] | None = None
        spec = os.environ.get(PAUSE_ENV, "")
        if spec:
            name, count, directory = spec.split(":", 2)
            self.pause = (name, int(count), directory)

    def point(self, name: str) -> None:
        if name not in self.targets and (self.pause is None or self.pause[0] != name):
            return
        self.seen[name] = self.seen.get(name, 0) + 1
        if self.seen[name] == self.targets.get(name):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.pause is not None and self.pause[:2] == (name, self.seen[name]):
            directory = self.pause[2]
            open(os.path.join(directory, "paused"), "w").close()
            deadline = time.monotonic() + 120
            while not os.path.exists(os.path.join(directory, "resume")):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)


_T = TypeVar("_T")


@dataclass
class _Pending:
    """A batch whose database step is done and whose outcome is not yet journaled."""

    batch_no: int
    size: int
    file_result: dict[str, str]
    events: list[Event] = field(default_factory=list)
    deletable: list[BatchItem] = field(default_factory=list)
    files_after_commit: bool = False


class _BatchFailed(Exception):
    def __init__(self, failure: ItemFailure, error: GCError) -> None:
        super().__init__(error.message)
        self.failure = failure
        self.error = error


class _Sweeper:
    def __init__(self, plan: SweepPlan, progress: Progress, filesystem_factory: Any) -> None:
        self.plan = plan
        self.options = plan.options
        self.progress = progress
        self.filesystem_factory = filesystem_factory
        self.sweep_id = uuid.uuid4().hex
        self.report = SweepReport(self.sweep_id, plan.manifest_url, self.options.mode,
                                  self.options.dry_run)
        self.retries = RetryCounter()
        self.killer = _Killer()
        self.files: dict[str, Backend] = {}
        # One batch's files at a time, beside the next batch's database step.
        self._file_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc-files")
        self.since = plan.info.started - CLOCK_MARGIN
        self.engine: Any = None
        self.schema: ZenMLSchema | None = None
        self.journal = Journal(plan.manifest_url, self.options.storage_options)
        self.batch_no = 0
        self.extra_children: dict[str, list[tuple[str, str]]] = {}
        self.real_dirs = RealDirs()

    # -- the run ----------------------------------------------------------

    def run(self) -> SweepReport:
        import warnings

        started = time.monotonic()
        try:
            if self.options.dry_run:
                # Dry run: one choke point. A read-only engine (SQLite mode=ro, MySQL
                # READ ONLY sessions), no journal, no lock, no filesystem.
                self.engine = create_engine(self.plan.db_url, readonly=True)
                items = self.plan.items
            else:
                self.engine = create_engine(self.plan.db_url)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.schema = discover(self.engine)
            for table in (ARTIFACT_TABLE, "run_metadata"):
                handled = {VERSION_TABLE: ("artifact_id",),
                           "run_metadata_resource": ("run_metadata_id",)}
                self.extra_children[table] = [
                    (child, column) for child, column in foreign_key_children(self.engine, table)
                    if column not in handled.get(child, ())
                ]
            if self.options.dry_run:
                self._sweep(items)
            else:
                with self.journal.locked():
                    # Re-read the journal under the lock: another sweep may have
                    # finished items between the plan and now.
                    _, _, items = _read_pending(self.plan.manifest_url, self.journal,
                                                self.options.mode, self.options.storage_options)
                    self.batch_no = self._last_batch() + 1
                    self._sweep(items)
        finally:
            self._file_pool.shutdown(wait=True)
            for files in self.files.values():
                files.close()
            if self.engine is not None:
                self.engine.dispose()
            self.report.retries = self.retries.count
            self.report.elapsed = time.monotonic() - started
        return self.report

    def _last_batch(self) -> int:
        con = mf.connect_duckdb()
        try:
            if "file" not in protocols(self.journal.fs):
                con.register_filesystem(self.journal.fs)
            if self.journal.register(con) == 0:
                return 0
            row = con.execute("SELECT coalesce(max(batch), 0) FROM journal").fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()

    def _sweep(self, items: pa.Table) -> None:
        total = items.num_rows
        self.progress.stage("dry run: re-verifying" if self.options.dry_run else "sweeping",
                            total=total, unit="versions")
        size = self.plan.batch_size
        # In mode "all" a batch's files are deleted while the next batch goes through
        # the database. Each batch still follows intent -> commit -> files -> final
        # event, so a crash anywhere leaves at most two batches with an intent and no
        # final event, and the next sweep finishes both.
        in_flight: tuple[_Pending, Future[dict[str, str]]] | None = None
        try:
            for start in range(0, total, size):
                batch = [_item(row) for row in items.slice(start, size).to_pylist()]
                pending = self._guarded(self._batch_begin, batch)
                if in_flight is not None:
                    previous, in_flight = in_flight, None
                    self._guarded(self._batch_finish, previous[0], previous[1].result())
                if pending is not None:
                    if pending.files_after_commit:
                        in_flight = (pending, self._file_pool.submit(
                            self._delete_files, pending.deletable))
                    else:
                        self._guarded(self._batch_finish, pending, pending.file_result)
                self.report.batches += 1
                self.batch_no += 1
            if in_flight is not None:
                last, in_flight = in_flight, None
                self._guarded(self._batch_finish, last[0], last[1].result())
        finally:
            if in_flight is not None:
                # Only while an error propagates: let the files already being deleted
                # finish and be journaled, work that a resume then need not redo.
                pending, future = in_flight
                try:
                    self._batch_finish(pending, future.result())
                except _BatchFailed as failed:
                    self.report.failures.append(failed.failure)

    def _guarded(self, step: Callable[..., _T], *args: Any) -> _T:
        try:
            return step(*args)
        except _BatchFailed as failed:
            self.report.failures.append(failed.failure)
            raise failed.error from failed

    # -- one batch --------------------------------------------------------

    def _batch_begin(self, items: list[BatchItem]) -> _Pending | None:
        """Fence, journal the intent, and do the batch's database step."""
        self.real_dirs = RealDirs()  # symlinks resolved afresh for every batch
        ready: list[BatchItem] = []
        protected: list[Event] = []
        for item in items:
            reason = self._fence(item)
            if reason:
                protected.append(Event(item.artifact_version_id, EVENT_PROTECTED, reason=reason))
                self.report.protected[item.artifact_version_id] = reason
            else:
                ready.append(item)
        if self.options.dry_run:
            self._dry_batch(ready)
            self.progress.advance(len(items))
            return None
        mode = self.options.mode
        self._journal(protected)
        if not ready:
            self.progress.advance(len(items))
            return None
        # 1. Intent, durable before anything is deleted.
        self._journal([Event(i.artifact_version_id, EVENT_INTENT) for i in ready])
        self.killer.point("after_intent")
        try:
            live, rows, file_result = self._retry_db(ready)
        except Exception as exc:  # noqa: BLE001 - every cause is journaled and reported
            cause = f"{type(exc).__name__}: {exc}"
            failed = [Event(i.artifact_version_id, EVENT_FAILED, error=cause) for i in ready]
            self._journal(failed)
            failures = [ItemFailure(i.artifact_version_id, "database", cause) for i in ready]
            self.progress.advance(len(items))
            self._fail(failures, DatabaseError(
                f"the database step of batch {self.batch_no} failed for good "
                f"(first version {ready[0].artifact_version_id}, {len(ready)} in the batch): "
                f"{cause}. Run gc sweep again to resume."))
            return None
        self.killer.point("after_commit")
        for table, count in rows.items():
            self.report.rows_deleted[table] = self.report.rows_deleted.get(table, 0) + count
        pending = _Pending(batch_no=self.batch_no, size=len(items), file_result=file_result)
        for item in ready:
            vid = item.artifact_version_id
            if vid in live.referenced:
                pending.events.append(Event(vid, EVENT_REVIVED, reason=live.referenced[vid]))
                self.report.revived[vid] = live.referenced[vid]
            elif vid in live.uri_conflicts:
                pending.events.append(Event(vid, EVENT_PROTECTED, reason=live.uri_conflicts[vid]))
                self.report.protected[vid] = live.uri_conflicts[vid]
            else:
                pending.deletable.append(item)
        # 2. In mode "all" the files go once the rows are gone for good: from then on
        # no reference to these versions can be created.
        pending.files_after_commit = mode == MODE_ALL and bool(pending.deletable)
        return pending

    def _batch_finish(self, pending: _Pending, file_result: dict[str, str]) -> None:
        """Record the outcome of a batch whose database step is done."""
        mode = self.options.mode
        events, failures = pending.events, []
        freed = 0
        for item in pending.deletable:
            vid = item.artifact_version_id
            error = file_result.get(vid) if mode != MODE_ONLY_METADATA else None
            if error:
                events.append(Event(vid, EVENT_FAILED, error=error))
                failures.append(ItemFailure(vid, "files", error))
                continue
            events.append(Event(vid, DONE_EVENT[mode], bytes=item.size_bytes,
                                files=item.file_count))
            self.report.deleted.append(vid)
            if mode != MODE_ONLY_METADATA:
                self.report.paths_deleted += len(item.footprint)
                self.report.files_deleted += item.file_count or 0
                if item.size_bytes is None:
                    self.report.bytes_unknown += 1
                else:
                    freed += item.size_bytes
        self.report.bytes_freed += freed
        self.killer.point("before_final")
        if mode != MODE_ONLY_ARTIFACT:
            self._journal(events, batch=pending.batch_no)
        # (only-artifact journaled inside the transaction, see _db_phase)
        self.progress.advance(pending.size, freed)
        if failures:
            self._fail(failures, StorageError(
                f"could not delete the files of artifact version {failures[0].artifact_version_id}"
                f": {failures[0].cause}"
                + (f" (and {len(failures) - 1} more in batch {pending.batch_no})"
                   if len(failures) > 1 else "")
                + ". Run gc sweep again to resume.", path=None))

    def _fail(self, failures: list[ItemFailure], error: GCError) -> None:
        if self.options.ignore_errors:
            self.report.failures.extend(failures)
            return
        self.report.failures.extend(failures[1:])
        raise _BatchFailed(failures[0], error)

    def _journal(self, events: Sequence[Event], batch: int | None = None) -> None:
        self.journal.append(self.sweep_id, self.batch_no if batch is None else batch,
                            self.options.mode, events)

    def _fence(self, item: BatchItem) -> str | None:
        """Why an item must not be touched before asking the database, if it must not."""
        store = self.plan.stores.get(item.store_id or "")
        if store is None or store.root is None or not item.store_root:
            return PROTECT_NO_STORE
        if store.root != item.store_root:
            # The store was reconfigured since the mark: the manifest's paths may no
            # longer be where that store keeps its data.
            return PROTECT_ROOT_CHANGED
        # Symlinks are resolved here already, before the database step: a version whose
        # directory is a link out of the root must keep its rows, not lose them and then
        # fail at the files. StoreFiles repeats the check right before rm.
        if not all(strictly_inside(path, item.store_root, dirs=self.real_dirs)
                   for path in item.footprint):
            return PROTECT_OUTSIDE_ROOT
        return None

    # -- the database -----------------------------------------------------

    def _retry_db(self, items: list[BatchItem]) -> tuple[Liveness, dict[str, int], dict[str, str]]:
        # A batch's transaction rolls back whole on a deadlock or lock timeout, so
        # running it again from the start is safe.
        result: tuple[Liveness, dict[str, int], dict[str, str]] | None = None
        for attempt in retry_transient(dialect_of(self.engine).is_transient, self.retries,
                                       attempts=6,
                                       initial=0.1, maximum=5):
            with attempt:
                result = self._db_phase(items)
        assert result is not None
        return result

    def _db_phase(self, items: list[BatchItem]) -> tuple[Liveness, dict[str, int], dict[str, str]]:
        assert self.schema is not None
        mode = self.options.mode
        ids = [i.artifact_version_id for i in items]
        rows: dict[str, int] = {}
        files: dict[str, str] = {}
        unlocked: Liveness | None = None
        if not dialect_of(self.engine).lock_blocks_all_writers:
            # On MySQL/MariaDB, FOR UPDATE on the version rows blocks new foreign-key
            # references to them, and nothing more: a new step configuration or a new
            # version whose URI overlaps is not held back by it, wherever the check
            # runs. These two checks scan unindexed columns, so they run before the
            # locks are taken instead of while they are held (on SQLite the write lock
            # covers them, so there they stay inside).
            unlocked = Liveness()
            with self.engine.connect() as reader:
                verify_unreferenced(reader, self.schema, items, self.since, unlocked)
        with dialect_of(self.engine).locked_transaction(self.engine, VERSION_TABLE, ids
                                                        ) as connection:
            if unlocked is None:
                live = verify_batch(connection, self.schema, items, self.since)
            else:
                live = verify_references(connection, self.schema, items)
                for vid, reason in unlocked.referenced.items():
                    if vid in live.existing:
                        live.referenced.setdefault(vid, reason)
                live.uri_conflicts.update(unlocked.uri_conflicts)
            dead = [vid for vid in ids if vid in live.existing and not live.keep_reason(vid)]
            if mode == MODE_ONLY_ARTIFACT:
                # Files only, under the lock: no one can link a version between the
                # check and the delete. The journal is written before the lock is let go.
                deletable = [i for i in items if not live.keep_reason(i.artifact_version_id)]
                files = self._delete_files(deletable)
                events = [
                    Event(i.artifact_version_id, EVENT_FAILED, error=files[i.artifact_version_id])
                    if i.artifact_version_id in files else
                    Event(i.artifact_version_id, EVENT_FILES_DELETED, bytes=i.size_bytes,
                          files=i.file_count)
                    for i in deletable
                ] + [
                    Event(vid, EVENT_REVIVED, reason=live.referenced[vid])
                    for vid in ids if vid in live.referenced
                ] + [
                    Event(vid, EVENT_PROTECTED, reason=live.uri_conflicts[vid])
                    for vid in ids if vid in live.uri_conflicts and vid not in live.referenced
                ]
                self._journal(events)
            elif dead:
                rows = self._delete_rows(connection, dead)
                self.killer.point("in_db_batch")
        return live, rows, files

    def _delete_rows(self, connection: Any, ids: list[str]) -> dict[str, int]:
        """Delete the versions ``ids`` and everything that belongs to them only.

        Every row removed here is one the foreign keys would have removed by cascade,
        or a polymorphic row that names a deleted version or artifact: with foreign
        keys off (SQLite) we do it ourselves, children before parents.
        """
        assert self.schema is not None
        import sqlalchemy as sa

        q = quoter(connection)
        counts: dict[str, int] = {}

        def add(table: str, n: int) -> None:
            if n:
                counts[table] = counts.get(table, 0) + n

        # Dependents (visualizations, curated visualizations), deepest first.
        dependents = self.schema.dependents
        write_locked = dialect_of(connection).lock_blocks_all_writers
        for dependent in sorted(dependents, key=lambda d: -_depth(d, dependents)):
            if write_locked and dependent.parent_table != VERSION_TABLE and not connection.execute(
                    sa.text(f"SELECT 1 FROM {q(dependent.table)} LIMIT 1")).first():
                # An empty grandchild table (ZenML's curated_visualization, usually)
                # has nothing to delete, and its filter would scan the whole
                # visualization table once more. BEGIN IMMEDIATE holds the write
                # lock, so it stays empty until we commit.
                continue
            where = _dependent_filter(q, dependent, dependents)
            add(dependent.table, execute_in(
                connection, f"DELETE FROM {q(dependent.table)} WHERE {where}", ids))
        self._delete_polymorphic(connection, ids, "artifact_version", add)
        parents = {str(r[0]) for r in select_in(
            connection,
            f"SELECT DISTINCT {q('artifact_id')} FROM {q(VERSION_TABLE)} WHERE {q('id')} IN :ids",
            ids,
        )}
        add(VERSION_TABLE, execute_in(
            connection, f"DELETE FROM {q(VERSION_TABLE)} WHERE {q('id')} IN :ids", ids))
        # Each artifact left with no version is deleted once, whatever the number of its
        # versions in the batch.
        if parents:
            still = {str(r[0]) for r in select_in(
                connection,
                f"SELECT DISTINCT {q('artifact_id')} FROM {q(VERSION_TABLE)} "
                f"WHERE {q('artifact_id')} IN :ids",
                parents,
            )}
            empty = parents - still - self._referenced(connection, ARTIFACT_TABLE, parents)
            if empty:
                self._delete_polymorphic(connection, sorted(empty), "artifact", add)
                add(ARTIFACT_TABLE, execute_in(
                    connection, f"DELETE FROM {q(ARTIFACT_TABLE)} WHERE {q('id')} IN :ids",
                    empty))
        return counts

    def _delete_polymorphic(self, connection: Any, ids: Sequence[str], resource_type: str,
                            add: Any) -> None:
        assert self.schema is not None
        q = quoter(connection)
        tables = self.schema.tables
        if "run_metadata_resource" in tables:
            metadata = {str(r[0]) for r in select_in(
                connection,
                f"SELECT {q('run_metadata_id')} FROM {q('run_metadata_resource')} "
                f"WHERE {q('resource_type')} = :t AND {q('resource_id')} IN :ids",
                ids, t=resource_type,
            )}
            add("run_metadata_resource", execute_in(
                connection,
                f"DELETE FROM {q('run_metadata_resource')} "
                f"WHERE {q('resource_type')} = :t AND {q('resource_id')} IN :ids",
                ids, t=resource_type,
            ))
            if metadata and "run_metadata" in tables:
                # A run_metadata row can be shared by several resources (a step and
                # its outputs); only the ones left with no resource at all go.
                shared = {str(r[0]) for r in select_in(
                    connection,
                    f"SELECT DISTINCT {q('run_metadata_id')} FROM {q('run_metadata_resource')}"
                    f" WHERE {q('run_metadata_id')} IN :ids",
                    metadata,
                )}
                orphans = metadata - shared - self._referenced(connection, "run_metadata",
                                                               metadata)
                add("run_metadata", execute_in(
                    connection, f"DELETE FROM {q('run_metadata')} WHERE {q('id')} IN :ids",
                    orphans))
        if "tag_resource" in tables:
            add("tag_resource", execute_in(
                connection,
                f"DELETE FROM {q('tag_resource')} "
                f"WHERE {q('resource_type')} = :t AND {q('resource_id')} IN :ids",
                ids, t=resource_type,
            ))

    def _referenced(self, connection: Any, table: str, ids: set[str]) -> set[str]:
        """Ids of ``table`` that a foreign key we do not handle ourselves points at.

        With foreign keys off nothing would stop us from orphaning such a child, so a
        parent that has one is kept (a new ZenML release adding one keeps more).
        """
        q = quoter(connection)
        kept: set[str] = set()
        for child, column in self.extra_children.get(table, []):
            kept |= {str(r[0]) for r in select_in(
                connection,
                f"SELECT DISTINCT {q(column)} FROM {q(child)} WHERE {q(column)} IN :ids", ids)}
        return kept

    # -- the files --------------------------------------------------------

    def _store_files(self, item: BatchItem) -> Backend:
        store_id = item.store_id or ""
        files = self.files.get(store_id)
        if files is None:
            store = self.plan.stores[store_id]
            assert item.store_root is not None
            # The limits travel with the options: this runs on the file thread, which
            # must honour --max-requests-per-second as much as the main one.
            files = open_backend(store, item.store_root, self.filesystem_factory(store),
                                 workers=self.options.workers, retries=self.retries,
                                 limits=self.options.limits)
            self.files[store_id] = files
        return files

    def _delete_files(self, items: Sequence[BatchItem]) -> dict[str, str]:
        """Delete the footprints of ``items``; return the errors by version id."""
        by_store: dict[str, list[BatchItem]] = {}
        for item in items:
            by_store.setdefault(item.store_id or "", []).append(item)
        errors: dict[str, str] = {}
        for group in by_store.values():
            files = self._store_files(group[0])
            paths = [p for item in group for p in item.footprint]
            try:
                outcome = files.delete(paths, on_chunk=lambda _n: self.killer.point("in_files"))
            except Exception as exc:  # noqa: BLE001 - the cause is reported per item
                for item in group:
                    errors[item.artifact_version_id] = f"{type(exc).__name__}: {exc}"
                continue
            for item in group:
                for path in item.footprint:
                    if path in outcome.failed:
                        errors[item.artifact_version_id] = f"{path}: {outcome.failed[path]}"
                        break
        return errors

    # -- dry run ----------------------------------------------------------

    def _dry_batch(self, items: list[BatchItem]) -> None:
        assert self.schema is not None
        if not items:
            return
        with self.engine.connect() as connection:
            live = verify_batch(connection, self.schema, items, self.since)
            connection.rollback()
        for item in items:
            vid = item.artifact_version_id
            if vid in live.referenced:
                self.report.revived[vid] = live.referenced[vid]
            elif vid in live.uri_conflicts:
                self.report.protected[vid] = live.uri_conflicts[vid]
            else:
                self.report.deleted.append(vid)
                if self.options.mode != MODE_ONLY_METADATA:
                    self.report.paths_deleted += len(item.footprint)
                    self.report.files_deleted += item.file_count or 0
                    if item.size_bytes is None:
                        self.report.bytes_unknown += 1
                    else:
                        self.report.bytes_freed += item.size_bytes


def _item(row: dict[str, Any]) -> BatchItem:
    return BatchItem(
        artifact_version_id=row["artifact_version_id"],
        artifact_id=row["artifact_id"],
        footprint=tuple(footprint_paths(row["uri"], row["visualization_uris"])),
        size_bytes=row["size_bytes"],
        file_count=row["file_count"],
        store_id=row["artifact_store_id"],
        store_root=row["store_root"],
    )


def _depth(dependent: Dependent, dependents: Sequence[Dependent]) -> int:
    depth = 1
    parent = dependent.parent_table
    seen = {dependent.table}
    while parent != VERSION_TABLE:
        owner = next((d for d in dependents if d.table == parent), None)
        if owner is None or owner.table in seen:
            break
        seen.add(owner.table)
        depth += 1
        parent = owner.parent_table
    return depth


def _dependent_filter(q: Any, dependent: Dependent, dependents: Sequence[Dependent]) -> str:
    """SQL selecting ``dependent``'s rows that hang (perhaps indirectly) off ``:ids``."""
    if dependent.parent_table == VERSION_TABLE:
        return f"{q(dependent.column)} IN :ids"
    owner = next(d for d in dependents if d.table == dependent.parent_table)
    inner = _dependent_filter(q, owner, dependents)
    return (f"{q(dependent.column)} IN (SELECT {q(dependent.parent_column)} "
            f"FROM {q(dependent.parent_table)} WHERE {inner})")


# ---------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------


def sweep_status(manifest_url: str, storage_options: dict[str, Any] | None = None
                 ) -> SweepStatus:
    """Where the sweeps of ``manifest_url`` stand, from its journal (DuckDB)."""
    storage = storage_options or {}
    mf.check_format(mf.read_info(manifest_url, storage), manifest_url)
    journal = Journal(manifest_url, storage)
    with mf.duckdb_for(manifest_url, storage) as con:
        journal.register(con)
        source = f"read_parquet({mf.parquet_source(manifest_url)})"
        final = ", ".join(f"'{e}'" for e in (*FINAL_EVENTS, EVENT_FAILED, EVENT_ROWS_DELETED,
                                             EVENT_FILES_DELETED))
        con.execute(
            f"""
            CREATE TEMP VIEW state AS
            WITH last AS (
                SELECT artifact_version_id, arg_max(event, seq) AS event,
                       arg_max(error, seq) AS error, arg_max(bytes, seq) AS bytes
                FROM journal GROUP BY artifact_version_id
            )
            SELECT m.artifact_version_id, m.size_bytes,
                   CASE WHEN last.event IS NULL THEN 'pending'
                        WHEN last.event IN ({final}) THEN last.event
                        ELSE 'in_progress' END AS state,
                   last.error, last.bytes
            FROM {source} m LEFT JOIN last USING (artifact_version_id)
            WHERE m.status = '{STATUS_CANDIDATE}'
            """
        )
        states = {str(s): int(n) for s, n in con.execute(
            "SELECT state, count(*) FROM state GROUP BY 1").fetchall()}
        row = con.execute(
            "SELECT sum(coalesce(bytes, size_bytes)), count(*) FILTER "
            "(WHERE coalesce(bytes, size_bytes) IS NULL) FROM state WHERE state = 'deleted'"
        ).fetchone()
        freed = None if row is None or row[0] is None or row[1] else int(row[0])
        failures = [
            ItemFailure(str(vid), "sweep", str(err or ""))
            for vid, err in con.execute(
                "SELECT artifact_version_id, error FROM state WHERE state = 'failed' "
                "ORDER BY artifact_version_id LIMIT 100").fetchall()
        ]
        sweeps_row = con.execute("SELECT count(DISTINCT sweep_id) FROM journal").fetchone()
    running = False
    try:
        journal.check_unlocked()
    except GCError:
        running = True
    return SweepStatus(
        manifest_url=manifest_url, journal_url=journal.url,
        candidates=sum(states.values()), states=states, bytes_freed=freed,
        failures=failures, sweeps=int(sweeps_row[0]) if sweeps_row else 0, running=running,
    )

