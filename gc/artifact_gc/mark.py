"""gc mark: decide, for every artifact version in scope, whether it is reachable.

The plan is data: ``mark()`` reads the store (read-only), classifies every version in
DuckDB and returns a manifest; it never deletes anything. The classification is
conservative by construction: a version becomes a candidate only when nothing refers
to it, no policy keeps it, its files lie strictly inside its store's root, and no
other version's or visualization's files overlap its own.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa

from artifact_gc import manifest as mf
from artifact_gc.database import create_engine, fingerprint, redact
from artifact_gc.durations import format_duration
from artifact_gc.errors import SchemaError, UsageError
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.reader import load_table, text_column
from artifact_gc.schema import VERSION_TABLE, ZenMLSchema, discover
from artifact_gc.stores import ArtifactStore, load_artifact_stores

DEFAULT_GRACE = timedelta(hours=24)

#: DuckDB's working memory for a mark; it spills to a temporary directory beyond it,
#: which keeps a mark of millions of versions within about a gigabyte.
DUCKDB_MEMORY_LIMIT = "600MB"

#: Reasons that protect a version that nothing refers to (see FORMAT.md).
PROTECT_PREEXISTING = "preexisting"
PROTECT_NO_STORE = "no_artifact_store"
PROTECT_OUTSIDE_ROOT = "outside_store_root"
PROTECT_GRACE = "grace_period"
PROTECT_KEEP_LATEST = "keep_latest"
PROTECT_OVERLAP = "uri_overlap"
CONFIG_REFERENCE = "config_reference"

#: Columns of artifact_version that ZenML's schema lets be NULL.
NULLABLE_VERSION_COLUMNS = frozenset({"version_number", "artifact_store_id"})

#: DuckDB SQL for a UUID column as ZenML stores ids: 32 lowercase hex digits.
_HEX = "replace(CAST({} AS VARCHAR), '-', '')"

_UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


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
    storage_options: dict[str, Any] | None = None,
) -> MarkResult:
    """Classify every artifact version of the store at ``db_url`` into a manifest."""
    progress = progress or NullProgress()
    if options.keep_latest is not None and options.keep_latest < 0:
        raise UsageError("--keep-latest must be 0 or more")
    started = mf.utc_now()
    engine = create_engine(db_url, readonly=True)
    con = _duckdb_connection()
    try:
        progress.stage("reading schema")
        schema = discover(engine)
        fp = fingerprint(engine, schema.version)
        stores = load_artifact_stores(engine, db_url, options.store_roots)
        info = mf.ManifestInfo(
            mark_id=mf.new_mark_id(),
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
        counts = classify(con, engine, db_url, schema, stores, options, started, progress)
        engine.dispose()
        if options.sizes:
            from artifact_gc.sizes import measure_candidates

            # Measuring fills the size columns in place, so the rows become a table;
            # without --sizes they stay a view that the Parquet writer streams.
            con.execute("CREATE TEMP TABLE manifest_table AS SELECT * FROM manifest_rows")
            con.execute("DROP VIEW manifest_rows")
            con.execute("ALTER TABLE manifest_table RENAME TO manifest_rows")
            measure_candidates(con, "manifest_rows", stores, workers=options.workers,
                               progress=progress)
            summary = summarize(con, "manifest_rows")
        else:
            summary = summarize(con, "summary_rows")
        progress.stage("writing manifest")
        info.counts = {**counts, **summary["counts"]}
        info.bytes = summary["bytes"]
        info.finished_at = mf.utc_now().isoformat()
        mf.write_manifest_from(con, "SELECT * FROM manifest_rows", info, out_url,
                               storage_options=storage_options)
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


def _quote(engine: Any, name: str) -> str:
    return str(engine.dialect.identifier_preparer.quote(name))


def _load_inputs(
    con: Any, engine: Any, db_url: str, schema: ZenMLSchema, progress: Progress
) -> None:
    """Load every row mark needs into DuckDB tables ``in_<name>`` of text columns."""
    dialect = "sqlite" if engine.url.get_backend_name() == "sqlite" else "mysql"

    def text(expression: str, nullable: bool = True) -> str:
        # SQLite keeps ZenML's ids, names, URIs and datetimes as TEXT already; only a
        # column that can be NULL needs the marker that keeps ADBC's type guess right.
        if dialect == "sqlite" and not nullable:
            return expression
        return text_column(dialect, expression)

    def q(name: str) -> str:
        return _quote(engine, name)

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
    for index, reference in enumerate(schema.references):
        column = q(reference.column)
        reads.append((
            f"ref_{index}",
            f"SELECT {text(column, False)} AS id FROM {q(reference.table)} "
            f"WHERE {column} IS NOT NULL",
            [("id", uuid)],
        ))
    for index, (table, column) in enumerate(schema.config_tables):
        # Only configurations that name external artifacts can hold an id we need;
        # every step configuration carries the key, most of them with an empty {}.
        col = q(column)
        reads.append((
            f"config_{index}",
            f"SELECT {text(col)} AS config FROM {q(table)} "
            f"WHERE {col} LIKE '%external_input_artifacts%'"
            f" AND {col} NOT LIKE '%\"external_input_artifacts\":{{}}%'"
            f" AND {col} NOT LIKE '%\"external_input_artifacts\": {{}}%'",
            [("config", text_type)],
        ))
    progress.stage("reading metadata", total=len(reads), unit="tables")
    for name, sql, columns in reads:
        load_table(con, f"in_{name}", engine, db_url, sql, columns)
        progress.advance(1)
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
) -> dict[str, Any]:
    """Read the store and decide every in-scope version's status.

    Leaves the manifest's rows in the DuckDB table ``manifest_rows``; returns counts.
    """
    _load_inputs(con, engine, db_url, schema, progress)
    progress.stage("classifying")
    artifact_scope, project_scope = _scope(con, options)
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

    ref_selects = [
        f"SELECT id, '{ref.reason}' AS reason FROM in_ref_{i}"
        for i, ref in enumerate(schema.references)
    ]
    ref_selects += [
        f"SELECT TRY_CAST(unnest(regexp_extract_all(lower(config), '{_UUID_PATTERN}')) "
        f"AS UUID) AS id, '{CONFIG_REFERENCE}' AS reason FROM in_config_{i}"
        for i in range(len(schema.config_tables))
    ]
    refs_sql = " UNION ALL ".join(ref_selects) or "SELECT NULL::UUID id, NULL reason"
    con.execute(
        f"""
        CREATE TEMP TABLE refs AS
        SELECT id, list_sort(list(DISTINCT reason)) AS ref_reasons
        FROM ({refs_sql}) GROUP BY id
        """
    )
    for i in range(len(schema.references)):
        con.execute(f"DROP TABLE in_ref_{i}")
    _find_overlaps(con)
    con.execute(
        """
        CREATE TEMP TABLE visualization_lists AS
        SELECT artifact_version_id AS id, list(uri ORDER BY uri) AS uris
        FROM in_visualizations GROUP BY artifact_version_id
        """
    )
    con.execute("DROP TABLE in_visualizations")
    cutoff = (started - options.older_than).isoformat(sep=" ")
    keep_n = options.keep_latest or 0
    # The window that ranks versions by recency costs a sort of the whole table:
    # only pay for it when --keep-latest asks for it.
    recency = (
        "row_number() OVER (PARTITION BY v.artifact_id ORDER BY "
        "v.created DESC NULLS FIRST, v.version_number DESC NULLS FIRST, v.id)"
        if keep_n > 0 else "NULL::BIGINT"
    )
    con.execute(
        f"""
        CREATE TEMP TABLE decision AS
        WITH decided AS (
            SELECT v.id, coalesce(refs.ref_reasons, []::VARCHAR[]) AS ref_reasons,
                   [x FOR x IN [
                       CASE WHEN v.save_type = 'preexisting'
                           THEN '{PROTECT_PREEXISTING}' END,
                       CASE WHEN s.store_root IS NULL THEN '{PROTECT_NO_STORE}' END,
                       CASE WHEN s.store_root IS NOT NULL AND (NOT starts_with(
                           v.uri, CASE WHEN s.store_root = '/' THEN '/'
                                       ELSE s.store_root || '/' END)
                           OR rtrim(v.uri, '/') = s.store_root)
                           THEN '{PROTECT_OUTSIDE_ROOT}' END,
                       CASE WHEN v.created IS NULL OR v.created > TIMESTAMP '{cutoff}'
                           THEN '{PROTECT_GRACE}' END,
                       CASE WHEN {recency} <= {keep_n} THEN '{PROTECT_KEEP_LATEST}' END,
                       CASE WHEN o.id IS NOT NULL THEN '{PROTECT_OVERLAP}' END
                   ] IF x IS NOT NULL] AS protect_reasons
            FROM in_versions v
            LEFT JOIN in_stores s ON s.artifact_store_id::UUID = v.artifact_store_id
            LEFT JOIN refs ON refs.id = v.id
            LEFT JOIN overlapping o ON o.id = v.id
            WHERE {in_scope}
        )
        SELECT id,
               CASE WHEN len(ref_reasons) > 0 THEN '{mf.STATUS_REACHABLE}'
                    WHEN len(protect_reasons) > 0 THEN '{mf.STATUS_PROTECTED}'
                    ELSE '{mf.STATUS_CANDIDATE}' END AS status,
               list_concat(ref_reasons, CASE WHEN len(ref_reasons) > 0
                   THEN list_filter(protect_reasons, lambda r: r <> '{PROTECT_OVERLAP}')
                   ELSE protect_reasons END) AS reasons
        FROM decided
        """
    )
    # What the rows below need is in the decision now; free the memory.
    con.execute("DROP TABLE refs")
    # The manifest's rows, in FORMAT.md's column order: a view over the narrow decision
    # and the inputs, which the Parquet writer streams instead of a second full copy.
    con.execute(
        f"""
        CREATE TEMP VIEW manifest_rows AS
        SELECT {_HEX.format('d.id')} AS artifact_version_id,
               {_HEX.format('v.artifact_id')} AS artifact_id, a.name AS artifact_name,
               v.version, v.version_number, p.name AS project,
               {_HEX.format('v.project_id')} AS project_id,
               v.created, v.uri, {_HEX.format('v.artifact_store_id')} AS artifact_store_id,
               s.store_root, v.save_type,
               d.status, d.reasons,
               NULL::BIGINT AS size_bytes, NULL::BIGINT AS file_count,
               coalesce(z.uris, []::VARCHAR[]) AS visualization_uris
        FROM decision d
        JOIN in_versions v ON v.id = d.id
        LEFT JOIN in_artifacts a ON a.id = v.artifact_id
        LEFT JOIN in_projects p ON p.id = v.project_id
        LEFT JOIN in_stores s ON s.artifact_store_id::UUID = v.artifact_store_id
        LEFT JOIN visualization_lists z ON z.id = d.id
        """
    )
    con.execute(
        """
        CREATE TEMP VIEW summary_rows AS
        SELECT d.status, d.reasons, NULL::BIGINT AS size_bytes,
               a.name AS artifact_name, p.name AS project
        FROM decision d
        JOIN in_versions v ON v.id = d.id
        LEFT JOIN in_artifacts a ON a.id = v.artifact_id
        LEFT JOIN in_projects p ON p.id = v.project_id
        """
    )
    total = _scalar(con, "SELECT count(*) FROM in_versions")
    in_scope_count = _scalar(con, "SELECT count(*) FROM decision")
    return {
        "versions_total": total,
        "versions_in_scope": in_scope_count,
        "versions_out_of_scope": total - in_scope_count,
    }


def _scalar(con: Any, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0


def _register_scope(con: Any, name: str, ids: set[str] | None) -> None:
    con.register(name, pa.table({"id": pa.array(sorted(ids or ()), pa.string())}))


def _find_overlaps(con: Any) -> None:
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
    nothing to either test and are left out.
    """
    con.execute(
        """
        CREATE TEMP TABLE overlapping AS
        WITH footprint AS (
            SELECT id, rtrim(uri, '/') || '/' AS p FROM in_versions
            UNION
            SELECT z.artifact_version_id, rtrim(z.uri, '/') || '/'
            FROM in_visualizations z JOIN in_versions v ON v.id = z.artifact_version_id
            WHERE NOT starts_with(rtrim(z.uri, '/') || '/', rtrim(v.uri, '/') || '/')
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
            f"WHERE status = '{mf.STATUS_CANDIDATE}' GROUP BY ALL "
            f"ORDER BY sum(size_bytes) DESC NULLS LAST, count(*) DESC, 1 LIMIT {top}"
        ).fetchall()
    ]
    counts = {status: by_status.get(status, {}).get("versions", 0) for status in (
        mf.STATUS_REACHABLE, mf.STATUS_CANDIDATE, mf.STATUS_PROTECTED)}
    sizes = {status: by_status.get(status, {}).get("bytes") for status in counts}
    return {"counts": counts, "bytes": sizes, "by_reason": by_reason,
            "largest_candidates": largest}


