"""``gc restore``: bring back what a sweep with an undo window deleted.

:func:`plan_restore` reads the manifest, its sweep journal and the undo area beside
it, and returns a :class:`RestorePlan`: the items to bring back (optionally narrowed
by ``--where``, the predicate language of ``gc filter``), their files (by store and
by the sweep that trashed them) and their rows. It refuses, changing nothing:

- an item that cannot come back (swept with ``--no-undo``, or purged by
  ``gc trash empty``): :class:`NotRestorable`, exit 12;
- an id reused since the sweep (a row with the same primary key and other content,
  or with the same unique key, such as an artifact version's name and number) or a
  path taken since: :class:`RestoreConflict`, exit 11, naming the first conflict.

:func:`execute_restore` then, under the manifest's sweep lock:

1. journals ``intent`` for every item;
2. restores the files, store by store (``FileUndo.restore``, which never overwrites
   what is not ours), and journals ``files_restored``;
3. inserts the rows in batches of versions, one transaction per batch, each
   batch's rows table by table in foreign-key order (parents first): a version
   comes back whole in one commit; a row already there with the same content
   counts as back;
4. journals ``restored``.

Why a crash anywhere is safe: every step is idempotent (a file already back, a row
already there and identical), and rows come after files, so a row never names a file
that is not back. Running the same command again finishes the job and ends in the
state an uninterrupted run reaches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from artifact_gc.errors import NotRestorable, RestoreConflict, StorageError, UsageError
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.reasons import ITEM_KIND_ORPHAN_FILE, ITEM_KIND_VERSION
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.engine import create_engine, redact
from artifact_gc.metadb.fingerprint import DatabaseFingerprint, fingerprint
from artifact_gc.metadb.statements import quoter, select_in
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.sweep.journal import Journal
from artifact_gc.undo.area import (
    ARTIFACT_OWNER,
    EVENT_FILES_RESTORED,
    EVENT_INTENT,
    EVENT_PURGE_INTENT,
    EVENT_RESTORED,
    OP_RESTORE,
    SweepUndo,
    UndoArea,
    UndoEvent,
    new_op_id,
)
from artifact_gc.undo.codec import decode_row, same_value
from artifact_gc.undo.files import open_store_undo
from artifact_gc.zenml.schema import VERSION_TABLE
from artifact_gc.zenml.stores import ArtifactStore, load_artifact_stores

#: The journal states of an item whose deletion a restore can undo.
RESTORABLE_STATES = ("deleted", "rows_deleted", "files_deleted")

DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class RestoreOptions:
    where: str | None = None
    dry_run: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    journal: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class RestoreItem:
    item_kind: str
    item_id: str
    #: The sweep whose final event deleted it (and whose trash holds its files).
    sweep_id: str
    store_id: str | None
    store_root: str | None
    footprint: tuple[str, ...]
    rows: bool
    files: bool
    #: The other sweeps of this mark that journaled the item: a sweep killed while it
    #: moved a batch's files leaves some in its own trash, and the sweep that resumes
    #: the batch (and writes its final event) finds them gone. Their trashes are
    #: searched for what the final sweep's does not hold.
    other_sweeps: tuple[str, ...] = ()


@dataclass
class KeptRow:
    table: str
    values: dict[str, Any]
    owners: frozenset[str] = frozenset()


@dataclass
class RestorePlan:
    """What a restore of a manifest will bring back: checked, nothing changed yet."""

    manifest_url: str
    journal_url: str
    db_url: str
    info: mf.ManifestInfo
    options: RestoreOptions
    items: list[RestoreItem]
    #: Items a restore finished before (not done again).
    already_restored: int
    #: table -> rows to insert, tables in foreign-key order (parents first).
    rows: dict[str, list[KeptRow]]
    #: table -> primary key columns.
    keys: dict[str, list[str]]
    stores: dict[str, ArtifactStore]
    sweeps: dict[str, SweepUndo]

    @property
    def files(self) -> dict[tuple[str, str, str], list[str]]:
        """(store id, root, sweep id) -> the paths to bring back."""
        out: dict[tuple[str, str, str], list[str]] = {}
        for item in self.items:
            if item.files and item.store_id and item.store_root:
                out.setdefault((item.store_id, item.store_root, item.sweep_id), []).extend(
                    item.footprint)
        return out

    def earlier_files(self) -> dict[tuple[str, str, str], dict[str, list[str]]]:
        """(store id, root, sweep id of the final event) -> earlier sweep id (one that
        kept an undo window) -> the paths of those items it may hold in its trash."""
        out: dict[tuple[str, str, str], dict[str, list[str]]] = {}
        for item in self.items:
            if item.files and item.store_id and item.store_root:
                for other in (s for s in item.other_sweeps if s in self.sweeps):
                    out.setdefault((item.store_id, item.store_root, item.sweep_id), {}
                                   ).setdefault(other, []).extend(item.footprint)
        return out

    def row_batches(self) -> Iterator[dict[str, list[KeptRow]]]:
        """The rows in batches of up to ``batch_size`` versions, each batch whole: a
        version's rows, its artifact's (the first time it comes) and the rows shared
        with it, by table in foreign-key order. One transaction per batch brings its
        versions back complete, never half."""
        artifact_of = {str(r.values["id"]): ARTIFACT_OWNER + str(r.values["artifact_id"])
                       for r in self.rows.get(VERSION_TABLE, [])}
        versions = sorted(artifact_of)
        placed: set[int] = set()
        for start in range(0, len(versions), self.options.batch_size):
            chunk = versions[start:start + self.options.batch_size]
            owners = set(chunk) | {artifact_of[v] for v in chunk}
            batch: dict[str, list[KeptRow]] = {}
            for table, rows in self.rows.items():
                for row in rows:
                    if id(row) not in placed and row.owners & owners:
                        placed.add(id(row))
                        batch.setdefault(table, []).append(row)
            yield batch

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_url,
            "journal": self.journal_url,
            "database": redact(self.db_url),
            "mark_id": self.info.mark_id,
            "where": self.options.where,
            "dry_run": self.options.dry_run,
            "versions": sum(1 for i in self.items if i.item_kind == ITEM_KIND_VERSION),
            "orphan_files": sum(1 for i in self.items if i.item_kind == ITEM_KIND_ORPHAN_FILE),
            "already_restored": self.already_restored,
            "paths": sum(len(p) for p in self.files.values()),
            "rows": {t: len(r) for t, r in self.rows.items() if r},
            "sweeps": sorted({i.sweep_id for i in self.items}),
        }


@dataclass
class RestoreReport:
    restore_id: str
    dry_run: bool
    items: int = 0
    files_restored: int = 0
    files_already: int = 0
    files_absent: int = 0
    rows_inserted: dict[str, int] = field(default_factory=dict)
    rows_already: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"restore_id": self.restore_id, "dry_run": self.dry_run, "items": self.items,
                "files_restored": self.files_restored, "files_already": self.files_already,
                "files_absent": self.files_absent,
                "rows_inserted": dict(self.rows_inserted), "rows_already": self.rows_already}


# ---------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------


def plan_restore(manifest_url: str, db_url: str | None = None,
                 options: RestoreOptions | None = None) -> RestorePlan:
    """Work out what a restore of ``manifest_url`` brings back; refuse (see the module
    doc) what cannot come back as it was. Reads only."""
    from artifact_gc.sweep.plan import _database_url, discover_schema

    options = options or RestoreOptions()
    storage = options.storage_options
    info = mf.verify(manifest_url, storage)
    url = _database_url(db_url, info)
    journal = Journal.of(manifest_url, info, storage, options.journal)
    area = UndoArea(journal.url, storage)
    selected = _select(manifest_url, journal, options)
    sweeps = area.sweeps()
    purged = area.purged()
    purging = area.purged(EVENT_PURGE_INTENT)
    restored = area.restored()
    items: list[RestoreItem] = []
    already = 0
    for row in selected:
        key = (row["item_kind"], row["item_id"])
        if key in restored:
            already += 1
            continue
        record = sweeps.get(row["sweep_id"])
        what = f"{row['item_kind'].replace('_', ' ')} {row['item_id']}"
        if record is None:
            raise NotRestorable(
                f"{what} cannot be restored: sweep {row['sweep_id'][:8]} deleted it with "
                "no undo window (--no-undo); narrow the restore with --where")
        if record.sweep_id in purging:
            raise NotRestorable(
                f"{what} cannot be restored: the undo data of sweep {record.sweep_id[:8]} "
                "was purged by gc trash empty" + (
                    "" if record.sweep_id in purged else
                    " (interrupted: run it again to finish)")
                + "; narrow the restore with --where")
        items.append(_item(row))
    engine = create_engine(url, readonly=True)
    try:
        live = fingerprint(engine, discover_schema(engine).version)
        marked = DatabaseFingerprint.from_dict(info.database)
        if not live.same_store(marked):
            raise UsageError(f"{manifest_url} was marked on {marked.describe()}, not on the "
                             f"database given ({live.describe()})")
        overrides = dict(info.parameters.get("store_roots") or {})
        stores = load_artifact_stores(engine, url, overrides, storage)
        rows, keys = _kept_rows(engine, area, items, purged)
        _refuse_row_conflicts(engine, rows, keys)
    finally:
        engine.dispose()
    plan = RestorePlan(manifest_url, journal.url, url, info, options, items, already, rows,
                       keys, stores, sweeps)
    _refuse_path_conflicts(plan)
    return plan


def _select(manifest_url: str, journal: Journal, options: RestoreOptions
            ) -> list[dict[str, Any]]:
    """The deleted items of the manifest (matching ``--where``), with the sweep that
    deleted each."""
    from artifact_gc.review.filter import _check_predicate
    from artifact_gc.review.session import open_review

    with open_review(manifest_url, options.storage_options,
                     journal_location=journal.url) as review:
        if not review.journal:
            return []
        narrow = ""
        if options.where is not None:
            predicate = _check_predicate(review, options.where)
            narrow = ("AND EXISTS (SELECT 1 FROM manifest m WHERE m.item_kind = s.item_kind "
                      f"AND m.item_id = s.item_id AND coalesce(({predicate}), false))")
        states = ", ".join(f"'{s}'" for s in RESTORABLE_STATES)
        table = review.connection.sql(f"""
            WITH final AS (
                SELECT coalesce(item_kind, 'artifact_version') AS item_kind,
                       coalesce(item_id, artifact_version_id) AS item_id,
                       arg_max(sweep_id, seq) AS sweep_id,
                       list(DISTINCT sweep_id) AS sweeps
                FROM journal GROUP BY 1, 2
            )
            SELECT s.item_kind, s.item_id, s.artifact_store_id, s.store_root, s.uri,
                   coalesce(s.visualization_uris, []::VARCHAR[]) AS visualization_uris,
                   s.state, final.sweep_id, final.sweeps
            FROM sweep_state AS s JOIN final USING (item_kind, item_id)
            WHERE s.state IN ({states}) {narrow}
            ORDER BY s.item_kind, s.item_id
        """).to_arrow_table()
    return list(table.to_pylist())


def _item(row: dict[str, Any]) -> RestoreItem:
    from artifact_gc.mark.sizes import footprint_paths

    orphan = row["item_kind"] == ITEM_KIND_ORPHAN_FILE
    footprint = (row["item_id"],) if orphan else tuple(
        footprint_paths(row["uri"], row["visualization_uris"]))
    return RestoreItem(
        item_kind=row["item_kind"], item_id=row["item_id"], sweep_id=row["sweep_id"],
        store_id=row["artifact_store_id"], store_root=row["store_root"],
        footprint=footprint,
        rows=not orphan and row["state"] in ("deleted", "rows_deleted"),
        files=row["state"] in ("deleted", "files_deleted"),
        other_sweeps=tuple(sorted(s for s in row.get("sweeps") or ()
                                  if s and s != row["sweep_id"])))


def _kept_rows(engine: Any, area: UndoArea, items: Sequence[RestoreItem], purged: set[str]
               ) -> tuple[dict[str, list[KeptRow]], dict[str, list[str]]]:
    """The kept rows of ``items``' versions and of their artifacts, one per primary key
    (the latest kept), by table in foreign-key order; and each table's key."""
    import sqlalchemy as sa

    versions = {i.item_id for i in items if i.rows}
    if not versions:
        return {}, {}
    segments = area.read_rows()
    kept = [(t, o, r, s) for t, o, r, s in zip(
        segments.column("table").to_pylist(), segments.column("owners").to_pylist(),
        segments.column("row").to_pylist(), segments.column("sweep_id").to_pylist(),
        strict=True) if s not in purged]
    artifacts: set[str] = set()
    found: set[str] = set()
    for table, owners, row, _ in kept:
        if table == VERSION_TABLE and set(owners) & versions:
            values = decode_row(row)
            found.add(str(values["id"]))
            artifacts.add(ARTIFACT_OWNER + str(values["artifact_id"]))
    missing = sorted(versions - found)
    if missing:
        raise NotRestorable(
            f"artifact version {missing[0]} cannot be restored: its rows are not in the undo "
            f"data (purged, or deleted by a sweep without undo)"
            + (f" ({len(missing) - 1} more)" if len(missing) > 1 else ""))
    wanted = versions | artifacts
    inspector = sa.inspect(engine)
    keys: dict[str, list[str]] = {}
    by_key: dict[tuple[str, tuple[Any, ...]], KeptRow] = {}
    for table, owners, row, _ in kept:
        if not set(owners) & wanted:
            continue
        if table not in keys:
            keys[table] = list(inspector.get_pk_constraint(table)["constrained_columns"])
        values = decode_row(row)
        columns = keys[table] or sorted(values)
        # Later segments win: a row kept twice (a batch retried) keeps its last state.
        by_key[(table, tuple(values[c] for c in columns))] = KeptRow(table, values,
                                                                     frozenset(owners))
    order = _foreign_key_order(engine, set(keys))
    rows: dict[str, list[KeptRow]] = {t: [] for t in order}
    for kept_row in by_key.values():
        rows[kept_row.table].append(kept_row)
    return rows, keys


