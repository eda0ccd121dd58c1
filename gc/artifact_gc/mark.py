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
from artifact_gc.errors import UsageError
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.reader import read_table, text_column
from artifact_gc.schema import VERSION_TABLE, ZenMLSchema, discover
from artifact_gc.stores import ArtifactStore, load_artifact_stores

DEFAULT_GRACE = timedelta(hours=24)

#: Reasons that protect a version that nothing refers to (see FORMAT.md).
PROTECT_PREEXISTING = "preexisting"
PROTECT_NO_STORE = "no_artifact_store"
PROTECT_OUTSIDE_ROOT = "outside_store_root"
PROTECT_GRACE = "grace_period"
PROTECT_KEEP_LATEST = "keep_latest"
PROTECT_OVERLAP = "uri_overlap"
CONFIG_REFERENCE = "config_reference"

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
        table, counts = classify(engine, db_url, schema, stores, options, started, progress)
    finally:
        engine.dispose()
    if options.sizes:
        from artifact_gc.sizes import measure_candidates

        table = measure_candidates(table, stores, workers=options.workers, progress=progress)
    progress.stage("writing manifest")
    summary = summarize(table)
    info.counts = {**counts, **summary["counts"]}
    info.bytes = summary["bytes"]
    info.finished_at = mf.utc_now().isoformat()
    mf.write_manifest(table, info, out_url, storage_options=storage_options)
    progress.close()
    return MarkResult(url=out_url, info=info, summary=summary)


def _quote(engine: Any, name: str) -> str:
    return str(engine.dialect.identifier_preparer.quote(name))


def _read_inputs(
    engine: Any, db_url: str, schema: ZenMLSchema, progress: Progress
) -> dict[str, pa.Table]:
    """Every row mark needs, as Arrow tables of text columns."""
    dialect = "sqlite" if engine.url.get_backend_name() == "sqlite" else "mysql"

    def text(expression: str) -> str:
        return text_column(dialect, expression)

    def q(name: str) -> str:
        return _quote(engine, name)

    empty = text("''")
    reads: list[tuple[str, str, list[str]]] = [
        (
            "versions",
            "SELECT " + ", ".join(
                f"{text(c)} AS {c}" for c in (
                    "id", "artifact_id", "version", "version_number", "uri", "save_type",
                    "artifact_store_id", schema.project_column, "created",
                )
            ) + f" FROM {q(VERSION_TABLE)}",
            ["id", "artifact_id", "version", "version_number", "uri", "save_type",
             "artifact_store_id", "project_id", "created"],
        ),
        ("artifacts", f"SELECT {text('id')}, {text('name')} FROM {q('artifact')}",
         ["id", "name"]),
        ("projects", f"SELECT {text('id')}, {text('name')} FROM {q(schema.project_table)}",
         ["id", "name"]),
    ]
    reads.append((
        "visualizations",
        f"SELECT {text('artifact_version_id')}, {text('uri')} "
        f"FROM {q('artifact_visualization')}"
        if "artifact_visualization" in schema.tables
        # A schema without visualizations still yields the (empty) columns we join on.
        else f"SELECT {empty}, {empty} FROM {q(VERSION_TABLE)} WHERE 1 = 0",
        ["artifact_version_id", "uri"],
    ))
    for index, reference in enumerate(schema.references):
        column = q(reference.column)
        reads.append((
            f"ref_{index}",
            f"SELECT {text(column)} FROM {q(reference.table)} WHERE {column} IS NOT NULL",
            ["id"],
        ))
    for index, (table, column) in enumerate(schema.config_tables):
        # Only configurations that name external artifacts can hold an id we need;
        # every step configuration carries the key, most of them with an empty {}.
        col = q(column)
        reads.append((
            f"config_{index}",
            f"SELECT {text(col)} FROM {q(table)} WHERE {col} LIKE '%external_input_artifacts%'"
            f" AND {col} NOT LIKE '%\"external_input_artifacts\":{{}}%'"
            f" AND {col} NOT LIKE '%\"external_input_artifacts\": {{}}%'",
            ["config"],
        ))
    tables: dict[str, pa.Table] = {}
    progress.stage("reading metadata", total=len(reads), unit="tables")
    for name, sql, columns in reads:
        tables[name] = read_table(engine, db_url, sql, columns)
        progress.advance(1)
    return tables


def _scope(
    artifacts: pa.Table, projects: pa.Table, options: MarkOptions
) -> tuple[set[str] | None, set[str] | None]:
    """The artifact ids and project ids in scope (None: no filter on that axis)."""
    project_ids: set[str] | None = None
    if options.projects:
        names = dict(zip(projects["name"].to_pylist(), projects["id"].to_pylist(), strict=True))
        ids = set(projects["id"].to_pylist())
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
        for artifact_id, name in zip(
            artifacts["id"].to_pylist(), artifacts["name"].to_pylist(), strict=True
        ):
            name = name or ""
            included = not options.artifacts or any(
                fnmatch.fnmatchcase(name, pattern) for pattern in options.artifacts
            )
            excluded = any(fnmatch.fnmatchcase(name, p) for p in options.exclude_artifacts)
            if included and not excluded:
                artifact_ids.add(artifact_id)
    return artifact_ids, project_ids


