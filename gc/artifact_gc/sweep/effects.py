"""What a batch does to the world, behind one protocol: :class:`Effects`.

The batch loop (execute.py) writes nothing itself. It journals, runs the database
step and deletes files through an ``Effects``, and :func:`open_effects` is the one
place that decides whether those happen:

- :class:`LiveEffects` holds the sweep lock, journals durably, re-verifies and
  deletes rows in one locked transaction per batch, and deletes files;
- :class:`DryRunEffects` re-verifies on a read-only engine (SQLite ``mode=ro``,
  MySQL ``READ ONLY`` sessions) and does nothing else: no journal, no lock, no
  filesystem.

Why the database step is safe: one transaction that first takes the write lock
(SQLite ``BEGIN IMMEDIATE``; MySQL ``SELECT ... FOR UPDATE`` on the version rows,
which blocks the shared lock every new foreign-key reference must take on its parent
row). Under that lock it re-verifies every candidate (verify.py) and deletes the rows
(rows.py), then commits. No writer can add a reference between the check and the
delete (invariant 1). A crash before the commit rolls everything back; a deadlock or
lock timeout rolls the batch back whole, so it is run again from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.engine import create_engine
from artifact_gc.storage.backend import Backend, default_filesystem, open_backend
from artifact_gc.storage.retry import RetryCounter, retry_transient
from artifact_gc.storage.trash import open_file_undo
from artifact_gc.sweep import hooks as points
from artifact_gc.sweep.batch import Verdict, known_objects
from artifact_gc.sweep.hooks import SweepHooks
from artifact_gc.sweep.journal import Event, Journal
from artifact_gc.sweep.options import MODE_ONLY_ARTIFACT
from artifact_gc.sweep.orphan_files import empty_dirs_after, own_folders
from artifact_gc.sweep.plan import SweepPlan, discover_schema, read_pending
from artifact_gc.sweep.rows import Cascade
from artifact_gc.sweep.verify import (
    BatchItem,
    Liveness,
    NewPaths,
    SweepPolicy,
    verify_batch,
    verify_before_commit,
    verify_references,
    verify_unreferenced,
)
from artifact_gc.undo.area import UndoArea
from artifact_gc.undo.files import TrashingFiles
from artifact_gc.undo.sweeping import SweepUndoWriter
from artifact_gc.zenml.schema import VERSION_TABLE, ZenMLSchema
from artifact_gc.zenml.stores import ArtifactStore

#: An artifact store -> its fsspec filesystem (tests pass hostile ones).
FilesystemFactory = Callable[[ArtifactStore], Any]


@dataclass
class DatabaseOutcome:
    """What a batch's database step found and did."""

    live: Liveness
    rows: dict[str, int] = field(default_factory=dict)
    #: Mode only-artifact deletes the files under the lock: the errors, by version id.
    file_errors: dict[str, str] = field(default_factory=dict)
    #: The outcome events are journaled already (only-artifact, before the lock went).
    journaled: bool = False


class Effects(Protocol):
    """Everything a sweep changes, and what it reads where it starts changing."""

    #: What the progress display calls the work.
    stage: str
    #: The items left to sweep, read where the effects begin (under the lock).
    items: pa.Table
    #: The number of the first batch (batch numbers go on across sweeps).
    first_batch: int

    def journal(self, batch: int, events: Sequence[Event]) -> None:
        """Write ``events`` durably before returning."""

    def warm(self, items: Sequence[BatchItem]) -> None:
        """Read, without locks, what the database step of ``items`` will read and
        delete, so that its locked transaction finds it in the database's memory.
        Decides nothing; may run while an earlier batch is in the database."""

    def database_step(self, batch: int, items: list[BatchItem]) -> DatabaseOutcome:
        """Re-verify ``items`` against the live database and delete what is dead."""

    def delete_files(self, items: Sequence[BatchItem],
                     listed: Mapping[str, Mapping[str, Sequence[str]]] | None = None
                     ) -> dict[str, str]:
        """Delete the footprints of ``items``; return the errors by version id.
        ``listed``: by store id, the objects a listing made just now found under each
        path, handed to that store's backend instead of the recorded ones."""

    def freed(self, nbytes: int) -> int:
        """Of ``nbytes`` counted as freed, how many really left the store."""

    def absent(self, items: Sequence[BatchItem]) -> set[str]:
        """The ids of ``items`` none of whose paths exists (a read)."""


@contextmanager
def open_effects(plan: SweepPlan, *, sweep_id: str, hooks: SweepHooks, retries: RetryCounter,
                 filesystem_factory: FilesystemFactory | None = None) -> Iterator[Effects]:
    """The effects of a sweep of ``plan``: the one place a dry run is decided."""
    if plan.options.dry_run:
        with _dry_run(plan, hooks) as dry:
            yield dry
    else:
        with _live(plan, sweep_id, hooks, retries,
                   filesystem_factory or default_filesystem) as live:
            yield live


