"""Every table's foreign keys, as SQLAlchemy reflects them, reflected once per schema.

SQLAlchemy reflects a SQLite table's foreign keys from ``PRAGMA foreign_key_list`` and
by parsing the table's ``CREATE TABLE`` text, a millisecond or two per table: 50 to 80
ms for a ZenML store, which a mark pays twice (the schema, the snapshot model) and a
sweep three times (its plan, again under its own engine, its cascade). Both sources
are functions of the schema's text in ``sqlite_master``, so on SQLite the result is
kept under a hash of that text: any DDL changes the text, and the next call reflects
again. Other databases are reflected on every call.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

#: A table's foreign keys, as ``Inspector.get_foreign_keys`` returns them.
ForeignKeys = Mapping[str, Sequence[Mapping[str, Any]]]

#: Foreign keys by table (in ``get_table_names`` order), by the SHA-256 of a SQLite
#: schema's text.
_by_schema: dict[str, ForeignKeys] = {}
_lock = threading.Lock()


def foreign_keys(inspector: Any) -> ForeignKeys:
    """``{table: inspector.get_foreign_keys(table)}`` for every table of
    ``inspector.get_table_names()``, in that order. Shared: read it, never change it."""
    key = _sqlite_schema_key(inspector)
    if key is not None:
        with _lock:
            known = _by_schema.get(key)
        if known is not None:
            return known
    found = {table: inspector.get_foreign_keys(table) for table in inspector.get_table_names()}
    if key is not None:
        with _lock:
            _by_schema[key] = found
    return found


def _sqlite_schema_key(inspector: Any) -> str | None:
    """The SHA-256 of the SQLite schema behind ``inspector`` (None on other databases)."""
    if inspector.dialect.name != "sqlite":
        return None
    sql = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    bind = inspector.bind
    if hasattr(bind, "exec_driver_sql"):  # a Connection: read inside its transaction
        rows = bind.exec_driver_sql(sql).all()
    else:
        with bind.connect() as connection:
            rows = connection.exec_driver_sql(sql).all()
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()
