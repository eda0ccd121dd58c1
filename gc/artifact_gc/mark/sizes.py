"""Measuring what a candidate occupies in its artifact store (``gc mark --sizes``).

Object stores (S3, GCS, Azure Blob) are listed once each (one LIST per page of
objects: s3.list_root, or the bulk backend's ``list_root``) and the listing is joined
with the candidates' footprints in DuckDB: no call per version. The keys found are
kept in the manifest (``object_keys``), so that the sweep deletes them without
listing first. Other stores are measured with one ``find`` per footprint path, in
threads, and record no keys.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from artifact_gc.manifest.reasons import STATUS_CANDIDATE
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.storage.keys import keys_under_paths
from artifact_gc.storage.limits import RateLimiter, RequestLimits
from artifact_gc.zenml.stores import ArtifactStore

# storage.s3 (and its bucket helpers) is imported by the functions that measure: the
# sweep imports this module for footprint_paths alone.


def footprint_paths(uri: str, visualization_uris: list[str] | None) -> list[str]:
    """The version's directory plus any visualization that lies outside it."""
    base = uri.rstrip("/")
    paths = [base]
    for viz in visualization_uris or []:
        viz = viz.rstrip("/")
        if viz != base and not viz.startswith(base + "/"):
            paths.append(viz)
    return paths


def _measure(fs: Any, path: str) -> tuple[int, int]:
    try:
        found = fs.find(path, detail=True, withdirs=False)
    except FileNotFoundError:
        return 0, 0
    files = [entry for entry in found.values() if entry.get("type") != "directory"]
    return sum(int(entry.get("size") or 0) for entry in files), len(files)


def measure_candidates(
    con: Any,
    table: str,
    stores: dict[str, ArtifactStore],
    *,
    workers: int = 16,
    limits: RequestLimits,
    progress: Progress | None = None,
) -> None:
    """Fill ``size_bytes`` and ``file_count`` of every candidate row of a DuckDB table,
    and ``object_keys`` where the store's listing names the objects (S3, GCS, Azure)."""
    import fsspec

    progress = progress or NullProgress()
    candidates = con.execute(
        f"SELECT artifact_version_id, uri, artifact_store_id, visualization_uris "
        f"FROM {table} WHERE status = '{STATUS_CANDIDATE}'"
    ).fetchall()
    filesystems: dict[str, Any] = {}
    for store_id, store in stores.items():
        if store.root is not None:
            filesystems[store_id] = fsspec.url_to_fs(store.root, **store.storage_options)[0]
    progress.stage("measuring candidates", total=len(candidates), unit="versions")
    measured: dict[str, tuple[int, int]] = {}
    object_keys: dict[str, list[str]] = {}
    listed_stores = {sid for sid, fs in filesystems.items() if _listable(fs, stores[sid])}
    for store_id in sorted(listed_stores):
        rows = [row for row in candidates if row[2] == store_id]
        if rows:
            root = stores[store_id].root
            assert root is not None
            listing, split = _list_store(filesystems[store_id], stores[store_id], root,
                                         workers, limits)
            measured.update(_measure_listed(con, listing, split, root, rows, object_keys))
            progress.advance(len(rows), sum(measured[r[0]][0] for r in rows))
    candidates = [row for row in candidates if row[2] not in listed_stores]

    def measure(row: tuple[str, str, str, list[str]]) -> tuple[str, int, int]:
        version_id, uri, store_id, viz = row
        fs = filesystems[store_id]
        total_bytes = total_files = 0
        for path in footprint_paths(uri, viz):
            nbytes, nfiles = _measure(fs, fs._strip_protocol(path))
            total_bytes += nbytes
            total_files += nfiles
        return version_id, total_bytes, total_files

    ids: list[str] = list(measured)
    sizes: list[int] = [measured[i][0] for i in ids]
    counts: list[int] = [measured[i][1] for i in ids]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for version_id, nbytes, nfiles in pool.map(measure, candidates):
            ids.append(version_id)
            sizes.append(nbytes)
            counts.append(nfiles)
            progress.advance(1, nbytes)
    con.register("measured_sizes", pa.table({
        "id": pa.array(ids, pa.string()),
        "size_bytes": pa.array(sizes, pa.int64()),
        "file_count": pa.array(counts, pa.int64()),
    }))
    con.execute(
        f"UPDATE {table} SET size_bytes = s.size_bytes, file_count = s.file_count "
        f"FROM measured_sizes s WHERE {table}.artifact_version_id = s.id"
    )
    con.unregister("measured_sizes")
    if object_keys:
        _record_keys(con, table, object_keys)


def _record_keys(con: Any, table: str, object_keys: dict[str, list[str]]) -> None:
    columns = {str(row[0]) for row in con.execute(f"DESCRIBE {table}").fetchall()}
    if "object_keys" not in columns:
        con.execute(f"ALTER TABLE {table} ADD COLUMN object_keys VARCHAR[]")
    con.register("measured_keys", pa.table({
        "id": pa.array(list(object_keys), pa.string()),
        "object_keys": pa.array(list(object_keys.values()), pa.list_(pa.string())),
    }))
    try:
        con.execute(f"UPDATE {table} SET object_keys = k.object_keys "
                    f"FROM measured_keys k WHERE {table}.artifact_version_id = k.id")
    finally:
        con.unregister("measured_keys")