# ---------------------------------------------------------------------------
# A real sweep
# ---------------------------------------------------------------------------


@contextmanager
def _live(plan: SweepPlan, sweep_id: str, hooks: SweepHooks, retries: RetryCounter,
          filesystem_factory: FilesystemFactory) -> Iterator[LiveEffects]:
    engine = create_engine(plan.db_url)
    try:
        schema = discover_schema(engine)
        cascade = Cascade.discover(engine, schema)
        journal = plan.open_journal()
        with journal.locked():
            # Re-read the journal under the lock: another sweep may have finished
            # items between the plan and now.
            _, _, items = read_pending(journal, plan.options, plan.by_key,
                                      plan.key_column)
            undo = _undo_writer(plan, journal, schema, sweep_id, items.num_rows)
            effects = LiveEffects(plan, engine, schema, cascade, journal, sweep_id, hooks,
                                  retries, filesystem_factory, items,
                                  first_batch=journal.last_batch() + 1, undo=undo)
            try:
                yield effects
            finally:
                effects.close()
    finally:
        engine.dispose()


def _undo_writer(plan: SweepPlan, journal: Journal, schema: ZenMLSchema, sweep_id: str,
                 pending: int) -> SweepUndoWriter | None:
    """The undo side of a sweep with an undo window, recorded before anything is
    deleted; None without one."""
    if not plan.options.undo or not pending:
        return None
    assert plan.options.undo_window is not None
    writer = SweepUndoWriter(UndoArea(journal.url, plan.options.storage_options), schema,
                             sweep_id)
    writer.begin(plan.info.mark_id, plan.options.undo_window, plan.file_undo)
    return writer


