"""Classifying every listed object of the artifact stores, in DuckDB.

Input tables (DuckDB): ``orphan_objects(store_id, root, path, size, mtime, is_dir)``
(the listing, or an inventory), ``orphan_named(path)`` (named.py), ``orphan_step_runs``
and ``orphan_logs``. Output: ``orphan_rows``, in the manifest's shape, and a summary.

Why a candidate is safe (invariant 9). An object becomes part of a candidate only when

- it lies strictly inside its store's root (``inside_store_root``, the rule of
  :mod:`artifact_gc.paths`, the same one the mark applies to versions);
- ZenML's layout says what it is (layout.py); anything else is *unknown*;
- no path any row names equals its unit, contains it or lies inside it. Paths are
  compared as directory keys (:func:`artifact_gc.paths.directory_key_sql`): a unit
  is *live* when one of its ancestors (itself included) is a named key, and
  *protected* (``named_inside``) when a named path's ancestors include it;
- nothing under its unit is younger than the grace period (a running step writes its
  files before its row exists), and a step-output unit's step run, if it still has a
  row, has finished (``step_running`` otherwise, at any age).

Each comparison is an equality join on keys generated from a path's own segments (a
few per path), never a join of every object with every named path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from artifact_gc.manifest import reasons as r
from artifact_gc.mark.orphans import layout
from artifact_gc.paths import INSIDE_ROOT, directory_key_sql

#: Step-run statuses after which a step writes nothing more (ZenML's ExecutionStatus).
FINISHED_STATUSES = ("completed", "failed", "cached", "stopped", "retried")
FAILED_STATUSES = ("failed", "stopped", "retried")

OBJECTS_DDL = ("CREATE TABLE IF NOT EXISTS orphan_objects (store_id VARCHAR, root VARCHAR, "
               "path VARCHAR, size BIGINT, mtime TIMESTAMP, is_dir BOOLEAN)")
#: The stores whose listing names every object by its key (S3, GCS, Azure Blob): their
#: candidates get ``object_keys``, which the sweep deletes without listing first.
KEYED_STORES_DDL = "CREATE TABLE IF NOT EXISTS orphan_keyed_stores (store_id VARCHAR)"


@dataclass
class OrphanSummary:
    """What the listing found, for the manifest's metadata (``orphan_files``)."""

    source: str
    stores: list[dict[str, Any]] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    live: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    #: The undo window's trash (``.artifact-gc-trash/``): gc's own, never a candidate.
    undo_trash: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, dict[str, int]] = field(default_factory=dict)
    by_class: list[dict[str, Any]] = field(default_factory=list)
    cutoff: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "stores": self.stores, "objects": self.objects,
            "bytes": self.bytes, "live": self.live, "unknown": self.unknown,
            "undo_trash": self.undo_trash,
            "by_status": self.by_status, "by_class": self.by_class, "cutoff": self.cutoff,
        }