def _foreign_key_order(engine: Any, tables: set[str]) -> list[str]:
    """``tables``, parents before the tables whose foreign keys point at them."""
    import sqlalchemy as sa

    metadata = sa.MetaData()
    metadata.reflect(bind=engine, only=sorted(tables))
    ordered = [t.name for t in metadata.sorted_tables if t.name in tables]
    return ordered + sorted(tables - set(ordered))


def _refuse_row_conflicts(engine: Any, rows: dict[str, list[KeptRow]],
                          keys: dict[str, list[str]]) -> None:
    """Refuse (RestoreConflict) when a kept row's id, or one of its unique keys, is
    taken now by a row with other content."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    with engine.connect() as connection:
        for table, kept in rows.items():
            if not kept:
                continue
            existing = _existing(connection, table, keys[table], kept)
            fresh: list[KeptRow] = []
            for row in kept:
                live = existing.get(_key(row, keys[table]))
                if live is None:
                    fresh.append(row)
                elif not _same(row, live):
                    raise RestoreConflict(
                        f"refusing to restore: {table} row {_describe_key(row, keys[table])} "
                        "exists with other content (its id was reused since the sweep); "
                        "nothing was restored")
            for unique in _unique_keys(inspector, table, keys[table]):
                _refuse_unique(connection, table, unique, keys[table], fresh)


def _refuse_unique(connection: Any, table: str, unique: list[str], key: list[str],
                   rows: list[KeptRow]) -> None:
    import sqlalchemy as sa

    q = quoter(connection)
    where = " AND ".join(f"{q(c)} = :u{n}" for n, c in enumerate(unique))
    statement = sa.text(f"SELECT {', '.join(q(c) for c in key)} FROM {q(table)} "
                        f"WHERE {where}")
    for row in rows:
        if any(row.values.get(c) is None for c in unique):
            continue  # NULL never collides in a unique key
        taken = connection.execute(statement, {f"u{n}": row.values[c]
                                               for n, c in enumerate(unique)}).first()
        if taken is not None:
            values = ", ".join(f"{c}={row.values[c]!r}" for c in unique)
            raise RestoreConflict(
                f"refusing to restore: {table} row {_describe_key(row, key)} has {values}, "
                f"which row {'/'.join(str(v) for v in taken)} holds now (reused since the "
                "sweep); nothing was restored")


def _unique_keys(inspector: Any, table: str, key: list[str]) -> list[list[str]]:
    found = [list(u["column_names"]) for u in inspector.get_unique_constraints(table)]
    found += [list(i["column_names"]) for i in inspector.get_indexes(table) if i.get("unique")]
    out: list[list[str]] = []
    for columns in found:
        if columns and columns != key and columns not in out and all(columns):
            out.append(columns)
    return out


def _key(row: KeptRow, key: list[str]) -> tuple[Any, ...]:
    return tuple(str(row.values[c]) for c in key)


def _describe_key(row: KeptRow, key: list[str]) -> str:
    return "/".join(str(row.values[c]) for c in key)


def _same(row: KeptRow, live: dict[str, Any]) -> bool:
    return all(c in live and same_value(v, live[c]) for c, v in row.values.items())


def _existing(connection: Any, table: str, key: list[str], rows: Sequence[KeptRow]
              ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The rows of ``table`` that hold the keys of ``rows`` now, by key."""
    q = quoter(connection)
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    if len(key) == 1:
        found = select_in(connection, f"SELECT * FROM {q(table)} WHERE {q(key[0])} IN :ids",
                          [str(r.values[key[0]]) for r in rows])
        for live in found:
            values = dict(live._mapping)
            out[(str(values[key[0]]),)] = values
        return out
    import sqlalchemy as sa

    where = " AND ".join(f"{q(c)} = :k{n}" for n, c in enumerate(key))
    statement = sa.text(f"SELECT * FROM {q(table)} WHERE {where}")
    for row in rows:
        live = connection.execute(statement, {f"k{n}": row.values[c]
                                              for n, c in enumerate(key)}).first()
        if live is not None:
            out[_key(row, key)] = dict(live._mapping)
    return out