class LiveEffects:
    """A sweep that deletes: the journal, the locked database step, the files."""

    stage = "sweeping"

    def __init__(self, plan: SweepPlan, engine: Any, schema: ZenMLSchema, cascade: Cascade,
                 journal: Journal, sweep_id: str, hooks: SweepHooks, retries: RetryCounter,
                 filesystem_factory: FilesystemFactory, items: pa.Table, first_batch: int,
                 undo: SweepUndoWriter | None = None) -> None:
        self.plan = plan
        self.options = plan.options
        self.engine = engine
        self.schema = schema
        self.cascade = cascade
        self._journal = journal
        self.sweep_id = sweep_id
        self.hooks = hooks
        self.retries = retries
        self.filesystem_factory = filesystem_factory
        self.items = items
        # The mark's --keep-tag and --release-unreachable-snapshots, re-verified.
        self.policy = SweepPolicy.of(plan.info.parameters, plan.info.started)
        self.first_batch = first_batch
        self.undo = undo
        self._files: dict[str, Backend] = {}
        #: The URI guard's reads, kept from batch to batch while no row is added.
        self.new_paths = NewPaths.of(engine, schema, plan.verify_since)

    def close(self) -> None:
        for files in self._files.values():
            files.close()

    def journal(self, batch: int, events: Sequence[Event]) -> None:
        with self.hooks.phase(points.JOURNAL):
            self._journal.append(self.sweep_id, batch, self.options.mode, events)

    def freed(self, nbytes: int) -> int:
        return nbytes

    def absent(self, items: Sequence[BatchItem]) -> set[str]:
        # Asked only for versions whose rows someone else deleted before this sweep
        # came to them, which are few: one existence check per path.
        gone: set[str] = set()
        for item in items:
            store = self.plan.stores.get(item.store_id or "")
            if store is None:
                continue
            fs = self.filesystem_factory(store)
            exists = getattr(fs, "lexists", fs.exists)
            if not any(exists(path) for path in item.footprint):
                gone.add(item.artifact_version_id)
        return gone

    # -- the database -----------------------------------------------------

    def warm(self, items: Sequence[BatchItem]) -> None:
        if dialect_of(self.engine).lock_blocks_all_writers or not items:
            # SQLite: one process's page cache, kept from batch to batch already
            # (metadb.dialect), and a read beside the writer would only contend.
            return
        # Plain reads on a connection of their own, at READ COMMITTED: they take no
        # lock, wait for none, and what they return is thrown away. The batch's
        # transaction asks every question again under its locks.
        ids = [item.artifact_version_id for item in items]
        with self.hooks.phase(points.WARM):
            try:
                with self.engine.connect() as reader:
                    reader = reader.execution_options(isolation_level="READ COMMITTED")
                    verify_references(reader, self.schema, items)
                    self.cascade.warm(reader, ids)
                    reader.rollback()
            except Exception:  # noqa: BLE001 - a cache left cold costs time, not safety
                # The batch's own transaction meets the same error, if it lasts, and
                # handles it as it always has (retry, or a failed batch, journaled).
                pass

    def database_step(self, batch: int, items: list[BatchItem]) -> DatabaseOutcome:
        # A batch's transaction rolls back whole on a deadlock or lock timeout, so
        # running it again from the start is safe.
        outcome: DatabaseOutcome | None = None
        for attempt in retry_transient(dialect_of(self.engine).is_transient, self.retries,
                                       attempts=6, initial=0.1, maximum=5):
            with attempt:
                outcome = self._transaction(batch, items)
        assert outcome is not None
        return outcome

    def _transaction(self, batch: int, items: list[BatchItem]) -> DatabaseOutcome:
        ids = [i.artifact_version_id for i in items]
        dialect = dialect_of(self.engine)
        unlocked: Liveness | None = None
        if not dialect.lock_blocks_all_writers:
            # On MySQL/MariaDB, FOR UPDATE on the version rows blocks new foreign-key
            # references to them, and nothing more: a new step configuration or a new
            # version whose URI overlaps is not held back by it. These two checks scan
            # unindexed columns, so they run before the locks are taken; the
            # configurations are read once more at the point of no return, under the
            # guard's locks (see verify_before_commit). On SQLite the write lock covers
            # them inside.
            unlocked = Liveness()
            with self.hooks.phase(points.VERIFY), self.engine.connect() as reader:
                verify_unreferenced(reader, self.schema, items, self.plan.verify_since,
                                    unlocked, self.policy, self.new_paths)
        # The guard is entered first so that it ends after the batch's commit: its
        # locks hold back new step configurations until the deletes are durable.
        with dialect.reference_guard(self.engine) as guard, \
                dialect.locked_transaction(self.engine, VERSION_TABLE, ids) as connection:
            with self.hooks.phase(points.VERIFY):
                live = self._verify_locked(connection, items, unlocked)
            if self.options.mode == MODE_ONLY_ARTIFACT:
                if guard is not None:
                    # Files cannot be rolled back: the last check comes before them.
                    with self.hooks.phase(points.VERIFY):
                        verify_before_commit(guard, connection, self.schema, items,
                                             self.plan.verify_since, live,
                                             policy=self.policy)
                # Files only, under the lock: no one can link a version between the
                # check and the delete. The journal is written before the lock goes.
                verdict = Verdict.of(live, items)
                errors = self.delete_files(verdict.deletable)
                self.journal(batch, verdict.events(errors, self.options.done_event))
                return DatabaseOutcome(live, file_errors=errors, journaled=True)
            dead = [vid for vid in ids if vid in live.existing and not live.keep_reason(vid)]
            rows: dict[str, int] = {}
            capture = self.undo.capture(batch) if self.undo is not None and dead else None
            if dead:
                with self.hooks.phase(points.DELETE_ROWS):
                    rows = self.cascade.delete(connection, dead, capture)
                self.hooks.point(points.IN_DB_BATCH)
                if guard is not None:
                    # Rolls the batch back (RerunTransaction, retried from the start)
                    # if a reference came since the first check.
                    with self.hooks.phase(points.VERIFY):
                        verify_before_commit(guard, connection, self.schema, items,
                                             self.plan.verify_since, live, deleted=dead,
                                             policy=self.policy)
            if capture is not None and self.undo is not None:
                # The deleted rows are durable before the commit (leaving this block):
                # a committed delete can always be restored.
                with self.hooks.phase(points.UNDO_ROWS):
                    self.undo.keep(batch, capture)
        if self.new_paths is not None and dead:
            # Committed: the URI guard's digests lose exactly these rows. (An error
            # before this line leaves them to differ, and the next read is in full.)
            self.new_paths.deleted(dead)
        return DatabaseOutcome(live, rows)

    def _verify_locked(self, connection: Any, items: list[BatchItem],
                       unlocked: Liveness | None) -> Liveness:
        if unlocked is None:
            return verify_batch(connection, self.schema, items, self.plan.verify_since,
                                self.policy)
        # The version rows the lock found are the ones that exist (MySQL/MariaDB).
        live = verify_references(connection, self.schema, items,
                                 existing=dialect_of(connection).locked_ids(connection))
        for vid, reason in unlocked.referenced.items():
            if vid in live.existing:
                live.referenced.setdefault(vid, reason)
        live.uri_conflicts.update(unlocked.uri_conflicts)
        return live

    # -- the files --------------------------------------------------------

    def delete_files(self, items: Sequence[BatchItem],
                     listed: Mapping[str, Mapping[str, Sequence[str]]] | None = None
                     ) -> dict[str, str]:
        with self.hooks.phase(points.DELETE_FILES):
            by_store: dict[str, list[BatchItem]] = {}
            for item in items:
                by_store.setdefault(item.store_id or "", []).append(item)
            errors: dict[str, str] = {}
            for store_id, group in by_store.items():
                files = self._store_files(group[0])
                paths = [p for item in group for p in item.footprint]
                # The objects the mark listed, where it recorded them: deleted without
                # a listing first (the bucket stores: S3, GCS, Azure). Or those the
                # caller's own listing found just now (the orphan sweep's grace check):
                # the backend deletes exactly those.
                known: Mapping[str, Sequence[str]] | None = (listed or {}).get(store_id)
                if known is None:
                    known = {path: urls for item in group
                             for path, urls in known_objects(item).items()}
                extra: dict[str, Any] = {"known": known} if known else {}
                # A local trash takes a step output's own <step_run_id> folder along
                # with it when the output is all it holds (one rename instead of a
                # folder made and one removed); only folders no other writer shares.
                if getattr(files, "takes_parents", False):
                    extra["parents"] = own_folders(group)
                try:
                    outcome = files.delete(
                        paths, on_chunk=lambda _n: self.hooks.point(points.IN_FILES),
                        **extra)
                except Exception as exc:  # noqa: BLE001 - the cause is reported per item
                    for item in group:
                        errors[item.artifact_version_id] = f"{type(exc).__name__}: {exc}"
                    continue
                for item in group:
                    for path in item.footprint:
                        if path in outcome.failed:
                            errors[item.artifact_version_id] = f"{path}: {outcome.failed[path]}"
                            break
                # The directories these deletes left empty, up to the step's folder
                # (rmdir: a directory that is not empty stays).
                files.remove_empty_dirs(empty_dirs_after(
                    [i for i in group if i.artifact_version_id not in errors]))
            return errors

    def store_files(self, item: BatchItem) -> Backend:
        """The backend of ``item``'s store (opened once per sweep)."""
        return self._store_files(item)

    def _store_files(self, item: BatchItem) -> Backend:
        store_id = item.store_id or ""
        files = self._files.get(store_id)
        if files is None:
            assert item.store_root is not None
            files = self._files[store_id] = self._open_store(self.plan.stores[store_id],
                                                             item.store_root)
        return files

    def _open_store(self, store: ArtifactStore, root: str) -> Backend:
        """The one place the sweep opens an artifact store's files."""
        # The limits travel with the options: this runs on the file thread, which
        # must honour --max-requests-per-second as much as the main one.
        fs = self.filesystem_factory(store)
        backend = open_backend(store, root, fs, workers=self.options.workers,
                               retries=self.retries, limits=self.options.limits)
        if self.undo is None:
            return backend
        # With an undo window every delete goes to the store's trash (or soft delete)
        # under this sweep's id, restorable until gc trash empty.
        try:
            return TrashingFiles(backend, open_file_undo(store, root, fs, backend),
                                 self.sweep_id)
        except BaseException:
            backend.close()
            raise


