"""Mark's inputs: the metadata tables it needs, read into DuckDB in bulk.

Every row becomes a DuckDB table ``in_<name>`` whose ids are typed as UUIDs; the reads
go through :mod:`artifact_gc.metadb.reader` (Arrow, no row-by-row Python) and the SQL
that the store's :class:`~artifact_gc.metadb.dialect.Dialect` spells.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from typing import Any

from artifact_gc.errors import SchemaError
from artifact_gc.metadb.dialect import Dialect, dialect_of
from artifact_gc.metadb.reader import load_table
from artifact_gc.progress import Progress
from artifact_gc.zenml.references import config_filter
from artifact_gc.zenml.schema import VERSION_TABLE, ZenMLSchema

#: Columns of artifact_version that ZenML's schema lets be NULL.
NULLABLE_VERSION_COLUMNS = frozenset({"version_number", "artifact_store_id"})

_UUID, _TEXT = "UUID", "VARCHAR"

#: One read: the DuckDB table's name (after ``in_``), the SQL for the metadata store,
#: and the DuckDB columns (name, type) it fills.
Read = tuple[str, str, list[tuple[str, str]]]


def load_inputs(
    con: Any, engine: Any, db_url: str, schema: ZenMLSchema, progress: Progress
) -> None:
    """Load every row mark needs into DuckDB tables ``in_<name>`` of text columns.

    ``in_versions``, ``in_artifacts``, ``in_projects``, ``in_visualizations``, one
    ``in_ref_<i>`` per reference column of ``schema.references`` and one
    ``in_config_<i>`` per table of ``schema.config_tables``.
    """
    dialect = dialect_of(engine)
    reads = _reads(engine, dialect, schema)
    _read_all(con, engine, db_url, dialect, reads, progress)
    _check_ids(con, schema, reads)


def _reads(engine: Any, dialect: Dialect, schema: ZenMLSchema) -> list[Read]:
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
    reads: list[Read] = [
        (
            "versions",
            "SELECT " + ", ".join(
                f"{text(source, nullable=target in NULLABLE_VERSION_COLUMNS)} AS {target}"
                for source, (target, _) in zip(source_columns, version_columns, strict=True)
            ) + f" FROM {q(VERSION_TABLE)}",
            version_columns,
        ),
        ("artifacts", f"SELECT {text('id', False)} AS id, {text('name', False)} AS name "
         f"FROM {q('artifact')}", [("id", _UUID), ("name", _TEXT)]),
        ("projects", f"SELECT {text('id', False)} AS id, {text('name', False)} AS name "
         f"FROM {q(schema.project_table)}", [("id", _UUID), ("name", _TEXT)]),
    ]
    reads.append((
        "visualizations",
        f"SELECT {text('artifact_version_id', False)} AS artifact_version_id, "
        f"{text('uri', False)} AS uri FROM {q('artifact_visualization')}"
        if "artifact_visualization" in schema.tables
        # A schema without visualizations still yields the (empty) columns we join on.
        else f"SELECT {empty}, {empty} FROM {q(VERSION_TABLE)} WHERE 1 = 0",
        [("artifact_version_id", _UUID), ("uri", _TEXT)],
    ))
    # Where every foreign key column is indexed (MySQL/MariaDB), GROUP BY the column is
    # a walk of that index which sends each referenced id once (a fraction of the link
    # rows) through the driver. (DISTINCT over the CAST would build a temporary table:
    # ten times slower at 2M rows.) Elsewhere every row is sent, and DuckDB groups them.
    for index, reference in enumerate(schema.references):
        column = q(reference.column)
        group = f" GROUP BY {column}" if dialect.group_referenced_ids else ""
        reads.append((
            f"ref_{index}",
            f"SELECT {text(column, False)} AS id FROM {q(reference.table)} "
            f"WHERE {column} IS NOT NULL{group}",
            [("id", _UUID)],
        ))
    for index, (table, column) in enumerate(schema.config_tables):
        # Only configurations that name external artifacts or lazy loaders can hold
        # an id we need (references.CONFIG_ID_KEYS; the sweep re-reads the same ones).
        col = q(column)
        reads.append((
            f"config_{index}",
            f"SELECT {text(col)} AS config FROM {q(table)} WHERE {config_filter(col)}",
            [("config", _TEXT)],
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
            pool.submit(load_table, cursor, f"in_{name}", engine, db_url, sql, columns)
            for cursor, (name, sql, columns) in zip(cursors, reads, strict=True)
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
    for name, _sql, columns in reads:
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
