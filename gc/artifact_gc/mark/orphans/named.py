"""The paths the metadata database names, for the orphan-file classification and its
re-verification by the sweep.

Every string column whose name says it holds a location (``uri``, ``*_uri``, ``path``,
``*_path``, ``url``, ``*_url``) in every table is read, found by reflecting the schema
at run time rather than from a hand-written list: a release that adds such a column
(a new kind of file ZenML keeps in the store) protects its files without a change
here. Reading a column that holds no store path costs a scan and protects nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.reader import load_table

#: Column names that hold a location.
LOCATION_COLUMN = re.compile(r"^(uri|path|url)$|_(uri|path|url)$", re.IGNORECASE)

#: The step-run and logs tables, read for the classes of step-output and log paths.
STEP_RUN_TABLE = "step_run"
LOGS_TABLE = "logs"
#: The column of a snapshot (``pipeline_deployment`` before 0.90) that names its code
#: archive in the artifact store (``code_uploads/<sha1>.tar.gz``).
CODE_PATH_COLUMN = "code_path"


@dataclass(frozen=True)
class LocationColumn:
    table: str
    column: str


def location_columns(engine: Any) -> list[LocationColumn]:
    """Every string column of the store whose name says it holds a location."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    found = []
    for table in sorted(inspector.get_table_names()):
        for column in inspector.get_columns(table):
            kind = column["type"]
            if LOCATION_COLUMN.search(column["name"]) and isinstance(kind, sa.String | sa.Text):
                found.append(LocationColumn(table, column["name"]))
    return found


def load_named_paths(con: Any, engine: Any, db_url: str,
                     columns: Sequence[LocationColumn]) -> None:
    """DuckDB table ``orphan_named(path)``: every non-empty value of ``columns``."""
    dialect = dialect_of(engine)
    con.execute("CREATE OR REPLACE TEMP TABLE orphan_named (path VARCHAR)")
    for index, location in enumerate(columns):
        col = dialect.quote(engine, location.column)
        name = f"orphan_named_{index}"
        load_table(con, name, engine, db_url,
                   f"SELECT {dialect.text(col, False)} AS path "
                   f"FROM {dialect.quote(engine, location.table)} "
                   f"WHERE {col} IS NOT NULL AND {col} <> ''",
                   [("path", "VARCHAR")])
        con.execute(f"INSERT INTO orphan_named SELECT path FROM {name} WHERE path <> ''")
        con.execute(f"DROP TABLE {name}")


def load_step_runs_and_logs(con: Any, engine: Any, db_url: str, tables: frozenset[str]
                            ) -> None:
    """DuckDB tables ``orphan_step_runs(id, status)`` and ``orphan_logs(id)``, ids as
    32 lowercase hex digits (an empty table where the schema has none)."""
    dialect = dialect_of(engine)

    def q(name: str) -> str:
        return dialect.quote(engine, name)

    if STEP_RUN_TABLE in tables:
        load_table(con, "orphan_step_runs", engine, db_url,
                   f"SELECT {dialect.text(q('id'), False)} AS id, "
                   f"{dialect.text(q('status'))} AS status FROM {q(STEP_RUN_TABLE)}",
                   [("id", "VARCHAR"), ("status", "VARCHAR")])
    else:
        con.execute("CREATE TABLE orphan_step_runs (id VARCHAR, status VARCHAR)")
    if LOGS_TABLE in tables:
        load_table(con, "orphan_logs", engine, db_url,
                   f"SELECT {dialect.text(q('id'), False)} AS id FROM {q(LOGS_TABLE)}",
                   [("id", "VARCHAR")])
    else:
        con.execute("CREATE TABLE orphan_logs (id VARCHAR)")
    for table in ("orphan_step_runs", "orphan_logs"):
        con.execute(f"UPDATE {table} SET id = lower(replace(id, '-', ''))")
