"""Reading a large MySQL/MariaDB table in key ranges, each range sent as ONE value.

Sent row by row, a table costs pymysql a packet and a Python string per row, and most
of a mark's reading time at a million versions was spent there. Here the server joins
the rows of a whole key range into one text value (``GROUP_CONCAT`` of the packed rows
of :meth:`~artifact_gc.metadb.dialect.Dialect.packed_row`), the driver reads a few
large values, and DuckDB splits them again.

Every range is read with a statement of its own, on the connection of the engine it
is given: for a mark, the one connection of its consistent snapshot
(metadb/snapshot.py), so every range sees the same store as every other read of the
mark. Ranges are bounded by values of an indexed key column, found by the server
itself (``ORDER BY key LIMIT 1 OFFSET n``): ``key <= b1``, ``b1 < key <= b2``, ...,
``key > bn``. Whatever the values and the collation, these conditions are complements
of one another, so every row whose key is not NULL falls into exactly one range; the
bounds only decide how large the ranges are.

A range's value is used only when it is provably whole, else that range is read again
row by row (:func:`artifact_gc.metadb.reader.load_table`'s path): the server reported
no warning (a value cut at ``group_concat_max_len`` or ``max_allowed_packet`` always
warns), and the value holds exactly ``rows - 1`` row separators and ``rows * (width -
1)`` value separators. The separators can only be added by a value that holds one, so
these counts are exact precisely when no value holds a separator.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pyarrow as pa

#: Between the rows of a range, and between the values of a row (Dialect.packed_row).
ROW_SEPARATOR, VALUE_SEPARATOR = "\x1d", "\x1e"

#: The size a range's value aims at: far below MariaDB's default 16 MiB
#: ``max_allowed_packet`` (which bounds one value), large enough that the round
#: trips are few.
TARGET_RANGE_BYTES = 4 << 20

#: The longest value a range may have, in bytes; None: the server's
#: ``max_allowed_packet``, the most it can send. (A test lowers it to cut ranges.)
VALUE_LIMIT: int | None = None

#: Rows of the first range, before the size of a row is known; and the bounds of
#: every later range's row count.
FIRST_RANGE_ROWS, MIN_RANGE_ROWS, MAX_RANGE_ROWS = 10_000, 500, 200_000


@dataclass(frozen=True)
class KeyRanges:
    """A read of ``table`` that can be cut into ranges of the indexed column ``key``.

    ``select`` lists the text expressions read (already spelled by the dialect);
    ``where`` an optional filter; ``group_by_key`` reads one row per key value.
    Names are quoted. The read covers the rows whose ``key`` is not NULL only: keys
    are primary keys, or reference columns read with ``key IS NOT NULL``.
    """

    table: str
    key: str
    select: str
    where: str | None = None
    group_by_key: bool = False

    def sql(self, bounds: str | None = None) -> str:
        """The read, of the rows within ``bounds`` (all rows when None)."""
        conditions = [c for c in (self.where, bounds) if c]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        group = f" GROUP BY {self.key}" if self.group_by_key else ""
        return f"SELECT {self.select} FROM {self.table}{where}{group}"


@dataclass
class RangeReader:
    """The ranges of ``read`` as Arrow batches of one text column, one row per range.

    ``cursor`` is a buffered cursor of the connection to read on. Ranges whose value
    could not be proven whole are left in ``unread`` (each as the SQL of its rows) for
    the caller to read row by row.
    """

    cursor: Any
    read: KeyRanges
    width: int
    packed_row: str
    unread: list[str] = field(default_factory=list)

    def batches(self) -> Iterator[pa.RecordBatch]:
        schema = pa.schema([pa.field("packed", pa.string())])
        names = ", ".join(f"c{i + 1}" for i in range(self.width))
        key, escape = self.read.key, self.cursor.connection.escape
        self.cursor.execute("SELECT @@session.max_allowed_packet")
        allowed = min(int(self.cursor.fetchone()[0]), VALUE_LIMIT or 1 << 62)
        # A range's value is cut at group_concat_max_len (with a warning) and cannot
        # exceed max_allowed_packet: allow the whole packet, and aim far below it. (The
        # setting stays with the session: it only lets GROUP_CONCAT return more.)
        self.cursor.execute(f"SET SESSION group_concat_max_len = {allowed}")
        target = min(TARGET_RANGE_BYTES, max(1, allowed // 4))
        rows_per_range = FIRST_RANGE_ROWS
        after: str | None = None
        while True:
            self.cursor.execute(
                f"SELECT {key} FROM {self.read.table} WHERE {after or f'{key} IS NOT NULL'} "
                f"ORDER BY {key} LIMIT 1 OFFSET {rows_per_range - 1}")
            found = self.cursor.fetchone()
            upto = None if found is None else f"{key} <= {escape(found[0])}"
            bounds = " AND ".join(c for c in (after, upto) if c) or f"{key} IS NOT NULL"
            self.cursor.execute(
                f"WITH _gc_range({names}) AS ({self.read.sql(bounds)}) "
                f"SELECT GROUP_CONCAT({self.packed_row} SEPARATOR X'1D'), COUNT(*) "
                "FROM _gc_range")
            value, count = self.cursor.fetchone()
            count = int(count)
            if isinstance(value, bytes | bytearray):
                value = _decoded(value)
            if count and _whole(value, count, self.width, self.cursor.warning_count):
                yield pa.RecordBatch.from_arrays([pa.array([value], pa.string())],
                                                 schema=schema)
                rows_per_range = max(MIN_RANGE_ROWS, min(
                    MAX_RANGE_ROWS, target * count // max(1, len(value))))
            elif count:
                self.unread.append(self.read.sql(bounds))
                rows_per_range = max(MIN_RANGE_ROWS, rows_per_range // 4)
            if found is None:
                return
            after = f"{key} > {escape(found[0])}"


T = TypeVar("T")


class ReadAhead(Generic[T]):
    """``items`` produced by a thread of its own, at most ``depth`` ahead of their
    consumer: the server builds the next range while DuckDB splits this one.

    The connection stays used by one thread at a time: the producer alone, until
    :meth:`close` has joined it (call it before using the connection again).
    """

    _END = object()

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        self._items, self._queue = items, queue.Queue[Any](maxsize=depth)
        self._stop = threading.Event()
        #: What the producer raised: DuckDB reports an error of the stream it reads
        #: only as text, so the caller raises this one (a lock wait timeout must stay
        #: recognisable as transient to metadb/snapshot.py).
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._produce, name="gc-read-ahead",
                                        daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.error = exc
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while (item := self._queue.get()) is not self._END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the producer (after its current range) and wait for it."""
        self._stop.set()
        self._thread.join()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


def _decoded(value: bytes | bytearray) -> str | None:
    try:
        return bytes(value).decode()
    except UnicodeDecodeError:
        return None  # read row by row, where each value is decoded on its own


def _whole(value: str | None, rows: int, width: int, warnings: int) -> bool:
    """Whether ``value`` holds exactly ``rows`` packed rows of ``width`` values each."""
    return (not warnings and value is not None
            and value.count(ROW_SEPARATOR) == rows - 1
            and value.count(VALUE_SEPARATOR) == rows * (width - 1))
