"""Bulk row writer: reflected tables, filled NOT NULL columns, chunked ``executemany``."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from artifact_gc.demo.synthetic.encoding import Row


class RowWriter:
    """Chunked ``executemany`` through the raw DBAPI connection, one commit per chunk."""

    def __init__(
        self,
        engine: sa.Engine,
        progress: Callable[[int], None] | None,
        now: str,
        chunk_rows: int,
    ) -> None:
        self.engine = engine
        self.progress = progress
        self.now = now
        self.chunk_rows = chunk_rows
        self.counts: dict[str, int] = {}
        self.sqlite = engine.dialect.name == "sqlite"
        self.metadata = sa.MetaData()
        self.metadata.reflect(engine)
        self.raw = engine.raw_connection()
        self.cursor = self.raw.cursor()
        self.mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self.quote = engine.dialect.identifier_preparer.quote
        self._saved_pragmas: list[tuple[str, Any]] = []

    def __enter__(self) -> RowWriter:
        cur = self.cursor
        if self.sqlite:
            # Only while generating: a crash leaves a scratch file that is thrown away.
            for pragma in ("synchronous", "journal_mode", "foreign_keys"):
                cur.execute(f"PRAGMA {pragma}")
                row = cur.fetchone()
                assert row is not None
                self._saved_pragmas.append((pragma, row[0]))
            cur.execute("PRAGMA foreign_keys=OFF")
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA cache_size=-1048576")
        else:
            # Parents are always inserted before children, so the result is consistent;
            # checks off only saves the per-row lookups.
            cur.execute("SET SESSION foreign_key_checks=0")
            cur.execute("SET SESSION unique_checks=0")
        self.raw.commit()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.raw.commit()
            cur = self.cursor
            if self.sqlite:
                for pragma, value in reversed(self._saved_pragmas):
                    cur.execute(f"PRAGMA {pragma}={value}")
            else:
                cur.execute("SET SESSION foreign_key_checks=1")
                cur.execute("SET SESSION unique_checks=1")
            self.raw.commit()
        finally:
            self.cursor.close()
            self.raw.close()

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Any:
        self.cursor.execute(sql.replace("?", self.mark), tuple(params))
        row = self.cursor.fetchone()
        return None if row is None else row[0]

    def _filler(self, column: sa.Column[Any]) -> Any:
        """A plausible value for a NOT NULL column nobody set explicitly."""
        name = column.name
        kind = column.type
        if isinstance(kind, sa.Boolean):
            return False
        if isinstance(kind, sa.Integer | sa.Numeric):
            return 0
        if isinstance(kind, sa.DateTime | sa.Date):
            return self.now
        if isinstance(kind, sa.LargeBinary):
            return base64.b64encode(b"{}")
        if isinstance(kind, sa.JSON):
            return "{}"
        if name.endswith(("configuration", "environment", "config", "spec", "metadata", "schema")):
            return "{}"
        if name.endswith("_id"):
            raise ValueError(f"NOT NULL id column {column.table.name}.{name} must be set")
        return ""

    def insert(self, table_name: str, columns: Sequence[str], rows: Iterable[Row]) -> int:
        """Insert ``rows`` (values for ``columns``), filling the other NOT NULL columns."""
        table = self.metadata.tables.get(table_name)
        if table is None:
            raise ValueError(f"the store has no table {table_name!r}")
        missing = [c for c in columns if c not in table.c]
        if missing:
            raise ValueError(f"{table_name} has no columns {missing}")
        extra_cols: list[str] = []
        extra_vals: list[Any] = []
        for column in table.columns:
            if column.name in columns or column.nullable:
                continue
            if column.server_default is not None or column.autoincrement is True:
                continue
            extra_cols.append(column.name)
            extra_vals.append(self._filler(column))
        all_cols = [*columns, *extra_cols]
        fill = tuple(extra_vals)
        sql = (
            f"INSERT INTO {self.quote(table_name)} ({', '.join(self.quote(c) for c in all_cols)})"
            f" VALUES ({', '.join([self.mark] * len(all_cols))})"
        )
        total = 0
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row + fill if fill else row)
            if len(chunk) >= self.chunk_rows:
                total += self._flush(sql, chunk)
                chunk = []
        if chunk:
            total += self._flush(sql, chunk)
        self.counts[table_name] = self.counts.get(table_name, 0) + total
        return total

    def _flush(self, sql: str, chunk: list[Row]) -> int:
        self.cursor.executemany(sql, chunk)
        self.raw.commit()
        if self.progress is not None:
            self.progress(len(chunk))
        return len(chunk)
