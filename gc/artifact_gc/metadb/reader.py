"""Streaming query results from the metadata store into DuckDB tables.

SQLAlchemy stays the way in (URLs, reflection, deletes); for bulk reads we take the
fastest Arrow-native path the dialect has: ADBC for SQLite, a server-side cursor for
MySQL/MariaDB. Either way rows arrive as a stream of Arrow record batches that DuckDB
consumes as they come, so no whole table is ever held in Python. Every column is
read as text and typed later in DuckDB, so that no driver's type guessing can fail
half-way through a large table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from artifact_gc.metadb.engine import sqlite_path

CHUNK_ROWS = 50_000

def load_table(
    con: Any, name: str, engine: Any, db_url: str, sql: str, columns: list[tuple[str, str]]
) -> None:
    """Run ``sql`` into DuckDB table ``name``.

    ``sql`` selects, as text, one column per ``(name, duckdb type)`` of ``columns``;
    each is typed on the way in (ids become 16-byte UUIDs). A value that does not
    parse becomes NULL.
    """
    schema = pa.schema([pa.field(column, pa.string()) for column, _ in columns])
    path = sqlite_path(db_url)
    if path is not None:
        adbc: Any
        try:
            import adbc_driver_sqlite.dbapi as adbc
        except ImportError:
            adbc = None
        if adbc is not None:
            # mode=ro: a mark reads, and the driver must not be able to do anything else.
            with adbc.connect(f"file:{path}?mode=ro") as connection:
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    _ingest(con, name, cursor.fetch_record_batch(), columns)
            return
    _ingest(con, name, pa.RecordBatchReader.from_batches(
        schema, _stream_batches(engine, sql, schema)), columns)


def _ingest(con: Any, name: str, reader: Any, columns: list[tuple[str, str]]) -> None:
    incoming = f"_incoming_{name}"
    con.register(incoming, reader)
    try:
        select = ", ".join(
            f"nullif(CAST(\"#{i + 1}\" AS VARCHAR), chr(31)) AS {column}"
            if kind == "VARCHAR"
            else f"TRY_CAST(nullif(CAST(\"#{i + 1}\" AS VARCHAR), chr(31)) AS {kind}) AS {column}"
            for i, (column, kind) in enumerate(columns)
        )
        con.execute(f"CREATE TABLE {name} AS SELECT {_positional(select, reader)} "
                    f"FROM {incoming}")
    finally:
        con.unregister(incoming)


def _positional(select: str, reader: Any) -> str:
    """Replace ``"#n"`` placeholders by the reader's actual column names."""
    for i, field in enumerate(reader.schema):
        quoted = '"' + field.name.replace('"', '""') + '"'
        select = select.replace(f'"#{i + 1}"', quoted)
    return select


def _stream_batches(engine: Any, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    import sqlalchemy as sa

    with engine.connect() as connection:
        if engine.dialect.driver == "pymysql":
            yield from _pymysql_batches(connection, sql, schema)
            return
        # stream_results: a server-side cursor, so memory stays flat however large the
        # table is.
        result = connection.execution_options(stream_results=True).execute(sa.text(sql))
        for rows in result.partitions(CHUNK_ROWS):
            arrays = [_column(values) for values in zip(*rows, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _pymysql_batches(connection: Any, sql: str, schema: pa.Schema
                     ) -> Iterator[pa.RecordBatch]:
    """pymysql's unbuffered cursor straight, without SQLAlchemy's row objects (a third
    of the Python time per row). ``sql`` has no parameters, so it is sent as it is."""
    import pymysql.cursors  # type: ignore[import-untyped]

    cursor = connection.connection.dbapi_connection.cursor(pymysql.cursors.SSCursor)
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(CHUNK_ROWS):
            arrays = [_column(values) for values in zip(*rows, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    finally:
        cursor.close()


def _column(values: tuple[Any, ...]) -> pa.Array:
    """One column of text values (``str`` or None, as the queries cast them) as Arrow."""
    try:
        # Arrow converts a sequence of str/None in C; the per-value path below is for
        # the odd driver value that is not text (bytes of a binary collation, say).
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([None if v is None else _text(v) for v in values], type=pa.string())


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return str(value)
