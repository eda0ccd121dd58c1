"""Connecting to the ZenML metadata store, and telling one store from another.

Every connection we open to SQLite runs ``PRAGMA foreign_keys=ON``: ZenML relies on
ON DELETE CASCADE/RESTRICT, and SQLite only enforces them when asked per connection.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from artifact_gc.errors import DatabaseError

DEFAULT_STORE_RELATIVE = Path("local_stores") / "default_zen_store" / "zenml.db"


def zenml_config_dir() -> Path:
    """ZenML's global config directory: ``$ZENML_CONFIG_PATH`` or the platform default."""
    configured = os.environ.get("ZENML_CONFIG_PATH")
    if configured:
        return Path(configured).expanduser()
    import click

    return Path(click.get_app_dir("zenml"))


def _store_section(config_yaml: str) -> dict[str, str]:
    """The scalar keys of the ``store:`` block of ZenML's config.yaml.

    ZenML writes this file itself with a fixed, flat layout; reading the few scalar
    keys we need keeps PyYAML out of our runtime dependencies.
    """
    values: dict[str, str] = {}
    inside = False
    for line in config_yaml.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            inside = line.rstrip() == "store:"
            continue
        if inside:
            match = re.match(r"^\s{2}(\w+):\s*(.*)$", line)
            if match:
                values[match.group(1)] = match.group(2).strip().strip("'\"")
    return values


def _rest_url_error(url: str) -> DatabaseError:
    return DatabaseError(
        f"{url} is a ZenML server (REST) URL. gc mark and gc sweep read the metadata "
        "database directly: pass the server's database URL with --db, e.g. "
        "mysql+pymysql://user:password@host/zenml"
    )


def resolve_database_url(explicit: str | None) -> str:
    """The store to use: ``--db``, else ``ZENML_STORE_URL``, else ZenML's global config."""
    if explicit:
        return normalize_url(explicit)
    env_url = os.environ.get("ZENML_STORE_URL")
    if env_url:
        return normalize_url(env_url)
    config_dir = zenml_config_dir()
    config_file = config_dir / "config.yaml"
    if config_file.exists():
        store = _store_section(config_file.read_text())
        url = store.get("url")
        if url:
            return normalize_url(url)
    default_db = config_dir / DEFAULT_STORE_RELATIVE
    if default_db.exists():
        return f"sqlite:///{default_db}"
    raise DatabaseError(
        f"no ZenML store found: --db not given, ZENML_STORE_URL not set and no local "
        f"store at {default_db}. Pass --db sqlite:////path/zenml.db or a MySQL URL."
    )


def normalize_url(url: str) -> str:
    """Accept ZenML's spellings (``mysql://``) and reject what mark cannot read."""
    url = url.strip()
    if url.startswith(("http://", "https://")):
        raise _rest_url_error(url)
    if url.startswith("mysql://"):
        return "mysql+pymysql://" + url[len("mysql://") :]
    if url.startswith(("sqlite:", "mysql+pymysql://", "mariadb+pymysql://")):
        return url
    if url.startswith(("mysql+", "mariadb")):
        return url
    raise DatabaseError(
        f"unsupported database URL {redact(url)!r}: ZenML stores are SQLite "
        "(sqlite:////path/zenml.db) or MySQL/MariaDB (mysql+pymysql://user:pw@host/db)"
    )


def redact(url: str) -> str:
    """The URL with any password removed, for messages and manifests.

    Up to the LAST ``@``: a password pasted with a raw ``@`` in it must not leave its
    tail behind (hiding a little too much of a rare URL is the safe side).
    """
    return re.sub(r"(://[^:/@]+):.*@", r"\1:***@", url)


def create_engine(url: str, *, readonly: bool = False) -> Any:
    """A SQLAlchemy engine with ZenML's own connection rules.

    ``readonly`` opens SQLite with ``mode=ro`` and MySQL sessions as READ ONLY, so a
    mark can never write to the store, not even by accident.
    """
    import sqlalchemy as sa
    from sqlalchemy import event

    try:
        parsed = sa.engine.make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with little context
        raise DatabaseError(f"cannot parse database URL {redact(url)!r}: {exc}") from exc
    if parsed.host and "@" in parsed.host:
        # SQLAlchemy splits at the first "@", so the rest of a password with a raw "@"
        # would become the host name, and then appear in the driver's error messages.
        raise DatabaseError(
            "the database URL's host part contains '@': a password with '@', '/', ':' or "
            "'%' must be URL-encoded (urllib.parse.quote(password, safe=''))"
        )
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            raise DatabaseError("an in-memory SQLite database holds no ZenML store")
        if not Path(path).exists():
            raise DatabaseError(f"SQLite database {path} does not exist")
        target = f"file:{Path(path).resolve()}?mode=ro" if readonly else str(path)
        # SQLAlchemy's own ``?timeout=SECONDS`` (the busy timeout) is honoured.
        raw_timeout = parsed.query.get("timeout")
        try:
            timeout = float(raw_timeout) if isinstance(raw_timeout, str) and raw_timeout \
                else 60.0
        except ValueError:
            raise DatabaseError(
                f"the SQLite URL's ?timeout= must be a number of seconds, not {raw_timeout!r}"
            ) from None
        engine = sa.create_engine(
            "sqlite://",
            creator=_sqlite_creator(target, uri=readonly, timeout=timeout),
            poolclass=sa.pool.NullPool if readonly else sa.pool.QueuePool,
        )

        @event.listens_for(engine, "connect")
        def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600)
    if readonly:

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.close()

    return engine


def _sqlite_creator(target: str, *, uri: bool, timeout: float = 60) -> Any:
    import sqlite3

    def connect() -> sqlite3.Connection:
        # ZenML uses a 60 s busy timeout; waiting as long as it does keeps us from
        # failing where a pipeline would merely have waited.
        return sqlite3.connect(target, uri=uri, timeout=timeout, check_same_thread=False,
                               isolation_level=None)

    return connect


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other dialects."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).resolve()


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
    dialect = "sqlite" if url.get_backend_name() == "sqlite" else "mysql"
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
