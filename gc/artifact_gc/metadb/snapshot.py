"""One consistent snapshot of the metadata store, for every read of a mark.

A mark that read each table in its own transaction could see a reference after it
left one table and before it reached another (a run deleted while a model link is
added): a live version would look unreferenced. So a mark reads everything inside one
transaction on one connection:

- SQLite: ``BEGIN`` and a first read, which takes the shared lock (rollback journal)
  or pins the snapshot (WAL) for every read that follows;
- MySQL/MariaDB: ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` at REPEATABLE READ,
  whose reads never take row locks.

It waits for locks for at most ``lock_timeout`` (SQLite's busy timeout, MySQL's
``lock_wait_timeout`` for metadata locks), retries the whole snapshot after a
transient error (a lock, a deadlock, a lost connection, a table altered under it),
and raises :class:`~artifact_gc.errors.StoreLocked` (exit 3) once the limit is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from artifact_gc.errors import DatabaseError, StoreLocked
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.engine import create_engine, redact

#: How long a mark waits for the store to become readable, unless told otherwise.
#: ZenML's own SQLite connections wait 60 s for a lock; a mark waits as long.
DEFAULT_LOCK_TIMEOUT = timedelta(seconds=60)

#: MySQL/MariaDB errors after which the snapshot is simply taken again: lock wait
#: timeout (a metadata lock held by DDL), deadlock, server gone away, lost connection,
#: "table definition has changed" (DDL after the snapshot began).
_MYSQL_RETRY = frozenset({1205, 1213, 2006, 2013, 1412})

T = TypeVar("T")


class _HeldConnection:
    """The snapshot's DBAPI connection as SQLAlchemy sees it.

    SQLAlchemy ends a connection's transaction (a rollback) whenever a ``Connection``
    closes or returns to its pool; here that would end the snapshot between two reads.
    So commit and rollback do nothing, and the snapshot ends when :func:`snapshot`
    rolls the real connection back and closes it. Ignoring a commit loses nothing:
    the connection is read-only (SQLite ``mode=ro``, MySQL ``READ ONLY`` session and
    transaction), so there is never anything to commit.
    """

    def __init__(self, dbapi_connection: Any) -> None:
        object.__setattr__(self, "_held", dbapi_connection)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._held, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._held, name, value)


@contextmanager
def snapshot(db_url: str, wait_seconds: float) -> Iterator[Any]:
    """An SQLAlchemy engine whose every connection is one connection, inside one
    read transaction that began before this yields. Locks are waited for at most
    ``wait_seconds``."""
    import sqlalchemy as sa

    base = create_engine(db_url, readonly=True)
    proxied = base.raw_connection()
    dbapi_connection = proxied.dbapi_connection
    proxied.detach()
    engine = None
    try:
        _begin(dialect_of(base).name, dbapi_connection, wait_seconds)
        held = _HeldConnection(dbapi_connection)
        engine = sa.create_engine(base.url, creator=lambda: held,
                                  poolclass=sa.pool.StaticPool)
        yield engine
    finally:
        if engine is not None:
            engine.dispose()
        # The transaction only read; closing the connection ends it just as well, so a
        # connection too broken to roll back (a lost server, a half-read result) must
        # not hide the error that broke it.
        for end in (dbapi_connection.rollback, dbapi_connection.close):
            try:
                end()
            except Exception:  # noqa: BLE001, S110
                pass
        base.dispose()


def _begin(dialect: str, dbapi_connection: Any, wait_seconds: float) -> None:
    cursor = dbapi_connection.cursor()
    try:
        if dialect == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {max(1, int(wait_seconds * 1000))}")
            cursor.execute("BEGIN")
            # A deferred transaction starts at its first read: make that now, so that
            # the wait for a writer's lock happens here, and every read below sees the
            # store as of this moment.
            cursor.execute("SELECT count(*) FROM sqlite_master")
            cursor.fetchall()
        else:
            # Consistent reads take no row locks; only DDL's metadata locks can hold
            # them back, for at most lock_wait_timeout.
            cursor.execute(f"SET SESSION lock_wait_timeout = {max(1, math.ceil(wait_seconds))}")
            # REPEATABLE READ whatever the server's default: at READ COMMITTED every
            # statement would take a new snapshot.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    finally:
        cursor.close()


def is_transient(exc: BaseException) -> bool:
    """True for an error after which taking the snapshot again can succeed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        original = getattr(current, "orig", None)
        for candidate in (current, original):
            if candidate is None:
                continue
            args = getattr(candidate, "args", ())
            if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRY:
                return True
            if type(candidate).__module__.startswith(("sqlite3", "sqlalchemy")):
                text = str(candidate).lower()
                if "database is locked" in text or "database table is locked" in text \
                        or "database is busy" in text:
                    return True
        current = current.__cause__ or current.__context__
    return False


def read_consistently(db_url: str, lock_timeout: timedelta,
                      read: Callable[[Any], T]) -> T:
    """``read(engine)`` inside one :func:`snapshot`; run again from the start after a
    transient error, until ``lock_timeout`` has passed since the first try.

    ``read`` must not keep anything of a failed try: it is called again from scratch.
    """
    from tenacity import (
        Retrying,
        retry_if_exception,
        stop_after_delay,
        wait_random_exponential,
    )

    limit = lock_timeout.total_seconds()
    deadline = time.monotonic() + limit
    try:
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_delay(limit),
            wait=wait_random_exponential(multiplier=0.05, max=2),
            reraise=True,
        ):
            with attempt:
                # Each try waits for locks only as long as the limit has left.
                remaining = max(0.05, deadline - time.monotonic())
                with snapshot(db_url, remaining) as engine:
                    return read(engine)
    except Exception as exc:
        if is_transient(exc):
            cause = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
            raise StoreLocked(
                f"the metadata store {redact(db_url)} stayed locked or unreadable past "
                f"the {_seconds(limit)} lock timeout (--lock-timeout): {cause}",
                limit_seconds=limit,
            ) from exc
        import sqlalchemy as sa

        if isinstance(exc, sa.exc.SQLAlchemyError) or _driver_error(exc):
            # Not a lock that waiting could end: the store cannot be reached or read at
            # all (refused connection, wrong password, missing database).
            cause = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
            raise DatabaseError(
                f"cannot read the metadata store {redact(db_url)}: {cause}") from exc
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")


def _driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a database driver's own error (PEP 249's ``Error``), as a
    connection opened below SQLAlchemy's wrapping raises it."""
    return any(cls.__name__ == "Error" and cls.__module__.split(".")[0] in _DRIVERS
               for cls in type(exc).__mro__)


_DRIVERS = frozenset({"pymysql", "sqlite3", "MySQLdb", "mysql"})


def _seconds(value: float) -> str:
    return f"{value:g} s"
