"""Classifying every listed object of the artifact stores, in DuckDB.

Input tables (DuckDB): ``orphan_objects(store_id, root, path, size, mtime, is_dir)``
(the listing, or an inventory; read once, then emptied), ``orphan_named(path)``
(named.py), ``orphan_step_runs`` and ``orphan_logs``. Output: ``orphan_rows``, in the
manifest's shape, and ``orphan_totals``, the summary's counts.

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
tests/test_orphan_classify.py holds these rules against a plain Python model of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from artifact_gc.manifest import reasons as r
from artifact_gc.mark.orphans import layout
from artifact_gc.paths import INSIDE_ROOT, Arg, TrimSlashes, directory_key_sql

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
    """Build ``orphan_rows`` (manifest columns) and ``orphan_totals`` (the summary's
    counts) from the input tables, and drop ``orphan_objects`` once it is read: at a
    million objects every table held beside the next one is memory the mark's DuckDB
    must otherwise spill to disk.

    ``code_uploads`` (``--orphan-code-uploads``) makes a code archive that no row
    names a candidate (layout.py says why that is an opt-in).

    Paths below a root are carried relative to it (``rel``), with the store as a small
    number (``sid``): the root's spelling is added back only to the rows written."""
    INSIDE_ROOT.install(con)
    _drop_filled_markers(con)
    _layout(con, code_uploads)
    _named(con)
    _unit_state(con, cutoff)
    _loose(con)
    _rows(con)
    _object_keys(con)
    _totals(con)
    for table in ("orphan_layout", "orphan_named_keys", "orphan_named_below",
                  "orphan_named_firsts", "orphan_named_relative", "orphan_named_ancestors",
                  "orphan_root_named", "orphan_unit_state", "orphan_loose", "orphan_unit_keys"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _trimmed(path: str) -> str:
    """SQL: the path ``path`` without its trailing slashes."""
    return TrimSlashes(Arg("path")).sql({"path": path})


def _drop_filled_markers(con: Any) -> None:
    """Drop every directory row that has something listed under it.

    An ``is_dir`` row is an *empty* directory of the layout (a step's, hook's or custom
    artifact's folder with nothing in it), a candidate whose delete removes everything
    under its path. An object store's directory marker (a key ending in "/") is a row
    whatever lies under it, and the S3 listing's streams list a marker and its contents
    in different ranges: a marker over, say, a user's file would make an "empty
    directory" whose delete takes that file. A non-empty directory is implied by its
    contents (as on a local disk), so it is no row at all; whatever lies under it is
    classified on its own. ``[P/, P0)`` holds exactly the paths under ``P`` (``/`` and
    ``0`` are adjacent), so the join is a range join, not a scan per marker."""
    trimmed = _trimmed("path")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_markers AS
        SELECT DISTINCT store_id, root, {trimmed} AS dir
        FROM orphan_objects WHERE is_dir
    """)
    # Each path compared without its trailing slashes: a marker row spelt "P/" is not
    # its own contents.
    content = _trimmed("c.path")
    con.execute(f"""
        DELETE FROM orphan_objects o
        USING (
            SELECT DISTINCT m.store_id, m.root, m.dir
            FROM orphan_markers m JOIN orphan_objects c
              ON c.store_id = m.store_id AND c.root = m.root
             AND {content} >= m.dir || '/' AND {content} < m.dir || '0'
        ) f
        WHERE o.is_dir AND o.store_id = f.store_id AND o.root = f.root
          AND rtrim(o.path, '/') = f.dir
    """)
    con.execute("DROP TABLE orphan_markers")


def _layout(con: Any, code_uploads: bool) -> None:
    """``orphan_stores(sid, store_id, root)`` and ``orphan_layout``: each object's path
    relative to its root (``rel``; the whole path when it is not inside the root, then
    ``inside`` is false) and, where the layout gives it a unit, its kind and the
    unit's length in characters (``ulen``: the unit is ``left(rel, ulen)``)."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE orphan_stores AS
        SELECT (row_number() OVER (ORDER BY store_id, root))::INTEGER AS sid, store_id, root
        FROM (SELECT DISTINCT store_id, root FROM orphan_objects)
    """)
    trimmed = _trimmed("path")
    rel = f"substr({trimmed}, length(root) + 2)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_layout AS
        SELECT sid, rel, inside, size, mtime, is_dir, kind,
               {layout.unit_length_sql()} AS ulen
        FROM (
            SELECT *, {layout.kind_sql(code_uploads=code_uploads)} AS kind
            FROM (
                SELECT s.sid, o.size, o.mtime, o.is_dir, inside,
                       CASE WHEN inside THEN {rel} ELSE {trimmed} END AS rel,
                       CASE WHEN inside THEN string_split({rel}, '/') END AS seg
                FROM (SELECT *, inside_store_root(path, root) AS inside FROM orphan_objects) o
                JOIN orphan_stores s USING (store_id, root)
            )
        )
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE orphan_totals AS
        SELECT count(*) FILTER (WHERE NOT is_dir) AS objects, coalesce(sum(size), 0) AS bytes
        FROM orphan_layout
    """)
    # Read once into orphan_layout: its rows are not needed again.
    con.execute("DROP TABLE orphan_objects")
    con.execute(OBJECTS_DDL)


