"""One object per database: everything that differs between SQLite and MySQL/MariaDB.

Mark, verification and the sweep ask the :class:`Dialect` of their engine or
connection; none of them tests a backend name itself. Supporting another database is
then one more class here, not a search through the phases.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

#: MySQL/MariaDB error codes that a later identical transaction can get past: lock
#: wait timeout, deadlock, server gone away, lost connection.
_MYSQL_TRANSIENT = (1205, 1213, 2006, 2013)

#: SQLite page cache of the sweep's connection, in KiB (see ``locked_transaction``).
SQLITE_CACHE_KIB = 256 * 1024

#: How long a read of :class:`ReferenceGuard` waits for a writer's row lock, in seconds,
#: at most. Past it the batch rolls back and runs again (error 1205 is transient): a
#: writer that waits for the batch's own locks while holding the row the guard waits
#: for is a cycle that InnoDB cannot see, since the batch's two connections wait for
#: each other only in our code.
GUARD_LOCK_WAIT_SECONDS = 5


class RerunTransaction(Exception):
    """Raised inside :meth:`Dialect.locked_transaction` when someone else's commit made
    what the transaction decided wrong: it rolls back, and :meth:`Dialect.is_transient`
    says to run it again from the start."""


#: Key, in a connection's ``info``, of the ids :meth:`Dialect.locked_transaction`
#: locked (set only inside it).
_LOCKED_KEY = "artifact_gc.locked_ids"

#: Key of :class:`SteadyScans` in a pooled connection's ``info`` (it follows the DBAPI
#: connection from one checkout to the next).
_STEADY_KEY = "artifact_gc.steady_scans"


class SteadyScans:
    """Whole-table reads kept from one locked SQLite transaction to the next, while no
    other connection has committed anything in between.

    ``PRAGMA data_version`` on a connection changes exactly when another connection
    (of any process) has committed to the database since the last time it was read
    on that connection; our own commits leave it unchanged (and our own writes are
    counted by the connection's ``total_changes``). Read under BEGIN IMMEDIATE,
    an unchanged value therefore proves that the database is the one our last commit
    left, so what a scan found then is still true, less what we deleted ourselves:
    a kept read is either of rows the sweep never deletes (the link tables that
    reference versions), or is updated by the same transaction that deletes its rows
    (:data:`DELETED_VERSIONS`, the visualizations of sweep/rows.py). A transaction
    that does not commit leaves the scans to be cleared by the next one."""

    def __init__(self) -> None:
        #: (data_version, total_changes) after the last commit that used the scans.
        self.version: tuple[int, int] | None = None
        #: Inside a locked transaction that found the database as our last commit left it.
        self.active = False
        self.scans: dict[Any, Any] = {}


#: Key, in :func:`steady_scans`, of the set of version ids the sweep's committed
#: transactions deleted since the scans were made.
DELETED_VERSIONS = "deleted_versions"


def steady_scans(connection: Any) -> dict[Any, Any] | None:
    """The whole-table reads that are still true on ``connection``, to fill or use; None
    outside a locked SQLite transaction (MySQL, a dry run), or when another connection
    committed since our last transaction: then nothing is kept, and every read is
    made afresh for the batch alone."""
    steady = connection.info.get(_STEADY_KEY)
    return steady.scans if steady is not None and steady.active else None


class ReferenceGuard:
    """Locking reads on a connection of its own (MySQL/MariaDB), holding back whoever
    would insert into what they scanned until the guard ends.

    InnoDB locks the gaps between rows, which is what holds back an insert, only at
    REPEATABLE READ and above, while the batch transaction runs at READ COMMITTED (so
    that its checks see every commit and its deletes lock no gaps). The guard is
    therefore a second transaction, at REPEATABLE READ. A locking read of a table
    through a filter on unindexed columns locks every row and every gap of the table:
    nobody can insert a row into it until the guard ends. It writes nothing, and it
    starts a transaction only at its first read: entered before the batch transaction
    and left after it, it holds its locks from that read until the batch has committed.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._connection: Any = None
        self._lock_wait: int | None = None

    def read(self, sql: str, **params: Any) -> list[Any]:
        """The rows of ``sql``, share-locked (with the gaps around them) until the end.

        Every row the statement scans is locked, not only the rows it returns."""
        import sqlalchemy as sa

        if self._connection is None:
            self._open()
        return list(self._connection.execute(sa.text(f"{sql} LOCK IN SHARE MODE"), params)
                    .all())

    def _open(self) -> None:
        import sqlalchemy as sa

        self._connection = self._engine.connect()
        connection = self._connection.execution_options(isolation_level="REPEATABLE READ")
        wait = int(connection.execute(sa.text("SELECT @@SESSION.innodb_lock_wait_timeout"))
                   .scalar_one())
        if wait > GUARD_LOCK_WAIT_SECONDS:
            connection.exec_driver_sql(
                f"SET SESSION innodb_lock_wait_timeout = {GUARD_LOCK_WAIT_SECONDS}")
            self._lock_wait = wait

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.rollback()
            if self._lock_wait is not None:
                # The session goes back to the pool: the next user gets its own wait.
                connection.exec_driver_sql(
                    f"SET SESSION innodb_lock_wait_timeout = {self._lock_wait}")
        except Exception:  # noqa: BLE001 - the guard wrote nothing
            # Dropping the connection ends the session, and its locks with it.
            connection.invalidate()
        finally:
            connection.close()


class Dialect:
    """What the phases need to know about a database: the MySQL/MariaDB defaults."""

    #: The name recorded in manifests' fingerprints.
    name = "mysql"
    #: Versions per sweep batch when --batch-size is not given. Lookups are indexed, and
    #: smaller batches keep row locks short for a live ZenML server.
    default_batch_size = 1000
    #: Ids bound per ``IN (...)`` statement: a default batch's in one. A batch runs a
    #: statement per chunk for each of its two dozen questions and deletes, most of them
    #: inside its locked transaction, where each round trip is time the locks are held.
    in_chunk = 1000
    #: Tables mark reads at a time: one, since every read goes through the one
    #: connection of the mark's snapshot (metadb/snapshot.py).
    read_threads = 1
    #: Every foreign key column has an index, so ``GROUP BY`` the column walks it and
    #: sends each referenced id once.
    group_referenced_ids = True
    #: Whether the write lock of :meth:`locked_transaction` holds back every writer
    #: (SQLite), or only new foreign-key references to the locked rows (MySQL).
    lock_blocks_all_writers = False
    #: Whether the sweep takes the versions of local stores in the order of their ids
    #: (sweep/plan.py ``pending_sql``). InnoDB stores each table in primary-key order,
    #: so a batch of consecutive ids shares its pages; a batch in URI order (random in
    #: id) reads about one page per version of every table and index it touches.
    batches_in_key_order = True
    #: The manifest column of that order: the primary key.
    key_order_column = "artifact_version_id"

    def quote(self, bind: Any, name: str) -> str:
        """``name`` quoted as an identifier for ``bind`` (an engine or connection)."""
        return str(bind.dialect.identifier_preparer.quote(name))

    def text(self, expression: str, nullable: bool = True) -> str:
        """``expression`` as text, for the bulk reader."""
        return f"CAST({expression} AS CHAR)"

    def deletes_returning(self, bind: Any) -> bool:
        """Whether ``DELETE ... RETURNING *`` works: MariaDB (10.0.5+), not MySQL."""
        return bool(getattr(bind.dialect, "is_mariadb", False))

    @contextmanager
    def write_transaction(self, engine: Any) -> Iterator[Any]:
        """A connection in one transaction, committed when the block ends (rolled back
        on an error), with foreign keys enforced."""
        with engine.begin() as connection:
            yield connection

    def db_time(self, moment: datetime) -> Any:
        """A naive UTC datetime as a bound parameter compared with ZenML's columns."""
        return moment

    def packed_row(self, columns: Sequence[str]) -> str:
        """One text value per row holding every one of ``columns`` (text or NULL), for
        the bulk reader: each value prefixed by ``v`` (NULL is the empty string) and
        separated by char(30)."""
        return "CONCAT(" + ", CHAR(30 USING utf8mb4), ".join(
            f"IFNULL(CONCAT('v', {column}), '')" for column in columns) + ")"

    def id_digest(self, column: str) -> str:
        """A select list that sums up the ids in ``column`` of a table's rows: their
        number, and the XOR over all of them of a 32-bit CRC of each half of the id
        (:func:`id_digest_of` is the same for one id, in Python). MySQL/MariaDB only:
        SQLite has neither function, and needs none (see verify.NewPaths).

        Ids are ZenML's random UUIDs (122 random bits), so two sets of ids with the same
        number and the same 64 bits of XOR are the same set, but for odds of 2**-64.
        The server reads no more than the smallest index of the table, which holds
        every id (any secondary index does, beside its own columns)."""
        return (f"COUNT(*), COALESCE(BIT_XOR(CRC32(LEFT({column}, 16))), 0), "
                f"COALESCE(BIT_XOR(CRC32(SUBSTRING({column}, 17))), 0)")

    def is_transient(self, exc: BaseException) -> bool:
        """True for an error after which the whole transaction can simply run again."""
        import sqlalchemy as sa

        if isinstance(exc, RerunTransaction):
            return True
        if not isinstance(exc, sa.exc.OperationalError | sa.exc.InternalError):
            return False
        original = getattr(exc, "orig", None)
        args = getattr(original, "args", ())
        if args and isinstance(args[0], int) and args[0] in _MYSQL_TRANSIENT:
            return True
        text = str(original or exc).lower()
        return "deadlock" in text or "lock wait timeout" in text

    @contextmanager
    def locked_transaction(self, engine: Any, version_table: str, ids: Sequence[str]
                           ) -> Iterator[Any]:
        """A transaction holding the lock that a new reference to ``ids`` must wait for."""
        from artifact_gc.metadb.statements import select_in

        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="READ COMMITTED")
            with connection.begin():
                # Locking the version rows blocks every new reference to them: InnoDB
                # takes a shared lock on the parent row when a child row is inserted.
                # READ COMMITTED makes the checks that follow see every committed
                # reference.
                q = self.quote(connection, "id")
                locked = select_in(
                    connection,
                    f"SELECT {q} FROM {self.quote(connection, version_table)} "
                    f"WHERE {q} IN :ids FOR UPDATE",
                    ids,
                )
                # The rows found are the ones that exist (the latest committed
                # versions), and no one else can delete them until we commit: the
                # batch's existence check is this read (see locked_ids).
                connection.info[_LOCKED_KEY] = {str(row[0]) for row in locked}
                try:
                    yield connection
                finally:
                    connection.info.pop(_LOCKED_KEY, None)

    def locked_ids(self, connection: Any) -> set[str] | None:
        """The ids that :meth:`locked_transaction` found and locked, inside it: they
        exist until the commit. None where the lock reads no rows (SQLite)."""
        found = connection.info.get(_LOCKED_KEY)
        return set(found) if found is not None else None

    def lock_rows(self, connection: Any, table: str, ids: Sequence[str] | set[str]) -> None:
        """Lock the rows ``ids`` of ``table`` until the transaction ends (FOR UPDATE).

        A transaction inserting a child of a locked row waits for our commit, and one
        that inserted a child before waits for nothing but holds us until it commits:
        the READ COMMITTED reads that follow then see its row."""
        from artifact_gc.metadb.statements import select_in

        q = self.quote(connection, "id")
        select_in(connection, f"SELECT {q} FROM {self.quote(connection, table)} "
                              f"WHERE {q} IN :ids FOR UPDATE", ids)

    @contextmanager
    def reference_guard(self, engine: Any) -> Iterator[ReferenceGuard | None]:
        """A :class:`ReferenceGuard` for what the locks of :meth:`locked_transaction`
        do not hold back, or None where they hold back every writer (SQLite).

        Enter it before :meth:`locked_transaction`, so that it ends after the commit."""
        if self.lock_blocks_all_writers:
            yield None
            return
        guard = ReferenceGuard(engine)
        try:
            yield guard
        finally:
            guard.release()


