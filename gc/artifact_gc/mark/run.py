"""gc mark: decide, for every artifact version in scope, whether it is reachable.

The plan is data: ``mark()`` reads the store (read-only), classifies every version in
DuckDB and returns a manifest; it never deletes anything. The classification is
conservative by construction: a version becomes a candidate only when nothing refers
to it, no policy keeps it, its files lie strictly inside its store's root, and no
other version's or visualization's files overlap its own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa

from artifact_gc.durations import format_duration
from artifact_gc.errors import SchemaError, UsageError
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.reasons import (
    PROTECT_GRACE,
    PROTECT_KEEP_LATEST,
    PROTECT_NO_STORE,
    PROTECT_OUTSIDE_ROOT,
    PROTECT_OVERLAP,
    PROTECT_PREEXISTING,
    REASON_CONFIG,
    STATUS_CANDIDATE,
    STATUS_PROTECTED,
    STATUS_REACHABLE,
)
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.engine import create_engine, redact
from artifact_gc.metadb.fingerprint import fingerprint
from artifact_gc.metadb.reader import load_table
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.urls import options_for
from artifact_gc.zenml.references import CONFIG_ID_RUN, CONFIG_ID_WHOLE, config_filter
from artifact_gc.zenml.schema import VERSION_TABLE, ZenMLSchema, discover
from artifact_gc.zenml.stores import ArtifactStore, load_artifact_stores

DEFAULT_GRACE = timedelta(hours=24)

#: DuckDB's working memory for a mark; it spills to a temporary directory beyond it,
#: which keeps a mark of millions of versions within about a gigabyte.
DUCKDB_MEMORY_LIMIT = "600MB"

#: Reasons that protect a version that nothing refers to (see FORMAT.md).

#: Columns of artifact_version that ZenML's schema lets be NULL.
NULLABLE_VERSION_COLUMNS = frozenset({"version_number", "artifact_store_id"})

#: DuckDB SQL for a UUID column as ZenML stores ids: 32 lowercase hex digits.
_HEX = "replace(CAST({} AS VARCHAR), '-', '')"


@dataclass(frozen=True)
class MarkOptions:
    """What to mark, and which policies keep versions that nothing refers to."""

    older_than: timedelta = DEFAULT_GRACE
    keep_latest: int | None = None
    projects: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    exclude_artifacts: tuple[str, ...] = ()
    sizes: bool = False
    store_roots: dict[str, str] = field(default_factory=dict)
    workers: int = 16
    #: ``--storage-option`` values for remote artifact stores and a remote manifest.
    #: Never written to the manifest (they may hold credentials).
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    limits: RequestLimits = field(default_factory=RequestLimits)

    def as_dict(self) -> dict[str, Any]:
        return {
            "older_than": format_duration(self.older_than),
            "older_than_seconds": int(self.older_than.total_seconds()),
            "keep_latest": self.keep_latest,
            "projects": list(self.projects),
            "artifacts": list(self.artifacts),
            "exclude_artifacts": list(self.exclude_artifacts),
            "sizes": self.sizes,
            "store_roots": dict(self.store_roots),
        }


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
    engine = create_engine(db_url, readonly=True)
    con = _duckdb_connection()
    try:
        progress.stage("reading schema")
        schema = discover(engine)
        fp = fingerprint(engine, schema.version)
        stores = load_artifact_stores(engine, db_url, options.store_roots,
                                      options.storage_options)
        info = mf.ManifestInfo(
            mark_id=mark_id or mf.new_mark_id(),
            started_at=started.isoformat(),
            finished_at=None,
            parameters={**options.as_dict(), "database_url": redact(db_url)},
            database=fp.as_dict(),
            schema=schema.as_dict(),
            stores=[
                {"id": s.id, "name": s.name, "flavor": s.flavor, "root": s.root,
                 "root_source": s.root_source}
                for s in stores.values()
            ],
            warnings=list(schema.warnings),
        )
        counts, parts = classify(con, engine, db_url, schema, stores, options, started,
                                 progress)
        engine.dispose()
        summary: dict[str, Any] = {}

        def finish(result: dict[str, Any]) -> None:
            summary.update(result)
            info.counts = {**counts, **summary["counts"]}
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
            mf.write_manifest_from(con, "SELECT * FROM manifest_table", info, out_url,
                                   storage_options=storage_options)
        else:
            # Each part of the rows is computed once, then hashed, summarized and
            # written; the summary is complete when the last part has been written,
            # before the writer reads ``info``.
            mf.write_manifest_parts(
                con, _parts(con, parts, counts["versions_in_scope"], progress, finish), info,
                out_url, storage_options=storage_options,
            )
    finally:
        con.close()
        engine.dispose()
    progress.close()
    return MarkResult(url=out_url, info=info, summary=summary)


def _duckdb_connection() -> Any:
    """An in-memory DuckDB that spills to disk instead of growing past its limit."""
    import tempfile

    return mf.connect_duckdb(
        memory_limit=DUCKDB_MEMORY_LIMIT,
        temp_directory=tempfile.gettempdir() + "/artifact-gc-duckdb",
        preserve_insertion_order=False,
    )


def _load_inputs(
    con: Any, engine: Any, db_url: str, schema: ZenMLSchema, progress: Progress
) -> None:
    """Load every row mark needs into DuckDB tables ``in_<name>`` of text columns."""
    dialect = dialect_of(engine)
    text = dialect.text

    def q(name: str) -> str:
        return dialect.quote(engine, name)

    empty = text("''")
    uuid, text_type = "UUID", "VARCHAR"
    version_columns = [
        ("id", uuid), ("artifact_id", uuid), ("version", text_type),
        ("version_number", "BIGINT"), ("uri", text_type), ("save_type", text_type),
        ("artifact_store_id", uuid), ("project_id", uuid), ("created", "TIMESTAMP"),
    ]
    source_columns = [c for c, _ in version_columns[:-2]] + [schema.project_column, "created"]
    reads: list[tuple[str, str, list[tuple[str, str]]]] = [
        (
            "versions",
            "SELECT " + ", ".join(
                f"{text(source, nullable=target in NULLABLE_VERSION_COLUMNS)} AS {target}"
                for source, (target, _) in zip(source_columns, version_columns, strict=True)
            ) + f" FROM {q(VERSION_TABLE)}",
            version_columns,
        ),
        ("artifacts", f"SELECT {text('id', False)} AS id, {text('name', False)} AS name "
         f"FROM {q('artifact')}", [("id", uuid), ("name", text_type)]),
        ("projects", f"SELECT {text('id', False)} AS id, {text('name', False)} AS name "
         f"FROM {q(schema.project_table)}", [("id", uuid), ("name", text_type)]),
    ]
    reads.append((
        "visualizations",
        f"SELECT {text('artifact_version_id', False)} AS artifact_version_id, "
        f"{text('uri', False)} AS uri FROM {q('artifact_visualization')}"
        if "artifact_visualization" in schema.tables
        # A schema without visualizations still yields the (empty) columns we join on.
        else f"SELECT {empty}, {empty} FROM {q(VERSION_TABLE)} WHERE 1 = 0",
        [("artifact_version_id", uuid), ("uri", text_type)],
    ))
    # Where every foreign key column is indexed (MySQL/MariaDB), GROUP BY the column is
    # a walk of that index which sends each referenced id once (a fraction of the link
    # rows) through the driver. (DISTINCT over the CAST would build a temporary table:
    # ten times slower at 2M rows.) Elsewhere every row is sent, and DuckDB groups them.
    for index, reference in enumerate(schema.references):
        column = q(reference.column)
        group = f" GROUP BY {column}" if dialect.group_referenced_ids else ""
        reads.append((
            f"ref_{index}",
            f"SELECT {text(column, False)} AS id FROM {q(reference.table)} "
            f"WHERE {column} IS NOT NULL{group}",
            [("id", uuid)],
        ))
    for index, (table, column) in enumerate(schema.config_tables):
        # Only configurations that name external artifacts or lazy loaders can hold
        # an id we need (references.CONFIG_ID_KEYS; the sweep re-reads the same ones).
        col = q(column)
        reads.append((
            f"config_{index}",
            f"SELECT {text(col)} AS config FROM {q(table)} WHERE {config_filter(col)}",
            [("config", text_type)],
        ))
    progress.stage("reading metadata", total=len(reads), unit="tables")
    # On SQLite, two tables at a time, each on its own DuckDB cursor and connection:
    # ADBC and DuckDB release the GIL, so the largest table (the versions, started
    # first) is read while the others are. pymysql parses rows in Python under the GIL,
    # where a second thread would only stretch every read transaction. Progress is
    # reported from this thread.
    threads = dialect.read_threads
    with ThreadPoolExecutor(max_workers=threads) as pool:
        cursors = [con.cursor() for _ in reads]
        futures = [
            pool.submit(load_table, cursor, f"in_{name}", engine, db_url, sql, columns)
            for cursor, (name, sql, columns) in zip(cursors, reads, strict=True)
        ]
        try:
            for future in as_completed(futures):
                future.result()
                progress.advance(1)
        finally:
            for future in futures:
                future.cancel()
            wait(futures)
            for cursor in cursors:
                cursor.close()
    # Ids are typed as UUIDs on the way in, and one that does not parse becomes NULL.
    # A reference lost that way could turn a live version into a candidate, so any
    # such id stops the mark instead.
    sources = {"versions": VERSION_TABLE, "artifacts": "artifact",
               "projects": schema.project_table, "visualizations": "artifact_visualization"}
    sources.update({f"ref_{i}": f"{r.table}.{r.column}" for i, r in enumerate(schema.references)})
    for name, _sql, columns in reads:
        id_columns = [c for c, kind in columns if kind == uuid and c != "project_id"]
        for column in id_columns:
            unreadable = _scalar(con, f"SELECT count(*) FROM in_{name} WHERE {column} IS NULL")
            if unreadable:
                where = sources.get(name, name)
                raise SchemaError(
                    f"{unreadable:,} id(s) in {where} ({column}) are not ids ZenML writes "
                    "(32 hex digits); refusing to decide reachability on this store"
                )


def _scope(con: Any, options: MarkOptions) -> tuple[set[str] | None, set[str] | None]:
    """The artifact ids and project ids in scope (None: no filter on that axis)."""
    project_ids: set[str] | None = None
    if options.projects:
        projects = con.execute(
            f"SELECT {_HEX.format('id')}, name FROM in_projects").fetchall()
        names = {name: pid for pid, name in projects}
        ids = {pid for pid, _ in projects}
        project_ids = set()
        for wanted in options.projects:
            if wanted in names:
                project_ids.add(names[wanted])
            elif wanted.replace("-", "").lower() in ids:
                project_ids.add(wanted.replace("-", "").lower())
            else:
                raise UsageError(
                    f"no project named {wanted!r}; the store has: "
                    + ", ".join(sorted(n for n in names if n)) or "no projects"
                )
    artifact_ids: set[str] | None = None
    if options.artifacts or options.exclude_artifacts:
        artifact_ids = set()
        for artifact_id, name in con.execute(
                f"SELECT {_HEX.format('id')}, name FROM in_artifacts").fetchall():
            name = name or ""
            included = not options.artifacts or any(
                fnmatch.fnmatchcase(name, pattern) for pattern in options.artifacts
            )
            excluded = any(fnmatch.fnmatchcase(name, p) for p in options.exclude_artifacts)
            if included and not excluded:
                artifact_ids.add(artifact_id)
    return artifact_ids, project_ids


def classify(
    con: Any,
    engine: Any,
    db_url: str,
    schema: ZenMLSchema,
    stores: dict[str, ArtifactStore],
    options: MarkOptions,
    started: Any,
    progress: Progress,
) -> tuple[dict[str, Any], list[str]]:
    """Read the store and decide every in-scope version's status.

    Leaves the manifest's rows in the DuckDB view ``manifest_rows``; returns counts,
    and the same rows as queries over consecutive ranges of ids, in id order.
    """
    _load_inputs(con, engine, db_url, schema, progress)
    progress.stage("classifying")
    artifact_scope, project_scope = _scope(con, options)
    # Ids as the manifest spells them, once per artifact and project rather than once
    # per version.
    for source, target in (("in_artifacts", "artifact_names"), ("in_projects", "project_names")):
        con.execute(f"CREATE TEMP TABLE {target} AS "
                    f"SELECT id, name, {_HEX.format('id')} AS hex FROM {source}")
        con.execute(f"DROP TABLE {source}")
    con.register("in_stores", pa.table({
        "artifact_store_id": pa.array([s.id for s in stores.values()], pa.string()),
        "store_root": pa.array([s.root for s in stores.values()], pa.string()),
    }))
    _register_scope(con, "scope_artifacts", artifact_scope)
    _register_scope(con, "scope_projects", project_scope)
    scope_filters = []
    if artifact_scope is not None:
        scope_filters.append("v.artifact_id IN (SELECT id::UUID FROM scope_artifacts)")
    if project_scope is not None:
        scope_filters.append("v.project_id IN (SELECT id::UUID FROM scope_projects)")
    in_scope = " AND ".join(scope_filters) or "TRUE"

    # Every reason is one bit, in alphabetical order, so that a version's reasons are
    # one integer OR-ed together (cheaper than a list of distinct strings per id) and
    # unpacked, already sorted, only for the rows written.
    reasons = sorted({ref.reason for ref in schema.references}
                     | ({REASON_CONFIG} if schema.config_tables else set()))
    if len(reasons) > 62:
        raise SchemaError(f"{len(reasons)} kinds of references to artifact versions; "
                          "mark handles at most 62")
    bit = {reason: 1 << index for index, reason in enumerate(reasons)}
    ref_selects = [
        f"SELECT id, {bit[ref.reason]}::BIGINT AS bit FROM in_ref_{i}"
        for i, ref in enumerate(schema.references)
    ]
    ref_selects += [
        f"SELECT TRY_CAST(run AS UUID) AS id, {bit[REASON_CONFIG]}::BIGINT AS bit "
        f"FROM (SELECT unnest(regexp_extract_all(lower(config), '{CONFIG_ID_RUN}')) AS run "
        f"FROM in_config_{i}) WHERE regexp_full_match(run, '{CONFIG_ID_WHOLE}')"
        for i in range(len(schema.config_tables))
    ]
    refs_sql = " UNION ALL ".join(ref_selects) or "SELECT NULL::UUID id, 0::BIGINT bit"
    con.execute(
        f"CREATE TEMP TABLE refs AS SELECT id, bit_or(bit) AS mask FROM ({refs_sql}) "
        "WHERE id IS NOT NULL GROUP BY id"
    )
    reason_list = "[" + ", ".join(f"'{r}'" for r in reasons) + "]::VARCHAR[]"
    for i in range(len(schema.references)):
        con.execute(f"DROP TABLE in_ref_{i}")
    in_scope_count = _scalar(con, f"SELECT count(*) FROM in_versions v WHERE {in_scope}")
    ranges = _id_ranges(in_scope_count)
    _find_overlaps(con, _scalar(con, "SELECT count(*) FROM in_versions"))
    keep_n = options.keep_latest or 0
    con.execute("CREATE TEMP TABLE latest (id UUID)")
    if keep_n > 0:
        # The window that ranks versions by recency costs a sort of the whole table:
        # only pay for it when --keep-latest asks for it.
        con.execute(
            f"""
            INSERT INTO latest SELECT id FROM (
                SELECT v.id, row_number() OVER (PARTITION BY v.artifact_id ORDER BY
                    v.created DESC NULLS FIRST, v.version_number DESC NULLS FIRST, v.id
                ) AS recency
                FROM in_versions v WHERE {in_scope}
            ) WHERE recency <= {keep_n}
            """
        )
    cutoff = (started - options.older_than).isoformat(sep=" ")
    # The manifest's rows, in FORMAT.md's column order, as SQL over one range of ids.
    # The whole view serves --sizes; a plain mark computes and writes it range by range.
    con.execute("CREATE TEMP VIEW manifest_rows AS "
                + _rows_sql(in_scope, cutoff, reason_list, None, None))
    total = _scalar(con, "SELECT count(*) FROM in_versions")
    counts = {
        "versions_total": total,
        "versions_in_scope": in_scope_count,
        "versions_out_of_scope": total - in_scope_count,
    }
    parts = [_rows_sql(in_scope, cutoff, reason_list, _sql_uuid(lo), _sql_uuid(hi))
             for lo, hi in ranges]
    return counts, parts


#: Versions per part of a manifest's rows. A part's joins, its Arrow copy and its
#: Parquet row group stay this small, however large the store.
PART_ROWS = 131_072

#: Versions per range when versions are joined with their visualizations to find the
#: visualizations outside their version's directory.
JOIN_ROWS = 4 * PART_ROWS


def _id_ranges(versions: int, per_range: int = PART_ROWS) -> list[tuple[int | None, int | None]]:
    """Consecutive ranges of the 128-bit id space, ``[lo, hi)``, one per part.

    ZenML's ids are random (UUID4), so equal ranges hold about equal numbers of
    versions. The first range is open below and the last above: together they cover
    every id, whatever its distribution.
    """
    parts = max(1, -(-versions // per_range))
    bounds = [k * (1 << 128) // parts for k in range(1, parts)]
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def _sql_uuid(value: int | None) -> str:
    if value is None:
        return "NULL::UUID"
    digits = f"{value:032x}"
    return (f"'{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}'"
            "::UUID")


def _in_range(column: str, lo: str | None, hi: str | None) -> str:
    """SQL: ``column`` lies in ``[lo, hi)``; a NULL bound is no bound."""
    if lo is None and hi is None:
        return "TRUE"
    return f"(({lo}) IS NULL OR {column} >= ({lo})) AND (({hi}) IS NULL OR {column} < ({hi}))"


def _rows_sql(in_scope: str, cutoff: str, reasons: str, lo: str | None, hi: str | None) -> str:
    """The manifest's rows for the in-scope versions whose id lies in ``[lo, hi)``.

    Every table is filtered to the range before it is joined, so the hash tables of
    a part hold that part's rows only. ``reasons`` is the SQL list of reference
    reasons, bit ``i`` of a version's mask standing for element ``i + 1``.
    """
    return f"""
        WITH decided AS (
            SELECT v.*, s.store_root, s.hex AS store_hex,
                   CASE WHEN r.mask IS NULL THEN []::VARCHAR[] ELSE list_filter(
                       {reasons}, lambda x, i: (r.mask >> (i - 1)) & 1 = 1) END
                       AS ref_reasons,
                   [x FOR x IN [
                       CASE WHEN v.save_type = 'preexisting'
                           THEN '{PROTECT_PREEXISTING}' END,
                       CASE WHEN s.store_root IS NULL THEN '{PROTECT_NO_STORE}' END,
                       CASE WHEN s.store_root IS NOT NULL AND (NOT starts_with(
                           v.uri, CASE WHEN s.store_root = '/' THEN '/'
                                       ELSE s.store_root || '/' END)
                           OR rtrim(v.uri, '/') = s.store_root
                           -- '..' or '.' segments climb out of (or name) the root
                           OR regexp_matches(v.uri, '(^|/)[.][.]?(/|$)'))
                           THEN '{PROTECT_OUTSIDE_ROOT}' END,
                       CASE WHEN v.created IS NULL OR v.created > TIMESTAMP '{cutoff}'
                           THEN '{PROTECT_GRACE}' END,
                       CASE WHEN k.id IS NOT NULL THEN '{PROTECT_KEEP_LATEST}' END,
                       CASE WHEN o.id IS NOT NULL THEN '{PROTECT_OVERLAP}' END
                   ] IF x IS NOT NULL] AS protect_reasons
            FROM (SELECT * FROM in_versions v
                  WHERE {in_scope} AND {_in_range('v.id', lo, hi)}) v
            LEFT JOIN (SELECT *, {_HEX.format('artifact_store_id::UUID')} AS hex
                       FROM in_stores) s ON s.artifact_store_id::UUID = v.artifact_store_id
            LEFT JOIN (SELECT * FROM refs WHERE {_in_range('id', lo, hi)}) r ON r.id = v.id
            LEFT JOIN (SELECT * FROM overlapping WHERE {_in_range('id', lo, hi)}) o
                ON o.id = v.id
            LEFT JOIN (SELECT * FROM latest WHERE {_in_range('id', lo, hi)}) k
                ON k.id = v.id
        )
        SELECT {_HEX.format('d.id')} AS artifact_version_id,
               coalesce(a.hex, {_HEX.format('d.artifact_id')}) AS artifact_id,
               a.name AS artifact_name, d.version, d.version_number, p.name AS project,
               coalesce(p.hex, {_HEX.format('d.project_id')}) AS project_id,
               d.created, d.uri,
               coalesce(d.store_hex, {_HEX.format('d.artifact_store_id')})
                   AS artifact_store_id,
               d.store_root, d.save_type,
               CASE WHEN len(d.ref_reasons) > 0 THEN '{STATUS_REACHABLE}'
                    WHEN len(d.protect_reasons) > 0 THEN '{STATUS_PROTECTED}'
                    ELSE '{STATUS_CANDIDATE}' END AS status,
               list_concat(d.ref_reasons, CASE WHEN len(d.ref_reasons) > 0
                   THEN list_filter(d.protect_reasons, lambda r: r <> '{PROTECT_OVERLAP}')
                   ELSE d.protect_reasons END) AS reasons,
               NULL::BIGINT AS size_bytes, NULL::BIGINT AS file_count,
               coalesce(list_sort(list_transform(z.items, lambda x: CASE WHEN x.nested
                   THEN rtrim(d.uri, '/') || '/' || x.rest ELSE x.rest END)), []::VARCHAR[])
                   AS visualization_uris
        FROM decided d
        LEFT JOIN artifact_names a ON a.id = d.artifact_id
        LEFT JOIN project_names p ON p.id = d.project_id
        LEFT JOIN (
            SELECT id, list({{'nested': nested, 'rest': rest}}) AS items
            FROM visualizations WHERE {_in_range('id', lo, hi)} GROUP BY id
        ) z ON z.id = d.id
    """


def _parts(
    con: Any, queries: list[str], versions: int, progress: Progress,
    finish: Callable[[dict[str, Any]], None],
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
    finish(summarize(con, "summary_rows"))


def _scalar(con: Any, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0


def _register_scope(con: Any, name: str, ids: set[str] | None) -> None:
    con.register(name, pa.table({"id": pa.array(sorted(ids or ()), pa.string())}))


def _find_overlaps(con: Any, versions: int) -> None:
    """Find every version whose files overlap another version's files.

    A version's footprint is its URI plus its visualization URIs. A version is
    flagged when a path of its footprint equals, contains or lies inside a path of
    another version's footprint, whatever that other version's status: deleting the
    directory would delete files the other still uses, or will use if it comes back to
    life before its own turn. Mark turns the flag into ``uri_overlap`` protection for
    would-be candidates.

    Paths end in ``/`` and are sorted once. Prefix ranges are nested or disjoint, so
    a path lies inside (or equals) an earlier one exactly when the largest range end
    seen before it lies beyond it, and it contains (or equals) another exactly when
    the next path starts with it. Visualizations inside their own version's URI add
    nothing to either test and are left out. Every version's own path is one row, so
    only the other visualizations need de-duplicating (a path twice for the same
    version would otherwise look like an overlap with itself).

    On the way, ``in_visualizations`` becomes ``visualizations``: a URI inside its
    version's directory is kept as the part after that directory (``nested``), which
    is usually a file name short enough for DuckDB to store inline. The join runs
    range by range of version ids, which keeps its hash table small.
    """
    con.execute("CREATE TEMP TABLE visualizations "
                "(id UUID, rest VARCHAR, nested BOOLEAN, inside BOOLEAN)")
    for lo, hi in _id_ranges(versions, JOIN_ROWS):
        in_range = _in_range("v.id", _sql_uuid(lo), _sql_uuid(hi))
        con.execute(
            f"""
            INSERT INTO visualizations
            SELECT z.artifact_version_id,
                   CASE WHEN starts_with(z.uri, v.base || '/')
                        THEN substring(z.uri, length(v.base) + 2) ELSE z.uri END,
                   starts_with(z.uri, v.base || '/'),
                   starts_with(rtrim(z.uri, '/') || '/', v.base || '/')
            FROM in_visualizations z
            JOIN (SELECT id, rtrim(uri, '/') AS base FROM in_versions v
                  WHERE {in_range}) v ON v.id = z.artifact_version_id
            """
        )
    con.execute("DROP TABLE in_visualizations")
    con.execute(
        """
        CREATE TEMP TABLE overlapping AS
        WITH footprint AS (
            SELECT id, rtrim(uri, '/') || '/' AS p FROM in_versions
            UNION ALL
            SELECT DISTINCT id, rtrim(rest, '/') || '/' FROM visualizations WHERE NOT inside
        ),
        ordered AS (
            SELECT id, p,
                   lead(p) OVER w AS next_p,
                   max(p || chr(1114111)) OVER (
                       w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS cover
            FROM footprint
            WINDOW w AS (ORDER BY p)
        )
        SELECT DISTINCT id FROM ordered
        WHERE starts_with(next_p, p) OR cover > p
        """
    )


def summarize(con: Any, relation: str, top: int = 10) -> dict[str, Any]:
    """Counts and bytes by status and reason, and the largest candidate artifacts."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW m AS SELECT * FROM {relation}")
    by_status = {
        status: {"versions": int(n), "bytes": None if b is None else int(b)}
        for status, n, b in con.execute(
            "SELECT status, count(*), sum(size_bytes) FROM m GROUP BY status"
        ).fetchall()
    }
    by_reason = [
        {"status": s, "reason": r, "versions": int(n), "bytes": None if b is None else int(b)}
        for s, r, n, b in con.execute(
            "SELECT status, coalesce(reason, '(none)'), count(*), sum(size_bytes) FROM ("
            "  SELECT status, size_bytes, unnest(CASE WHEN len(reasons) = 0 "
            "  THEN [NULL::VARCHAR] ELSE reasons END) AS reason FROM m"
            ") GROUP BY ALL ORDER BY status, count(*) DESC, 2"
        ).fetchall()
    ]
    largest = [
        {"artifact_name": name, "project": project, "versions": int(n),
         "bytes": None if b is None else int(b)}
        for name, project, n, b in con.execute(
            f"SELECT artifact_name, project, count(*), sum(size_bytes) FROM m "
            f"WHERE status = '{STATUS_CANDIDATE}' GROUP BY ALL "
            f"ORDER BY sum(size_bytes) DESC NULLS LAST, count(*) DESC, 1 LIMIT {top}"
        ).fetchall()
    ]
    counts = {status: by_status.get(status, {}).get("versions", 0) for status in (
        STATUS_REACHABLE, STATUS_CANDIDATE, STATUS_PROTECTED)}
    sizes = {status: by_status.get(status, {}).get("bytes") for status in counts}
    return {"counts": counts, "bytes": sizes, "by_reason": by_reason,
            "largest_candidates": largest}