def _named(con: Any) -> None:
    """The named paths as keys, relative to each root they lie below.

    - ``orphan_root_named(sid)``: a named path is the root or contains it: every path
      of that store is live.
    - ``orphan_named_below(sid, key, segments)``: the named keys below a root,
      relative to it (``a/b/`` for ``<root>/a/b``), with their number of segments. A
      path below the root equals or lies inside a named path
      exactly when one of its own relative ancestor keys (itself included) is here,
      the same equality as ``<root>/<key>`` against every named key.
    - ``orphan_named_firsts(sid, segments, first)``: the (segments, first segment)
      pairs of the named keys short enough to be a unit's strict ancestor. A unit's
      ancestor key of ``j`` segments can only be named when its pair is here, so only
      those few ancestor keys are ever spelled out (_unit_state).
    - ``orphan_named_ancestors(sid, key)``: the relative ancestor keys of each named
      path inside a root of the lengths a unit has (2 to MAX_UNIT_SEGMENTS segments),
      strictly shorter than the path itself: a unit among them has a named path
      inside it. (A unit equal to a named path is live, which says more.) Longer keys
      can never equal a unit's key (a unit has at most that many segments, and roots
      never nest: run.listed_stores).

    Each is computed from the distinct keys of the named paths, not from the paths."""
    named_key = directory_key_sql("path")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_named_keys AS
        SELECT DISTINCT {named_key} AS key FROM orphan_named WHERE path IS NOT NULL
    """)
    # Its keys say all that the classification needs of it: a million paths held
    # beside the listing are memory the rest must otherwise spill.
    con.execute("DROP TABLE orphan_named")
    con.execute("CREATE TEMP TABLE orphan_named (path VARCHAR)")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_root_named AS
        SELECT DISTINCT s.sid FROM orphan_stores s
        JOIN orphan_named_keys k ON starts_with({directory_key_sql('s.root')}, k.key)
    """)
    # orphan_named_keys holds each key once, so each (store, relative key) is here once.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE orphan_named_below AS
        SELECT sid, key, strlen(key) - strlen(replace(key, '/', '')) AS segments
        FROM (SELECT s.sid, substr(k.key, length(s.root) + 2) AS key
              FROM orphan_named_keys k JOIN orphan_stores s
                ON starts_with(k.key, s.root || '/') AND length(k.key) > length(s.root) + 1)
    """)
    con.execute("DROP TABLE orphan_named_keys")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_named_firsts AS
        SELECT DISTINCT sid, segments, split_part(key, '/', 1) AS first
        FROM orphan_named_below WHERE segments < {layout.MAX_UNIT_SEGMENTS}
    """)
    # A key is its path with the trailing slashes trimmed and one put back: without
    # its last character it is the trimmed path (relative to the root here), for which
    # inside_store_root answers as for the path itself, without trimming it again.
    path = "left(n.key, length(n.key) - 1)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_named_ancestors AS
        SELECT DISTINCT sid, array_to_string(seg[1:j], '/') || '/' AS key
        FROM (SELECT sid, seg,
                     unnest(range({layout.MIN_UNIT_SEGMENTS},
                                  least(len(seg) - 1, {layout.MAX_UNIT_SEGMENTS}) + 1)) AS j
              FROM (SELECT n.sid, string_split({path}, '/') AS seg
                    FROM orphan_named_below n JOIN orphan_stores s USING (sid)
                    WHERE n.segments > {layout.MIN_UNIT_SEGMENTS}
                      AND inside_store_root(s.root || '/' || {path}, s.root)))
    """)


def _unit_state(con: Any, cutoff: datetime) -> None:
    finished = ", ".join(f"'{s}'" for s in FINISHED_STATUSES)
    failed = ", ".join(f"'{s}'" for s in FAILED_STATUSES)
    step_kinds = ", ".join(f"'{k}'" for k in layout.STEP_KINDS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_unit_state AS
        WITH units AS (
            SELECT sid, rel[1:ulen] AS unit, any_value(kind) AS kind,
                   sum(size) AS bytes, count(*) FILTER (WHERE NOT is_dir) AS objects,
                   max(mtime) AS newest
            FROM orphan_layout WHERE ulen IS NOT NULL
            GROUP BY sid, rel[1:ulen]
        ),
        ids AS (
            SELECT *, unit || '/' AS ukey,
                   CASE WHEN kind IN ({step_kinds}) THEN {layout.step_run_id_sql('useg')}
                   END AS step_run_id,
                   CASE WHEN kind = '{layout.KIND_LOGS}' THEN {layout.logs_id_sql('useg')}
                   END AS logs_id
            FROM (SELECT *, string_split(unit, '/') AS useg FROM units)
        ),
        -- A unit inside a named path of fewer segments: only the ancestor keys whose
        -- length and first segment some named key has are spelled and looked up.
        strict AS (
            SELECT DISTINCT i.sid, i.unit
            FROM ids i
            JOIN orphan_named_firsts f
              ON f.sid = i.sid AND f.first = i.useg[1] AND f.segments < len(i.useg)
            JOIN orphan_named_below n
              ON n.sid = i.sid AND n.key = array_to_string(i.useg[1:f.segments], '/') || '/'
        ),
        -- EXISTS, not a join, so that the named keys are what is hashed, not the units
        -- with everything they carry.
        contained AS (
            SELECT i.*,
                   (EXISTS (SELECT 1 FROM orphan_named_below e
                            WHERE e.sid = i.sid AND e.key = i.ukey
                              AND e.segments BETWEEN {layout.MIN_UNIT_SEGMENTS}
                                                 AND {layout.MAX_UNIT_SEGMENTS})
                    OR st.unit IS NOT NULL) AS contained
            FROM ids i
            LEFT JOIN strict st ON st.sid = i.sid AND st.unit = i.unit
        )
        SELECT u.sid, u.unit, u.kind, u.bytes, u.objects, u.newest,
               (u.contained OR rn.sid IS NOT NULL
                OR (u.kind = '{layout.KIND_LOGS}' AND l.id IS NOT NULL)) AS live,
               -- Looked up for the units no named path contains: only those can be
               -- candidates (a live unit is never one, whatever lies inside it).
               (NOT u.contained
                AND EXISTS (SELECT 1 FROM orphan_named_ancestors a
                            WHERE a.sid = u.sid AND a.key = u.ukey)) AS named_inside,
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
        FROM contained u
        LEFT JOIN orphan_root_named rn ON rn.sid = u.sid
        LEFT JOIN orphan_step_runs sr ON sr.id = u.step_run_id
        LEFT JOIN orphan_logs l ON l.id = u.logs_id
    """)