# ---------------------------------------------------------------------------
# A dry run
# ---------------------------------------------------------------------------


@contextmanager
def _dry_run(plan: SweepPlan, hooks: SweepHooks) -> Iterator[DryRunEffects]:
    engine = create_engine(plan.db_url, readonly=True)
    try:
        yield DryRunEffects(plan, engine, discover_schema(engine), hooks)
    finally:
        engine.dispose()


class DryRunEffects:
    """A sweep that changes nothing: it re-verifies on a read-only engine and reports
    what a real sweep would do. No journal, no lock, no filesystem."""

    stage = "dry run: re-verifying"
    first_batch = 0

    def __init__(self, plan: SweepPlan, engine: Any, schema: ZenMLSchema, hooks: SweepHooks
                 ) -> None:
        self.plan = plan
        self.engine = engine
        self.schema = schema
        self.hooks = hooks
        self.items = plan.items
        self.policy = SweepPolicy.of(plan.info.parameters, plan.info.started)

    def journal(self, batch: int, events: Sequence[Event]) -> None:
        pass

    def warm(self, items: Sequence[BatchItem]) -> None:
        pass

    def database_step(self, batch: int, items: list[BatchItem]) -> DatabaseOutcome:
        with self.hooks.phase(points.VERIFY), self.engine.connect() as connection:
            live = verify_batch(connection, self.schema, items, self.plan.verify_since,
                                self.policy)
            connection.rollback()
        return DatabaseOutcome(live)

    def delete_files(self, items: Sequence[BatchItem],
                     listed: Mapping[str, Mapping[str, Sequence[str]]] | None = None
                     ) -> dict[str, str]:
        return {}

    def freed(self, nbytes: int) -> int:
        return 0

    def absent(self, items: Sequence[BatchItem]) -> set[str]:
        # The dry run does not touch the artifact store: a version whose rows are
        # gone counts as one a sweep would delete.
        return set()
