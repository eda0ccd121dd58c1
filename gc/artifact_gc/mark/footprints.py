"""Versions' footprints: where their files lie, and which footprints overlap.

A version's footprint is its URI plus its visualization URIs: the paths a sweep
deletes for it. Deleting them must never touch another version's files, nor anything
outside the version's store root.
"""

from __future__ import annotations

from typing import Any

from artifact_gc.mark.ids import PART_ROWS, id_ranges, in_range, sql_uuid
from artifact_gc.paths import INSIDE_ROOT, directory_key_sql

#: Versions per range when versions are joined with their visualizations to find the
#: visualizations outside their version's directory.
JOIN_ROWS = 4 * PART_ROWS


def find_overlaps(con: Any, versions: int) -> None:
    """Find every version whose files overlap another version's files.

    A version's footprint is its URI plus its visualization URIs. A version is
    flagged when a path of its footprint equals, contains or lies inside a path of
    another version's footprint, whatever that other version's status: deleting the
    directory would delete files the other still uses, or will use if it comes back to
    life before its own turn. Mark turns the flag into ``uri_overlap`` protection for
    would-be candidates.

    This is :data:`artifact_gc.paths.OVERLAP` over all pairs at once: paths become
    their directory keys (ending in one ``/``) and are sorted once. Prefix ranges are
    nested or disjoint, so a path lies inside (or equals) an earlier one exactly when
    the largest range end seen before it lies beyond it, and it contains (or equals)
    another exactly when the next path starts with it. Visualizations inside their
    own version's URI add nothing to either test and are left out. Every version's
    own path is one row, so only the other visualizations need de-duplicating (a
    path twice for the same version would otherwise look like an overlap with
    itself).

    On the way, ``in_visualizations`` becomes ``visualizations`` (see
    :func:`_split_visualizations`). The result is the table ``overlapping (id)``.
    Needs ``in_versions``, ``in_visualizations``, ``in_stores`` and the root rule's
    macro (:data:`artifact_gc.paths.INSIDE_ROOT`).
    """
    _split_visualizations(con, versions)
    con.execute(
        f"""
        CREATE TEMP TABLE overlapping AS
        WITH footprint AS (
            SELECT id, {directory_key_sql("uri")} AS p FROM in_versions
            UNION ALL
            SELECT DISTINCT id, {directory_key_sql("rest")} FROM visualizations
            WHERE NOT inside
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


def _split_visualizations(con: Any, versions: int) -> None:
    """``in_visualizations`` becomes ``visualizations (id, rest, nested, inside)``,
    and the versions with a visualization outside their store's root are listed in
    ``visualizations_outside_root (id)``.

    A URI inside its version's directory is kept as the part after that directory
    (``nested``), which is usually a file name short enough for DuckDB to store
    inline; ``inside`` also holds for a URI equal to the directory. The join runs
    range by range of version ids, which keeps its hash table small.

    Every visualization URI is held to the root rule, nested ones too: a URI spelled
    below its version's directory can still climb out of the root with ``..``.
    """
    con.execute("CREATE TEMP TABLE visualizations "
                "(id UUID, rest VARCHAR, nested BOOLEAN, inside BOOLEAN, "
                "outside_root BOOLEAN)")
    for lo, hi in id_ranges(versions, JOIN_ROWS):
        version_range = in_range("v.id", sql_uuid(lo), sql_uuid(hi))
        con.execute(
            f"""
            INSERT INTO visualizations
            SELECT z.artifact_version_id,
                   CASE WHEN starts_with(z.uri, v.base || '/')
                        THEN substring(z.uri, length(v.base) + 2) ELSE z.uri END,
                   starts_with(z.uri, v.base || '/'),
                   starts_with(rtrim(z.uri, '/') || '/', v.base || '/'),
                   s.store_root IS NOT NULL
                       AND NOT {INSIDE_ROOT.name}(z.uri, s.store_root)
            FROM in_visualizations z
            JOIN (SELECT id, rtrim(uri, '/') AS base, artifact_store_id FROM in_versions v
                  WHERE {version_range}) v ON v.id = z.artifact_version_id
            LEFT JOIN in_stores s ON s.artifact_store_id::UUID = v.artifact_store_id
            """
        )
    con.execute("DROP TABLE in_visualizations")
    con.execute("CREATE TEMP TABLE visualizations_outside_root AS "
                "SELECT DISTINCT id FROM visualizations WHERE outside_root")
