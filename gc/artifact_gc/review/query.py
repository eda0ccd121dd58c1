"""``gc query``: any DuckDB SQL over the views ``manifest`` and ``journal``, returned
as an Arrow table or streamed to a file (CSV, JSON or Parquet, on any fsspec URL)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from artifact_gc.errors import UsageError
from artifact_gc.manifest.locations import writing
from artifact_gc.review.session import Review, StorageOptions, open_review
from artifact_gc.storage.urls import url_to_fs


def _user_relation(review: Review, sql: str) -> Any:
    import duckdb

    try:
        relation = review.connection.sql(sql)
    except duckdb.Error as exc:
        raise UsageError(f"the query failed: {exc}") from exc
    if relation is None:
        raise UsageError("the query returned no result (it must be a SELECT or similar)")
    return relation


def query(url: str, sql: str, *, storage_options: StorageOptions = None) -> pa.Table:
    """Run DuckDB ``sql`` over the view ``manifest`` (and ``journal`` when the manifest
    has a journal); return the result as an Arrow table."""
    with open_review(url, storage_options) as review:
        return _user_relation(review, sql).to_arrow_table()


def export_query(
    url: str, sql: str, out: str, fmt: str, *, storage_options: StorageOptions = None
) -> int:
    """Run ``sql`` like :func:`query` and stream its result to ``out`` (any fsspec URL)
    as ``csv``, ``json`` (an array of objects) or ``parquet``; return the row count."""
    if fmt not in _WRITERS:
        raise UsageError(f"cannot write format {fmt!r} to a file; use csv, json or parquet")
    with open_review(url, storage_options) as review:
        reader = _user_relation(review, sql).to_arrow_reader(100_000)
        with writing(out, "query result"):
            fs, path = url_to_fs(out, storage_options)
            opened = fs.open(path, "wb")
        with opened as handle:
            return _WRITERS[fmt](reader, handle)


def _write_parquet(reader: pa.RecordBatchReader, handle: Any) -> int:
    import pyarrow.parquet as pq

    count = 0
    with pq.ParquetWriter(handle, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            count += batch.num_rows
    return count


def _write_csv(reader: pa.RecordBatchReader, handle: Any) -> int:
    import pyarrow.csv as pcsv

    count = 0
    writer = None
    for batch in reader:
        flat = _flat_for_csv(batch)
        if writer is None:
            writer = pcsv.CSVWriter(handle, flat.schema)
        writer.write_batch(flat)
        count += batch.num_rows
    if writer is None:
        empty = pa.RecordBatch.from_pylist([], schema=reader.schema)
        writer = pcsv.CSVWriter(handle, _flat_for_csv(empty).schema)
    writer.close()
    return count


def _write_json(reader: pa.RecordBatchReader, handle: Any) -> int:
    count = 0
    handle.write(b"[")
    for batch in reader:
        for row in batch.to_pylist():
            handle.write((",\n" if count else "\n").encode())
            handle.write(json.dumps(row, default=str, sort_keys=True).encode())
            count += 1
    handle.write(b"\n]\n")
    return count


_WRITERS = {"parquet": _write_parquet, "csv": _write_csv, "json": _write_json}


def _flat_for_csv(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Lists become ``;``-joined text and other nested values JSON: CSV has no nesting."""
    columns, names = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            column = pa.array(
                [None if v is None else ";".join("" if x is None else str(x) for x in v)
                 for v in column.to_pylist()], pa.string())
        elif pa.types.is_nested(kind) or pa.types.is_map(kind):
            column = pa.array([None if v is None else json.dumps(v, default=str)
                               for v in column.to_pylist()], pa.string())
        columns.append(column)
        names.append(name)
    return pa.RecordBatch.from_arrays(columns, names=names)
