"""DuckDB over manifests: connections that read a manifest in place, on any fsspec
filesystem, and the one shape in which readers see a manifest of any 1.x version.

A manifest written before a column existed gets that column as the format implies
it (:data:`artifact_gc.manifest.format.IMPLIED_COLUMNS`): a 1.0 manifest reads with
``item_kind = 'artifact_version'`` and ``item_id = artifact_version_id``, so review
code (and the sweep, as it moves to item keys) is written once, for the newest shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from artifact_gc.manifest.format import FILE_SCHEMA, IMPLIED_COLUMNS
from artifact_gc.storage.urls import is_remote, local_path, protocols, url_to_fs


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


def register_filesystem(connection: Any, url: str,
                        storage_options: dict[str, Any] | None = None) -> None:
    """Let ``connection`` read ``url`` in place. A local path needs nothing; a remote
    URL gets its fsspec filesystem, once per protocol (a second manifest on the same
    store reuses the first one's)."""
    if not is_remote(url):
        return
    fs, _ = url_to_fs(url, storage_options)
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
    """A view ``name`` over the manifest at ``url``, in the current format's shape."""
    connection.execute(f"CREATE VIEW {name} AS {manifest_relation(connection, url)}")