def classify_objects(con: Any, cutoff: datetime, code_uploads: bool = False) -> None:
    """Build ``orphan_rows`` (manifest columns) from the input tables.

    ``code_uploads`` (``--orphan-code-uploads``) makes a code archive that no row
    names a candidate (layout.py says why that is an opt-in)."""
    INSIDE_ROOT.install(con)
    seg = "string_split(substr(rtrim(path, '/'), length(root) + 2), '/')"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_layout AS
        SELECT *, {layout.unit_sql()} AS unit
        FROM (
            SELECT *, {layout.kind_sql(code_uploads=code_uploads)} AS kind
            FROM (
                SELECT store_id, root, rtrim(path, '/') AS path, size, mtime, is_dir,
                       CASE WHEN inside_store_root(path, root) THEN {seg} END AS seg
                FROM orphan_objects
            )
        )
    """)
    named_key = directory_key_sql("path")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_named_keys AS
        SELECT DISTINCT {named_key} AS key FROM orphan_named
    """)
    # Ancestors (itself included) of every named path inside a listed root: a unit
    # among them has a named path inside it, or equal to it.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE orphan_named_ancestors AS
        WITH roots AS (SELECT DISTINCT root FROM orphan_objects),
        inside AS (
            SELECT roots.root,
                   string_split(substr(rtrim(n.path, '/'), length(roots.root) + 2), '/') AS seg
            FROM orphan_named n JOIN roots ON inside_store_root(n.path, roots.root)
        )
        SELECT DISTINCT root || '/' || array_to_string(seg[1:j], '/') || '/' AS key
        FROM (SELECT root, seg, unnest(range(1, len(seg) + 1)) AS j FROM inside)
    """)
    finished = ", ".join(f"'{s}'" for s in FINISHED_STATUSES)
    failed = ", ".join(f"'{s}'" for s in FAILED_STATUSES)
    step_kinds = ", ".join(f"'{k}'" for k in layout.STEP_KINDS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_units AS
        SELECT store_id, root, root || '/' || unit AS path, any_value(kind) AS kind,
               any_value(CASE WHEN kind IN ({step_kinds}) THEN {layout.step_run_id_sql()}
                         END) AS step_run_id,
               any_value(CASE WHEN kind = '{layout.KIND_LOGS}' THEN {layout.logs_id_sql()}
                         END) AS logs_id,
               sum(size) AS bytes, count(*) FILTER (WHERE NOT is_dir) AS objects,
               max(mtime) AS newest
        FROM orphan_layout WHERE unit IS NOT NULL
        GROUP BY store_id, root, unit
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_unit_state AS
        WITH unit_ancestors AS (
            SELECT path, root || '/' || array_to_string(seg[1:j], '/') || '/' AS key
            FROM (SELECT path, root, seg, unnest(range(1, len(seg) + 1)) AS j
                  FROM (SELECT path, root,
                               string_split(substr(path, length(root) + 2), '/') AS seg
                        FROM orphan_units))
        ),
        contained AS (
            SELECT DISTINCT a.path FROM unit_ancestors a JOIN orphan_named_keys k USING (key)
        ),
        root_named AS (
            -- A named path that is the root or contains it makes the whole store live.
            SELECT DISTINCT r.root FROM (SELECT DISTINCT root FROM orphan_objects) r
            JOIN orphan_named_keys k ON starts_with({directory_key_sql('r.root')}, k.key)
        )
        SELECT u.*,
               (c.path IS NOT NULL OR rn.root IS NOT NULL
                OR (u.kind = '{layout.KIND_LOGS}' AND l.id IS NOT NULL)) AS live,
               (na.key IS NOT NULL) AS named_inside,
               sr.status AS step_status,
               (u.kind IN ({step_kinds}) AND sr.id IS NOT NULL
                AND lower(coalesce(sr.status, '')) NOT IN ({finished})) AS step_running,
               (u.newest IS NULL OR u.newest >= TIMESTAMP '{cutoff.isoformat(sep=' ')}')
                   AS young,
               CASE
                 WHEN u.kind IN ('{layout.KIND_STEP_EMPTY}', '{layout.KIND_CUSTOM_EMPTY}',
                                 '{layout.KIND_HOOK_EMPTY}') THEN '{r.ORPHAN_EMPTY_DIR}'
                 WHEN u.kind = '{layout.KIND_LOGS}' THEN '{r.ORPHAN_RUN_LOGS}'
                 WHEN u.kind = '{layout.KIND_CUSTOM}' THEN '{r.ORPHAN_CUSTOM_ARTIFACT}'
                 WHEN u.kind = '{layout.KIND_EXTERNAL}' THEN '{r.ORPHAN_EXTERNAL_ARTIFACT}'
                 WHEN u.kind = '{layout.KIND_HOOK}' THEN '{r.ORPHAN_HOOK_OUTPUT}'
                 WHEN u.kind = '{layout.KIND_CODE_UPLOAD}' THEN '{r.ORPHAN_CODE_UPLOAD}'
                 WHEN sr.id IS NULL THEN '{r.ORPHAN_DELETED_RUN}'
                 WHEN lower(sr.status) IN ({failed}) THEN '{r.ORPHAN_FAILED_STEP}'
                 ELSE '{r.ORPHAN_DELETED_VERSION}'
               END AS orphan_class
        FROM orphan_units u
        LEFT JOIN contained c ON c.path = u.path
        LEFT JOIN root_named rn ON rn.root = u.root
        LEFT JOIN orphan_named_ancestors na ON na.key = u.path || '/'
        LEFT JOIN orphan_step_runs sr ON sr.id = u.step_run_id
        LEFT JOIN orphan_logs l ON l.id = u.logs_id
    """)
    # Objects outside every unit: live when a named path is one of their ancestors
    # (themselves included), else unknown.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE orphan_loose AS
        WITH loose AS (
            SELECT row_number() OVER () AS n, * FROM orphan_layout WHERE unit IS NULL
        ),
        keys AS (
            SELECT n, root || '/' || array_to_string(seg[1:j], '/') || '/' AS key
            FROM (SELECT n, root, seg, unnest(range(1, len(seg) + 1)) AS j
                  FROM loose WHERE seg IS NOT NULL)
        ),
        live AS (SELECT DISTINCT n FROM keys JOIN orphan_named_keys USING (key))
        SELECT loose.*, live.n IS NOT NULL AS live FROM loose LEFT JOIN live USING (n)
    """)
    _rows(con)
    _object_keys(con)


def _rows(con: Any) -> None:
    trash = f"coalesce(seg[1] = '{layout.UNDO_TRASH_DIR}', false)"
    common = ("'' AS artifact_version_id, '' AS artifact_id, NULL::VARCHAR AS artifact_name, "
              "NULL::VARCHAR AS version, NULL::BIGINT AS version_number, "
              "NULL::VARCHAR AS project, NULL::VARCHAR AS project_id")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_rows AS
        SELECT {common}, newest AS created, path AS uri, store_id AS artifact_store_id,
               root AS store_root, NULL::VARCHAR AS save_type,
               CASE WHEN named_inside OR step_running OR young THEN '{r.STATUS_PROTECTED}'
                    ELSE '{r.STATUS_CANDIDATE}' END AS status,
               list_filter([
                   CASE WHEN named_inside THEN '{r.PROTECT_NAMED_INSIDE}' END,
                   CASE WHEN step_running THEN '{r.PROTECT_STEP_RUNNING}' END,
                   CASE WHEN young THEN '{r.PROTECT_GRACE}' END], lambda x: x IS NOT NULL)
                   AS reasons,
               bytes AS size_bytes, objects AS file_count, []::VARCHAR[] AS visualization_uris,
               '{r.ITEM_KIND_ORPHAN_FILE}' AS item_kind, path AS item_id,
               orphan_class, newest AS newest_mtime
        FROM orphan_unit_state WHERE NOT live
        UNION ALL
        SELECT {common}, max(mtime) AS created,
               coalesce(root || '/' || seg[1], path) AS uri, store_id, root, NULL,
               '{r.STATUS_PROTECTED}',
               CASE WHEN {trash} THEN ['{r.PROTECT_UNDO_TRASH}']
                    ELSE ['{r.PROTECT_UNKNOWN_LAYOUT}'] END,
               sum(size), count(*) FILTER (WHERE NOT is_dir), []::VARCHAR[],
               '{r.ITEM_KIND_ORPHAN_FILE}', coalesce(root || '/' || seg[1], path),
               CASE WHEN {trash} THEN '{r.ORPHAN_UNDO_TRASH}' ELSE '{r.ORPHAN_UNKNOWN}' END,
               max(mtime)
        FROM orphan_loose WHERE NOT live
        GROUP BY store_id, root, coalesce(root || '/' || seg[1], path), {trash}
    """)


