"""The rows a deleted artifact version takes with it, driven by the discovered schema.

Every row removed here is one the foreign keys would have removed by cascade, or a
polymorphic row that names a deleted version or artifact. SQLite connections may run
with foreign keys off, so we do it ourselves, children before parents:

1. the dependents the schema found (visualizations, curated visualizations), deepest
   first;
2. the polymorphic rows (``ZenMLSchema.polymorphic_tables``, from the release's
   profile) that name the versions, and the rows such a link table owns once nothing
   links them any more (run metadata since 0.71; before, the run_metadata rows that
   name a version themselves);
3. the versions;
4. each artifact left with no version, and its polymorphic rows.

A parent row (an artifact, a run metadata row) that a foreign key we do not handle
here still points at is kept: with foreign keys off nothing else would stop us from
orphaning that child, and a new ZenML release that adds such a key keeps more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from artifact_gc.metadb.dialect import (
    DELETED_VERSIONS,
    RerunTransaction,
    dialect_of,
    steady_scans,
)
from artifact_gc.metadb.statements import execute_in, quoter, select_in, select_in_tuples
from artifact_gc.zenml.schema import ARTIFACT_TABLE, VERSION_TABLE, Dependent, ZenMLSchema

#: The column of ``artifact_version`` that names its artifact.
ARTIFACT_COLUMN = "artifact_id"

#: ``resource_type`` of a version and of an artifact in the polymorphic tables.
VERSION_RESOURCE = "artifact_version"
ARTIFACT_RESOURCE = "artifact"

Count = Callable[[str, int], None]

#: Told every row a delete removes, before the transaction commits: (table, column
#: names, rows as the driver returned them). The undo window keeps them (undo/rows.py).
RowSink = Callable[[str, list[str], list[Any]], None]


@dataclass(frozen=True)
class Cascade:
    """The row deletes of one store's schema."""

    schema: ZenMLSchema
    #: table -> (child table, column) of the foreign keys into it that the cascade
    #: does not handle itself: a row they point at is kept.
    foreign_children: dict[str, list[tuple[str, str]]]

    @classmethod
    def discover(cls, engine: Any, schema: ZenMLSchema) -> Cascade:
        handled = {ARTIFACT_TABLE: (VERSION_TABLE, ARTIFACT_COLUMN)}
        # What the foreign keys cannot say comes from the release's profile: a
        # polymorphic link table whose rows own a row of another table. Since 0.71 a
        # run metadata row lives as long as a run_metadata_resource row links it;
        # before, the run_metadata row names its resource itself and is deleted as a
        # polymorphic row. A tag outlives its resources, so tag_resource owns nothing.
        for link, (column, owned) in schema.owned_through().items():
            handled[owned] = (link, column)
        import sqlalchemy as sa

        from artifact_gc.metadb.reflection import foreign_keys

        # Every foreign key pointing at a table, from the reflection the schema's
        # discovery just made (kept per SQLite schema) rather than a third one.
        reflected = foreign_keys(sa.inspect(engine))

        def children(parent: str) -> list[tuple[str, str]]:
            return [(table, fk["constrained_columns"][0])
                    for table, keys in reflected.items() for fk in keys
                    if fk.get("referred_table") == parent]

        return cls(schema, {
            table: [child for child in children(table) if child != mine]
            for table, mine in handled.items()
        })

    def delete(self, connection: Any, ids: list[str], capture: RowSink | None = None
               ) -> dict[str, int]:
        """Delete the versions ``ids`` and everything that belongs to them only;
        return the rows deleted by table. ``capture`` is handed every deleted row."""
        q = quoter(connection)
        counts: dict[str, int] = {}

        def add(table: str, n: int) -> None:
            if n:
                counts[table] = counts.get(table, 0) + n

        def delete_rows(connection: Any, sql: str, ids: Any, **params: Any) -> int:
            return _delete(connection, sql, ids, capture, **params)

        dependents = self.schema.dependents
        write_locked = dialect_of(connection).lock_blocks_all_writers
        steady = steady_scans(connection)
        for dependent in sorted(dependents, key=lambda d: -_depth(d, dependents)):
            if write_locked and dependent.parent_table != VERSION_TABLE and not self._any_row(
                    connection, dependent.table):
                # An empty grandchild table (ZenML's curated_visualization, usually)
                # has nothing to delete, and its filter would scan the whole
                # visualization table once more. BEGIN IMMEDIATE holds the write
                # lock, so it stays empty until we commit.
                continue
            if steady is not None and dependent.parent_table == VERSION_TABLE:
                add(dependent.table, _delete_children(connection, steady, dependent, ids,
                                                       capture))
                continue
            where = _dependent_filter(q, dependent, dependents)
            add(dependent.table, delete_rows(
                connection, f"DELETE FROM {q(dependent.table)} WHERE {where}", ids))
        self._delete_polymorphic(connection, ids, VERSION_RESOURCE, add, capture)
        # The versions of the batch that exist, by artifact: the rows the delete below
        # removes (the caller holds them locked, or the write lock).
        going = Counter(str(artifact) for (artifact,) in select_in(
            connection,
            f"SELECT {q(ARTIFACT_COLUMN)} FROM {q(VERSION_TABLE)} WHERE {q('id')} IN :ids",
            ids))
        parents = set(going)
        left: set[str] = set()
        if parents:
            # Lock the artifacts before their emptiness is judged: a writer adding a
            # version to one of them now waits for our commit, and one that added a
            # version before holds us here until it commits, so the count below (READ
            # COMMITTED) sees that version. Without the lock the DELETE of the artifact
            # would wait for that writer and then cascade its new version away.
            # (No-op on SQLite, whose BEGIN IMMEDIATE holds back every writer.)
            dialect_of(connection).lock_rows(connection, ARTIFACT_TABLE, parents)
            # An artifact is left with a version after the delete if it has more
            # versions now than the batch deletes. Counted before the delete, under the
            # artifact locks, this is the answer a read after it would give: no version
            # can be added to a locked artifact until we commit (its foreign key waits
            # for our lock), and one that someone else deletes meanwhile was counted,
            # so it can only keep an artifact, never delete one that has a version.
            # Read after the delete, the same index would be full of our own
            # delete-marked entries, each of which InnoDB checks against its row (a
            # random read per version of every artifact of the batch, under the locks:
            # the costliest statement of a batch at 100k orphans).
            for artifact, versions in select_in(
                    connection,
                    f"SELECT {q(ARTIFACT_COLUMN)}, COUNT(*) FROM {q(VERSION_TABLE)} "
                    f"WHERE {q(ARTIFACT_COLUMN)} IN :ids GROUP BY {q(ARTIFACT_COLUMN)}",
                    parents):
                if int(versions) > going[str(artifact)]:
                    left.add(str(artifact))
        add(VERSION_TABLE, delete_rows(
            connection, f"DELETE FROM {q(VERSION_TABLE)} WHERE {q('id')} IN :ids", ids))
        if steady is not None:
            # The URI guard's kept read of rows created since the mark forgets these.
            steady.setdefault(DELETED_VERSIONS, set()).update(ids)
        # Each artifact left with no version is deleted once, whatever the number of its
        # versions in the batch.
        if parents:
            empty = parents - left - self._pointed_at(connection, ARTIFACT_TABLE, parents)
            if empty:
                self._delete_polymorphic(connection, sorted(empty), ARTIFACT_RESOURCE, add,
                                         capture)
                add(ARTIFACT_TABLE, delete_rows(
                    connection, f"DELETE FROM {q(ARTIFACT_TABLE)} WHERE {q('id')} IN :ids",
                    empty))
        return counts

    def warm(self, connection: Any, ids: list[str]) -> None:
        """Read, without a lock, the rows that :meth:`delete` of ``ids`` would delete or
        look at: only the database's page cache keeps them.

        A batch's versions, visualizations and metadata lie at random places of tables
        larger than a default InnoDB buffer pool, so that the locked transaction would
        otherwise wait on the disk for each of them while holding its locks. Read here
        first (MySQL/MariaDB, before the batch's transaction, while the batch before it
        is in the database), they are in memory when the locks are taken. Nothing here
        decides anything: the locked transaction reads and checks every row again.

        Each read is counted by the server (:func:`_touch`), not sent: the client's
        work would take the interpreter from the thread that holds the locks."""
        q = quoter(connection)
        dependents = self.schema.dependents
        for dependent in dependents:
            where = _dependent_filter(q, dependent, dependents)
            _touch(connection, f"SELECT * FROM {q(dependent.table)} WHERE {where}", ids)
        for table in self.schema.polymorphic_tables:
            names = f"{q('resource_type')} = :t AND {q('resource_id')} IN :ids"
            _touch(connection, f"SELECT * FROM {q(table)} WHERE {names}", ids,
                   t=VERSION_RESOURCE)
            column, owned = self.schema.owned_through().get(table, ("", ""))
            if column and owned in self.schema.tables:
                linked = {str(r[0]) for r in select_in(
                    connection, f"SELECT {q(column)} FROM {q(table)} WHERE {names}", ids,
                    t=VERSION_RESOURCE)}
                _touch(connection, f"SELECT * FROM {q(owned)} WHERE {q('id')} IN :ids",
                       linked)
        _touch(connection, f"SELECT * FROM {q(VERSION_TABLE)} WHERE {q('id')} IN :ids", ids)
        parents = {str(r[0]) for r in select_in(
            connection, f"SELECT DISTINCT {q(ARTIFACT_COLUMN)} FROM {q(VERSION_TABLE)} "
                        f"WHERE {q('id')} IN :ids", ids)}
        if parents:
            _touch(connection, f"SELECT * FROM {q(ARTIFACT_TABLE)} WHERE {q('id')} IN :ids",
                   parents)
            _touch(connection, f"SELECT {q(ARTIFACT_COLUMN)} FROM {q(VERSION_TABLE)} "
                               f"WHERE {q(ARTIFACT_COLUMN)} IN :ids", parents)

    def _delete_polymorphic(self, connection: Any, ids: Sequence[str], resource_type: str,
                            add: Count, capture: RowSink | None) -> None:
        q = quoter(connection)

        def delete_rows(connection: Any, sql: str, ids: Any, **params: Any) -> int:
            return _delete(connection, sql, ids, capture, **params)

        steady = steady_scans(connection)
        for table in self.schema.polymorphic_tables:
            names = f"{q('resource_type')} = :t AND {q('resource_id')} IN :ids"
            column, owned = self.schema.owned_through().get(table, ("", ""))
            links: list[str] = []
            if column:
                links = [str(r[0]) for r in select_in(
                    connection, f"SELECT {q(column)} FROM {q(table)} WHERE {names}",
                    ids, t=resource_type)]
            linked = set(links)
            owns = bool(linked) and owned in self.schema.tables
            # Taken before the delete below, which it then follows row by row.
            counts = (_link_counts(connection, steady, table, column)
                      if owns and steady is not None else None)
            deleted = delete_rows(connection, f"DELETE FROM {q(table)} WHERE {names}",
                                  ids, t=resource_type)
            add(table, deleted)
            if owns:
                # A run_metadata row can be shared by several resources (a step and
                # its outputs); only the ones left with no resource at all go.
                if counts is not None and deleted == len(links):
                    # Under SQLite's write lock the read above returned exactly the
                    # rows the delete removed (same filter, same transaction), so the
                    # kept counts less those rows are what the table now holds.
                    counts.subtract(links)
                    shared = {link for link in linked if counts[link] > 0}
                    for link in linked - shared:
                        del counts[link]
                else:
                    if steady is not None:
                        # Not the rows we read: no kept count is trusted any more.
                        steady.pop(("link_counts", table, column), None)
                    shared = {str(r[0]) for r in select_in(
                        connection,
                        f"SELECT DISTINCT {q(column)} FROM {q(table)} "
                        f"WHERE {q(column)} IN :ids",
                        linked,
                    )}
                orphans = linked - shared - self._pointed_at(connection, owned, linked)
                add(owned, delete_rows(
                    connection, f"DELETE FROM {q(owned)} WHERE {q('id')} IN :ids", orphans))

    def _pointed_at(self, connection: Any, table: str, ids: set[str]) -> set[str]:
        """Ids of ``table`` that a foreign key we do not handle ourselves points at."""
        q = quoter(connection)
        kept: set[str] = set()
        for child, column in self.foreign_children.get(table, []):
            kept |= {str(r[0]) for r in select_in(
                connection,
                f"SELECT DISTINCT {q(column)} FROM {q(child)} WHERE {q(column)} IN :ids", ids)}
        return kept

    @staticmethod
    def _any_row(connection: Any, table: str) -> bool:
        import sqlalchemy as sa

        q = quoter(connection)
        return connection.execute(sa.text(f"SELECT 1 FROM {q(table)} LIMIT 1")).first() is not None