def classify(
    engine: Any,
    db_url: str,
    schema: ZenMLSchema,
    stores: dict[str, ArtifactStore],
    options: MarkOptions,
    started: Any,
    progress: Progress,
) -> tuple[pa.Table, dict[str, Any]]:
    """Read the store and decide every in-scope version's status; return the rows."""
    import duckdb

    inputs = _read_inputs(engine, db_url, schema, progress)
    progress.stage("classifying")
    artifact_scope, project_scope = _scope(inputs["artifacts"], inputs["projects"], options)
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        for name, table in inputs.items():
            con.register(f"in_{name}", table)
        con.register("in_stores", pa.table({
            "artifact_store_id": pa.array([s.id for s in stores.values()], pa.string()),
            "store_root": pa.array([s.root for s in stores.values()], pa.string()),
        }))
        con.execute(
            """
            CREATE TEMP TABLE v AS
            SELECT row_number() OVER () AS rid, id, artifact_id, version,
                   TRY_CAST(version_number AS BIGINT) AS version_number, uri, save_type,
                   artifact_store_id, project_id,
                   TRY_CAST(created AS TIMESTAMP) AS created
            FROM in_versions
            """
        )
        del inputs["versions"]
        _register_scope(con, "scope_artifacts", artifact_scope)
        _register_scope(con, "scope_projects", project_scope)
        scope_filters = []
        if artifact_scope is not None:
            scope_filters.append("artifact_id IN (SELECT id FROM scope_artifacts)")
        if project_scope is not None:
            scope_filters.append("project_id IN (SELECT id FROM scope_projects)")
        in_scope = " AND ".join(scope_filters) or "TRUE"

        ref_selects = [
            f"SELECT id, '{ref.reason}' AS reason FROM in_ref_{i}"
            for i, ref in enumerate(schema.references)
        ]
        ref_selects += [
            f"SELECT replace(unnest(regexp_extract_all(lower(config), '{_UUID_PATTERN}')), "
            f"'-', '') AS id, '{CONFIG_REFERENCE}' AS reason FROM in_config_{i}"
            for i in range(len(schema.config_tables))
        ]
        refs_sql = " UNION ALL ".join(ref_selects) or "SELECT NULL::VARCHAR id, NULL reason"
        con.execute(
            f"""
            CREATE TEMP TABLE refs AS
            SELECT id, list_sort(list_distinct(list(reason))) AS ref_reasons
            FROM ({refs_sql}) GROUP BY id
            """
        )
        cutoff = (started - options.older_than).isoformat(sep=" ")
        keep_n = options.keep_latest or 0
        con.execute(
            f"""
            CREATE TEMP TABLE decided AS
            WITH ranked AS (
                SELECT v.*, row_number() OVER (
                    PARTITION BY artifact_id
                    ORDER BY created DESC NULLS FIRST, version_number DESC NULLS FIRST, id
                ) AS recency
                FROM v
            )
            SELECT r.*, s.store_root,
                   coalesce(refs.ref_reasons, []::VARCHAR[]) AS ref_reasons,
                   [x FOR x IN [
                       CASE WHEN r.save_type = 'preexisting' THEN '{PROTECT_PREEXISTING}' END,
                       CASE WHEN s.store_root IS NULL THEN '{PROTECT_NO_STORE}' END,
                       CASE WHEN s.store_root IS NOT NULL AND NOT starts_with(
                           r.uri, CASE WHEN s.store_root = '/' THEN '/'
                                       ELSE s.store_root || '/' END)
                           OR rtrim(r.uri, '/') = s.store_root
                           THEN '{PROTECT_OUTSIDE_ROOT}' END,
                       CASE WHEN r.created IS NULL OR r.created > TIMESTAMP '{cutoff}'
                           THEN '{PROTECT_GRACE}' END,
                       CASE WHEN r.recency <= {keep_n} THEN '{PROTECT_KEEP_LATEST}' END
                   ] IF x IS NOT NULL] AS protect_reasons
            FROM ranked r
            LEFT JOIN in_stores s USING (artifact_store_id)
            LEFT JOIN refs ON refs.id = r.id
            WHERE {in_scope}
            """
        )
        _protect_overlaps(con)
        rows = con.sql(
            f"""
            SELECT d.id AS artifact_version_id, d.artifact_id, a.name AS artifact_name,
                   d.version, d.version_number, p.name AS project, d.project_id,
                   d.created, d.uri, d.artifact_store_id, d.store_root, d.save_type,
                   CASE WHEN len(d.ref_reasons) > 0 THEN '{mf.STATUS_REACHABLE}'
                        WHEN len(d.protect_reasons) > 0 OR o.rid IS NOT NULL
                            THEN '{mf.STATUS_PROTECTED}'
                        ELSE '{mf.STATUS_CANDIDATE}' END AS status,
                   list_concat(d.ref_reasons, d.protect_reasons,
                       CASE WHEN o.rid IS NOT NULL THEN ['{PROTECT_OVERLAP}']
                            ELSE []::VARCHAR[] END) AS reasons,
                   NULL::BIGINT AS size_bytes, NULL::BIGINT AS file_count,
                   coalesce(viz.uris, []::VARCHAR[]) AS visualization_uris
            FROM decided d
            LEFT JOIN in_artifacts a ON a.id = d.artifact_id
            LEFT JOIN in_projects p ON p.id = d.project_id
            LEFT JOIN overlapping o ON o.rid = d.rid
            LEFT JOIN (
                SELECT artifact_version_id AS id, list_sort(list(uri)) AS uris
                FROM in_visualizations GROUP BY artifact_version_id
            ) viz ON viz.id = d.id
            ORDER BY d.id
            """
        ).to_arrow_table()
        total, = con.execute("SELECT count(*) FROM v").fetchone() or (0,)
    finally:
        con.close()
    counts = {
        "versions_total": int(total),
        "versions_in_scope": rows.num_rows,
        "versions_out_of_scope": int(total) - rows.num_rows,
    }
    return rows, counts


