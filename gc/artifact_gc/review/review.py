"""Offline review of manifests: show, query, filter, diff and history.

Everything here reads manifests (and their sweep journals) in place with DuckDB, on
any fsspec URL, through :func:`artifact_gc.manifest.duckdb_for`; a large manifest on
S3 is read with range requests, never downloaded whole. Nothing here touches a
metadata database or an artifact store. The one function that writes,
:func:`filter_manifest`, can only narrow a manifest's candidates.

The review queries live in ``artifact_gc/review/queries/*.sql`` (shipped identically as
``manifests/queries/*.sql``) so that anyone with the ``duckdb`` CLI can run them
against a view named ``manifest``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import pyarrow as pa

from artifact_gc import __version__
from artifact_gc.errors import ManifestRefused, UsageError
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.reasons import (
    PROTECT_FILTERED_OUT,
    STATUS_CANDIDATE,
    STATUS_PROTECTED,
    STATUS_REACHABLE,
)
from artifact_gc.metadb.fingerprint import DatabaseFingerprint
from artifact_gc.sweep.journal import EVENT_FAILED, FINAL_EVENTS, Journal

#: ``gc show --by`` dimension -> the review query that answers it.
DIMENSIONS: dict[str, str] = {
    "status": "by_status",
    "reason": "by_reason",
    "project": "by_project",
    "artifact": "by_artifact",
    "age": "by_age",
}

#: The reason ``gc filter`` gives a candidate that its predicate left out.

SWEEP_NONE = "none"
SWEEP_PARTIAL = "partial"
SWEEP_DONE = "done"
SWEEP_FAILED = "failed"

StorageOptions = dict[str, Any] | None


# ---------------------------------------------------------------------------
# The review queries
# ---------------------------------------------------------------------------


def query_names() -> list[str]:
    """The names of the shipped review queries (file stems), sorted."""
    directory = resources.files("artifact_gc.review") / "queries"
    return sorted(
        entry.name[: -len(".sql")] for entry in directory.iterdir()
        if entry.name.endswith(".sql")
    )


def load_query(name: str) -> str:
    """The text of a shipped review query (``by_status``, ``candidate_age``, ...)."""
    path = resources.files("artifact_gc.review") / "queries" / f"{name}.sql"
    if not path.is_file():
        raise UsageError(f"no review query named {name!r}; known: {', '.join(query_names())}")
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------
# An open manifest
# ---------------------------------------------------------------------------


def _register(connection: Any, url: str, storage_options: StorageOptions) -> None:
    """Let ``connection`` read ``url`` in place (a second manifest on another fs)."""
    if "://" not in url or url.startswith("file://"):
        return
    fs, _ = mf._url_to_fs(url, storage_options)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if not connection.filesystem_is_registered(protocol):
        connection.register_filesystem(fs)


@dataclass
class Review:
    """A manifest opened for review: a DuckDB connection with a view ``manifest``
    (and ``journal`` and ``sweep_state`` when the manifest has journal segments)."""

    url: str
    info: mf.ManifestInfo
    connection: Any
    journal: list[str] = field(default_factory=list)

    def table(self, sql: str, **variables: Any) -> pa.Table:
        """Run ``sql`` with DuckDB variables set; return the whole result."""
        for name, value in variables.items():
            self.connection.execute(f"SET VARIABLE {name} = ?", [value])
        try:
            return self.connection.sql(sql).to_arrow_table()
        finally:
            for name in variables:
                self.connection.execute(f"RESET VARIABLE {name}")

    def rows(self, sql: str, **variables: Any) -> list[dict[str, Any]]:
        return self.table(sql, **variables).to_pylist()  # type: ignore[no-any-return]

    def run(self, name: str, **variables: Any) -> list[dict[str, Any]]:
        """Run the shipped review query ``name``."""
        return self.rows(load_query(name), **variables)


@contextmanager
def open_review(url: str, storage_options: StorageOptions = None) -> Iterator[Review]:
    """Open the manifest at ``url`` for review; refuse a file that is not one of ours."""
    info = mf.read_info(url, storage_options)
    mf.check_format(info, url)
    journal = Journal(url, storage_options)
    segments = journal.segments()
    with mf.duckdb_for(url, storage_options) as connection:
        connection.execute(
            f"CREATE VIEW manifest AS SELECT * FROM read_parquet({mf.parquet_source(url)})"
        )
        if segments:
            # The journal's own reader and item state, so review and sweep read the
            # same segments the same way.
            journal.register_state(connection)
        yield Review(url=url, info=info, connection=connection, journal=segments)


def checksum_ok(review: Review) -> bool:
    """Whether the manifest's candidate rows still match its checksum."""
    if not review.info.checksum:
        return False
    actual = mf.candidate_checksum(review.connection, "SELECT * FROM manifest", review.info)
    return actual == review.info.checksum


