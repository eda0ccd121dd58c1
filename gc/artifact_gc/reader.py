"""Streaming query results from the metadata store into Arrow.

SQLAlchemy stays the way in (URLs, reflection, deletes); for bulk reads we take the
fastest Arrow-native path the dialect has: ADBC for SQLite, a server-side cursor for
MySQL/MariaDB so that memory stays flat however large the table is. Every column is
read as text and typed later in DuckDB, so that no driver's type guessing can fail
half-way through a large table.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from artifact_gc.database import sqlite_path

CHUNK_ROWS = 50_000


def read_table(engine: Any, db_url: str, sql: str, columns: list[str]) -> pa.Table:
    """Run ``sql`` (which must select exactly ``columns``, as text) into an Arrow table."""
    path = sqlite_path(db_url)
    if path is not None:
        table = _read_sqlite_adbc(path, sql)
        if table is not None:
            return table.rename_columns(columns)
    return _read_streaming(engine, sql, columns)


def _read_sqlite_adbc(path: Any, sql: str) -> pa.Table | None:
    try:
        import adbc_driver_sqlite.dbapi as adbc
    except ImportError:
        return None
    # mode=ro: a mark reads, and the driver must not be able to do anything else.
    with adbc.connect(f"file:{path}?mode=ro") as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            table: pa.Table = cursor.fetch_arrow_table()
    return table.cast(pa.schema([pa.field(f.name, pa.string()) for f in table.schema]))


def _read_streaming(engine: Any, sql: str, columns: list[str]) -> pa.Table:
    import sqlalchemy as sa

    batches: list[pa.RecordBatch] = []
    schema = pa.schema([pa.field(name, pa.string()) for name in columns])
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True).execute(sa.text(sql))
        for rows in result.partitions(CHUNK_ROWS):
            arrays = [
                pa.array([None if v is None else _text(v) for v in values], type=pa.string())
                for values in zip(*rows, strict=True)
            ]
            batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return str(value)


def text_column(dialect: str, expression: str) -> str:
    """``expression`` cast to text in the given SQL dialect."""
    return f"CAST({expression} AS CHAR)" if dialect == "mysql" else f"CAST({expression} AS TEXT)"
