"""The manifest format: its name and version, its columns, its metadata, and the
checks that a reader makes before it trusts a manifest.

The format is a public contract, documented in ``manifests/FORMAT.md``. A manifest
is written once, atomically, at the very end of a successful mark
(:mod:`artifact_gc.manifest.publish`), and carries a checksum over its candidate rows
(:mod:`artifact_gc.manifest.checksum`); a sweep refuses anything that is incomplete,
fails its checksum or has a format version it does not know (:func:`verify`).
Readers see every supported version in one shape through
:mod:`artifact_gc.manifest.views`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from artifact_gc import __version__
from artifact_gc.errors import ManifestRefused
from artifact_gc.manifest.reasons import ITEM_KIND_VERSION
from artifact_gc.storage.urls import os_path, url_to_fs

FORMAT_NAME = "artifact-gc-manifest"
#: 1.1 added the item columns (``item_kind``, ``item_id``); 1.2 the ``referrers``
#: column, the orphan-file columns (``orphan_class``, ``newest_mtime``) and
#: ``object_keys``. See FORMAT.md, "Versions".
FORMAT_VERSION = "1.2"
METADATA_KEY = b"artifact_gc"

#: The columns of format 1.0, which every 1.x manifest has, in this order: one
#: artifact version per row, as mark produces it.
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

#: What a row is, added by format 1.1 after the 1.0 columns: the kind of item
#: (``manifest.reasons.ITEM_KINDS``) and its id within that kind. A sweep or a review
#: that keys on (``item_kind``, ``item_id``) needs no special case per kind.
ITEM_SCHEMA = pa.schema(
    [
        pa.field("item_kind", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
    ]
)

#: Who holds each reference that keeps a version (zenml.referrers; FORMAT.md,
#: "Referrers"), added by format 1.2 after the item columns.
REFERRER_SCHEMA = pa.schema([pa.field("referrers", pa.list_(pa.string()))])

#: The objects ``gc mark --sizes`` found under a candidate's footprint, where its
#: store's listing names them (S3, GCS, Azure), or that ``gc mark --orphan-files``
#: listed in an orphan-file candidate's path on such a store: each relative to ``uri``
#: (``<uri>/<entry>``), or a
#: full URL for an object outside it. NULL where nothing was listed. The sweep deletes
#: these keys directly, and then lists the batch's range once to prove it empty.
#: Not covered by the checksum (like the sizes): the sweep only ever deletes an entry
#: that lies under the candidate's own footprint paths.
KEYS_SCHEMA = pa.schema([pa.field("object_keys", pa.list_(pa.string()))])

#: Added by format 1.2 for rows of kind ``orphan_file`` (files found by listing an
#: artifact store that no row names): why the row is garbage, which ZenML action left it
#: (``manifest.reasons.ORPHAN_CLASSES``), and the newest modification time under it.
#: Null on every artifact-version row. The row's path is its ``uri`` (and ``item_id``),
#: its bytes ``size_bytes`` and its object count ``file_count``.
ORPHAN_SCHEMA = pa.schema(
    [
        pa.field("orphan_class", pa.string()),
        pa.field("newest_mtime", pa.timestamp("us")),
    ]
)

#: Every column of a manifest that this release writes (format :data:`FORMAT_VERSION`).
FILE_SCHEMA = pa.schema([*SCHEMA, *ITEM_SCHEMA, *REFERRER_SCHEMA, *ORPHAN_SCHEMA, *KEYS_SCHEMA])

#: The value each column added by a minor version has in a manifest written before
#: that version (a DuckDB expression over the older columns): a 1.0 row is an artifact
#: version, keyed by its id. :mod:`artifact_gc.manifest.views` fills them in.
IMPLIED_COLUMNS: dict[str, str] = {
    "item_kind": f"'{ITEM_KIND_VERSION}'",
    "item_id": "artifact_version_id",
    # Unknown before 1.2 (not "none"): gc why says the manifest predates them.
    "referrers": "NULL::VARCHAR[]",
    "object_keys": "NULL::VARCHAR[]",
    # Before 1.2 every row is an artifact version: no orphan-file columns.
    "orphan_class": "NULL",
    "newest_mtime": "NULL",
}


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
    #: 1.2, ``gc mark --orphan-files``: what the listing found (FORMAT.md, "Metadata").
    orphan_files: dict[str, Any] | None = None
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
            "orphan_files": self.orphan_files,
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
            orphan_files=data.get("orphan_files"),
            complete=bool(data.get("complete", False)),
            checksum=data.get("checksum"),
            format=data.get("format", ""),
            format_version=str(data.get("format_version", "")),
            tool_version=data.get("tool_version", ""),
        )

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)


def read_info(url: str, storage_options: dict[str, Any] | None = None) -> ManifestInfo:
    """Read a manifest's metadata from its footer, without reading its rows."""
    import pyarrow.parquet as pq

    # A local manifest is opened without fsspec (not imported for a local mark).
    on_disk = os_path(url)
    if on_disk is None:
        fs, path = url_to_fs(url, storage_options)
    try:
        with open(on_disk, "rb") if on_disk is not None else fs.open(path, "rb") as handle:
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
        info = ManifestInfo.from_dict(json.loads(raw))
    except ValueError as exc:
        raise ManifestRefused(f"{url}: its metadata is not valid JSON", url, "tampered") from exc
    # Every 1.x manifest has the 1.0 columns (later ones are implied when absent): one
    # that lacks any was edited by hand, and is refused here rather than failing in the
    # middle of a query. The format major is checked by check_format.
    missing = [name for name in SCHEMA.names if name not in schema.names]
    if missing and info.format == FORMAT_NAME and info.format_version.split(".")[0] == "1":
        raise ManifestRefused(
            f"{url} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"of manifest format {info.format_version}: it was changed after the mark; "
            "mark again", url, "tampered")
    return info


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
    # Imported here: both modules import this one.
    from artifact_gc.manifest.checksum import candidate_checksum
    from artifact_gc.manifest.views import duckdb_for, manifest_relation

    with duckdb_for(url, storage_options) as connection:
        # The checksum rule of the manifest's own version, over the rows as every reader
        # sees them (a 1.0 manifest's implied item columns are not part of its rule).
        actual = candidate_checksum(connection, manifest_relation(connection, url), info)
    if actual != info.checksum:
        raise ManifestRefused(
            f"{url} fails its checksum: its candidate rows or identity were changed after "
            "the mark. Mark again, or derive a narrower manifest with gc filter.",
            url, "checksum",
        )
    return info
