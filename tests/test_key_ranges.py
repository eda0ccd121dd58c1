"""MariaDB reads in key ranges, each range one value (metadb/pages.py).

- On the scenario store, a mark whose large tables are read in ranges (small ones,
  so that a table takes many, and reference ranges end inside runs of equal keys)
  writes the same manifest rows as a mark that reads every table row by row.
- Hostile values: separators inside values, NULLs, empty strings, non-ASCII text,
  keys repeated across range bounds, ranges cut at the value limit. Every row arrives
  once, each value as stored (the ranges that cannot be proven whole are read again
  row by row).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from artifact_gc.mark import inputs
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.metadb import pages, reader
from artifact_gc.metadb.engine import create_engine, normalize_url
from artifact_gc.metadb.pages import KeyRanges
from artifact_gc.metadb.snapshot import is_transient
from scenarios.helpers import ScenarioStore

#: Manifest columns that differ between any two marks (when they ran).
_PER_MARK = {"mark_id"}


def _rows(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    columns = [c for c in table.column_names if c not in _PER_MARK]
    return sorted(table.select(columns).to_pylist(), key=lambda r: str(r["item_id"]))


@pytest.mark.mariadb
def test_a_mark_read_in_key_ranges_writes_the_same_manifest_as_row_by_row(
    mariadb_pristine_store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = mariadb_pristine_store.sqlalchemy_url
    options = MarkOptions(older_than=timedelta(0))
    ranges: list[int] = []
    batches = pages.RangeReader.batches

    def counted(self: pages.RangeReader) -> Any:
        for batch in batches(self):
            ranges.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pages.RangeReader, "batches", counted)
    monkeypatch.setattr(pages, "FIRST_RANGE_ROWS", 3)
    monkeypatch.setattr(pages, "MIN_RANGE_ROWS", 2)
    monkeypatch.setattr(pages, "MAX_RANGE_ROWS", 5)
    mark(url, str(tmp_path / "ranges.parquet"), options)
    versions = create_engine(url)
    with versions.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM artifact_version")).scalar()
    versions.dispose()
    # Ranges of at most 5 rows: the versions table alone takes count / 5 of them.
    assert count and len(ranges) >= count // 5, (len(ranges), count)

    monkeypatch.setattr(inputs, "_ranged",
                        lambda name, ranges, columns: inputs.Read(name, ranges.sql(), columns))
    mark(url, str(tmp_path / "rows.parquet"), options)
    ranged, row_by_row = _rows(tmp_path / "ranges.parquet"), _rows(tmp_path / "rows.parquet")
    assert len(ranged) == len(row_by_row) == count
    assert ranged == row_by_row


#: (id, ref, value) rows: values that a packed row cannot hold as they are, and
#: references repeated across any range bound.
_HOSTILE: list[tuple[str, str | None, str | None]] = [
    ("a01", "r1", "plain"),
    ("a02", "r1", "row\x1dseparator"),
    ("a03", "r1", "value\x1eseparator"),
    ("a04", "r1", None),
    ("a05", "r2", ""),
    ("a06", None, "no reference"),
    ("a07", "r2", "\x1d"),
    ("a08", "r2", "v"),
    ("a09", "r3", "ünïcødé ✓ 漢字"),
    ("a10", "r3", "x" * 3000),
    ("a11", "r3", "\x1e\x1d\x1e"),
] + [(f"b{i:03d}", f"r{4 + i // 7}", f"value {i}") for i in range(200)]


@pytest.fixture
def hostile_engine(mariadb_url_factory: Callable[..., str]) -> Any:
    engine = create_engine(normalize_url(mariadb_url_factory("gc_ranges")))
    with engine.begin() as connection:
        connection.execute(sa.text(
            "CREATE TABLE t (id VARCHAR(40) PRIMARY KEY, ref VARCHAR(40) NULL, "
            "v TEXT NULL, INDEX (ref)) CHARACTER SET utf8mb4"))
        connection.execute(sa.text("INSERT INTO t VALUES (:i, :r, :v)"),
                           [{"i": i, "r": r, "v": v} for i, r, v in _HOSTILE])
    yield engine
    engine.dispose()


@pytest.mark.mariadb
@pytest.mark.parametrize("value_limit", [None, 2000])
@pytest.mark.parametrize("first_rows", [1, 4, 10_000])
def test_hostile_values_arrive_whole_through_key_ranges(
    hostile_engine: Any, monkeypatch: pytest.MonkeyPatch, first_rows: int,
    value_limit: int | None,
) -> None:
    monkeypatch.setattr(pages, "FIRST_RANGE_ROWS", first_rows)
    monkeypatch.setattr(pages, "MIN_RANGE_ROWS", 1)
    if first_rows < 10:
        # Ranges stay that small: a value with a separator is alone in its range.
        monkeypatch.setattr(pages, "MAX_RANGE_ROWS", first_rows)
    monkeypatch.setattr(pages, "VALUE_LIMIT", value_limit)
    row_by_row: list[str] = []
    text_batches = reader._text_batches

    def spied(engine: Any, dbapi_connection: Any, sql: str, width: int) -> Any:
        row_by_row.append(sql)
        return text_batches(engine, dbapi_connection, sql, width)

    monkeypatch.setattr(reader, "_text_batches", spied)
    text = "CAST({} AS CHAR)"
    con = duckdb.connect()
    by_id = KeyRanges("t", "id", f"{text.format('id')} AS id, {text.format('ref')} AS ref, "
                      f"{text.format('v')} AS v")
    reader.load_table(con, "by_id", hostile_engine, "", by_id.sql(),
                      [("id", "VARCHAR"), ("ref", "VARCHAR"), ("v", "VARCHAR")], ranges=by_id)
    assert sorted(con.execute("SELECT id, ref, v FROM by_id").fetchall()) == sorted(_HOSTILE)
    # The ranges holding a separator (or, at the low limit, a long value) came row by
    # row; the others in one value each.
    assert 1 <= len(row_by_row) < len(_HOSTILE) // max(1, min(first_rows, 4))

    # Ranges of a repeated, nullable key: rows with a NULL key are not read.
    by_ref = KeyRanges("t", "ref", f"{text.format('ref')} AS ref, {text.format('v')} AS v",
                       where="ref IS NOT NULL")
    reader.load_table(con, "by_ref", hostile_engine, "", by_ref.sql(),
                      [("ref", "VARCHAR"), ("v", "VARCHAR")], ranges=by_ref)
    assert sorted(con.execute("SELECT ref, v FROM by_ref").fetchall(),
                  key=repr) == sorted([(r, v) for _, r, v in _HOSTILE if r is not None],
                                      key=repr)

    # One row per key value.
    grouped = KeyRanges("t", "ref", f"{text.format('ref')} AS ref", where="ref IS NOT NULL",
                        group_by_key=True)
    reader.load_table(con, "grouped", hostile_engine, "", grouped.sql(),
                      [("ref", "VARCHAR")], ranges=grouped)
    assert sorted(con.execute("SELECT ref FROM grouped").fetchall()) == sorted(
        {(r,) for _, r, _ in _HOSTILE if r is not None})
    con.close()


@pytest.mark.mariadb
def test_a_lock_timeout_inside_a_range_read_stays_transient(
    hostile_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB reports an error of the stream it reads only as text: the reader raises
    the driver's own error, so that the mark's snapshot is retried (snapshot.py)."""
    import pymysql

    batches = pages.RangeReader.batches

    def failing(self: pages.RangeReader) -> Any:
        for batch in batches(self):
            yield batch
            raise pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")

    monkeypatch.setattr(pages.RangeReader, "batches", failing)
    monkeypatch.setattr(pages, "FIRST_RANGE_ROWS", 5)
    read = KeyRanges("t", "id", "CAST(id AS CHAR) AS id")
    with pytest.raises(pymysql.err.OperationalError) as raised:
        reader.load_table(duckdb.connect(), "t", hostile_engine, "", read.sql(),
                          [("id", "VARCHAR")], ranges=read)
    assert is_transient(raised.value)
