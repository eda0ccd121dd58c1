"""gc mark: decide, for every artifact version in scope, whether it is reachable.

The plan is data: ``mark()`` reads the store (read-only), classifies every version in
DuckDB and returns a manifest; it never deletes anything. The classification is
conservative by construction: a version becomes a candidate only when nothing refers
to it, no policy keeps it, its files lie strictly inside its store's root, and no
other version's or visualization's files overlap its own.

The steps live in their own modules: inputs.py reads the metadata tables, scope.py
narrows the versions decided, footprints.py finds overlapping files, classify.py
decides, sizes.py measures candidates (``--sizes``), summary.py counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from artifact_gc.errors import UsageError
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.publish import write_manifest_from, write_manifest_parts
from artifact_gc.manifest.views import connect_duckdb
from artifact_gc.mark.classify import Classification, classify
from artifact_gc.mark.inputs import load_inputs
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.summary import summarize
from artifact_gc.metadb.engine import redact
from artifact_gc.metadb.fingerprint import fingerprint
from artifact_gc.metadb.snapshot import read_consistently
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.storage.urls import options_for
from artifact_gc.zenml.schema import ZenMLSchema, discover
from artifact_gc.zenml.stores import ArtifactStore, load_artifact_stores

#: DuckDB's working memory for a mark; it spills to a temporary directory beyond it,
#: which keeps a mark of millions of versions within about a gigabyte.
DUCKDB_MEMORY_LIMIT = "600MB"


@dataclass
class MarkResult:
    """A finished mark: where its manifest is, and what it decided."""

    url: str
    info: mf.ManifestInfo
    summary: dict[str, Any]


def mark(
    db_url: str,
    out_url: str,
    options: MarkOptions,
    *,
    progress: Progress | None = None,
    mark_id: str | None = None,
) -> MarkResult:
    """Classify every artifact version of the store at ``db_url`` into a manifest.

    ``mark_id`` is the id the manifest records; a caller that named the manifest
    file after an id passes that same id here."""
    progress = progress or NullProgress()
    storage_options = options_for(out_url, options.storage_options)
    if options.keep_latest is not None and options.keep_latest < 0:
        raise UsageError("--keep-latest must be 0 or more")
    started = mf.utc_now()
    mark_id = mark_id or mf.new_mark_id()

    def read(engine: Any) -> tuple[Any, ZenMLSchema, dict[str, Any],
                                   dict[str, ArtifactStore], Any]:
        # Every read below goes through ``engine``, whose one connection holds one
        # consistent snapshot of the store (metadb/snapshot.py): the schema, the
        # artifact stores and every table the classification reads. A try that
        # fails on a lock is retried from here, so nothing of it is kept. The
        # snapshot ends with the reads: on SQLite, writers' commits wait only that long.
        con = _duckdb_connection()
        try:
            progress.stage("reading schema")
            schema = discover(engine)
            database = fingerprint(engine, schema.version).as_dict()
            stores = load_artifact_stores(engine, db_url, options.store_roots,
                                          options.storage_options)
            snapshots = load_inputs(con, engine, db_url, schema, progress,
                                    keep_tags=options.keep_tags,
                                    release_snapshots=options.release_unreachable_snapshots)
        except BaseException:
            con.close()
            raise
        return con, schema, database, stores, snapshots

    con, schema, database, stores, snapshots = read_consistently(
        db_url, options.lock_timeout, read)
    try:
        classified = classify(con, None, db_url, schema, stores, options, started, progress,
                              inputs_loaded=True, snapshots=snapshots)
        info = _manifest_info(db_url, database, schema, stores, options, started, mark_id)
        # After the snapshot: the orphan-file part lists the stores first and reads the
        # rows that name paths after that, in a snapshot of its own (mark/orphans/run.py).
        orphans = _orphan_files(con, db_url, schema, stores, options, started, progress)
        if orphans is not None:
            info.orphan_files = orphans.as_dict()
        summary = _write(con, classified, stores, info, out_url, storage_options, options,
                         progress, with_orphans=orphans is not None)
    finally:
        con.close()
    progress.close()
    return MarkResult(url=out_url, info=info, summary=summary)


def _manifest_info(
    db_url: str, database: dict[str, Any], schema: ZenMLSchema, stores: dict[str, ArtifactStore],
    options: MarkOptions, started: datetime, mark_id: str,
) -> mf.ManifestInfo:
    """The manifest's metadata as known before classifying (counts come at the end)."""
    return mf.ManifestInfo(
        mark_id=mark_id,
        started_at=started.isoformat(),
        finished_at=None,
        parameters={**options.as_dict(), "database_url": redact(db_url)},
        database=database,
        schema=schema.as_dict(),
        stores=[
            {"id": s.id, "name": s.name, "flavor": s.flavor, "root": s.root,
             "root_source": s.root_source}
            for s in stores.values()
        ],
        warnings=list(schema.warnings),
    )