def _refuse_path_conflicts(plan: RestorePlan) -> None:
    earlier = [((store_id, root, other), paths)
               for (store_id, root, _), by_sweep in plan.earlier_files().items()
               for other, paths in by_sweep.items()]
    for (store_id, root, sweep_id), paths in [*plan.files.items(), *earlier]:
        with _store_undo(plan, store_id, root) as undo:
            conflicts = undo.conflicts(sweep_id, paths)
        if conflicts:
            path, why = sorted(conflicts.items())[0]
            more = f" ({len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise RestoreConflict(f"refusing to restore: path {path}: {why}{more}; "
                                  "nothing was restored")


@contextmanager
def _store_undo(plan: RestorePlan, store_id: str, root: str) -> Iterator[Any]:
    """The undo files of ``store_id`` at ``root``, closed (with their backend) after."""
    store = plan.stores.get(store_id)
    if store is None or store.root != root:
        raise NotRestorable(f"artifact store {store_id} is gone or has moved since the sweep "
                            f"(root {root}); its files cannot be restored")
    backend, undo = open_store_undo(store, root)
    try:
        yield undo
    finally:
        undo.close()
        backend.close()


# ---------------------------------------------------------------------------
# Carrying it out
# ---------------------------------------------------------------------------


def execute_restore(plan: RestorePlan, *, progress: Progress | None = None
                    ) -> RestoreReport:
    """Restore ``plan``'s files, then its rows (see the module doc). A dry run changes
    nothing and reports what would come back."""
    progress = progress or NullProgress()
    report = RestoreReport(new_op_id(), plan.options.dry_run, items=len(plan.items))
    if plan.options.dry_run or not plan.items:
        # What the plan holds, as the real restore would count it before finding any
        # of it already back.
        report.files_restored = sum(len(paths) for paths in plan.files.values())
        report.rows_inserted = {t: len(r) for t, r in plan.rows.items() if r}
        return report
    journal = Journal(plan.manifest_url, plan.options.storage_options, url=plan.journal_url,
                      mark_id=plan.info.mark_id, mark_started=plan.info.started)
    area = UndoArea(plan.journal_url, plan.options.storage_options)
    events = [UndoEvent(i.sweep_id, i.item_kind, i.item_id, EVENT_INTENT) for i in plan.items]
    try:
        with journal.locked():
            area.append(report.restore_id, OP_RESTORE, events)
            _restore_files(plan, report, progress)
            area.append(report.restore_id, OP_RESTORE, [
                UndoEvent(e.sweep_id, e.item_kind, e.item_id, EVENT_FILES_RESTORED)
                for e in events])
            _restore_rows(plan, report, progress)
            area.append(report.restore_id, OP_RESTORE, [
                UndoEvent(e.sweep_id, e.item_kind, e.item_id, EVENT_RESTORED)
                for e in events])
    finally:
        progress.close()
    return report