#: Bytes and files of every version: the keys under its footprint paths (the one
#: key-to-path join of storage/keys.py), summed per version.
#: Each key is also kept as the manifest's ``object_keys`` says (format.KEYS_SCHEMA):
#: relative to the version's ``uri`` when it lies under it, else as a full URL.
_SIZES_SQL = f"""
SELECT vid, sum(size)::BIGINT AS size_bytes, count(DISTINCT key)::BIGINT AS file_count,
       list(DISTINCT CASE WHEN starts_with(key, base || '/') THEN key[length(base) + 2:]
                          ELSE $url_prefix || key END) AS object_keys
FROM ({keys_under_paths("gc_listing", "gc_version_paths")})
GROUP BY vid
"""


def _listable(fs: Any, store: ArtifactStore) -> bool:
    """Whether ``store`` is listed whole: S3, or a bucket store with its own bulk
    backend (GCS, Azure) whose root is a folder in a bucket."""
    from artifact_gc.storage import s3
    from artifact_gc.storage.azure import is_azure
    from artifact_gc.storage.gcs import is_gcs

    if s3.is_s3(fs):
        return True
    return (is_gcs(fs) or is_azure(fs)) and bool(_split_of(fs)(store.root or "")[1])


def _split_of(fs: Any) -> Callable[[str], tuple[str, str]]:
    from artifact_gc.storage import azure, gcs, s3

    if s3.is_s3(fs):
        return s3.split_path
    return gcs.split_path if gcs.is_gcs(fs) else azure.split_path


def _list_store(fs: Any, store: ArtifactStore, root: str, workers: int,
                limits: RequestLimits) -> tuple[pa.Table, Callable[[str], tuple[str, str]]]:
    """``(key, size)`` of every object under ``root``, and how the store splits a URL
    into (bucket, key)."""
    from artifact_gc.storage import s3
    from artifact_gc.storage.buckets import Scrubber

    if s3.is_s3(fs):
        client = s3.S3Client(fs, limiter=RateLimiter(limits.max_requests_per_second),
                             scrub=Scrubber(store.storage_options))
        return s3.list_root(client, root, streams=limits.list_workers), s3.split_path
    from artifact_gc.storage.backend import open_backend
    from artifact_gc.storage.buckets import ObjectStoreBackend
    from artifact_gc.storage.retry import RetryCounter

    backend = open_backend(store, root, fs, workers=workers, retries=RetryCounter(),
                           limits=limits)
    try:
        assert isinstance(backend, ObjectStoreBackend)
        return backend.list_root(), backend.split
    finally:
        backend.close()


def _measure_listed(con: Any, listing: pa.Table, split: Callable[[str], tuple[str, str]],
                    root: str, rows: list[tuple[str, str, str, list[str]]],
                    object_keys: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """The listing of the store root, joined in DuckDB with every candidate's footprint;
    the keys found go to ``object_keys`` (every candidate gets a list, maybe empty).

    A key belongs to a footprint path ``p`` when its first segments are ``p``'s (the
    object ``p`` itself, or anything under ``p/``; storage/keys.py). Directory markers
    (keys ending in ``/``) count as files of size 0.
    """
    bucket, root_key = split(root)
    vids: list[str] = []
    paths: list[str] = []
    bases: list[str] = []
    for version_id, uri, _store_id, viz in rows:
        base = split(uri)[1]
        for path in footprint_paths(uri, viz):
            path_bucket, key = split(path)
            if path_bucket == bucket and key:
                vids.append(version_id)
                paths.append(key)
                bases.append(base)
    con.register("gc_listing", listing)
    con.register("gc_version_paths", pa.table({"vid": pa.array(vids, pa.string()),
                                               "path": pa.array(paths, pa.string()),
                                               "base": pa.array(bases, pa.string())}))
    # The URL of the bucket as the root spells it (``abfs://container@account.../``):
    # a recorded URL must name the same place as the footprint paths do.
    bare = root.rstrip("/")
    url_prefix = (bare[:len(bare) - len(root_key)] if root_key and bare.endswith(root_key)
                  else root.split("://", 1)[0] + "://" + bucket + "/")
    try:
        found: dict[str, tuple[int, int]] = {}
        for v, b, n, keys in con.execute(_SIZES_SQL, {"url_prefix": url_prefix}).fetchall():
            found[str(v)] = (int(b), int(n))
            object_keys[str(v)] = sorted(keys)
    finally:
        con.unregister("gc_listing")
        con.unregister("gc_version_paths")
    for row in rows:
        object_keys.setdefault(row[0], [])
    return {row[0]: found.get(row[0], (0, 0)) for row in rows}
