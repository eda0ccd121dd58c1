"""Versions' footprints: where their files lie, and which footprints overlap.

A version's footprint is its URI plus its visualization URIs: the paths a sweep
deletes for it. Deleting them must never touch another version's files.
"""

from __future__ import annotations

from typing import Any

from artifact_gc.mark.ids import PART_ROWS, id_ranges, in_range, sql_uuid
from artifact_gc.paths import directory_key_sql

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
    """``in_visualizations`` becomes ``visualizations (id, rest, nested, inside)``.

    A URI inside its version's directory is kept as the part after that directory
    (``nested``), which is usually a file name short enough for DuckDB to store
    inline; ``inside`` also holds for a URI equal to the directory. The join runs
    range by range of version ids, which keeps its hash table small.
    """
    con.execute("CREATE TEMP TABLE visualizations "
                "(id UUID, rest VARCHAR, nested BOOLEAN, inside BOOLEAN)")
    for lo, hi in id_ranges(versions, JOIN_ROWS):
        version_range = in_range("v.id", sql_uuid(lo), sql_uuid(hi))
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
                  WHERE {version_range}) v ON v.id = z.artifact_version_id
            """
        )
    con.execute("DROP TABLE in_visualizations")
