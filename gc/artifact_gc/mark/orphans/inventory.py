"""An inventory instead of a listing (``gc mark --inventory URL``): no LIST request at all.

Two inputs are read:

- an **S3 Inventory** report, given by its ``manifest.json``: its ``files`` (CSV,
  gzipped, or Parquet) hold ``Bucket, Key, Size, LastModifiedDate`` (CSV keys are
  URL-encoded); the report's date is its ``creationTimestamp``;
- **any Parquet or CSV file** with the columns ``path, size, last_modified`` (paths
  spelled as the store's root spells them); its date is the file's own modification
  time, or, if that is unknown, the newest ``last_modified`` in it.

The staleness rule: an inventory is a picture of an earlier moment, and an object
written after it is not in it. So no object newer than the inventory's date can be a
candidate: the grace period counts back from the older of the mark's start and the
inventory's date (run.py), and the sweep still lists every candidate path again
before it deletes.

Bad input changes nothing and stops the mark with a one-line usage error (exit 2): a
report of another bucket than the stores', an inventory with no path (or, for a
plain file, any path) inside a store root, a malformed ``manifest.json`` or file, an
inventory older than ``--max-inventory-age``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from artifact_gc.errors import UsageError
from artifact_gc.mark.options import MarkOptions
from artifact_gc.paths import INSIDE_ROOT
from artifact_gc.progress import Progress
from artifact_gc.storage.urls import url_to_fs
from artifact_gc.zenml.stores import ArtifactStore

#: Columns of an S3 Inventory CSV file that we need, by their ``fileSchema`` names.
S3_FIELDS = ("Bucket", "Key", "Size", "LastModifiedDate")


def load_inventory(con: Any, url: str, stores: list[ArtifactStore], options: MarkOptions,
                   started: datetime, progress: Progress) -> list[dict[str, Any]]:
    """Fill ``orphan_objects`` from the inventory at ``url``; return the stores it
    covers, each with the inventory's date (``as_of``).

    Each file streams once, straight into ``orphan_objects``: a row is kept when its
    path lies inside a store root, and counted either way (``_Counted``), so that no
    copy of the whole inventory is held beside it."""
    progress.stage(f"reading inventory {url}", unit="objects")
    con.execute("CREATE OR REPLACE TEMP TABLE orphan_inventory_roots (store_id VARCHAR, "
                "root VARCHAR)")
    for store in stores:
        con.execute("INSERT INTO orphan_inventory_roots VALUES (?, ?)", [store.id, store.root])
    INSIDE_ROOT.install(con)
    counted = _Counted()
    try:
        if url.rstrip("/").endswith("manifest.json"):
            as_of = _load_s3_inventory(con, url, stores, options, counted)
        else:
            as_of = _load_plain(con, url, options, counted)
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise UsageError(f"--inventory {url} is malformed: {type(exc).__name__}: {exc}"
                         ) from exc
    except Exception as exc:  # noqa: BLE001 - DuckDB's own errors on a bad file
        raise UsageError(f"--inventory {url} could not be read: {exc}") from exc
    if options.max_inventory_age is not None and started - as_of > options.max_inventory_age:
        raise UsageError(
            f"--inventory {url} was taken at {as_of.isoformat()}, longer ago than "
            f"--max-inventory-age; use a newer one or raise the limit")
    if as_of > started:
        as_of = started
    ((inside,),) = con.execute("SELECT count(*) FROM orphan_objects").fetchall()
    total = counted.rows
    if total and not inside:
        raise UsageError(f"--inventory {url}: none of its {total:,} paths lies inside an "
                         "artifact store root of this ZenML store")
    if total != inside and not url.rstrip("/").endswith("manifest.json"):
        # An S3 report covers its whole bucket; a listing given by hand must be of the
        # stores' roots only, or it is not the listing the user thinks it is.
        raise UsageError(f"--inventory {url}: {total - inside:,} of its {total:,} paths lie "
                         "outside every artifact store root")
    progress.advance(int(inside))
    return [{"id": s.id, "root": s.root, "as_of": as_of.isoformat(), "inventory": url}
            for s in stores]


class _Counted:
    """The rows and the rows without a path (``key``) of the batches it passes on,
    counted a batch at a time: the rows outside every root are not kept anywhere."""

    def __init__(self) -> None:
        self.rows = 0
        self.no_path = 0

    def batches(self, first: pa.RecordBatch, rest: Iterator[pa.RecordBatch], key: str
                ) -> Iterator[pa.RecordBatch]:
        for batch in _chain(first, rest):
            self.rows += batch.num_rows
            self.no_path += batch.column(key).null_count
            yield batch


def _load_plain(con: Any, url: str, options: MarkOptions, counted: _Counted) -> datetime:
    fs, path = url_to_fs(url, options.storage_options)
    _insert(con, _read_table(fs, path, None), None, counted)
    if counted.no_path:
        raise UsageError(f"--inventory {url}: {counted.no_path:,} row(s) without a path")
    try:
        modified = fs.modified(path)
        as_of = modified.astimezone(UTC).replace(tzinfo=None) if modified.tzinfo else modified
    except (NotImplementedError, OSError, AttributeError):
        # Every row is inside a root, or the mark stops (load_inventory): the newest
        # of the rows kept is the newest of the file.
        ((as_of,),) = con.execute("SELECT max(mtime) FROM orphan_objects").fetchall()
    if as_of is None:
        raise UsageError(f"--inventory {url} is empty and has no date")
    return as_of  # type: ignore[no-any-return]


def _load_s3_inventory(con: Any, url: str, stores: list[ArtifactStore],
                       options: MarkOptions, counted: _Counted) -> datetime:
    fs, path = url_to_fs(url, options.storage_options)
    with fs.open(path, "rb") as handle:
        report = json.loads(handle.read())
    if not isinstance(report, dict) or "files" not in report or "sourceBucket" not in report:
        raise UsageError(f"--inventory {url} is not an S3 Inventory manifest.json "
                         "(no sourceBucket or files)")
    bucket = str(report["sourceBucket"])
    buckets = {_bucket_of(s.root or "") for s in stores}
    if bucket not in buckets:
        raise UsageError(f"--inventory {url} is an inventory of bucket {bucket!r}, not of "
                         f"an artifact store's bucket ({', '.join(sorted(buckets))})")
    file_format = str(report.get("fileFormat", "CSV")).upper()
    if file_format not in ("CSV", "PARQUET"):
        raise UsageError(f"--inventory {url}: file format {file_format} is not supported "
                         "(CSV or Parquet)")
    schema = [c.strip() for c in str(report.get("fileSchema", "")).split(",")]
    missing = [f for f in S3_FIELDS if f not in schema]
    if file_format == "CSV" and missing:
        raise UsageError(f"--inventory {url}: its fileSchema lacks {', '.join(missing)}")
    destination = str(report.get("destinationBucket", "")).rsplit(":", 1)[-1]
    scheme = url.split("://", 1)[0] if "://" in url else "s3"
    for entry in report["files"]:
        file_url = f"{scheme}://{destination}/{entry['key']}" if destination else \
            str(entry["key"])
        file_fs, file_path = url_to_fs(file_url, options.storage_options)
        table = _read_table(file_fs, file_path, schema if file_format == "CSV" else None)
        _insert(con, table, bucket, counted)
    created = int(str(report["creationTimestamp"]))
    return datetime.fromtimestamp(created / 1000, UTC).replace(tzinfo=None)


def _s3_columns(table: pa.RecordBatch) -> tuple[str, str, str]:
    names = {n.lower(): n for n in table.schema.names}
    key = names.get("key")
    size = names.get("size")
    modified = names.get("lastmodifieddate") or names.get("last_modified_date")
    if not (key and size and modified):
        raise UsageError(f"an inventory file lacks key, size or last modified date "
                         f"(it has {', '.join(table.schema.names)})")
    return key, size, modified


def _bucket_of(root: str) -> str:
    return root.split("://", 1)[-1].split("/", 1)[0]


def _read_table(fs: Any, path: str, csv_columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    """The batches of one Parquet or CSV file (gzipped CSV too), streamed."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if path.endswith(".parquet"):
        handle = fs.open(path, "rb")
        batches: Iterator[pa.RecordBatch] = pq.ParquetFile(handle).iter_batches(
            batch_size=100_000)
        return batches
    compression = "gzip" if path.endswith(".gz") else None
    handle = fs.open(path, "rb", compression=compression)
    read = (pcsv.ReadOptions(column_names=csv_columns) if csv_columns
            else pcsv.ReadOptions())
    convert = pcsv.ConvertOptions(column_types={"size": pa.int64(), "Size": pa.int64()})
    return iter(pcsv.open_csv(handle, read_options=read, convert_options=convert))