# ---------------------------------------------------------------------------
# Sweep progress (from the journal)
# ---------------------------------------------------------------------------


@dataclass
class SweepProgress:
    """What the journal says about the sweep of a manifest."""

    state: str  # none, partial, done or failed
    candidates: int
    by_state: dict[str, int]
    bytes_freed: int | None
    sweeps: int
    last_event_at: str | None


def sweep_progress(review: Review) -> SweepProgress:
    """The sweep state of an open manifest: ``none`` without a journal, ``failed`` if
    any item's last event is a failure, ``done`` when every candidate reached a final
    event, ``partial`` otherwise."""
    candidates = int(review.connection.execute(
        f"SELECT count(*) FROM manifest WHERE status = '{STATUS_CANDIDATE}'"
    ).fetchall()[0][0])
    if not review.journal:
        return SweepProgress(SWEEP_NONE, candidates, {"pending": candidates}, None, 0, None)
    by_state: dict[str, int] = {}
    freed: int | None = None
    for row in review.run("sweep_progress"):
        by_state[row["state"]] = int(row["versions"])
        if row["bytes_freed"] is not None:
            freed = (freed or 0) + int(row["bytes_freed"])
    sweeps, last = review.connection.execute(
        "SELECT count(DISTINCT sweep_id), max(\"at\")::VARCHAR FROM journal"
    ).fetchall()[0]
    if by_state.get(EVENT_FAILED):
        state = SWEEP_FAILED
    elif any(n and s not in FINAL_EVENTS for s, n in by_state.items()):
        state = SWEEP_PARTIAL
    else:
        state = SWEEP_DONE
    return SweepProgress(state, candidates, by_state, freed, int(sweeps), last)


# ---------------------------------------------------------------------------
# gc show
# ---------------------------------------------------------------------------


@dataclass
class ShowResult:
    """Everything ``gc show`` prints about one manifest."""

    url: str
    info: dict[str, Any]
    checksum_ok: bool
    by: str
    rows: list[dict[str, Any]]
    largest_candidates: list[dict[str, Any]]
    candidate_age: list[dict[str, Any]]
    sizes_measured: bool
    sweep: SweepProgress

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def show(
    url: str, *, by: str = "status", top: int = 10, storage_options: StorageOptions = None
) -> ShowResult:
    """Counts and bytes of a manifest by one dimension, its largest candidate artifacts,
    the candidates' age histogram, the mark's parameters and fingerprint."""
    if by not in DIMENSIONS:
        raise UsageError(f"--by must be one of {', '.join(DIMENSIONS)}, not {by!r}")
    if top < 1:
        raise UsageError("--top must be 1 or more")
    with open_review(url, storage_options) as review:
        as_of = review.info.started_at or None
        age_vars: dict[str, Any] = {"as_of": as_of} if as_of else {}
        rows = review.run(DIMENSIONS[by], top=top, **age_vars)
        for row in rows:
            row.pop("bucket_order", None)
        largest = review.run("largest_candidates", top=top)
        ages = review.run("candidate_age", **age_vars)
        for row in ages:
            row.pop("bucket_order", None)
        measured = bool(review.connection.execute(
            "SELECT count(size_bytes) > 0 FROM manifest"
        ).fetchall()[0][0])
        return ShowResult(
            url=url,
            info=review.info.as_dict(),
            checksum_ok=checksum_ok(review),
            by=by,
            rows=rows,
            largest_candidates=largest,
            candidate_age=ages,
            sizes_measured=measured or bool(review.info.parameters.get("sizes")),
            sweep=sweep_progress(review),
        )


