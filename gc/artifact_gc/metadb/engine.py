"""The SQLAlchemy engine of a ZenML metadata store, with ZenML's connection rules.

Every connection we open to SQLite runs ``PRAGMA foreign_keys=ON``: ZenML relies on
ON DELETE CASCADE/RESTRICT, and SQLite only enforces them when asked per connection.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from artifact_gc.errors import DatabaseError


def _rest_url_error(url: str) -> DatabaseError:
    return DatabaseError(
        f"{url} is a ZenML server (REST) URL. gc mark and gc sweep read the metadata "
        "database directly: pass the server's database URL with --db, e.g. "
        "mysql+pymysql://user:password@host/zenml"
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
        # Pooled, read-only engines too: a new SQLite connection parses the whole
        # schema (ZenML's 53 tables and their indexes) at its first statement, about
        # 1 ms, and an engine without a pool opens one per statement: a sweep's plan
        # opened 62 (one per table reflected). A pooled connection holds no
        # transaction between uses (autocommit; the pool rolls back on return), so it
        # sees every commit as a new connection would; ``dispose`` closes it.
        engine = sa.create_engine(
            "sqlite://",
            creator=_sqlite_creator(target, uri=readonly, timeout=timeout),
            poolclass=sa.pool.QueuePool,
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
