"""Streaming query results from the metadata store into DuckDB tables.

SQLAlchemy stays the way in (URLs, reflection, deletes). A bulk read runs on the
connection of the engine it is given, which for a mark is the one connection of its
consistent snapshot (metadb/snapshot.py): a server-side cursor for MySQL/MariaDB
(pymysql's unbuffered cursor, without SQLAlchemy's row objects), the sqlite3 cursor
for SQLite. Rows arrive as a stream of Arrow record batches that DuckDB consumes as
they come, so no whole table is ever held in Python. Every column is read as text and
typed later in DuckDB, so that no driver's type guessing can fail half-way through a
large table.

The drivers' cost is per value: pymysql parses every field in Python, sqlite3 makes a
Python string of each. So a read of several columns is *packed*: the database joins a
row's values into one text value (:meth:`~artifact_gc.metadb.dialect.Dialect.packed_row`)
and DuckDB splits it again. A row that does not split into exactly its columns (a
value holding the separator) makes the reader read that table again unpacked, in the
same snapshot. On MySQL/MariaDB, a read that can be cut into key ranges
(:class:`~artifact_gc.metadb.pages.KeyRanges`) has the server join each range's packed
rows into one value (metadb/pages.py), so that the driver does no work per row at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.pages import KeyRanges, RangeReader, ReadAhead

CHUNK_ROWS = 50_000

#: Between the values of a packed row (see Dialect.packed_row).
_SEPARATOR = "chr(30)"


def load_table(
    con: Any, name: str, engine: Any, db_url: str, sql: str, columns: list[tuple[str, str]],
    *, ranges: KeyRanges | None = None,
) -> None:
    """Run ``sql`` into DuckDB table ``name``.

    ``sql`` selects, as text, one column per ``(name, duckdb type)`` of ``columns``;
    each is typed on the way in (ids become 16-byte UUIDs). A value that does not
    parse becomes NULL. ``db_url`` is the store's URL (``engine`` reads it).
    ``ranges``, when given, is the same read (``ranges.sql() == sql``) cut into key
    ranges, which MySQL/MariaDB then sends one value per range.
    """
    del db_url  # the engine knows its store; kept for the callers' signature
    with engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        if ranges is not None and engine.dialect.driver == "pymysql":
            _load_ranges(con, name, engine, dbapi_connection, ranges, columns)
            return
        if len(columns) > 1:
            names = [f"c{i + 1}" for i in range(len(columns))]
            packed = (f"WITH _gc_read({', '.join(names)}) AS ({sql}) "
                      f"SELECT {dialect_of(engine).packed_row(names)} FROM _gc_read")
            reader = _text_batches(engine, dbapi_connection, packed, 1)
            if _ingest_packed(con, name, reader, columns):
                return
        _ingest(con, name, _text_batches(engine, dbapi_connection, sql, len(columns)),
                columns)


def _load_ranges(con: Any, name: str, engine: Any, dbapi_connection: Any,
                 ranges: KeyRanges, columns: list[tuple[str, str]]) -> None:
    names = [f"c{i + 1}" for i in range(len(columns))]
    cursor = dbapi_connection.cursor()
    try:
        source = RangeReader(cursor, ranges, len(columns),
                             dialect_of(engine).packed_row(names))
        ahead = ReadAhead(source.batches())
        try:
            reader = pa.RecordBatchReader.from_batches(
                pa.schema([pa.field("packed", pa.string())]), iter(ahead))
            incoming = f"_incoming_{name}"
            con.register(incoming, reader)
            try:
                con.execute(
                    f"CREATE TABLE {name} AS SELECT {_split(columns)} FROM "
                    f"(SELECT string_split(row, chr(30)) AS parts FROM "
                    f"(SELECT unnest(string_split(packed, chr(29))) AS row FROM {incoming}))")
            except Exception as exc:
                if ahead.error is not None:
                    raise ahead.error from exc
                raise
            finally:
                con.unregister(incoming)
        finally:
            ahead.close()
    finally:
        cursor.close()
    for sql in source.unread:
        # A range whose value was cut, or held a separator: its rows one by one.
        _ingest(con, name, _text_batches(engine, dbapi_connection, sql, len(columns)),
                columns, into_existing=True)


def _split(columns: list[tuple[str, str]]) -> str:
    """The typed columns of ``parts``, a packed row split at chr(30).

    A value is "v" + text, or "" for NULL: strip the mark, or make it NULL."""
    return ", ".join(
        _typed(f"CASE WHEN parts[{i + 1}] = '' THEN chr(31) ELSE parts[{i + 1}][2:] END",
               column, kind)
        for i, (column, kind) in enumerate(columns)
    )


def _typed(expression: str, column: str, kind: str) -> str:
    """``expression`` (text, with char(31) for NULL) as DuckDB column ``column``."""
    text = f"nullif({expression}, chr(31))"
    if kind == "VARCHAR":
        return f"{text} AS {column}"
    return f"TRY_CAST({text} AS {kind}) AS {column}"


def _ingest(con: Any, name: str, reader: Any, columns: list[tuple[str, str]],
            *, into_existing: bool = False) -> None:
    incoming = f"_incoming_{name}"
    con.register(incoming, reader)
    try:
        select = ", ".join(
            _typed(f"CAST(\"#{i + 1}\" AS VARCHAR)", column, kind)
            for i, (column, kind) in enumerate(columns)
        )
        verb = f"INSERT INTO {name}" if into_existing else f"CREATE TABLE {name} AS"
        con.execute(f"{verb} SELECT {_positional(select, reader)} FROM {incoming}")
    finally:
        con.unregister(incoming)


def _ingest_packed(con: Any, name: str, reader: Any, columns: list[tuple[str, str]]
                   ) -> bool:
    """Split packed rows into DuckDB table ``name``; False (and no table) when a row
    does not split into exactly ``columns``."""
    incoming = f"_incoming_{name}"
    con.register(incoming, reader)
    try:
        select = _split(columns)
        field = '"' + reader.schema[0].name.replace('"', '""') + '"'
        con.execute(
            f"CREATE TABLE {name} AS SELECT {select}, len(parts) AS _gc_fields FROM "
            f"(SELECT string_split(CAST({field} AS VARCHAR), {_SEPARATOR}) AS parts "
            f"FROM {incoming})"
        )
    finally:
        con.unregister(incoming)
    misfits = con.execute(
        f"SELECT count(*) FROM {name} WHERE _gc_fields <> {len(columns)}").fetchall()
    if misfits and int(misfits[0][0]):
        # A value held the separator, so its row split wrong: read the table again
        # value by value rather than guess which part belongs where.
        con.execute(f"DROP TABLE {name}")
        return False
    con.execute(f"ALTER TABLE {name} DROP COLUMN _gc_fields")
    return True


def _positional(select: str, reader: Any) -> str:
    """Replace ``"#n"`` placeholders by the reader's actual column names."""
    for i, field in enumerate(reader.schema):
        quoted = '"' + field.name.replace('"', '""') + '"'
        select = select.replace(f'"#{i + 1}"', quoted)
    return select


def _text_batches(engine: Any, dbapi_connection: Any, sql: str, width: int) -> Any:
    """The rows of ``sql`` (``width`` text columns) as an Arrow record batch reader."""
    schema = pa.schema([pa.field(f"c{i + 1}", pa.string()) for i in range(width)])
    return pa.RecordBatchReader.from_batches(
        schema, _batches(engine, dbapi_connection, sql, schema))


def _batches(engine: Any, dbapi_connection: Any, sql: str, schema: pa.Schema
             ) -> Iterator[pa.RecordBatch]:
    if engine.dialect.driver == "pymysql":
        import pymysql.cursors  # type: ignore[import-untyped]

        # Unbuffered: the server streams the rows, so memory stays flat however
        # large the table. ``sql`` has no parameters, so it is sent as it is.
        cursor = dbapi_connection.cursor(pymysql.cursors.SSCursor)
    else:
        cursor = dbapi_connection.cursor()
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