def _insert(con: Any, batches: Any, s3_bucket: str | None, counted: _Counted) -> None:
    """Append one file's rows whose path lies inside a store root to
    ``orphan_objects``, each with its store: S3 Inventory columns (keys made paths of
    ``s3_bucket``, URL-decoded as the CSV format encodes them) or ``path, size,
    last_modified``. ``counted`` counts every row read."""
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return
    names = {n.lower(): n for n in first.schema.names}
    if s3_bucket is not None:
        key, size, modified = _s3_columns(first)
        path_sql = f"'s3://{s3_bucket}/' || url_decode(CAST(\"{key}\" AS VARCHAR))"
    else:
        try:
            key, size, modified = (names[c] for c in ("path", "size", "last_modified"))
        except KeyError as exc:
            raise UsageError("an inventory file needs the columns path, size, last_modified "
                             f"(it has {', '.join(first.schema.names)})") from exc
        path_sql = f"CAST(\"{key}\" AS VARCHAR)"
    kind = first.schema.field(modified).type
    mtime_sql = f"CAST(CAST(\"{modified}\" AS TIMESTAMPTZ) AS TIMESTAMP)"
    if pa.types.is_timestamp(kind) and kind.tz is None:
        # Already naive UTC: the round trip through TIMESTAMPTZ (in UTC) would give the
        # same value back, at the cost of a time zone conversion per row.
        mtime_sql = f"CAST(\"{modified}\" AS TIMESTAMP)"
    reader = pa.RecordBatchReader.from_batches(first.schema,
                                               counted.batches(first, batches, key))
    con.register("_inventory_part", reader)
    try:
        con.execute("SET TimeZone = 'UTC'")
        # The innermost root that holds a path is its store (listed_stores() keeps none
        # inside another, so there is at most one).
        con.execute(f"""
            INSERT INTO orphan_objects
            SELECT r.store_id, r.root, i.path, i.size, i.mtime, false
            FROM (SELECT {path_sql} AS path, CAST("{size}" AS BIGINT) AS size,
                         {mtime_sql} AS mtime
                  FROM _inventory_part) i
            JOIN orphan_inventory_roots r ON inside_store_root(i.path, r.root)
        """)
    finally:
        con.unregister("_inventory_part")


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest
