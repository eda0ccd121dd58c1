"""Statements over many ids: ``IN :ids`` run in chunks the dialect can bind."""

from __future__ import annotations

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


def select_in(connection: Any, sql: str, ids: Iterable[str], **params: Any) -> list[Any]:
    """Run ``sql`` (with ``IN :ids``) over ``ids`` in chunks; return every row."""
    import sqlalchemy as sa

    statement = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
    rows: list[Any] = []
    for chunk in chunks(sorted(set(ids)), dialect_of(connection).in_chunk):
        rows.extend(connection.execute(statement, {"ids": chunk, **params}).all())
    return rows


def execute_in(connection: Any, sql: str, ids: Iterable[str], **params: Any) -> int:
    """Run a DML statement with ``IN :ids`` over ``ids`` in chunks; return rows affected."""
    import sqlalchemy as sa

    statement = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
    total = 0
    for chunk in chunks(sorted(set(ids)), dialect_of(connection).in_chunk):
        result = connection.execute(statement, {"ids": chunk, **params})
        total += max(0, int(result.rowcount or 0))
    return total