# ---------------------------------------------------------------------------
# gc query
# ---------------------------------------------------------------------------



def _user_relation(review: Review, sql: str) -> Any:
    import duckdb

    try:
        return review.connection.sql(sql)
    except duckdb.Error as exc:
        raise UsageError(f"the query failed: {exc}") from exc


def query(url: str, sql: str, *, storage_options: StorageOptions = None) -> pa.Table:
    """Run DuckDB ``sql`` over the view ``manifest`` (and ``journal`` when the manifest
    has a journal); return the result as an Arrow table."""
    with open_review(url, storage_options) as review:
        relation = _user_relation(review, sql)
        if relation is None:
            raise UsageError("the query returned no result (it must be a SELECT or similar)")
        return relation.to_arrow_table()


def export_query(
    url: str, sql: str, out: str, fmt: str, *, storage_options: StorageOptions = None
) -> int:
    """Run ``sql`` like :func:`query` and stream its result to ``out`` (any fsspec URL)
    as ``csv``, ``json`` (an array of objects) or ``parquet``; return the row count."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if fmt not in ("csv", "json", "parquet"):
        raise UsageError(f"cannot write format {fmt!r} to a file; use csv, json or parquet")
    with open_review(url, storage_options) as review:
        relation = _user_relation(review, sql)
        if relation is None:
            raise UsageError("the query returned no result (it must be a SELECT or similar)")
        reader = relation.to_arrow_reader(100_000)
        from artifact_gc.manifest.locations import writing

        with writing(out, "query result"):
            fs, path = mf._url_to_fs(out, storage_options)
            opened = fs.open(path, "wb")
        count = 0
        with opened as handle:
            if fmt == "parquet":
                with pq.ParquetWriter(handle, reader.schema, compression="zstd") as writer:
                    for batch in reader:
                        writer.write_batch(batch)
                        count += batch.num_rows
            elif fmt == "csv":
                writer = None
                for batch in reader:
                    flat = _flat_for_csv(batch)
                    if writer is None:
                        writer = pcsv.CSVWriter(handle, flat.schema)
                    writer.write_batch(flat)
                    count += batch.num_rows
                if writer is None:
                    empty = pa.RecordBatch.from_pylist([], schema=reader.schema)
                    writer = pcsv.CSVWriter(handle, _flat_for_csv(empty).schema)
                writer.close()
            else:
                handle.write(b"[")
                for batch in reader:
                    for row in batch.to_pylist():
                        handle.write((",\n" if count else "\n").encode())
                        handle.write(json.dumps(row, default=str, sort_keys=True).encode())
                        count += 1
                handle.write(b"\n]\n")
    return count


def _flat_for_csv(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Lists become ``;``-joined text and other nested values JSON: CSV has no nesting."""
    columns, names = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            column = pa.array(
                [None if v is None else ";".join("" if x is None else str(x) for x in v)
                 for v in column.to_pylist()], pa.string())
        elif pa.types.is_nested(kind) or pa.types.is_map(kind):
            column = pa.array([None if v is None else json.dumps(v, default=str)
                               for v in column.to_pylist()], pa.string())
        columns.append(column)
        names.append(name)
    return pa.RecordBatch.from_arrays(columns, names=names)


# ---------------------------------------------------------------------------
# gc filter
# ---------------------------------------------------------------------------


