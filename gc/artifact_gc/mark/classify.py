"""The classification: every in-scope version's status and reasons, in DuckDB.

A version is ``reachable`` when something refers to it, else ``protected`` when a
policy or a safety rule keeps it, else a ``candidate``. The rows are SQL over the
tables that inputs.py loads; they are computed range by range of ids, so a part's
joins stay small however large the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from artifact_gc.errors import SchemaError
from artifact_gc.manifest.reasons import (
    ITEM_KIND_VERSION,
    PROTECT_GRACE,
    PROTECT_KEEP_LATEST,
    PROTECT_NO_STORE,
    PROTECT_OUTSIDE_ROOT,
    PROTECT_OVERLAP,
    PROTECT_PREEXISTING,
    PROTECT_TAG_PREFIX,
    REASON_CONFIG,
    STATUS_CANDIDATE,
    STATUS_PROTECTED,
    STATUS_REACHABLE,
)
from artifact_gc.mark.footprints import find_overlaps
from artifact_gc.mark.ids import hex_id, id_ranges, in_range, sql_uuid
from artifact_gc.mark.inputs import load_inputs
from artifact_gc.mark.scope import in_scope_filter
from artifact_gc.paths import INSIDE_ROOT
from artifact_gc.progress import Progress
from artifact_gc.zenml.references import CONFIG_ID_RUN, CONFIG_ID_WHOLE
from artifact_gc.zenml.referrers import (
    KNOWN_REFERRERS,
    MAX_REFERRERS,
    MORE_PREFIX,
    RELEASED_SNAPSHOT,
    SCHEDULE,
    SNAPSHOT,
)
from artifact_gc.zenml.schema import ZenMLSchema
from artifact_gc.zenml.snapshots import Snapshots
from artifact_gc.zenml.stores import ArtifactStore

if TYPE_CHECKING:
    from artifact_gc.mark.options import MarkOptions

#: Reasons are bits of one BIGINT mask per version.
MAX_REASONS = 62


@dataclass(frozen=True)
class Classification:
    """Counts of versions, and the manifest's rows as SQL over consecutive id ranges
    (in id order). The DuckDB view ``manifest_rows`` holds the same rows whole."""

    counts: dict[str, int]
    parts: list[str]


def classify(
    con: Any,
    engine: Any,
    db_url: str,
    schema: ZenMLSchema,
    stores: dict[str, ArtifactStore],
    options: MarkOptions,
    started: datetime,
    progress: Progress,
    *,
    inputs_loaded: bool = False,
    snapshots: Snapshots | None = None,
) -> Classification:
    """Read the store and decide every in-scope version's status.

    ``inputs_loaded``: the caller has run :func:`load_inputs` already (inside its
    snapshot of the store) and passes the ``snapshots`` it returned; nothing is read
    here then."""
    if not inputs_loaded:
        snapshots = load_inputs(con, engine, db_url, schema, progress,
                                keep_tags=options.keep_tags,
                                release_snapshots=options.release_unreachable_snapshots)
    elif snapshots is None:
        raise ValueError("classify(inputs_loaded=True) needs the snapshots load_inputs read")
    progress.stage("classifying")
    _in_id_order(con, schema)
    INSIDE_ROOT.install(con)
    in_scope = in_scope_filter(con, options, schema.scope_noun)
    _name_tables(con)
    con.register("in_stores", pa.table({
        "artifact_store_id": pa.array([s.id for s in stores.values()], pa.string()),
        "store_root": pa.array([s.root for s in stores.values()], pa.string()),
    }))
    cutoff = (started - options.older_than).isoformat(sep=" ")
    _config_references(con, schema, snapshots,
                       cutoff if options.release_unreachable_snapshots else None)
    reason_list = _reference_masks(con, schema)
    name_referrers(con, schema)
    _tagged(con, bool(options.keep_tags))
    in_scope_count = _scalar(con, f"SELECT count(*) FROM in_versions v WHERE {in_scope}")
    find_overlaps(con, _scalar(con, "SELECT count(*) FROM in_versions"))
    _keep_latest(con, in_scope, options.keep_latest or 0)
    # The manifest's rows, in FORMAT.md's column order, as SQL over one range of ids.
    # The whole view serves --sizes; a plain mark computes and writes it range by range.
    con.execute("CREATE TEMP VIEW manifest_rows AS "
                + rows_sql(in_scope, cutoff, reason_list, None, None))
    total = _scalar(con, "SELECT count(*) FROM in_versions")
    counts = {
        "versions_total": total,
        "versions_in_scope": in_scope_count,
        "versions_out_of_scope": total - in_scope_count,
    }
    parts = [rows_sql(in_scope, cutoff, reason_list, sql_uuid(lo), sql_uuid(hi))
             for lo, hi in id_ranges(in_scope_count)]
    return Classification(counts, parts)


def _in_id_order(con: Any, schema: ZenMLSchema) -> None:
    """Store the tables that the parts read range by range in id order.

    Each part of the rows (rows_sql) takes one range of ids from every table. Stored
    in id order, a range lies in a few row groups, and DuckDB's min/max per row group
    skips the others; stored as read, every part scans every row group. At a million
    versions the tables outgrow the memory limit and are kept in DuckDB's temporary
    files, so each skipped row group is also a read from disk saved, part after part.
    Sorting is only a reordering: no row is added, lost or changed.
    """
    tables = [("in_versions", "id"), ("in_visualizations", "artifact_version_id")]
    tables += [(f"in_ref_{i}", "id") for i in range(len(schema.references))]
    for table, key in tables:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table} ORDER BY {key}")


def _name_tables(con: Any) -> None:
    """``artifact_names`` and ``project_names``: ids as the manifest spells them, once
    per artifact and project rather than once per version."""
    for source, target in (("in_artifacts", "artifact_names"), ("in_projects", "project_names")):
        con.execute(f"CREATE TEMP TABLE {target} AS "
                    f"SELECT id, name, {hex_id('id')} AS hex FROM {source}")
        con.execute(f"DROP TABLE {source}")


def _reference_masks(con: Any, schema: ZenMLSchema) -> str:
    """Build ``refs (id, mask)``: every referenced version and its reasons.

    Every reason is one bit, in alphabetical order, so that a version's reasons are
    one integer OR-ed together (cheaper than a list of distinct strings per id) and
    unpacked, already sorted, only for the rows written. Returns the SQL list of
    reasons, bit ``i`` of a mask standing for element ``i + 1``.
    """
    reasons = sorted({ref.reason for ref in schema.references}
                     | ({REASON_CONFIG} if schema.config_tables else set()))
    if len(reasons) > MAX_REASONS:
        raise SchemaError(f"{len(reasons)} kinds of references to artifact versions; "
                          f"mark handles at most {MAX_REASONS}")
    bit = {reason: 1 << index for index, reason in enumerate(reasons)}
    ref_selects = [
        f"SELECT id, {bit[ref.reason]}::BIGINT AS bit FROM in_ref_{i}"
        for i, ref in enumerate(schema.references)
    ]
    if schema.config_tables:
        # A configuration keeps what it names unless its snapshot was released
        # (--release-unreachable-snapshots): nothing can run that snapshot again.
        ref_selects.append(
            f"SELECT c.id, {bit[REASON_CONFIG]}::BIGINT AS bit FROM config_refs c "
            "ANTI JOIN released_snapshots r ON r.id = c.snapshot")
    refs_sql = " UNION ALL ".join(ref_selects) or "SELECT NULL::UUID id, 0::BIGINT bit"
    con.execute(
        f"CREATE TEMP TABLE refs AS SELECT id, bit_or(bit) AS mask FROM ({refs_sql}) "
        "WHERE id IS NOT NULL GROUP BY id ORDER BY id"
    )
    return "[" + ", ".join(f"'{r}'" for r in reasons) + "]::VARCHAR[]"


def _config_references(con: Any, schema: ZenMLSchema, snapshots: Snapshots | None,
                       release_cutoff: str | None) -> None:
    """``config_refs (id, tbl, snapshot, step_run)``: every version id that a step
    configuration names, with the snapshot or step run the configuration belongs to;
    and ``released_snapshots (id)``: with a ``release_cutoff``, the snapshots that
    nothing can run again (zenml.snapshots) and older than it."""
    selects = [
        f"SELECT TRY_CAST(run AS UUID) AS id, '{table}' AS tbl, snapshot, step_run "
        f"FROM (SELECT unnest(regexp_extract_all(lower(config), '{CONFIG_ID_RUN}')) AS run, "
        f"snapshot, step_run FROM in_config_{i}) "
        f"WHERE regexp_full_match(run, '{CONFIG_ID_WHOLE}')"
        for i, (table, _column) in enumerate(schema.config_tables)
    ]
    con.execute("CREATE TEMP TABLE config_refs (id UUID, tbl VARCHAR, snapshot VARCHAR, "
                "step_run VARCHAR)")
    if selects:
        con.execute("INSERT INTO config_refs SELECT DISTINCT * FROM ("
                    + " UNION ALL ".join(selects) + ") WHERE id IS NOT NULL")
    if snapshots is None:
        con.execute("CREATE TEMP TABLE in_snapshots (id VARCHAR, schedule_id VARCHAR, "
                    "created TIMESTAMP, held BIGINT)")
    con.execute("CREATE TEMP TABLE released_snapshots (id VARCHAR)")
    if release_cutoff is not None and snapshots is not None:
        # Only snapshots that no row of any holder table points at (pipeline runs,
        # step runs, run templates, deployments, triggers, and any table this
        # release does not know), with no schedule or name set, and older than the
        # grace period. Anything else keeps its references, as without the option.
        held = " UNION ALL ".join(f"SELECT id FROM in_snapshot_holder_{i}"
                                  for i in range(len(snapshots.holders)))
        anti = f" ANTI JOIN ({held}) h ON h.id = s.id" if held else ""
        con.execute(
            f"INSERT INTO released_snapshots SELECT s.id FROM in_snapshots s{anti} "
            f"WHERE s.held = 0 AND s.created IS NOT NULL "
            f"AND s.created <= TIMESTAMP '{release_cutoff}'"
        )


def name_referrers(con: Any, schema: ZenMLSchema) -> None:
    """``referrer_rows (id, referrer)``: every referenced version's referrers, spelled
    as in zenml.referrers, one row per reference (see :func:`_referrers_sql`)."""
    if "in_step_runs" not in _tables(con):
        con.execute("CREATE TEMP TABLE in_step_runs (id VARCHAR, name VARCHAR, "
                    "pipeline_run_id VARCHAR)")
    step = ("coalesce('run:' || s.pipeline_run_id || '/step:' || s.name, "
            "'step_run:' || {owner})")
    selects = []
    for i, ref in enumerate(schema.references):
        known = KNOWN_REFERRERS.get((ref.table, ref.column))
        fallback = f"'table:{ref.table}'"
        if known is None:
            selects.append(f"SELECT id, {fallback} AS referrer FROM in_ref_{i}")
            continue
        label = (f"coalesce('/{known.label_kind}:' || r.label, '')"
                 if known.label_kind else "''")
        owner = (step.format(owner="r.owner") if known.owner_kind == "step_run"
                 else f"'{known.owner_kind}:' || r.owner")
        join = (" LEFT JOIN in_step_runs s ON s.id = r.owner"
                if known.owner_kind == "step_run" else "")
        selects.append(f"SELECT r.id, coalesce({owner} || {label}, {fallback}) AS referrer "
                       f"FROM in_ref_{i} r{join}")
    selects.append(
        "SELECT c.id, CASE "
        f"WHEN r.id IS NOT NULL THEN '{RELEASED_SNAPSHOT}:' || c.snapshot "
        f"WHEN c.snapshot IS NOT NULL THEN '{SNAPSHOT}:' || c.snapshot "
        f"WHEN c.step_run IS NOT NULL THEN {step.format(owner='c.step_run')} || '/config' "
        "ELSE 'table:' || c.tbl END AS referrer "
        "FROM config_refs c LEFT JOIN released_snapshots r ON r.id = c.snapshot "
        "LEFT JOIN in_step_runs s ON s.id = c.step_run")
    selects.append(
        f"SELECT c.id, '{SCHEDULE}:' || n.schedule_id FROM config_refs c "
        "JOIN in_snapshots n ON n.id = c.snapshot WHERE n.schedule_id IS NOT NULL")
    # A view, grouped part by part in rows_sql: grouped whole, the referrers of a
    # million versions (a few million strings) outgrow the memory limit and spill.
    con.execute("CREATE TEMP VIEW referrer_rows AS SELECT id, referrer FROM ("
                + " UNION ALL ".join(selects) + ") WHERE id IS NOT NULL")


def _referrers_sql(lo: str | None, hi: str | None) -> str:
    """SQL ``(id, referrers)`` for the versions whose id lies in ``[lo, hi)``: sorted,
    at most ``MAX_REFERRERS`` of them and then ``+N more``."""
    return f"""
        SELECT id, CASE WHEN n <= {MAX_REFERRERS} THEN l
                        ELSE list_append(l[1:{MAX_REFERRERS}],
                                         '{MORE_PREFIX}' || (n - {MAX_REFERRERS}) || ' more')
                   END AS referrers
        FROM (SELECT id, l, len(l) AS n FROM (
                  -- list_distinct after a plain list(): a DISTINCT aggregate would
                  -- build a hash table per group, and nearly every row is distinct.
                  SELECT id, list_sort(list_distinct(list(referrer))) AS l
                  FROM referrer_rows WHERE {in_range('id', lo, hi)} GROUP BY id))
    """


def _tagged(con: Any, keep_tags: bool) -> None:
    """``tagged (id, tags)``: the versions that carry a ``--keep-tag`` tag, or whose
    artifact does, each with its ``tag:<name>`` protections."""
    con.execute("CREATE TEMP TABLE tagged (id UUID, tags VARCHAR[])")
    if not keep_tags:
        return
    con.execute(
        f"""
        INSERT INTO tagged
        SELECT id, list_sort(list(DISTINCT '{PROTECT_TAG_PREFIX}' || name)) FROM (
            SELECT TRY_CAST(t.resource_id AS UUID) AS id, t.name FROM in_tags t
            WHERE t.resource_type = 'artifact_version'
            UNION ALL
            SELECT v.id, t.name FROM in_tags t
            JOIN in_versions v ON v.artifact_id = TRY_CAST(t.resource_id AS UUID)
            WHERE t.resource_type = 'artifact'
        ) WHERE id IS NOT NULL GROUP BY id
        """
    )


def _tables(con: Any) -> set[str]:
    return {str(row[0]) for row in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}


def _keep_latest(con: Any, in_scope: str, keep: int) -> None:
    """``latest (id)``: the ``keep`` newest versions of every artifact in scope."""
    con.execute("CREATE TEMP TABLE latest (id UUID)")
    if keep > 0:
        # The window that ranks versions by recency costs a sort of the whole table:
        # only pay for it when --keep-latest asks for it.
        con.execute(
            f"""
            INSERT INTO latest SELECT id FROM (
                SELECT v.id, row_number() OVER (PARTITION BY v.artifact_id ORDER BY
                    v.created DESC NULLS FIRST, v.version_number DESC NULLS FIRST, v.id
                ) AS recency
                FROM in_versions v WHERE {in_scope}
            ) WHERE recency <= {keep}
            """
        )


def _protections(cutoff: str) -> str:
    """SQL: the list of protections of version ``v`` in store ``s``, in FORMAT.md's
    order; ``k``, ``o`` and ``vo`` are its rows of ``latest``, ``overlapping`` and
    ``visualizations_outside_root``."""
    # The sweep fences every path with the same rule (artifact_gc.paths) before it
    # deletes; a version any of whose paths (its URI, any visualization URI) lies
    # outside its root must not be offered as a candidate, nor measured by --sizes.
    outside_root = (f"s.store_root IS NOT NULL AND (vo.id IS NOT NULL "
                    f"OR NOT {INSIDE_ROOT.name}(v.uri, s.store_root))")
    rules = [
        ("v.save_type = 'preexisting'", PROTECT_PREEXISTING),
        ("s.store_root IS NULL", PROTECT_NO_STORE),
        (outside_root, PROTECT_OUTSIDE_ROOT),
        (f"v.created IS NULL OR v.created > TIMESTAMP '{cutoff}'", PROTECT_GRACE),
        ("k.id IS NOT NULL", PROTECT_KEEP_LATEST),
        ("o.id IS NOT NULL", PROTECT_OVERLAP),
    ]
    cases = ", ".join(f"CASE WHEN {rule} THEN '{reason}' END" for rule, reason in rules)
    return f"[x FOR x IN [{cases}] IF x IS NOT NULL]"


def rows_sql(in_scope: str, cutoff: str, reasons: str, lo: str | None, hi: str | None) -> str:
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
                   list_concat({_protections(cutoff)}, coalesce(tg.tags, []::VARCHAR[]))
                       AS protect_reasons, f.referrers
            FROM (SELECT * FROM in_versions v
                  WHERE {in_scope} AND {in_range('v.id', lo, hi)}) v
            LEFT JOIN (SELECT *, {hex_id('artifact_store_id::UUID')} AS hex
                       FROM in_stores) s ON s.artifact_store_id::UUID = v.artifact_store_id
            LEFT JOIN (SELECT * FROM refs WHERE {in_range('id', lo, hi)}) r ON r.id = v.id
            LEFT JOIN (SELECT * FROM overlapping WHERE {in_range('id', lo, hi)}) o
                ON o.id = v.id
            LEFT JOIN (SELECT * FROM latest WHERE {in_range('id', lo, hi)}) k
                ON k.id = v.id
            LEFT JOIN (SELECT * FROM visualizations_outside_root
                       WHERE {in_range('id', lo, hi)}) vo ON vo.id = v.id
            LEFT JOIN (SELECT * FROM tagged WHERE {in_range('id', lo, hi)}) tg
                ON tg.id = v.id
            LEFT JOIN ({_referrers_sql(lo, hi)}) f ON f.id = v.id
        )
        SELECT {hex_id('d.id')} AS artifact_version_id,
               coalesce(a.hex, {hex_id('d.artifact_id')}) AS artifact_id,
               a.name AS artifact_name, d.version, d.version_number, p.name AS project,
               coalesce(p.hex, {hex_id('d.project_id')}) AS project_id,
               d.created, d.uri,
               coalesce(d.store_hex, {hex_id('d.artifact_store_id')})
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
                   AS visualization_uris,
               '{ITEM_KIND_VERSION}' AS item_kind, {hex_id('d.id')} AS item_id,
               coalesce(d.referrers, []::VARCHAR[]) AS referrers
        FROM decided d
        LEFT JOIN artifact_names a ON a.id = d.artifact_id
        LEFT JOIN project_names p ON p.id = d.project_id
        LEFT JOIN (
            SELECT id, list({{'nested': nested, 'rest': rest}}) AS items
            FROM visualizations WHERE {in_range('id', lo, hi)} GROUP BY id
        ) z ON z.id = d.id
    """


def _scalar(con: Any, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0
