"""The manifest: a mark's decision, as a self-describing Parquet file.

The format is a public contract, documented in ``manifests/FORMAT.md``. A manifest
is written once, atomically, at the very end of a successful mark, and carries a
checksum over its candidate rows; a sweep refuses anything that is incomplete, fails
its checksum or has a format version it does not know.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from artifact_gc import __version__
from artifact_gc.errors import ManifestRefused
from artifact_gc.manifest.reasons import STATUS_CANDIDATE
from artifact_gc.storage.urls import is_remote, local_path, url_to_fs

FORMAT_NAME = "artifact-gc-manifest"
FORMAT_VERSION = "1.0"
METADATA_KEY = b"artifact_gc"


SCHEMA = pa.schema(
    [
        pa.field("artifact_version_id", pa.string(), nullable=False),
        pa.field("artifact_id", pa.string(), nullable=False),
        pa.field("artifact_name", pa.string()),
        pa.field("version", pa.string()),
        pa.field("version_number", pa.int64()),
        pa.field("project", pa.string()),
        pa.field("project_id", pa.string()),
        pa.field("created", pa.timestamp("us")),
        pa.field("uri", pa.string()),
        pa.field("artifact_store_id", pa.string()),
        pa.field("store_root", pa.string()),
        pa.field("save_type", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("size_bytes", pa.int64()),
        pa.field("file_count", pa.int64()),
        pa.field("visualization_uris", pa.list_(pa.string())),
    ]
)

#: The columns a candidate's checksum covers: everything a sweep acts on.
CHECKSUM_SQL = (
    "concat_ws(chr(31), artifact_version_id, artifact_id, coalesce(uri, ''), "
    "coalesce(artifact_store_id, ''), coalesce(store_root, ''), coalesce(save_type, ''), "
    "coalesce(array_to_string(visualization_uris, chr(30)), ''))"
)


def new_mark_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """Naive UTC, the way ZenML stores its datetimes."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class ManifestInfo:
    """The key-value metadata of a manifest (see FORMAT.md, "Metadata")."""

    mark_id: str
    started_at: str
    finished_at: str | None
    parameters: dict[str, Any]
    database: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    bytes: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)
    stores: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    checksum: str | None = None
    format: str = FORMAT_NAME
    format_version: str = FORMAT_VERSION
    tool_version: str = __version__

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "tool_version": self.tool_version,
            "mark_id": self.mark_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "complete": self.complete,
            "parameters": self.parameters,
            "database": self.database,
            "counts": self.counts,
            "bytes": self.bytes,
            "schema": self.schema,
            "stores": self.stores,
            "warnings": self.warnings,
            "lineage": self.lineage,
            "checksum": self.checksum,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestInfo:
        return cls(
            mark_id=data.get("mark_id", ""),
            started_at=data.get("started_at", ""),
            finished_at=data.get("finished_at"),
            parameters=data.get("parameters", {}),
            database=data.get("database", {}),
            counts=data.get("counts", {}),
            bytes=data.get("bytes", {}),
            schema=data.get("schema", {}),
            stores=data.get("stores", []),
            warnings=data.get("warnings", []),
            lineage=data.get("lineage", []),
            complete=bool(data.get("complete", False)),
            checksum=data.get("checksum"),
            format=data.get("format", ""),
            format_version=str(data.get("format_version", "")),
            tool_version=data.get("tool_version", ""),
        )

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)


def connect_duckdb(**config: Any) -> Any:
    """A DuckDB connection for our own queries: progress is ours to render, not DuckDB's.

    Extensions are never downloaded: a review query or a ``--where`` predicate that
    names one (``ATTACH ... (TYPE sqlite)``, a spatial function) fails instead of making
    a network call on the user's behalf.
    """
    import duckdb

    config.setdefault("autoinstall_known_extensions", False)
    connection = duckdb.connect(config=config)
    connection.execute("SET enable_progress_bar = false")
    return connection


def _url_to_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    return url_to_fs(url, storage_options)


@contextmanager
def duckdb_for(url: str, storage_options: dict[str, Any] | None = None) -> Iterator[Any]:
    """A DuckDB connection that can read ``url`` in place, on any fsspec filesystem.

    Remote manifests are read through DuckDB's fsspec bridge with range requests, so a
    large manifest on S3 is never downloaded whole.
    """
    connection = connect_duckdb()
    try:
        fs, _ = _url_to_fs(url, storage_options)
        if is_remote(url):
            connection.register_filesystem(fs)
        yield connection
    finally:
        connection.close()


def parquet_source(url: str) -> str:
    """A SQL string literal naming the manifest for DuckDB's ``read_parquet``."""
    return "'" + local_path(url).replace("'", "''") + "'"