def _register_scope(con: Any, name: str, ids: set[str] | None) -> None:
    con.register(name, pa.table({"id": pa.array(sorted(ids or ()), pa.string())}))


def _protect_overlaps(con: Any) -> None:
    """Find would-be candidates whose files overlap any other version's files.

    A version's footprint is its URI plus its visualization URIs. A would-be candidate
    is protected when any path of its footprint equals, contains or lies inside a path
    of another version's footprint: whatever that other version's status, deleting
    the directory would delete files it still uses, or will use if it comes back to
    life before its own turn. Paths are compared by 64-bit hashes of whole path
    prefixes; a collision can only protect a version that did not need it, never
    expose one.
    """
    con.execute(
        """
        CREATE TEMP TABLE footprint AS
        SELECT rid, path, string_split(path, '/') AS parts,
               len(string_split(path, '/')) AS depth, hash(path) AS h
        FROM (
            SELECT rid, rtrim(uri, '/') AS path FROM v
            UNION ALL
            SELECT v.rid, rtrim(z.uri, '/') FROM in_visualizations z
            JOIN v ON v.id = z.artifact_version_id
        )
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE pending AS
        SELECT f.* FROM footprint f JOIN decided d ON d.rid = f.rid
        WHERE len(d.ref_reasons) = 0 AND len(d.protect_reasons) = 0
        """
    )
    # (a) a pending path equals, or lies inside, another version's path: one of its
    # prefixes (itself included) is that other path.
    # (b) a pending path contains another version's path: one of the other path's
    # proper prefixes is the pending path. Only prefix depths that can match are built.
    con.execute(
        """
        CREATE TEMP TABLE overlapping AS
        WITH other_depths AS (SELECT DISTINCT depth AS d FROM footprint),
             pending_depths AS (SELECT DISTINCT depth AS d FROM pending),
             pending_prefixes AS (
                 SELECT p.rid, hash(array_to_string(p.parts[1:od.d], '/')) AS h, od.d
                 FROM pending p JOIN other_depths od ON od.d <= p.depth
             ),
             inside AS (
                 SELECT DISTINCT pp.rid FROM pending_prefixes pp
                 JOIN footprint f ON f.h = pp.h AND f.depth = pp.d AND f.rid <> pp.rid
             ),
             other_prefixes AS (
                 SELECT f.rid, hash(array_to_string(f.parts[1:pd.d], '/')) AS h, pd.d
                 FROM footprint f JOIN pending_depths pd ON pd.d < f.depth
             ),
             contains AS (
                 SELECT DISTINCT p.rid FROM other_prefixes op
                 JOIN pending p ON p.h = op.h AND p.depth = op.d AND p.rid <> op.rid
             )
        SELECT rid FROM inside UNION SELECT rid FROM contains
        """
    )


def summarize(table: pa.Table, top: int = 10) -> dict[str, Any]:
    """Counts and bytes by status and reason, and the largest candidate artifacts."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("m", table)
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
    finally:
        con.close()
    counts = {status: by_status.get(status, {}).get("versions", 0) for status in (
        mf.STATUS_REACHABLE, mf.STATUS_CANDIDATE, mf.STATUS_PROTECTED)}
    sizes = {status: by_status.get(status, {}).get("bytes") for status in counts}
    return {"counts": counts, "bytes": sizes, "by_reason": by_reason,
            "largest_candidates": largest}


