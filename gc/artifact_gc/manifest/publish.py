"""Writing a manifest: its rows, its checksum and its metadata, published atomically.

Rows arrive in the shape mark makes them, the 1.0 columns of one artifact version
each (:data:`~artifact_gc.manifest.format.SCHEMA`), or already with the item columns
(``gc filter``, which carries its parent's through). Rows without them are artifact
versions: they get ``item_kind = 'artifact_version'`` and ``item_id =
artifact_version_id`` here, so that every manifest this release writes is of format
:data:`~artifact_gc.manifest.format.FORMAT_VERSION`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from artifact_gc.manifest.checksum import RunningChecksum
from artifact_gc.manifest.format import (
    FILE_SCHEMA,
    IMPLIED_COLUMNS,
    ITEM_SCHEMA,
    KEYS_SCHEMA,
    METADATA_KEY,
    REFERRER_SCHEMA,
    ManifestInfo,
)
from artifact_gc.manifest.reasons import ITEM_KIND_VERSION
from artifact_gc.manifest.views import connect_duckdb
from artifact_gc.storage.urls import is_local_fs, os_path, url_to_fs

#: Rows per Parquet row group of a manifest written from parts.
ROW_GROUP_ROWS = 122_880

#: Columns that repeat few values; ids, URIs and versions are left without a
#: dictionary, which costs time and saves nothing on unique values.
_DICTIONARY_COLUMNS = ("artifact_id", "artifact_name", "project", "project_id",
                       "artifact_store_id", "store_root", "save_type", "status", "reasons",
                       "item_kind")

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "timestamp[us]": "TIMESTAMP",
    "list<item: string>": "VARCHAR[]",
}


def with_item_columns(table: pa.Table) -> pa.Table:
    """``table`` with the item columns appended where it has none: its rows are
    artifact versions, each keyed by its own id."""
    if "item_kind" not in table.column_names:
        table = table.append_column(
            ITEM_SCHEMA.field("item_kind"),
            pa.repeat(pa.scalar(ITEM_KIND_VERSION, pa.string()), table.num_rows))
    if "item_id" not in table.column_names:
        table = table.append_column(ITEM_SCHEMA.field("item_id"),
                                    table.column("artifact_version_id"))
    if "referrers" not in table.column_names:
        # Rows from before format 1.2: who refers to them is not known (null).
        table = table.append_column(REFERRER_SCHEMA.field("referrers"),
                                    pa.nulls(table.num_rows, pa.list_(pa.string())))
    for column in KEYS_SCHEMA:
        # Nothing recorded: the sweep finds the objects by listing.
        if column.name not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows, column.type))
    # Columns of later minor versions that an artifact version leaves empty.
    for f in FILE_SCHEMA:
        if f.name not in table.column_names and IMPLIED_COLUMNS.get(f.name) == "NULL":
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    # In the file's column order, whatever order the columns were added in.
    return table.select([name for name in FILE_SCHEMA.names if name in table.column_names])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table.cast(schema)``; where every column already has its field's type (the
    rows DuckDB gives a mark), only the schema (nullability, metadata) is put on, the
    same checks first, without the cast kernels that importing pyarrow.compute costs."""
    if table.schema.names != schema.names or not all(
            column.type.equals(f.type) for column, f in zip(table.columns, schema,
                                                            strict=True)):
        return table.cast(schema)
    for column, f in zip(table.columns, schema, strict=True):
        if not f.nullable and column.null_count > 0:
            raise ValueError(f"Casting field {f.name!r} with null values to non-nullable")
    return pa.Table.from_arrays(table.columns, schema=schema)


def _file_columns_sql(connection: Any, relation_sql: str) -> str:
    """The select list that turns the rows of ``relation_sql`` into the columns of
    :data:`FILE_SCHEMA`, in order: item columns the rows lack are implied, as for a
    1.0 manifest."""
    present = set(connection.sql(relation_sql).columns)
    columns = []
    for f in FILE_SCHEMA:
        value = f.name if f.name in present or f.name not in IMPLIED_COLUMNS else \
            IMPLIED_COLUMNS[f.name]
        columns.append(f"CAST({value} AS {_DUCKDB_TYPES[str(f.type)]}) AS {f.name}")
    return ", ".join(columns)


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
        connection.register("manifest_rows", conform(with_item_columns(table), FILE_SCHEMA))
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
    rows_sql = f"SELECT {_file_columns_sql(connection, relation_sql)} FROM ({relation_sql})"
    # Hashed over exactly the rows and columns that are written, item columns included.
    checksum = RunningChecksum(info)
    checksum.add(connection, rows_sql)
    info.checksum = checksum.value()
    info.complete = True
    metadata = json.dumps(info.as_dict(), sort_keys=True).replace("'", "''")

    def write(path: str) -> None:
        target = path.replace("'", "''")
        connection.execute(
            f"COPY ({rows_sql}) TO '{target}' "
            f"(FORMAT parquet, COMPRESSION zstd, "
            f"KV_METADATA {{{METADATA_KEY.decode()}: '{metadata}'}})"
        )

    _publish(url, info, write, storage_options)
    return url