class _Checksum:
    """The running SHA-256 of FORMAT.md's checksum: identity, candidate lines, count."""

    def __init__(self, info: ManifestInfo) -> None:
        self.digest = hashlib.sha256()
        self.count = 0
        identity = {
            "mark_id": info.mark_id,
            "database": info.database,
            "format_version": info.format_version,
            "lineage": info.lineage,
        }
        self.digest.update(json.dumps(identity, sort_keys=True).encode())

    def add(self, connection: Any, relation_sql: str) -> None:
        """Hash the candidate rows of ``relation_sql``, in ``artifact_version_id`` order."""
        result = connection.sql(
            f"SELECT {CHECKSUM_SQL} || chr(10) AS line FROM ({relation_sql}) "
            f"WHERE status = '{STATUS_CANDIDATE}' ORDER BY artifact_version_id"
        )
        for record_batch in result.to_arrow_reader(100_000):
            lines = record_batch.column(0)
            self.count += len(lines)
            # The lines, each ending in a newline, lie back to back in the array's data
            # buffer: hash them in place instead of as one Python string per row.
            if not (pa.types.is_string(lines.type) or pa.types.is_large_string(lines.type)):
                lines = lines.cast(pa.large_string())
            if len(lines):
                _, offsets, data = lines.buffers()
                bounds = (memoryview(offsets).cast("i") if pa.types.is_string(lines.type)
                          else memoryview(offsets).cast("q"))
                start, end = bounds[lines.offset], bounds[lines.offset + len(lines)]
                self.digest.update(memoryview(data)[start:end])

    def value(self) -> str:
        digest = self.digest.copy()
        digest.update(str(self.count).encode())
        return "sha256:" + digest.hexdigest()


def candidate_checksum(connection: Any, relation_sql: str, info: ManifestInfo) -> str:
    """SHA-256 over the identity of the mark and every candidate row, in id order."""
    checksum = _Checksum(info)
    checksum.add(connection, relation_sql)
    return checksum.value()


def write_manifest(
    table: pa.Table,
    info: ManifestInfo,
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write the Arrow ``table`` with ``info`` to ``url`` atomically; return the URL."""
    connection = connect_duckdb()
    try:
        connection.register("manifest_rows", table.cast(SCHEMA))
        return write_manifest_from(connection, "SELECT * FROM manifest_rows", info, url,
                                   storage_options=storage_options)
    finally:
        connection.close()


def write_manifest_from(
    connection: Any,
    relation_sql: str,
    info: ManifestInfo,
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write the rows of a DuckDB relation with ``info`` to ``url`` atomically
    (see :func:`_publish`). ``complete`` and the checksum are set only here, at the
    very end of a mark.
    """
    info.checksum = candidate_checksum(connection, relation_sql, info)
    info.complete = True
    metadata = json.dumps(info.as_dict(), sort_keys=True).replace("'", "''")
    columns = ", ".join(
        f"CAST({f.name} AS {_DUCKDB_TYPES[str(f.type)]}) AS {f.name}" for f in SCHEMA
    )

    def write(path: str) -> None:
        target = path.replace("'", "''")
        connection.execute(
            f"COPY (SELECT {columns} FROM ({relation_sql})) TO '{target}' "
            f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{artifact_gc: '{metadata}'}})"
        )

    _publish(url, info, write, storage_options)
    return url


def _publish(url: str, info: ManifestInfo, write: Callable[[str], None],
             storage_options: dict[str, Any] | None) -> None:
    """Have ``write(local_path)`` make the file, and publish it at ``url`` atomically.

    Local files are written beside the target and renamed into place; object stores
    get one upload of a finished local file, and publish the object only when that
    upload completes. Either way an interrupted write leaves nothing that a sweep
    could take for a manifest.
    """
    import tempfile

    import duckdb

    from artifact_gc.manifest.locations import writing

    # A location that cannot be written is the user's to fix (exit 9), not a crash;
    # nothing is left behind that a sweep could take for a manifest either way.
    with writing(url, "manifest", duckdb.IOException):
        fs, path = _url_to_fs(url, storage_options)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "file" in protocols or "local" in protocols:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            partial = f"{path}.partial-{info.mark_id}"
            try:
                write(partial)
                os.replace(partial, path)
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
        else:
            with tempfile.TemporaryDirectory(prefix="artifact-gc-") as scratch:
                local = os.path.join(scratch, "manifest.parquet")
                write(local)
                fs.put_file(local, path)


#: Rows per Parquet row group of a manifest written from parts.
ROW_GROUP_ROWS = 122_880

#: Columns that repeat few values; ids, URIs and versions are left without a
#: dictionary, which costs time and saves nothing on unique values.
_DICTIONARY_COLUMNS = ("artifact_id", "artifact_name", "project", "project_id",
                       "artifact_store_id", "store_root", "save_type", "status", "reasons")


