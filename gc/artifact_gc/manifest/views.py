"""DuckDB over manifests: connections that read a manifest in place, on any fsspec
filesystem, and the one shape in which readers see a manifest of any 1.x version.

A manifest written before a column existed gets that column as the format implies
it (:data:`artifact_gc.manifest.format.IMPLIED_COLUMNS`): a 1.0 manifest reads with
``item_kind = 'artifact_version'`` and ``item_id = artifact_version_id``, so review
code (and the sweep, as it moves to item keys) is written once, for the newest shape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from artifact_gc.manifest.format import FILE_SCHEMA, IMPLIED_COLUMNS
from artifact_gc.storage.urls import is_remote, local_path, protocols, url_to_fs

#: The DuckDB database of the open :func:`duckdb_session`, if one is open, and how many
#: sessions (nested) hold it.
_session: dict[str, Any] = {"database": None, "depth": 0}
_session_lock = threading.Lock()


def connect_duckdb(**config: Any) -> Any:
    """A DuckDB connection for our own queries: progress is ours to render, not DuckDB's.

    Extensions are never downloaded: a review query or a ``--where`` predicate that
    names one (``ATTACH ... (TYPE sqlite)``, a spatial function) fails instead of making
    a network call on the user's behalf.

    Inside :func:`duckdb_session`, a call without ``config`` gets a cursor of the
    session's database (a connection of its own, whose temporary views, macros and
    registered tables no other cursor sees) instead of a new database.
    """
    import duckdb

    if not config:
        with _session_lock:
            database = _session["database"]
            connection = database.cursor() if database is not None else None
        if connection is not None:
            connection.execute("SET enable_progress_bar = false")
            return connection
    config.setdefault("autoinstall_known_extensions", False)
    connection = duckdb.connect(config=config)
    connection.execute("SET enable_progress_bar = false")
    return connection


@contextmanager
def duckdb_session() -> Iterator[None]:
    """One in-memory DuckDB database for every :func:`connect_duckdb` within.

    Starting a DuckDB database costs 20 to 30 ms of CPU; a sweep reads its manifest and
    journal through several connections (the checksum, the plan, the state under the
    lock, the journal's numbers), which are cursors of one database here. Each cursor
    is a connection of its own: what a caller creates is ``TEMP`` (views, macros) or
    registered, and goes when the caller closes its cursor, so callers do not see each
    other's objects. The database closes when the outermost session ends.
    """
    import duckdb

    with _session_lock:
        if _session["database"] is None:
            _session["database"] = duckdb.connect(
                config={"autoinstall_known_extensions": False})
        _session["depth"] += 1
    try:
        yield
    finally:
        with _session_lock:
            _session["depth"] -= 1
            database = _session["database"] if _session["depth"] == 0 else None
            if database is not None:
                _session["database"] = None
        if database is not None:
            database.close()


def register_filesystem(connection: Any, url: str,
                        storage_options: dict[str, Any] | None = None) -> None:
    """Let ``connection`` read ``url`` in place. A local path needs nothing; a remote
    URL gets its fsspec filesystem, once per protocol (a second manifest on the same
    store reuses the first one's)."""
    if not is_remote(url):
        return
    fs, _ = url_to_fs(url, storage_options)
    register_fs(connection, fs)


def register_fs(connection: Any, fs: Any) -> None:
    """Let ``connection`` read through the fsspec filesystem ``fs``, unless a filesystem
    of its protocol is registered already (DuckDB registers them per database, which
    the cursors of a :func:`duckdb_session` share)."""
    if not connection.filesystem_is_registered(protocols(fs)[0]):
        connection.register_filesystem(fs)


@contextmanager
def duckdb_for(url: str, storage_options: dict[str, Any] | None = None) -> Iterator[Any]:
    """A DuckDB connection that can read ``url`` in place, on any fsspec filesystem.

    Remote manifests are read through DuckDB's fsspec bridge with range requests, so a
    large manifest on S3 is never downloaded whole.
    """
    connection = connect_duckdb()
    try:
        register_filesystem(connection, url, storage_options)
        yield connection
    finally:
        connection.close()


def parquet_source(url: str) -> str:
    """A SQL string literal naming the manifest for DuckDB's ``read_parquet``."""
    return "'" + local_path(url).replace("'", "''") + "'"


def manifest_relation(connection: Any, url: str) -> str:
    """A ``SELECT`` of every row of the manifest at ``url``, with every column of the
    current format: those the file lacks (it predates them) as the format implies them.

    Only the file's footer is read to learn its columns; ``connection`` must be able to
    read ``url`` (:func:`duckdb_for`, :func:`register_filesystem`).
    """
    source = f"read_parquet({parquet_source(url)})"
    present = set(connection.sql(f"SELECT * FROM {source}").columns)
    implied = [f"{IMPLIED_COLUMNS[name]} AS {name}" for name in FILE_SCHEMA.names
               if name not in present and name in IMPLIED_COLUMNS]
    return f"SELECT *{''.join(', ' + column for column in implied)} FROM {source}"


def create_manifest_view(connection: Any, url: str, name: str = "manifest") -> None:
    """A view ``name`` over the manifest at ``url``, in the current format's shape.

    Temporary: the connection's own, which a cursor of a :func:`duckdb_session` needs
    (another cursor of the same database may have a ``manifest`` of its own)."""
    connection.execute(f"CREATE TEMP VIEW {name} AS {manifest_relation(connection, url)}")