@dataclass
class FilterResult:
    """A derived manifest written by ``gc filter``."""

    url: str
    info: mf.ManifestInfo
    parent_url: str
    candidates_before: int
    candidates_after: int

    @property
    def filtered_out(self) -> int:
        return self.candidates_before - self.candidates_after


def _check_predicate(review: Review, predicate: str) -> str:
    """Refuse anything but one boolean expression over the manifest's columns; return
    it as DuckDB's parser renders it, the only form that is ever spliced into SQL."""
    import duckdb

    if not predicate.strip():
        raise UsageError("--where needs a predicate, e.g. \"project <> 'research'\"")
    # Parsed on its own first: text that closes the parentheses around it or comments
    # out the rest ("x) OR (y", "x --") is not one expression, and its rendering drops
    # comments, so what is checked below is exactly what the filter runs.
    try:
        predicate = str(duckdb.SQLExpression(predicate))
    except duckdb.Error as exc:
        raise UsageError(f"--where does not parse: {exc}") from exc
    probe = f"SELECT ({predicate}) AS keep FROM manifest"
    try:
        statements = review.connection.extract_statements(probe)
    except duckdb.Error as exc:
        raise UsageError(f"--where does not parse: {exc}") from exc
    if len(statements) != 1 or str(statements[0].type) != "StatementType.SELECT":
        raise UsageError("--where must be a single SQL predicate, not statements")
    try:
        described = review.connection.sql(f"DESCRIBE {probe}").fetchall()
    except duckdb.Error as exc:
        raise UsageError(f"--where is not a valid predicate over the manifest: {exc}") from exc
    if len(described) != 1 or described[0][1] != "BOOLEAN":
        kind = described[0][1] if described else "nothing"
        raise UsageError(f"--where must be a boolean predicate; it gives {kind}")
    return predicate


def filter_manifest(
    url: str,
    predicate: str,
    out: str,
    *,
    storage_options: StorageOptions = None,
    overwrite: bool = False,
) -> FilterResult:
    """Write a derived manifest in which only the candidates matching ``predicate``
    remain candidates; the others become ``protected`` with reason ``filtered_out``.

    Every row is kept so that the review stays complete. The derived manifest records
    its lineage and carries a checksum of its own, so a sweep accepts it.
    """
    if out.rstrip("/") == url.rstrip("/"):
        raise UsageError("-o must name a new manifest, not the one being filtered")
    fs, path = mf._url_to_fs(out, storage_options)
    if not overwrite and fs.exists(path):
        raise UsageError(f"{out} exists; choose another name or pass --force")
    # The parent must pass its own checksum: signing a derived manifest of a tampered
    # parent would launder the tampering past the sweep's check.
    parent = mf.verify(url, storage_options)
    with open_review(url, storage_options) as review:
        expression = _check_predicate(review, predicate)
        from artifact_gc.manifest.locations import check_writable

        check_writable(out, storage_options=storage_options)
        # The only status this can write is `protected`, and only over a candidate: the
        # set of candidates can shrink, never grow. A predicate that is NULL for a row
        # does not keep it a candidate.
        narrow = (
            f"status = '{STATUS_CANDIDATE}' AND NOT coalesce(({expression}), false)"
        )
        review.connection.execute(
            "CREATE TEMP VIEW filtered AS SELECT * REPLACE ("
            f"  CASE WHEN {narrow} THEN '{STATUS_PROTECTED}' ELSE status END AS status,"
            f"  CASE WHEN {narrow} THEN"
            f"  list_append(coalesce(reasons, []), '{PROTECT_FILTERED_OUT}')"
            "   ELSE reasons END AS reasons"
            ") FROM manifest"
        )
        counts, nbytes = _status_totals(review.connection, "manifest")
        after, after_bytes = _status_totals(review.connection, "filtered")
        info = mf.ManifestInfo.from_dict(parent.as_dict())
        info.mark_id = mf.new_mark_id()
        info.counts = {**parent.counts, **after}
        info.bytes = after_bytes
        info.lineage = [*parent.lineage, {
            "parent_mark_id": parent.mark_id,
            "parent_checksum": parent.checksum,
            "predicate": predicate,
            "at": mf.utc_now().isoformat(),
        }]
        info.checksum = None
        info.complete = False
        info.tool_version = __version__
        mf.write_manifest_from(
            review.connection, "SELECT * FROM filtered ORDER BY artifact_version_id", info,
            out, storage_options=storage_options,
        )
    return FilterResult(out, info, url, counts[STATUS_CANDIDATE],
                        after[STATUS_CANDIDATE])


