"""Measuring what a candidate occupies in its artifact store (``gc mark --sizes``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from artifact_gc.manifest import STATUS_CANDIDATE
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.stores import ArtifactStore


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
    progress: Progress | None = None,
) -> None:
    """Fill ``size_bytes`` and ``file_count`` of every candidate row of a DuckDB table."""
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

    def measure(row: tuple[str, str, str, list[str]]) -> tuple[str, int, int]:
        version_id, uri, store_id, viz = row
        fs = filesystems[store_id]
        total_bytes = total_files = 0
        for path in footprint_paths(uri, viz):
            nbytes, nfiles = _measure(fs, fs._strip_protocol(path))
            total_bytes += nbytes
            total_files += nfiles
        return version_id, total_bytes, total_files

    ids: list[str] = []
    sizes: list[int] = []
    counts: list[int] = []
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