def _restore_files(plan: RestorePlan, report: RestoreReport, progress: Progress) -> None:
    groups = plan.files
    earlier = plan.earlier_files()
    progress.stage("restoring files", total=sum(len(p) for p in groups.values()),
                   unit="paths")
    for (store_id, root, sweep_id), paths in groups.items():
        with _store_undo(plan, store_id, root) as undo:
            outcome = undo.restore(sweep_id, paths, on_chunk=progress.advance)
        # What the final sweep's trash does not hold, an earlier sweep of the item may:
        # one killed while it moved the batch's files (a whole path on a local disk, or
        # some of a path's objects on an object store). Each trash's restore brings back
        # only what it holds, never over anything, and counts the rest as back or absent.
        absent = set(outcome.absent)
        for other, paths_of_other in earlier.get((store_id, root, sweep_id), {}).items():
            with _store_undo(plan, store_id, root) as earlier_undo:
                found = earlier_undo.restore(other, paths_of_other)
            back = found.already & absent
            outcome.restored |= found.restored
            outcome.already |= back
            absent -= found.restored | back
            outcome.conflicts.update(found.conflicts)
            outcome.failed.update(found.failed)
        report.files_restored += len(outcome.restored)
        report.files_already += len(outcome.already - outcome.restored)
        # Nothing was there to keep: the rows come back as they were at the sweep,
        # without files, and the report says how many.
        report.files_absent += len(absent)
        if outcome.conflicts:
            path, why = sorted(outcome.conflicts.items())[0]
            raise RestoreConflict(f"refusing to restore: path {path}: {why}; run gc restore "
                                  "again once it is resolved")
        if outcome.failed:
            path, why = sorted(outcome.failed.items())[0]
            raise StorageError(f"could not restore {path}: {why}"
                               + (f" ({len(outcome.failed) - 1} more)"
                                  if len(outcome.failed) > 1 else "")
                               + "; run gc restore again to resume", path=path)


