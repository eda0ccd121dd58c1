"""A benchmark store on an old ZenML schema, holding the same rows as a 0.98 one.

The old release's own migrations create the schema (``create_schema_with_zenml`` with
that release's interpreter); the 0.98 store's rows are then bulk-copied into it with
SQL, laid out the way the old release lays them out:

- ``project`` -> ``workspace`` and every ``project_id`` -> ``workspace_id``;
- ``pipeline_snapshot`` -> ``pipeline_deployment`` (``snapshot_id`` -> ``deployment_id``),
  every step's ``step_configuration.config`` gathered into the deployment's
  ``step_configurations`` JSON object (by step name), as ZenML before 0.83.1 kept it;
- ``run_metadata_resource`` folded into ``run_metadata.resource_id``/``resource_type``
  where the old table has them (before 0.71);
- any other column the old schema requires and the new one lacks gets a neutral value.

Tables the old schema does not have are left out (their rows cannot exist there).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from generate_store import create_schema_with_zenml
from stores import BenchStore

TABLE_SOURCE = {"workspace": "project", "pipeline_deployment": "pipeline_snapshot"}
COLUMN_SOURCE = {"workspace_id": "project_id", "deployment_id": "snapshot_id"}


def old_release_store(new: BenchStore, directory: Path, python: str) -> BenchStore:
    """The cached copy of ``new`` on the schema of the ZenML behind ``python``."""
    db = directory / "zenml.db"
    done = directory / "copied"
    if not done.exists():
        directory.mkdir(parents=True, exist_ok=True)
        db.unlink(missing_ok=True)
        print(f"[stores] creating {directory.name} (old migrations, then a copy)", flush=True)
        create_schema_with_zenml(f"sqlite:///{db}", python)
        copy_rows(Path(str(new.url).removeprefix("sqlite:///")), db)
        done.write_text("ok\n")
    return BenchStore(f"sqlite:///{db}", new.root, new.versions, new.orphans, directory)


def copy_rows(source: Path, target: Path) -> None:
    con = sqlite3.connect(target)
    try:
        con.execute("PRAGMA foreign_keys = OFF")
        con.execute("ATTACH DATABASE ? AS src", (str(source),))
        tables = [r[0] for r in con.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'")]
        src_tables = {r[0] for r in con.execute(
            "SELECT name FROM src.sqlite_master WHERE type = 'table'")}
        con.execute("BEGIN")
        for table in tables:
            con.execute(f'DELETE FROM main."{table}"')
            origin = TABLE_SOURCE.get(table, table)
            if origin not in src_tables:
                continue
            have = {r[1] for r in con.execute(f'PRAGMA src.table_info("{origin}")')}
            columns, values = [], []
            for _, name, kind, notnull, default, _ in con.execute(
                    f'PRAGMA main.table_info("{table}")').fetchall():
                expression = _expression(table, name, have, src_tables)
                if expression is None:
                    if not notnull or default is not None:
                        continue
                    expression = _neutral(str(kind))
                columns.append(f'"{name}"')
                values.append(expression)
            con.execute(f'INSERT INTO main."{table}" ({", ".join(columns)}) '
                        f'SELECT {", ".join(values)} FROM src."{origin}" AS s')
        con.execute("COMMIT")
    finally:
        con.close()


def _expression(table: str, column: str, have: set[str], src_tables: set[str]) -> str | None:
    if table == "pipeline_deployment" and column == "step_configurations":
        return ("coalesce((SELECT json_group_object(c.name, json(c.config)) "
                "FROM src.step_configuration c WHERE c.snapshot_id = s.id), '{}')")
    if (table == "run_metadata" and column in ("resource_id", "resource_type")
            and "run_metadata_resource" in src_tables):
        return (f"coalesce((SELECT r.{column} FROM src.run_metadata_resource r "
                "WHERE r.run_metadata_id = s.id LIMIT 1), '')")
    origin = column if column in have else COLUMN_SOURCE.get(column)
    return f's."{origin}"' if origin in have else None


def _neutral(kind: str) -> str:
    kind = kind.upper()
    if any(t in kind for t in ("INT", "BOOL", "FLOAT", "REAL", "NUMERIC")):
        return "0"
    if "DATE" in kind or "TIME" in kind:
        return "'2024-01-01 00:00:00.000000'"
    return "''"