def _status_totals(
    connection: Any, view: str
) -> tuple[dict[str, int], dict[str, int | None]]:
    found = {
        status: (int(n), None if b is None else int(b))
        for status, n, b in connection.execute(
            f"SELECT status, count(*), sum(size_bytes)::BIGINT FROM {view} GROUP BY status"
        ).fetchall()
    }
    statuses = (STATUS_REACHABLE, STATUS_CANDIDATE, STATUS_PROTECTED)
    return (
        {s: found.get(s, (0, None))[0] for s in statuses},
        {s: found.get(s, (0, None))[1] for s in statuses},
    )


# ---------------------------------------------------------------------------
# gc diff
# ---------------------------------------------------------------------------

#: Diff categories, in the order they are reported.
DIFF_CATEGORIES = ("new_candidate", "revived", "disappeared", "appeared")

_DIFF_SQL = """
WITH a AS (SELECT * FROM read_parquet({a})),
     b AS (SELECT * FROM read_parquet({b})),
     joined AS (
         SELECT
             coalesce(a.artifact_version_id, b.artifact_version_id) AS artifact_version_id,
             coalesce(b.artifact_name, a.artifact_name) AS artifact_name,
             coalesce(b.project, a.project) AS project,
             a.status AS status_a,
             b.status AS status_b,
             b.reasons AS reasons_b,
             CASE
                 WHEN b.status = 'candidate' AND a.status IS DISTINCT FROM 'candidate'
                     THEN 'new_candidate'
                 WHEN a.status = 'candidate' AND b.status IS NOT NULL
                      AND b.status <> 'candidate' THEN 'revived'
                 WHEN b.artifact_version_id IS NULL THEN 'disappeared'
                 WHEN a.artifact_version_id IS NULL THEN 'appeared'
             END AS change,
             coalesce(b.size_bytes, a.size_bytes) AS size_bytes,
             coalesce(b.uri, a.uri) AS uri
         FROM a FULL OUTER JOIN b USING (artifact_version_id)
     )
SELECT * FROM joined WHERE change IS NOT NULL
"""


@dataclass
class DiffResult:
    """What changed between two marks of the same store."""

    a: str
    b: str
    mark_a: str
    mark_b: str
    totals: dict[str, dict[str, int | None]]
    rows: pa.Table

    @property
    def empty(self) -> bool:
        return int(self.rows.num_rows) == 0

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        rows = self.rows if limit is None else self.rows.slice(0, limit)
        return {"a": self.a, "b": self.b, "mark_a": self.mark_a, "mark_b": self.mark_b,
                "totals": self.totals, "rows": rows.to_pylist()}