def _orphan_files(
    con: Any, db_url: str, schema: ZenMLSchema,
    stores: dict[str, ArtifactStore], options: MarkOptions, started: datetime,
    progress: Progress,
) -> Any:
    """``--orphan-files``: the table ``orphan_rows`` and its summary (or None)."""
    if not (options.orphan_files or options.inventory):
        return None
    from artifact_gc.mark.orphans.run import mark_orphan_files

    return mark_orphan_files(con, db_url, schema, stores, options, started, progress)


def _write(
    con: Any, classified: Classification, stores: dict[str, ArtifactStore],
    info: mf.ManifestInfo, out_url: str, storage_options: dict[str, Any],
    options: MarkOptions, progress: Progress, with_orphans: bool = False,
) -> dict[str, Any]:
    """Measure (``--sizes``), summarize and publish the manifest; return the summary."""
    summary: dict[str, Any] = {}

    def finish(result: dict[str, Any]) -> None:
        summary.update(result)
        info.counts = {**classified.counts, **summary["counts"]}
        info.bytes = summary["bytes"]
        info.finished_at = mf.utc_now().isoformat()

    if options.sizes:
        from artifact_gc.mark.sizes import measure_candidates

        # Measuring fills the size columns in place, so the rows become a table.
        con.execute("CREATE TEMP TABLE manifest_table AS SELECT * FROM manifest_rows")
        measure_candidates(con, "manifest_table", stores, workers=options.workers,
                           limits=options.limits, progress=progress)
        finish(summarize(con, "manifest_table"))
        progress.stage("writing manifest")
        rows = "SELECT * FROM manifest_table"
        if with_orphans:
            from artifact_gc.manifest.reasons import ITEM_KIND_VERSION

            rows = (f"SELECT *, '{ITEM_KIND_VERSION}' AS item_kind, artifact_version_id "
                    "AS item_id, NULL::VARCHAR AS orphan_class, NULL::TIMESTAMP AS "
                    f"newest_mtime FROM manifest_table UNION ALL BY NAME {ORPHAN_ROWS_SQL}")
        write_manifest_from(con, rows, info, out_url, storage_options=storage_options)
    else:
        # Each part of the rows is computed once, then hashed, summarized and
        # written; the summary is complete when the last part has been written,
        # before the writer reads ``info``.
        versions = classified.counts["versions_in_scope"]
        write_manifest_parts(
            con, _parts(con, classified.parts, versions, progress, finish, with_orphans), info,
            out_url, storage_options=storage_options,
        )
    return summary


def _duckdb_connection() -> Any:
    """An in-memory DuckDB that spills to disk instead of growing past its limit."""
    import tempfile

    return connect_duckdb(
        memory_limit=DUCKDB_MEMORY_LIMIT,
        temp_directory=tempfile.gettempdir() + "/artifact-gc-duckdb",
        preserve_insertion_order=False,
    )


#: The orphan-file rows (``--orphan-files``), in item order: after every version, since
#: ``orphan_file`` sorts after ``artifact_version``.
ORPHAN_ROWS_SQL = "SELECT * FROM orphan_rows ORDER BY item_id"
#: Orphan rows per manifest part.
ORPHAN_PART_ROWS = 100_000


def _parts(
    con: Any, queries: list[str], versions: int, progress: Progress,
    finish: Callable[[dict[str, Any]], None], with_orphans: bool = False,
) -> Iterator[pa.Table]:
    """The manifest's rows as Arrow tables, one per id range, in id order.

    Each part's narrow columns go into ``summary_rows`` as it passes; once the last
    part is out, ``finish`` gets the summary.
    """
    progress.stage("writing manifest", total=versions, unit="versions")
    con.execute(
        "CREATE TEMP TABLE summary_rows (status VARCHAR, reasons VARCHAR[], "
        "size_bytes BIGINT, artifact_name VARCHAR, project VARCHAR)"
    )
    for query in queries:
        table = con.sql(query).to_arrow_table()
        con.register("_mark_part", table)
        try:
            con.execute("INSERT INTO summary_rows SELECT status, reasons, size_bytes, "
                        "artifact_name, project FROM _mark_part")
        finally:
            con.unregister("_mark_part")
        yield table
        progress.advance(table.num_rows)
    if with_orphans:
        # Not in summary_rows: the summary counts artifact versions; the orphan files
        # have their own in the manifest's metadata (orphan_files).
        # Numbered once in item order, then fetched a part at a time: the writer
        # below uses the connection while a part is out (so no result can stay
        # open), and a million orphan paths fetched whole would sit in Python's
        # memory, outside DuckDB's limit.
        con.execute("CREATE OR REPLACE TEMP TABLE orphan_rows_ordered AS SELECT *, "
                    "row_number() OVER (ORDER BY item_id) AS _part_row FROM orphan_rows")
        ((total,),) = con.execute("SELECT count(*) FROM orphan_rows_ordered").fetchall()
        for start in range(0, int(total), ORPHAN_PART_ROWS):
            yield con.sql(
                "SELECT * EXCLUDE (_part_row) FROM orphan_rows_ordered "
                f"WHERE _part_row > {start} AND _part_row <= {start + ORPHAN_PART_ROWS} "
                "ORDER BY _part_row").to_arrow_table()
        con.execute("DROP TABLE orphan_rows_ordered")
    finish(summarize(con, "summary_rows"))