def write_manifest_parts(
    connection: Any,
    parts: Iterable[pa.Table],
    info: ManifestInfo,
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write a manifest whose rows arrive as Arrow tables of :data:`SCHEMA`, atomically.

    Each part is hashed and written as it comes, so the rows are computed once and
    never all held at the same time. The checksum takes the candidates in id order:
    each part's candidates must come after every candidate of the parts before it
    (parts that are consecutive id ranges). A part that breaks that order stops the
    write rather than produce a manifest that its own sweep would refuse.

    ``info`` is read after the last part, so a generator of parts may finish it
    (counts, bytes) on its way out. ``complete`` and the checksum are set only here.
    """
    import pyarrow.parquet as pq

    def write(path: str) -> None:
        checksum = _Checksum(info)
        last_candidate: str | None = None
        # No stored Arrow schema: readers then take the file's key-value metadata,
        # which gets the manifest's only once it is complete, for the schema's.
        writer = pq.ParquetWriter(path, SCHEMA, compression="zstd", store_schema=False,
                                  use_dictionary=list(_DICTIONARY_COLUMNS))
        try:
            # A part is encoded and compressed on a thread of its own (pyarrow releases
            # the GIL) while the next one is computed; one write is in flight at most.
            with ThreadPoolExecutor(max_workers=1) as encoder:
                pending: Future[None] | None = None
                for part in parts:
                    part = part.cast(SCHEMA)
                    connection.register("_manifest_part", part)
                    try:
                        ((first, last),) = connection.execute(
                            "SELECT min(artifact_version_id), max(artifact_version_id) "
                            f"FROM _manifest_part WHERE status = '{STATUS_CANDIDATE}'"
                        ).fetchall()
                        if first is not None:
                            if last_candidate is not None and first <= last_candidate:
                                raise RuntimeError(
                                    "manifest parts are not in candidate id order")
                            last_candidate = last
                        checksum.add(connection, "SELECT * FROM _manifest_part")
                    finally:
                        connection.unregister("_manifest_part")
                    if pending is not None:
                        pending.result()
                    pending = encoder.submit(writer.write_table, part,
                                             row_group_size=ROW_GROUP_ROWS)
                if pending is not None:
                    pending.result()
            info.checksum = checksum.value()
            info.complete = True
            writer.add_key_value_metadata(
                {METADATA_KEY: json.dumps(info.as_dict(), sort_keys=True).encode()})
        finally:
            writer.close()

    _publish(url, info, write, storage_options)
    return url


_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "timestamp[us]": "TIMESTAMP",
    "list<item: string>": "VARCHAR[]",
}


def read_info(url: str, storage_options: dict[str, Any] | None = None) -> ManifestInfo:
    """Read a manifest's metadata from its footer, without reading its rows."""
    import pyarrow.parquet as pq

    fs, path = _url_to_fs(url, storage_options)
    try:
        with fs.open(path, "rb") as handle:
            schema = pq.read_schema(handle)
    except FileNotFoundError as exc:
        raise ManifestRefused(f"no manifest at {url}", url, "missing") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestRefused(
            f"{url} is not a readable manifest (an interrupted write or not Parquet): {exc}",
            url, "unreadable",
        ) from exc
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ManifestRefused(
            f"{url} is a Parquet file without artifact-gc metadata", url, "not_a_manifest"
        )
    try:
        return ManifestInfo.from_dict(json.loads(raw))
    except ValueError as exc:
        raise ManifestRefused(f"{url}: its metadata is not valid JSON", url, "tampered") from exc


def check_format(info: ManifestInfo, url: str) -> None:
    """Accept any manifest of our format's major version; refuse the rest."""
    if info.format != FORMAT_NAME:
        raise ManifestRefused(f"{url} is not an artifact-gc manifest", url, "not_a_manifest")
    major = info.format_version.split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise ManifestRefused(
            f"{url} has manifest format version {info.format_version}; this artifact-gc "
            f"({__version__}) reads format {FORMAT_VERSION.split('.')[0]}.x only",
            url, "unknown_format_version",
        )


def verify(url: str, storage_options: dict[str, Any] | None = None) -> ManifestInfo:
    """Refuse a manifest that is incomplete, of an unknown format, or tampered with."""
    info = read_info(url, storage_options)
    check_format(info, url)
    if not info.complete or not info.checksum:
        raise ManifestRefused(
            f"{url} is from a mark that did not complete; mark again", url, "incomplete"
        )
    with duckdb_for(url, storage_options) as connection:
        actual = candidate_checksum(
            connection, f"SELECT * FROM read_parquet({parquet_source(url)})", info
        )
    if actual != info.checksum:
        raise ManifestRefused(
            f"{url} fails its checksum: its candidate rows or identity were changed after "
            "the mark. Mark again, or derive a narrower manifest with gc filter.",
            url, "checksum",
        )
    return info
