"""Mark's inputs: the metadata tables it needs, read into DuckDB in bulk.

Every row becomes a DuckDB table ``in_<name>`` whose ids are typed as UUIDs; the reads
go through :mod:`artifact_gc.metadb.reader` (Arrow, no row-by-row Python) and the SQL
that the store's :class:`~artifact_gc.metadb.dialect.Dialect` spells.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from typing import Any, NamedTuple

from artifact_gc.errors import SchemaError
from artifact_gc.metadb.dialect import Dialect, dialect_of
from artifact_gc.metadb.pages import KeyRanges
from artifact_gc.metadb.reader import load_table
from artifact_gc.progress import Progress
from artifact_gc.zenml.references import config_filter
from artifact_gc.zenml.referrers import STEP_RUN_COLUMNS, STEP_RUN_TABLE, referrer_columns
from artifact_gc.zenml.schema import VERSION_TABLE, ZenMLSchema
from artifact_gc.zenml.snapshots import Snapshots, discover_snapshots

#: Columns of artifact_version that ZenML's schema lets be NULL.
NULLABLE_VERSION_COLUMNS = frozenset({"version_number", "artifact_store_id"})

_UUID, _TEXT = "UUID", "VARCHAR"


class Read(NamedTuple):
    """One read: the DuckDB table's name (after ``in_``), the SQL for the metadata
    store, the DuckDB columns (name, type) it fills, and, for the large tables, the
    same read cut into key ranges (``ranges.sql() == sql``)."""

    name: str
    sql: str
    columns: list[tuple[str, str]]
    ranges: KeyRanges | None = None


def _ranged(name: str, ranges: KeyRanges, columns: list[tuple[str, str]]) -> Read:
    return Read(name, ranges.sql(), columns, ranges)


def load_inputs(
    con: Any, engine: Any, db_url: str, schema: ZenMLSchema, progress: Progress,
    *, keep_tags: tuple[str, ...] = (), release_snapshots: bool = False,
) -> Snapshots | None:
    """Load every row mark needs into DuckDB tables ``in_<name>`` of text columns.

    ``in_versions``, ``in_artifacts``, ``in_projects``, ``in_visualizations``, one
    ``in_ref_<i>`` (``id``, and the ``owner`` and ``label`` naming its referrer) per
    reference column of ``schema.references`` and one ``in_config_<i>`` (``config``,
    and the ``snapshot`` or ``step_run`` it belongs to) per table of
    ``schema.config_tables``; ``in_step_runs`` and ``in_snapshots`` to name referrers;
    ``in_tags`` for ``keep_tags``; one ``in_snapshot_holder_<i>`` per holder of the
    store's snapshots with ``release_snapshots``. Returns the store's snapshot model.
    """
    dialect = dialect_of(engine)
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    snapshots = discover_snapshots(inspector, schema.tables)
    reads = _reads(engine, dialect, schema, inspector, snapshots)
    reads += referrer_reads(engine, dialect, schema, snapshots, keep_tags=keep_tags,
                            release_snapshots=release_snapshots)
    _read_all(con, engine, db_url, dialect, reads, progress)
    _check_ids(con, schema, reads)
    return snapshots


def _reads(engine: Any, dialect: Dialect, schema: ZenMLSchema, inspector: Any,
           snapshots: Snapshots | None) -> list[Read]:
    text = dialect.text

    def q(name: str) -> str:
        return dialect.quote(engine, name)

    empty = text("''")
    version_columns = [
        ("id", _UUID), ("artifact_id", _UUID), ("version", _TEXT),
        ("version_number", "BIGINT"), ("uri", _TEXT), ("save_type", _TEXT),
        ("artifact_store_id", _UUID), ("project_id", _UUID), ("created", "TIMESTAMP"),
    ]
    source_columns = [c for c, _ in version_columns[:-2]] + [schema.project_column, "created"]
    # The large tables are read in ranges of their primary key (or, for references,
    # of the indexed reference column): metadb/pages.py.
    key = q("id")
    reads: list[Read] = [
        _ranged("versions", KeyRanges(q(VERSION_TABLE), key, ", ".join(
            f"{text(source, nullable=target in NULLABLE_VERSION_COLUMNS)} AS {target}"
            for source, (target, _) in zip(source_columns, version_columns, strict=True)
        )), version_columns),
        _ranged("artifacts", KeyRanges(
            q("artifact"), key, f"{text('id', False)} AS id, {text('name', False)} AS name"),
            [("id", _UUID), ("name", _TEXT)]),
        Read("projects", f"SELECT {text('id', False)} AS id, {text('name', False)} AS name "
             f"FROM {q(schema.project_table)}", [("id", _UUID), ("name", _TEXT)]),
    ]
    visualization_columns = [("artifact_version_id", _UUID), ("uri", _TEXT)]
    if "artifact_visualization" in schema.tables:
        reads.append(_ranged("visualizations", KeyRanges(
            q("artifact_visualization"), key,
            f"{text('artifact_version_id', False)} AS artifact_version_id, "
            f"{text('uri', False)} AS uri"), visualization_columns))
    else:
        # A schema without visualizations still yields the (empty) columns we join on.
        reads.append(Read("visualizations",
                          f"SELECT {empty}, {empty} FROM {q(VERSION_TABLE)} WHERE 1 = 0",
                          visualization_columns))
    # Where every foreign key column is indexed (MySQL/MariaDB), GROUP BY the column is
    # a walk of that index which sends each referenced id once (a fraction of the link
    # rows) through the driver. (DISTINCT over the CAST would build a temporary table:
    # ten times slower at 2M rows.) Elsewhere every row is sent, and DuckDB groups them.
    # Each reference also reads the columns naming its referrer (zenml.referrers):
    # the owner row and the link's name, or NULL where the release has none. Every
    # row of such a table is then a referrer of its own, and every row is sent.
    for index, reference in enumerate(schema.references):
        column = q(reference.column)
        named = referrer_columns(reference.table, reference.column,
                                 _columns(inspector, reference.table))
        owner = text(q(named.owner)) if named else text("NULL")
        label = text(q(named.label)) if named and named.label else text("NULL")
        needed = {n for n in (named.owner, named.label) if n} if named else set()
        reads.append(_ranged(f"ref_{index}", KeyRanges(
            q(reference.table), q(_range_key(inspector, reference.table, reference.column,
                                             needed)),
            f"{text(column, False)} AS id, {owner} AS owner, {label} AS label",
            where=f"{column} IS NOT NULL",
            group_by_key=dialect.group_referenced_ids and named is None,
        ), [("id", _UUID), ("owner", _TEXT), ("label", _TEXT)]))
    for index, (table, column) in enumerate(schema.config_tables):
        # Only configurations that name external artifacts or lazy loaders can hold
        # an id we need (references.CONFIG_ID_KEYS; the sweep re-reads the same ones).
        col = q(column)
        snapshot_col, step_run_col = (
            snapshots.config_owner_columns(table, _columns(inspector, table))
            if snapshots else (None, None))
        snapshot = text(q(snapshot_col)) if snapshot_col else text("NULL")
        step_run = text(q(step_run_col)) if step_run_col else text("NULL")
        reads.append(Read(
            f"config_{index}",
            f"SELECT {text(col)} AS config, {snapshot} AS snapshot, {step_run} AS step_run "
            f"FROM {q(table)} WHERE {config_filter(col)}",
            [("config", _TEXT), ("snapshot", _TEXT), ("step_run", _TEXT)],
        ))
    return reads


def _range_key(inspector: Any, table: str, column: str, needed: set[str]) -> str:
    """The column whose ranges read the reference ``table.column`` and ``needed``.

    The reference column's own index when it holds every column read (InnoDB keeps
    the primary key in each index): a walk of that index alone. Otherwise the first
    column of the primary key: a walk of the table in its own order, where ranges of
    the reference column would look up each row by its key, one random read per row
    (four times slower for the step outputs at 1M versions). The key only chooses how
    the rows are cut (metadb/pages.py), never which rows are read.
    """
    primary = list(inspector.get_pk_constraint(table).get("constrained_columns") or [])
    if not primary or needed <= set(primary) | {column}:
        return column
    return str(primary[0])


def _columns(inspector: Any, table: str) -> frozenset[str]:
    return frozenset(c["name"] for c in inspector.get_columns(table))


def referrer_reads(
    engine: Any, dialect: Dialect, schema: ZenMLSchema, snapshots: Snapshots | None,
    *, keep_tags: tuple[str, ...], release_snapshots: bool,
) -> list[Read]:
    """The reads that name referrers, and those of ``--keep-tag`` and
    ``--release-unreachable-snapshots``."""
    text = dialect.text

    def q(name: str) -> str:
        return dialect.quote(engine, name)

    reads: list[Read] = []
    if STEP_RUN_TABLE in schema.tables:
        reads.append(_ranged("step_runs", KeyRanges(
            q(STEP_RUN_TABLE), q("id"),
            ", ".join(f"{text(q(c), False)} AS {c}" for c in STEP_RUN_COLUMNS)),
            [(c, _TEXT) for c in STEP_RUN_COLUMNS]))
    if snapshots is not None:
        profile = snapshots.profile
        held = " OR ".join(f"{q(c)} IS NOT NULL" for c in profile.runnable_when_set)
        reads.append(Read(
            "snapshots",
            f"SELECT {text(q('id'), False)} AS id, {text(q(profile.schedule_column))} "
            f"AS schedule_id, {text(q('created'))} AS created, "
            f"{text(f'CASE WHEN {held} THEN 1 ELSE 0 END', False)} AS held "
            f"FROM {q(profile.table)}",
            [("id", _TEXT), ("schedule_id", _TEXT), ("created", "TIMESTAMP"),
             ("held", "BIGINT")],
        ))
        if release_snapshots:
            for index, (table, column) in enumerate(snapshots.holders):
                reads.append(Read(
                    f"snapshot_holder_{index}",
                    f"SELECT {text(q(column), False)} AS id FROM {q(table)} "
                    f"WHERE {q(column)} IS NOT NULL GROUP BY {q(column)}",
                    [("id", _TEXT)],
                ))
    if keep_tags:
        if not {"tag", "tag_resource"} <= schema.tables:
            raise SchemaError("--keep-tag: this store has no tag tables", missing=("tag",))
        names = ", ".join("'" + name.replace("'", "''") + "'" for name in keep_tags)
        reads.append(Read(
            "tags",
            f"SELECT {text('r.' + q('resource_id'), False)} AS resource_id, "
            f"{text('r.' + q('resource_type'), False)} AS resource_type, "
            f"{text('t.' + q('name'), False)} AS name "
            f"FROM {q('tag_resource')} r JOIN {q('tag')} t ON t.{q('id')} = r.{q('tag_id')} "
            f"WHERE t.{q('name')} IN ({names}) "
            "AND r.resource_type IN ('artifact_version', 'artifact')",
            [("resource_id", _TEXT), ("resource_type", _TEXT), ("name", _TEXT)],
        ))
    return reads


def _read_all(con: Any, engine: Any, db_url: str, dialect: Dialect, reads: list[Read],
              progress: Progress) -> None:
    progress.stage("reading metadata", total=len(reads), unit="tables")
    # ``engine`` is the mark's snapshot (metadb/snapshot.py): one connection, so one
    # table at a time (dialect.read_threads), each on its own DuckDB cursor. Progress
    # is reported from this thread.
    threads = dialect.read_threads
    with ThreadPoolExecutor(max_workers=threads) as pool:
        cursors = [con.cursor() for _ in reads]
        futures = [
            pool.submit(load_table, cursor, f"in_{read.name}", engine, db_url, read.sql,
                        read.columns, ranges=read.ranges)
            for cursor, read in zip(cursors, reads, strict=True)
        ]
        try:
            for future in as_completed(futures):
                future.result()
                progress.advance(1)
        finally:
            for future in futures:
                future.cancel()
            wait(futures)
            for cursor in cursors:
                cursor.close()


def _check_ids(con: Any, schema: ZenMLSchema, reads: list[Read]) -> None:
    """Stop the mark on any id that did not parse.

    Ids are typed as UUIDs on the way in, and one that does not parse becomes NULL.
    A reference lost that way could turn a live version into a candidate, so any
    such id stops the mark instead.
    """
    sources = {"versions": VERSION_TABLE, "artifacts": "artifact",
               "projects": schema.project_table, "visualizations": "artifact_visualization"}
    sources.update({f"ref_{i}": f"{r.table}.{r.column}" for i, r in enumerate(schema.references)})
    for name, _sql, columns, _ranges in reads:
        id_columns = [c for c, kind in columns if kind == _UUID and c != "project_id"]
        for column in id_columns:
            rows = con.execute(f"SELECT count(*) FROM in_{name} WHERE {column} IS NULL"
                               ).fetchall()
            unreadable = int(rows[0][0]) if rows else 0
            if unreadable:
                where = sources.get(name, name)
                raise SchemaError(
                    f"{unreadable:,} id(s) in {where} ({column}) are not ids ZenML writes "
                    "(32 hex digits); refusing to decide reachability on this store"
                )
