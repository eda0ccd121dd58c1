"""Measuring what a candidate occupies in its artifact store (``gc mark --sizes``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
    table: pa.Table,
    stores: dict[str, ArtifactStore],
    *,
    workers: int = 16,
    progress: Progress | None = None,
) -> pa.Table:
    """Fill ``size_bytes`` and ``file_count`` of every candidate row, in parallel."""
    import fsspec

    progress = progress or NullProgress()
    is_candidate = pc.equal(table["status"], STATUS_CANDIDATE).to_pylist()
    uris = table["uri"].to_pylist()
    store_ids = table["artifact_store_id"].to_pylist()
    viz = table["visualization_uris"].to_pylist()
    filesystems: dict[str, Any] = {}
    for store_id, store in stores.items():
        if store.root is not None:
            filesystems[store_id] = fsspec.url_to_fs(store.root, **store.storage_options)[0]
    jobs = [i for i, flag in enumerate(is_candidate) if flag]
    sizes: list[int | None] = [None] * table.num_rows
    counts: list[int | None] = [None] * table.num_rows
    progress.stage("measuring candidates", total=len(jobs), unit="versions")

    def measure(index: int) -> tuple[int, int, int]:
        fs = filesystems[store_ids[index]]
        total_bytes = total_files = 0
        for path in footprint_paths(uris[index], viz[index]):
            nbytes, nfiles = _measure(fs, fs._strip_protocol(path))
            total_bytes += nbytes
            total_files += nfiles
        return index, total_bytes, total_files

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for index, nbytes, nfiles in pool.map(measure, jobs):
            sizes[index] = nbytes
            counts[index] = nfiles
            progress.advance(1, nbytes)
    table = table.set_column(
        table.schema.get_field_index("size_bytes"), "size_bytes", pa.array(sizes, pa.int64())
    )
    return table.set_column(
        table.schema.get_field_index("file_count"), "file_count", pa.array(counts, pa.int64())
    )