def _delete_children(connection: Any, steady: dict[Any, Any], dependent: Dependent,
                     ids: Sequence[str], capture: RowSink | None) -> int:
    """Delete the rows of ``dependent`` (a child of the versions) that name ``ids``, by
    rowid, from one kept read of the table (SQLite, metadb.dialect.SteadyScans).

    The version column has no index (``artifact_visualization``): a filter on it scans
    the whole table in every batch. The kept read stays exact: only another
    connection's commit could add such a row, and that clears it; the rows deleted
    here leave it in the same transaction, which, if it does not commit, leaves the
    read to be cleared. ZenML's tables are all rowid tables, and a rowid changes only
    by VACUUM, which is a commit of another connection too."""

    q = quoter(connection)
    key = ("children", dependent.table, dependent.column)
    if key not in steady:
        children: dict[str, list[int]] = {}
        scan = connection.exec_driver_sql(
            f"SELECT rowid, {q(dependent.column)} FROM {q(dependent.table)}")
        for rowid, owner in scan.cursor:
            children.setdefault(str(owner), []).append(int(rowid))
        scan.close()
        steady[key] = children
    rowids = [rowid for vid in ids for rowid in steady[key].pop(vid, ())]
    return _delete(connection, f"DELETE FROM {q(dependent.table)} WHERE rowid IN :ids",
                   rowids, capture)


