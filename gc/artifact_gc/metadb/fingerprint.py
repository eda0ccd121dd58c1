"""Telling one metadata store from another, without any secret in it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from artifact_gc.metadb.dialect import dialect_of


@dataclass(frozen=True)
class DatabaseFingerprint:
    """What identifies a metadata store, without any secret in it."""

    dialect: str
    host: str | None
    port: int | None
    database: str | None
    schema_version: str | None
    store_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatabaseFingerprint:
        return cls(
            dialect=data.get("dialect", ""),
            host=data.get("host"),
            port=data.get("port"),
            database=data.get("database"),
            schema_version=data.get("schema_version"),
            store_id=data.get("store_id"),
        )

    def same_store(self, other: DatabaseFingerprint) -> bool:
        """True when both describe the same store (the store id wins when both have one)."""
        if self.dialect != other.dialect:
            return False
        if self.store_id and other.store_id:
            return self.store_id == other.store_id and self.database == other.database
        return (self.host, self.port, self.database) == (other.host, other.port, other.database)

    def describe(self) -> str:
        where = self.database if self.dialect == "sqlite" else (
            f"{self.host}:{self.port or 3306}/{self.database}"
        )
        store = f"store {self.store_id}, " if self.store_id else ""
        return f"{self.dialect} {where} ({store}schema {self.schema_version})"


def fingerprint(engine: Any, schema_version: str | None) -> DatabaseFingerprint:
    """Identify the store behind ``engine``: dialect, location and ZenML's server id."""
    import sqlalchemy as sa

    url = engine.url
    dialect = dialect_of(engine).name
    store_id: str | None = None
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT id FROM server_settings")).first()
            store_id = str(row[0]) if row else None
    except sa.exc.SQLAlchemyError:
        store_id = None
    if dialect == "sqlite":
        database = _sqlite_file(engine)
        return DatabaseFingerprint(dialect, None, None, database, schema_version, store_id)
    return DatabaseFingerprint(
        dialect, url.host, url.port, url.database, schema_version, store_id
    )


def _sqlite_file(engine: Any) -> str | None:
    with engine.connect() as connection:
        for row in connection.exec_driver_sql("PRAGMA database_list"):
            if row[1] == "main":
                return str(Path(row[2]).resolve()) if row[2] else None
    return None