def _loose(con: Any) -> None:
    """``orphan_loose``: the objects outside every unit, each live when a named path is
    one of its ancestors (itself included) below the root, else unknown. Liveness is a
    function of the path, so each distinct path is looked up once."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE orphan_loose AS
        WITH loose AS (SELECT * FROM orphan_layout WHERE ulen IS NULL),
        paths AS (SELECT DISTINCT sid, rel FROM loose WHERE inside),
        keys AS (
            SELECT sid, rel, unnest(list_transform(range(1, len(seg) + 1),
                                    lambda j: array_to_string(seg[1:j], '/') || '/')) AS key
            FROM (SELECT sid, rel, string_split(rel, '/') AS seg FROM paths)
        ),
        live AS (
            SELECT DISTINCT keys.sid, keys.rel FROM keys
            JOIN orphan_named_below k ON k.sid = keys.sid AND k.key = keys.key
        )
        SELECT loose.sid, loose.rel, loose.inside, loose.size, loose.mtime, loose.is_dir,
               CASE WHEN loose.inside THEN split_part(loose.rel, '/', 1) END AS top,
               loose.inside AND live.rel IS NOT NULL AS live
        FROM loose LEFT JOIN live ON live.sid = loose.sid AND live.rel = loose.rel
    """)


def _rows(con: Any) -> None:
    trash = f"coalesce(top = '{layout.UNDO_TRASH_DIR}', false)"
    common = ("'' AS artifact_version_id, '' AS artifact_id, NULL::VARCHAR AS artifact_name, "
              "NULL::VARCHAR AS version, NULL::BIGINT AS version_number, "
              "NULL::VARCHAR AS project, NULL::VARCHAR AS project_id")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_rows AS
        WITH units AS (
            SELECT s.root || '/' || u.unit AS path, s.store_id, s.root, u.*
            FROM orphan_unit_state u JOIN orphan_stores s USING (sid) WHERE NOT u.live
        ),
        unknown AS (
            SELECT s.store_id, s.root,
                   CASE WHEN l.inside THEN s.root || '/' || l.top ELSE l.rel END AS uri,
                   {trash} AS trash, max(l.mtime) AS newest, sum(l.size) AS bytes,
                   count(*) FILTER (WHERE NOT l.is_dir) AS objects
            FROM orphan_loose l JOIN orphan_stores s USING (sid) WHERE NOT l.live
            GROUP BY s.store_id, s.root, uri, trash
        )
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
        FROM units
        UNION ALL
        SELECT {common}, newest, uri, store_id, root, NULL, '{r.STATUS_PROTECTED}',
               CASE WHEN trash THEN ['{r.PROTECT_UNDO_TRASH}']
                    ELSE ['{r.PROTECT_UNKNOWN_LAYOUT}'] END,
               bytes, objects, []::VARCHAR[], '{r.ITEM_KIND_ORPHAN_FILE}', uri,
               CASE WHEN trash THEN '{r.ORPHAN_UNDO_TRASH}' ELSE '{r.ORPHAN_UNKNOWN}' END,
               newest
        FROM unknown
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
    con.execute("ALTER TABLE orphan_rows ADD COLUMN object_keys VARCHAR[]")
    ((keyed,),) = con.execute(
        "SELECT count(*) FROM orphan_stores JOIN orphan_keyed_stores USING (store_id)"
    ).fetchall()
    if not keyed:
        return
    # ``rel`` under ``unit/`` is the object's key within the candidate; anything else
    # (the unit itself) is spelled in full, its root added back.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_unit_keys AS
        SELECT u, list(CASE WHEN starts_with(listed, unit || '/')
                            THEN listed[length(unit) + 2:]
                            ELSE root || '/' || listed END ORDER BY listed) AS object_keys
        FROM (
            SELECT s.root || '/' || left(l.rel, l.ulen) AS u, left(l.rel, l.ulen) AS unit,
                   s.root, l.rel || CASE WHEN l.is_dir THEN '/' ELSE '' END AS listed
            FROM orphan_layout l
            JOIN orphan_stores s USING (sid)
            JOIN orphan_keyed_stores k USING (store_id)
            WHERE l.ulen IS NOT NULL
        ) JOIN orphan_rows c ON c.item_id = u AND c.status = '{r.STATUS_CANDIDATE}'
        GROUP BY u
    """)
    con.execute("UPDATE orphan_rows SET object_keys = k.object_keys FROM orphan_unit_keys k "
                "WHERE orphan_rows.item_id = k.u")


def _totals(con: Any) -> None:
    """Add the live, unknown and trash counts to ``orphan_totals`` (one row)."""
    trash = f"coalesce(top = '{layout.UNDO_TRASH_DIR}', false)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE orphan_totals AS
        SELECT t.*, live.objects AS live_objects, live.bytes AS live_bytes,
               unknown.objects AS unknown_objects, unknown.bytes AS unknown_bytes,
               trash.objects AS trash_objects, trash.bytes AS trash_bytes
        FROM orphan_totals t,
        (SELECT coalesce(sum(o), 0) AS objects, coalesce(sum(b), 0) AS bytes FROM (
            SELECT objects AS o, bytes AS b FROM orphan_unit_state WHERE live
            UNION ALL
            SELECT count(*) FILTER (WHERE NOT is_dir), sum(size) FROM orphan_loose
            WHERE live)) live,
        (SELECT count(*) FILTER (WHERE NOT is_dir) AS objects, coalesce(sum(size), 0) AS bytes
         FROM orphan_loose WHERE NOT live AND NOT {trash}) unknown,
        (SELECT count(*) FILTER (WHERE NOT is_dir) AS objects, coalesce(sum(size), 0) AS bytes
         FROM orphan_loose WHERE NOT live AND {trash}) trash
    """)


def summarize_objects(con: Any, summary: OrphanSummary) -> None:
    """Fill ``summary`` with counts and bytes: listed, live, unknown, by status and class."""
    ((objects, nbytes, live_objects, live_bytes, unknown_objects, unknown_bytes,
      trash_objects, trash_bytes),) = con.execute(
        "SELECT objects, bytes, live_objects, live_bytes, unknown_objects, unknown_bytes, "
        "trash_objects, trash_bytes FROM orphan_totals").fetchall()
    summary.objects, summary.bytes = int(objects), int(nbytes)
    summary.live = {"objects": int(live_objects), "bytes": int(live_bytes)}
    summary.unknown = {"objects": int(unknown_objects), "bytes": int(unknown_bytes)}
    summary.undo_trash = {"objects": int(trash_objects), "bytes": int(trash_bytes)}
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