#: No limit, written as one: a derived table with a LIMIT is materialised, not merged
#: into the query around it, so that the server reads every row it selects.
_NO_LIMIT = "LIMIT 18446744073709551615"


def _touch(connection: Any, select: str, ids: Any, **params: Any) -> None:
    """Have the server read the rows of ``select`` (with ``IN :ids``; MySQL/MariaDB)
    and send back only their number."""
    if ids:
        select_in(connection, f"SELECT COUNT(*) FROM ({select} {_NO_LIMIT}) AS touched",
                  ids, **params)


def _link_counts(connection: Any, steady: dict[Any, Any], table: str, column: str
                 ) -> Counter[str]:
    """How many rows of the polymorphic ``table`` name each value of ``column`` (a
    run_metadata id), from one kept read (SQLite, metadb.dialect.SteadyScans).

    The column has no index in ZenML's schema: asking which of a batch's run_metadata
    rows are still linked scans the whole table, once per batch, and that made the
    cost of a sweep grow with the square of its size. The kept counts stay exact: the
    sweep deletes rows of ``table`` only in :meth:`Cascade._delete_polymorphic`, which
    takes each of them off in the same transaction; another connection's commit
    clears the read, and so does a transaction that does not commit."""
    key = ("link_counts", table, column)
    if key not in steady:
        q = quoter(connection)
        scan = connection.exec_driver_sql(f"SELECT {q(column)} FROM {q(table)}")
        steady[key] = Counter(str(value) for (value,) in scan.cursor if value is not None)
        scan.close()
    counts: Counter[str] = steady[key]
    return counts


