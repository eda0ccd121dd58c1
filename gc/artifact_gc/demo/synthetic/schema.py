"""ZenML 0.98's schema, replayed from the snapshot that ships with the package."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

ZENML_VERSION = "0.98.0"
SCHEMA_RESOURCE = f"zenml-{ZENML_VERSION}-sqlite.sql"


def schema_sql() -> str:
    """The shipped ZenML schema snapshot (CREATE TABLE/INDEX and alembic_version)."""
    return (resources.files("artifact_gc.demo") / "zenml_schema" / SCHEMA_RESOURCE).read_text()


def create_sqlite_store(path: Path) -> str:
    """Create a new SQLite file at ``path`` with ZenML's schema; return its URL."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(schema_sql())
        conn.commit()
    finally:
        conn.close()
    return f"sqlite:///{path.resolve()}"
