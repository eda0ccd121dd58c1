"""Statements over many ids: ``IN :ids`` run in chunks the dialect can bind."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from artifact_gc.metadb.dialect import dialect_of


def quoter(connection: Any) -> Callable[[str], str]:
    """``q(name)``: ``name`` quoted as an identifier in the connection's dialect."""
    dialect = dialect_of(connection)

    def q(name: str) -> str:
        return dialect.quote(connection, name)

    return q


def chunks(values: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield list(values[start:start + size])


def _run_in(connection: Any, sql: str, ids: Iterable[str], params: dict[str, Any]
            ) -> Iterable[Any]:
    """The result of ``sql`` (with ``IN :ids``) for each chunk of ``ids``.

    On SQLite the list is bound by the driver itself (``exec_driver_sql``, positional
    parameters): a sweep's batch binds 5,000 ids in each of a dozen statements, and
    SQLAlchemy's expanding parameter renders and processes every one of them anew at
    each execution, which cost more CPU than SQLite's own work for the smaller
    statements. (Named parameters would not do: SQLite looks each new name up among
    the ones before it, quadratic in the length of the list.) The values, the
    statement and its bound parameters are the same."""
    import sqlalchemy as sa

    dialect = dialect_of(connection)
    values = sorted(set(ids))
    if dialect.name == "sqlite":
        for chunk in chunks(values, dialect.in_chunk):
            yield connection.exec_driver_sql(*_positional(sql, chunk, params))
        return
    statement = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
    for chunk in chunks(values, dialect.in_chunk):
        yield connection.execute(statement, {"ids": chunk, **params})


_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _positional(sql: str, chunk: list[str], params: dict[str, Any]
                ) -> tuple[str, tuple[Any, ...]]:
    """``sql`` with ``:ids`` as one ``?`` per value of ``chunk`` and every other
    ``:name`` of ``params`` as ``?``, and the values in the order they are bound."""
    bound: list[Any] = []

    def place(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ids":
            bound.extend(chunk)
            return "(" + ", ".join("?" * len(chunk)) + ")"
        bound.append(params[name])
        return "?"

    return _PARAMETER.sub(place, sql), tuple(bound)


def select_in(connection: Any, sql: str, ids: Iterable[str], **params: Any) -> list[Any]:
    """Run ``sql`` (with ``IN :ids``) over ``ids`` in chunks; return every row."""
    rows: list[Any] = []
    for result in _run_in(connection, sql, ids, params):
        rows.extend(result.all())
    return rows


def select_in_tuples(connection: Any, sql: str, ids: Iterable[str], **params: Any
                     ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Like :func:`select_in`, but the column names and the rows as the driver returned
    them (plain tuples, no SQLAlchemy row objects: for the thousands of rows a batch's
    ``DELETE ... RETURNING`` hands to the undo window)."""
    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    for result in _run_in(connection, sql, ids, params):
        # The result of a textual statement applies no type processing: its rows are
        # the driver's values, fetched here without wrapping each in a Row.
        cursor = result.cursor
        if cursor is None or cursor.description is None:
            result.close()
            continue
        columns = [d[0] for d in cursor.description]
        rows.extend(tuple(r) for r in cursor.fetchall())
        result.close()
    return columns, rows


def execute_in(connection: Any, sql: str, ids: Iterable[str], **params: Any) -> int:
    """Run a DML statement with ``IN :ids`` over ``ids`` in chunks; return rows affected."""
    total = 0
    for result in _run_in(connection, sql, ids, params):
        total += max(0, int(result.rowcount or 0))
    return total