def _delete(connection: Any, sql: str, ids: Any, capture: RowSink | None, **params: Any
            ) -> int:
    """Run the ``DELETE FROM table WHERE ...`` ``sql`` over ``ids``; hand ``capture``
    every row it removes, read in the same transaction under the same lock."""
    if capture is None:
        return execute_in(connection, sql, ids, **params)
    table = sql.split(" ", 3)[2]
    dialect = dialect_of(connection)
    if dialect.deletes_returning(connection):
        # One statement: exactly the rows the delete removed, nothing read twice.
        columns, returned = select_in_tuples(connection, f"{sql} RETURNING *", ids, **params)
        if returned:
            capture(_unquoted(table), columns, returned)
        return len(returned)
    # MySQL has no DELETE ... RETURNING: lock and read the rows, then delete them by
    # the same filter in the same transaction.
    where = sql.split(" WHERE ", 1)[1]
    rows = select_in(connection, f"SELECT * FROM {table} WHERE {where} FOR UPDATE", ids,
                     **params)
    if rows:
        capture(_unquoted(table), list(rows[0]._fields), rows)
    deleted = execute_in(connection, sql, ids, **params)
    if deleted != len(rows):
        # READ COMMITTED takes no gap locks: a row committed between the read and the
        # delete would go without being kept. Run the batch again from the start.
        raise RerunTransaction(f"{table}: {deleted} row(s) deleted, {len(rows)} kept")
    return deleted


def _unquoted(name: str) -> str:
    return name.strip('`"')


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