def diff(a: str, b: str, *, storage_options: StorageOptions = None) -> DiffResult:
    """Compare the marks ``a`` (older) and ``b`` (newer) of one store.

    ``new_candidate``: a candidate in B that was not one in A (or not in A at all);
    ``revived``: a candidate in A that B keeps; ``disappeared``: in A, gone from B
    (swept, deleted or out of B's scope); ``appeared``: new in B and not a candidate.
    """
    info_a = mf.read_info(a, storage_options)
    mf.check_format(info_a, a)
    info_b = mf.read_info(b, storage_options)
    mf.check_format(info_b, b)
    # The same rule as the sweep's: two marks compare only if they describe one store.
    store_a = DatabaseFingerprint.from_dict(info_a.database)
    store_b = DatabaseFingerprint.from_dict(info_b.database)
    if not store_a.same_store(store_b):
        raise ManifestRefused(
            f"{a} and {b} are marks of different stores "
            f"({store_a.describe()} vs {store_b.describe()})",
            b, "different_store",
        )
    with mf.duckdb_for(a, storage_options) as connection:
        _register(connection, b, storage_options)
        rows = connection.sql(
            _DIFF_SQL.format(a=mf.parquet_source(a), b=mf.parquet_source(b))
            + " ORDER BY change, size_bytes DESC NULLS LAST, artifact_name, artifact_version_id"
        ).to_arrow_table()
        connection.register("changes", rows)
        found = {
            change: {"versions": int(n), "bytes": None if nb is None else int(nb)}
            for change, n, nb in connection.execute(
                "SELECT change, count(*), sum(size_bytes)::BIGINT FROM changes GROUP BY change"
            ).fetchall()
        }
    totals: dict[str, dict[str, int | None]] = {
        change: found.get(change, {"versions": 0, "bytes": None})
        for change in DIFF_CATEGORIES
    }
    return DiffResult(a, b, info_a.mark_id, info_b.mark_id, totals, rows)


# ---------------------------------------------------------------------------
# gc history
# ---------------------------------------------------------------------------


@dataclass
class HistoryEntry:
    """One manifest found in a manifests location."""

    url: str
    mark_id: str | None = None
    started_at: str | None = None
    store_id: str | None = None
    database: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    bytes: dict[str, Any] = field(default_factory=dict)
    derived: bool = False
    sweep: str = SWEEP_NONE
    swept: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe_database(fingerprint: dict[str, Any]) -> str:
    dialect = fingerprint.get("dialect") or "?"
    where = fingerprint.get("host") or ""
    if fingerprint.get("port"):
        where += f":{fingerprint['port']}"
    database = fingerprint.get("database") or ""
    return f"{dialect}://{where}/{database}" if where else f"{dialect}:{database}"


def list_manifests(location: str, storage_options: StorageOptions = None) -> list[str]:
    """The URLs of the ``*.parquet`` files directly in ``location``."""
    fs, path = mf._url_to_fs(location, storage_options)
    if not fs.exists(path):
        raise UsageError(f"{location} does not exist")
    if not fs.isdir(path):
        raise UsageError(f"{location} is not a directory")
    found = sorted(fs.glob(path.rstrip("/") + "/*" + ".parquet"))
    if "://" in location and not location.startswith("file://"):
        return [fs.unstrip_protocol(p) for p in found]
    return [str(p) for p in found]


def history(location: str, *, storage_options: StorageOptions = None) -> list[HistoryEntry]:
    """The marks and sweeps found in a manifests location, oldest first. A file that
    is not a readable manifest is listed with its error, never skipped silently."""
    entries: list[HistoryEntry] = []
    for url in list_manifests(location, storage_options):
        entry = HistoryEntry(url=url)
        try:
            with open_review(url, storage_options) as review:
                info = review.info
                entry.mark_id = info.mark_id
                entry.started_at = info.started_at
                entry.store_id = info.database.get("store_id")
                entry.database = _describe_database(info.database)
                entry.counts = {k: info.counts.get(k) for k in (
                    STATUS_REACHABLE, STATUS_PROTECTED, STATUS_CANDIDATE)}
                entry.bytes = dict(info.bytes)
                entry.derived = bool(info.lineage)
                progress = sweep_progress(review)
                entry.sweep = progress.state
                entry.swept = progress.by_state.get("deleted", 0)
        except ManifestRefused as exc:
            entry.error = exc.message
        entries.append(entry)
    entries.sort(key=lambda e: (e.started_at or "", e.url))
    return entries