def _restore_rows(plan: RestorePlan, report: RestoreReport, progress: Progress) -> None:
    progress.stage("restoring rows", total=sum(len(r) for r in plan.rows.values()),
                   unit="rows")
    engine = create_engine(plan.db_url)
    try:
        for batch in plan.row_batches():
            inserted: dict[str, int] = {}
            with dialect_of(engine).write_transaction(engine) as connection:
                for table, rows in batch.items():
                    inserted[table] = _insert_missing(connection, table, plan.keys[table],
                                                      rows)
            for table, rows in batch.items():
                if inserted[table]:
                    report.rows_inserted[table] = (report.rows_inserted.get(table, 0)
                                                   + inserted[table])
                report.rows_already += len(rows) - inserted[table]
                progress.advance(len(rows))
    finally:
        engine.dispose()


def _insert_missing(connection: Any, table: str, key: list[str], rows: list[KeptRow]
                    ) -> int:
    """Insert the rows not there yet, in one transaction; an identical row counts as
    back (a resumed restore), a different one is a conflict (the whole batch rolls
    back)."""
    import sqlalchemy as sa

    existing = _existing(connection, table, key, rows)
    missing: list[KeptRow] = []
    for row in rows:
        live = existing.get(_key(row, key))
        if live is None:
            missing.append(row)
        elif not _same(row, live):
            raise RestoreConflict(f"refusing to restore: {table} row {_describe_key(row, key)} "
                                  "exists with other content (its id was reused meanwhile)")
    if not missing:
        return 0
    q = quoter(connection)
    columns = list(missing[0].values)
    statement = sa.text(
        f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) "
        f"VALUES ({', '.join(f':p{n}' for n in range(len(columns)))})")
    connection.execute(statement, [{f"p{n}": row.values.get(c)
                                    for n, c in enumerate(columns)} for row in missing])
    return len(missing)