class SQLiteDialect(Dialect):
    """SQLite: one writer at a time, no index on the link tables' artifact columns."""

    name = "sqlite"
    #: A batch's fixed cost is one scan of each unindexed link table and one fsync'd
    #: commit, so batches are large (the write lock is held well under a second).
    default_batch_size = 5000
    #: SQLite takes 32,766 bound values per statement since 3.32; one statement per
    #: batch matters, because each one scans the unindexed link tables once.
    in_chunk = 30_000
    #: Every read goes through the one connection of the mark's snapshot.
    read_threads = 1
    #: No index to walk: SQLite would sort. Every row is sent and DuckDB groups them.
    group_referenced_ids = False
    lock_blocks_all_writers = True
    #: ZenML's SQLite tables are rowid tables, stored in the order rows were inserted,
    #: not by id: a version and the rows made with it (its visualizations, metadata,
    #: tags) sit near the other versions created about when it was. A batch in
    #: ``created`` order rewrites a few neighbouring pages of each table and index in
    #: its commit; a batch in URI order (random in rowid) rewrites a page per version
    #: of every table, journaled and fsync'd at each commit (measured at 25k orphans
    #: in 5 batches: 1.7 s against 3.9 s for the row deletes).
    batches_in_key_order = True
    key_order_column = "created"

    @contextmanager
    def write_transaction(self, engine: Any) -> Iterator[Any]:
        # Our SQLite connections run in autocommit mode (isolation_level=None), so
        # the transaction is begun explicitly; foreign keys stay on.
        with engine.connect() as connection, _immediate(connection):
            yield connection

    def deletes_returning(self, bind: Any) -> bool:
        import sqlite3

        return sqlite3.sqlite_version_info >= (3, 35)

    def lock_rows(self, connection: Any, table: str, ids: Sequence[str] | set[str]) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds back every writer."""

    def locked_ids(self, connection: Any) -> set[str] | None:
        return None

    def text(self, expression: str, nullable: bool = True) -> str:
        # SQLite keeps ZenML's ids, names, URIs and datetimes as TEXT already. A column
        # that can be NULL gets char(31) for NULL, turned back into NULL on ingestion:
        # ADBC infers a column's type from its first rows, and a column that starts
        # with NULLs would be guessed wrong.
        if not nullable:
            return expression
        return f"coalesce(CAST({expression} AS TEXT), char(31))"

    def packed_row(self, columns: Sequence[str]) -> str:
        return " || char(30) || ".join(f"coalesce('v' || {column}, '')" for column in columns)

    def db_time(self, moment: datetime) -> Any:
        # SQLAlchemy keeps DATETIMEs in SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff' text,
        # which compares correctly as a string.
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    def is_transient(self, exc: BaseException) -> bool:
        import sqlalchemy as sa

        if not isinstance(exc, sa.exc.OperationalError | sa.exc.InternalError):
            return False
        text = str(getattr(exc, "orig", None) or exc).lower()
        return "database is locked" in text or "deadlock" in text

    @contextmanager
    def locked_transaction(self, engine: Any, version_table: str, ids: Sequence[str]
                           ) -> Iterator[Any]:
        with engine.connect() as connection:
            # The pragma is a no-op inside a transaction, so it goes first. With
            # foreign keys on, every deleted version scans the unindexed link tables
            # (6 versions/s at 1M); off, the sweep deletes every child itself, and the
            # write lock taken by BEGIN IMMEDIATE keeps anyone else from writing until
            # we commit. The pragma is per connection and is restored below.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            # A batch deletes thousands of rows at random places of several B-trees;
            # with SQLite's default 2 MB page cache, dirty pages spill to the file
            # before the commit. The setting is per connection (not stored in the
            # database) and memory is used only as pages are. Setting the same size
            # again evicts nothing, so the pooled connection keeps its pages from one
            # batch to the next (the re-verifying scans read the same tables every
            # batch). That is safe: SQLite checks the file's change counter when a
            # transaction starts and drops the whole cache if any other connection
            # has written since.
            connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            steady = connection.info.setdefault(_STEADY_KEY, SteadyScans())
            try:
                with _immediate(connection):
                    # Under the write lock: both unchanged since our last commit
                    # means no other connection has committed since (data_version),
                    # and this one has written nothing outside these transactions
                    # (total_changes), so the kept scans are still true.
                    version = (
                        int(connection.exec_driver_sql("PRAGMA data_version")
                            .scalar_one()),
                        connection.connection.dbapi_connection.total_changes)
                    # Kept reads are made only after a quiet interval: a whole-table
                    # read costs more than one batch's filtered scan (0.65 against
                    # 0.4 CPU s for 608k link rows), so while another connection
                    # commits between batches (a busy ZenML server) each batch scans
                    # as before.
                    quiet = version == steady.version
                    if not quiet:
                        steady.scans.clear()
                    # Valid again only once this transaction has committed.
                    steady.version, steady.active = None, quiet
                    yield connection
                # Committed: the kept scans hold from here until someone else commits.
                steady.version = (version[0],
                                  connection.connection.dbapi_connection.total_changes)
            finally:
                steady.active = False
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                # The page cache is not shrunk back to SQLite's default here: that
                # freed every page after each batch and made the next batch read the
                # whole of each scanned table again (0.8 s of shrinking alone over 20
                # batches of 5,000). The pooled connection belongs to the sweep's own
                # engine, disposed of when the sweep ends, so the memory goes then.


@contextmanager
def _immediate(connection: Any) -> Iterator[None]:
    """A SQLite write transaction on an autocommit connection: ``BEGIN IMMEDIATE``
    (the write lock at once), ``COMMIT`` at the end, ``ROLLBACK`` on any exception."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.exec_driver_sql("ROLLBACK")
        raise
    connection.exec_driver_sql("COMMIT")


IdDigest = tuple[int, int, int]

#: The digest of no rows.
EMPTY_DIGEST: IdDigest = (0, 0, 0)


def id_digest_of(value: str) -> IdDigest:
    """One id's share of :meth:`Dialect.id_digest`: digests of two sets of ids combine
    (and come apart) with :func:`digest_xor`."""
    import zlib

    return (1, zlib.crc32(value[:16].encode("utf-8")), zlib.crc32(value[16:].encode("utf-8")))


def digest_xor(digest: IdDigest, other: IdDigest, sign: int = 1) -> IdDigest:
    """``digest`` with ``other``'s ids added (``sign`` 1) or taken out (-1)."""
    return (digest[0] + sign * other[0], digest[1] ^ other[1], digest[2] ^ other[2])


_SQLITE = SQLiteDialect()
_MYSQL = Dialect()


def dialect_of(bind: Any) -> Dialect:
    """The dialect of an engine, a connection or a URL string."""
    if isinstance(bind, str):
        backend = bind.split(":", 1)[0].split("+", 1)[0]
    else:
        backend = str(bind.dialect.name)
    return _SQLITE if backend == "sqlite" else _MYSQL