def write_manifest_parts(
    connection: Any,
    parts: Iterable[pa.Table],
    info: ManifestInfo,
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write a manifest whose rows arrive as Arrow tables of :data:`SCHEMA` (or of
    :data:`FILE_SCHEMA`), atomically.

    Each part is hashed and written as it comes, so the rows are computed once and
    never all held at the same time. The checksum takes the candidates in item order
    (``item_kind``, ``item_id``; for versions, id order): each part's candidates must
    come after every candidate of the parts before it (parts that are consecutive id
    ranges). A part that breaks that order stops the write rather than produce a
    manifest that its own sweep would refuse.

    ``info`` is read after the last part, so a generator of parts may finish it
    (counts, bytes) on its way out. ``complete`` and the checksum are set only here.
    """
    import pyarrow.parquet as pq

    def write(path: str) -> None:
        checksum = RunningChecksum(info)
        # No stored Arrow schema: readers then take the file's key-value metadata,
        # which gets the manifest's only once it is complete, for the schema's.
        writer = pq.ParquetWriter(path, FILE_SCHEMA, compression="zstd", store_schema=False,
                                  use_dictionary=list(_DICTIONARY_COLUMNS))
        try:
            # A part is encoded and compressed on a thread of its own (pyarrow releases
            # the GIL) while the next one is computed; one write is in flight at most.
            with ThreadPoolExecutor(max_workers=1) as encoder:
                pending: Future[None] | None = None
                for part in parts:
                    part = conform(with_item_columns(part), FILE_SCHEMA)
                    connection.register("_manifest_part", part)
                    try:
                        checksum.add_part(connection, "SELECT * FROM _manifest_part")
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
        on_disk = os_path(url)
        fs, path = (None, on_disk) if on_disk is not None else url_to_fs(url, storage_options)
        if fs is None or is_local_fs(fs):
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            partial = f"{path}.partial-{info.mark_id}"
            try:
                write(partial)
                set_aside_swept(url, info.mark_id, storage_options)
                os.replace(partial, path)
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
        else:
            with tempfile.TemporaryDirectory(prefix="artifact-gc-") as scratch:
                local = os.path.join(scratch, "manifest.parquet")
                write(local)
                set_aside_swept(url, info.mark_id, storage_options)
                fs.put_file(local, path)


def aside_url(url: str, mark_id: str) -> str:
    """Where :func:`set_aside_swept` moves the swept manifest of mark ``mark_id`` that
    was at ``url``: ``NAME.<mark id>.parquet`` beside it (its journal follows)."""
    stem = url[: -len(".parquet")] if url.endswith(".parquet") else url
    return f"{stem}.{mark_id[:8]}.parquet"


def swept_mark_at(url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The mark id of the manifest at ``url`` if a sweep of it has journaled events
    (beside it, or where a sweep recorded its journal); None otherwise."""
    from artifact_gc.manifest.format import read_info
    from artifact_gc.sweep.journal import Journal, recorded_journal

    local = os_path(url)
    if local is not None:
        if not os.path.exists(local):
            return None
    else:
        fs, path = url_to_fs(url, storage_options)
        if not fs.exists(path):
            return None
    try:
        old = read_info(url, storage_options)
    except Exception:  # noqa: BLE001 - not a manifest: nothing of a sweep to keep
        return None
    if not old.mark_id:
        return None
    beside = Journal(url, storage_options, mark_id=old.mark_id, mark_started=old.started)
    if beside.segments() or recorded_journal(old.mark_id):
        return old.mark_id
    return None


def check_publishable(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Raise ``SweepLocked`` (exit 7) before a long mark if a sweep of the manifest now
    at ``url`` is running: publishing would set that manifest aside under it."""
    from artifact_gc.sweep.journal import Journal

    if swept_mark_at(url, storage_options) is not None:
        Journal(url, storage_options).lock.refuse_if_held()


def set_aside_swept(url: str, new_mark_id: str, storage_options: dict[str, Any] | None
                    ) -> str | None:
    """Before a new manifest is published at ``url``: if the manifest there has been
    swept, move it and its journal to :func:`aside_url`, where ``gc history``,
    ``gc status`` and ``gc report`` still find them; return that URL.

    A journal belongs to one mark: left in place, the old mark's journal would sit
    beside a manifest it does not describe (the new sweep would ignore its events,
    being bound to the new mark id, but ``gc history`` would lose the old sweep).
    Refuses (``SweepLocked``) while a sweep of the old manifest runs."""
    from artifact_gc.sweep.journal import Journal, journal_url

    old_mark = swept_mark_at(url, storage_options)
    if old_mark is None or old_mark == new_mark_id:
        return None
    journal = Journal(url, storage_options, mark_id=old_mark)
    journal.lock.refuse_if_held()
    target = aside_url(url, old_mark)
    fs, path = url_to_fs(url, storage_options)
    _, aside_path = url_to_fs(target, storage_options)
    _, aside_journal = url_to_fs(journal_url(target), storage_options)
    moving_journal = bool(journal.segments())
    if is_local_fs(fs):
        # The journal first: a crash between the two renames leaves the old manifest
        # in place with no journal beside it, never a journal beside the wrong mark.
        if moving_journal:
            lock = os.path.join(journal.path, ".sweep.lock")
            if os.path.exists(lock):
                os.remove(lock)
            os.rename(journal.path, aside_journal)
        os.replace(path, aside_path)
    else:
        if moving_journal:
            fs.mv(journal.path, aside_journal, recursive=True)
        fs.mv(path, aside_path)
    return target