def _object_keys(con: Any) -> None:
    """Add ``object_keys`` to ``orphan_rows``: for each candidate of a keyed store, the
    objects the listing found in its unit (format.KEYS_SCHEMA's spelling, as ``gc mark
    --sizes`` writes it: relative to the path when under it, else the full URL; a
    directory marker keeps its ``/``). NULL elsewhere: the sweep lists those paths.

    Why deleting them unlisted is safe: they are exactly the objects this mark
    classified into the candidate's unit, the sweep takes an entry only under the
    candidate's own path, lists the path again for the grace period before it deletes
    (an object written since keeps the path) and lists it once more afterwards."""
    con.execute(KEYED_STORES_DDL)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_unit_keys AS
        SELECT u, list(CASE WHEN starts_with(listed, u || '/') THEN listed[length(u) + 2:]
                            ELSE listed END ORDER BY listed) AS object_keys
        FROM (
            SELECT l.root || '/' || l.unit AS u,
                   l.path || CASE WHEN l.is_dir THEN '/' ELSE '' END AS listed
            FROM orphan_layout l
            JOIN orphan_keyed_stores k USING (store_id)
            WHERE l.unit IS NOT NULL
        ) JOIN orphan_rows c ON c.item_id = u AND c.status = '{r.STATUS_CANDIDATE}'
        GROUP BY u
    """)
    con.execute("ALTER TABLE orphan_rows ADD COLUMN object_keys VARCHAR[]")
    con.execute("UPDATE orphan_rows SET object_keys = k.object_keys FROM orphan_unit_keys k "
                "WHERE orphan_rows.item_id = k.u")


def summarize_objects(con: Any, summary: OrphanSummary) -> None:
    """Fill ``summary`` with counts and bytes: listed, live, unknown, by status and class."""
    ((objects, nbytes),) = con.execute(
        "SELECT count(*) FILTER (WHERE NOT is_dir), coalesce(sum(size), 0) "
        "FROM orphan_objects").fetchall()
    summary.objects, summary.bytes = int(objects), int(nbytes)
    ((live_objects, live_bytes),) = con.execute("""
        SELECT coalesce(sum(o), 0), coalesce(sum(b), 0) FROM (
            SELECT objects AS o, bytes AS b FROM orphan_unit_state WHERE live
            UNION ALL
            SELECT count(*) FILTER (WHERE NOT is_dir), sum(size) FROM orphan_loose WHERE live)
    """).fetchall()
    summary.live = {"objects": int(live_objects), "bytes": int(live_bytes)}
    loose = {bool(trash): {"objects": int(objects), "bytes": int(nbytes or 0)}
             for trash, objects, nbytes in con.execute(
                 f"SELECT coalesce(seg[1] = '{layout.UNDO_TRASH_DIR}', false), "
                 "count(*) FILTER (WHERE NOT is_dir), sum(size) "
                 "FROM orphan_loose WHERE NOT live GROUP BY 1").fetchall()}
    summary.unknown = loose.get(False, {"objects": 0, "bytes": 0})
    summary.undo_trash = loose.get(True, {"objects": 0, "bytes": 0})
    summary.by_status = {
        str(status): {"paths": int(n), "objects": int(o or 0), "bytes": int(b or 0)}
        for status, n, o, b in con.execute(
            "SELECT status, count(*), sum(file_count), sum(size_bytes) FROM orphan_rows "
            "GROUP BY status ORDER BY status").fetchall()
    }
    summary.by_class = [
        {"orphan_class": str(c), "status": str(s), "paths": int(n), "objects": int(o or 0),
         "bytes": int(b or 0)}
        for c, s, n, o, b in con.execute(
            "SELECT orphan_class, status, count(*), sum(file_count), sum(size_bytes) "
            "FROM orphan_rows GROUP BY ALL ORDER BY orphan_class, status").fetchall()
    ]
