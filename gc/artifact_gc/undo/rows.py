"""The rows a batch deletes, kept so that ``gc restore`` can put them back.

:class:`RowCapture` is the ``capture`` of ``Cascade.delete`` (sweep/rows.py): the
cascade hands it every row as its DELETE removes it, in the same transaction, under
the batch's write lock (``DELETE ... RETURNING *`` on SQLite and MariaDB). The sweep
writes the captured rows as a segment (area.py) after the last delete and before the
commit, so a committed delete always has its rows kept; a crash between the segment
and the commit leaves a segment whose rows still exist, which a restore finds
identical and counts as already back.

Each row is tagged with its owners, from the release's schema profile: the version
it belongs to (a visualization through its column, a curated visualization through
its visualization, a polymorphic row through ``resource_id``, a run metadata row
through the links that owned it), or ``artifact:<id>`` for an artifact and its own
tags and metadata. ``gc restore --where`` brings back the rows of the chosen
versions and of their artifacts, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from artifact_gc.sweep.rows import ARTIFACT_RESOURCE, VERSION_RESOURCE
from artifact_gc.undo.area import ARTIFACT_OWNER, ROW_SCHEMA
from artifact_gc.undo.codec import encode_row
from artifact_gc.zenml.schema import ARTIFACT_TABLE, VERSION_TABLE, ZenMLSchema


@dataclass
class _Deleted:
    table: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class RowCapture:
    """Every row one attempt of a batch's transaction deleted, in delete order."""

    schema: ZenMLSchema
    deleted: list[_Deleted] = field(default_factory=list)

    def __call__(self, table: str, columns: list[str], rows: list[Any]) -> None:
        self.deleted.append(_Deleted(table, columns, [tuple(r) for r in rows]))

    @property
    def rows(self) -> int:
        return sum(len(d.rows) for d in self.deleted)

    def to_table(self, sweep_id: str, batch: int, attempt: int) -> pa.Table:
        owners = _Owners(self.schema, self.deleted)
        out: dict[str, list[Any]] = {name: [] for name in ROW_SCHEMA.names}
        tables, owned_by, encoded = out["table"], out["owners"], out["row"]
        for deleted in self.deleted:
            of = owners.reader(deleted.table, deleted.columns)
            columns = deleted.columns
            for row in deleted.rows:
                found = of(row)
                owned_by.append(sorted(found) if len(found) > 1 else list(found))
                encoded.append(encode_row(columns, row))
            tables.extend([deleted.table] * len(deleted.rows))
        n = len(encoded)
        out["step"] = list(range(n))
        out["sweep_id"] = [sweep_id] * n
        out["batch"] = [batch] * n
        out["attempt"] = [attempt] * n
        return pa.table(out, schema=ROW_SCHEMA)


class _Owners:
    """Whose each captured row is, from the schema profile (see the module doc)."""

    def __init__(self, schema: ZenMLSchema, deleted: list[_Deleted]) -> None:
        self.schema = schema
        self.deleted = deleted
        #: The captured rows of a table as dicts, made for the tables looked into only.
        self.by_table: dict[str, list[dict[str, Any]]] = {}
        self.dependents = {d.table: d for d in schema.dependents}
        self.owned = {owned: (link, column)
                      for link, (column, owned) in schema.owned_through().items()}
        self._indexes: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}

    def _rows(self, table: str, column: str, value: Any) -> list[dict[str, Any]]:
        """The captured rows of ``table`` whose ``column`` is ``value``."""
        index = self._indexes.get((table, column))
        if index is None:
            index = self._indexes[(table, column)] = {}
            if table not in self.by_table:
                self.by_table[table] = [dict(zip(d.columns, r, strict=True))
                                        for d in self.deleted if d.table == table
                                        for r in d.rows]
            for row in self.by_table[table]:
                index.setdefault(str(row.get(column)), []).append(row)
        return index.get(str(value), [])

    def reader(self, table: str, columns: list[str]) -> Callable[[tuple[Any, ...]], set[str]]:
        """:meth:`of` for the rows of one captured table: where the owner is a column
        of the row itself (a version, an artifact, a visualization, a polymorphic
        row), read by its position, without a dict per row."""
        where = {name: n for n, name in enumerate(columns)}
        if table == VERSION_TABLE and "id" in where:
            at = where["id"]
            return lambda row: {str(row[at])}
        if table == ARTIFACT_TABLE and "id" in where:
            at = where["id"]
            return lambda row: {ARTIFACT_OWNER + str(row[at])}
        dependent = self.dependents.get(table)
        if (table not in self.owned and table not in self.schema.polymorphic_tables
                and dependent is not None and dependent.parent_table == VERSION_TABLE
                and dependent.column in where):
            at = where[dependent.column]
            return lambda row: {str(row[at])}
        return lambda row: self.of(table, columns, row)

    def of(self, table: str, columns: list[str], row: tuple[Any, ...]) -> set[str]:
        return self._of(table, dict(zip(columns, row, strict=True)), depth=0)

    def _of(self, table: str, row: dict[str, Any], depth: int) -> set[str]:
        if depth > 8:
            return set()
        if table == VERSION_TABLE:
            return {str(row["id"])}
        if table == ARTIFACT_TABLE:
            return {ARTIFACT_OWNER + str(row["id"])}
        if table in self.owned:
            link, column = self.owned[table]
            found: set[str] = set()
            for other in self._rows(link, column, row.get("id")):
                found |= self._of(link, other, depth + 1)
            if found:
                return found
        if table in self.schema.polymorphic_tables and "resource_type" in row:
            kind = row.get("resource_type")
            if kind == VERSION_RESOURCE:
                return {str(row["resource_id"])}
            if kind == ARTIFACT_RESOURCE:
                return {ARTIFACT_OWNER + str(row["resource_id"])}
            return set()
        dependent = self.dependents.get(table)
        if dependent is not None:
            value = row.get(dependent.column)
            if dependent.parent_table == VERSION_TABLE:
                return {str(value)}
            for parent in self._rows(dependent.parent_table, dependent.parent_column, value):
                return self._of(dependent.parent_table, parent, depth + 1)
        return set()
