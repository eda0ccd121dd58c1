"""``gc diff``: what changed between two marks of one store, item by item.

Rows are matched on their item key (``item_kind``, ``item_id``), so the diff needs no
special case per kind of item, and a 1.0 manifest compares with a 1.1 one (its rows
read as artifact versions keyed by their ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from artifact_gc.errors import ManifestRefused
from artifact_gc.manifest.format import ManifestInfo, check_format, read_info
from artifact_gc.manifest.reasons import PROTECT_FILTERED_OUT
from artifact_gc.manifest.views import duckdb_for, manifest_relation, register_filesystem
from artifact_gc.metadb.fingerprint import DatabaseFingerprint
from artifact_gc.review.session import StorageOptions

#: Diff categories, in the order they are reported.
DIFF_CATEGORIES = ("new_candidate", "revived", "filtered_out", "disappeared", "appeared")

#: What each category means, in the words ``gc diff`` prints beside it.
DIFF_MEANINGS = {
    "new_candidate": "a candidate in B that was not one in A",
    "revived": "a candidate in A that B keeps: something refers to it again",
    "filtered_out": "a candidate in A that gc filter --where excluded from B",
    "disappeared": "in A, not in B (swept, deleted, or out of B's scope)",
    "appeared": "new in B, and not a candidate",
}

_DIFF_SQL = """
WITH a AS ({a}),
     b AS ({b}),
     joined AS (
         SELECT
             item_kind,
             item_id,
             coalesce(a.artifact_version_id, b.artifact_version_id) AS artifact_version_id,
             coalesce(b.artifact_name, a.artifact_name) AS artifact_name,
             coalesce(b.project, a.project) AS project,
             a.status AS status_a,
             b.status AS status_b,
             b.reasons AS reasons_b,
             CASE
                 WHEN b.status = 'candidate' AND a.status IS DISTINCT FROM 'candidate'
                     THEN 'new_candidate'
                 -- gc filter keeps a candidate out with this reason alone: the
                 -- store did not change, the reviewer's predicate did.
                 WHEN a.status = 'candidate' AND b.status IS NOT NULL
                      AND b.status <> 'candidate'
                      AND list_contains(b.reasons, '{filtered_out}') THEN 'filtered_out'
                 WHEN a.status = 'candidate' AND b.status IS NOT NULL
                      AND b.status <> 'candidate' THEN 'revived'
                 WHEN b.item_id IS NULL THEN 'disappeared'
                 WHEN a.item_id IS NULL THEN 'appeared'
             END AS change,
             coalesce(b.size_bytes, a.size_bytes) AS size_bytes,
             coalesce(b.uri, a.uri) AS uri,
             coalesce(b.orphan_class, a.orphan_class) AS orphan_class
         FROM a FULL OUTER JOIN b USING (item_kind, item_id)
     )
SELECT * FROM joined WHERE change IS NOT NULL
ORDER BY change, size_bytes DESC NULLS LAST, artifact_name, item_kind, item_id
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
    #: Changes by item kind and orphan-file class: ``change, item_kind, orphan_class,
    #: items, bytes``.
    by_kind: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return int(self.rows.num_rows) == 0

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        rows = self.rows if limit is None else self.rows.slice(0, limit)
        return {"a": self.a, "b": self.b, "mark_a": self.mark_a, "mark_b": self.mark_b,
                "totals": self.totals, "by_kind": self.by_kind, "rows": rows.to_pylist()}


def _same_store(a: str, info_a: ManifestInfo, b: str, info_b: ManifestInfo) -> None:
    """The same rule as the sweep's: two marks compare only if they describe one store."""
    store_a = DatabaseFingerprint.from_dict(info_a.database)
    store_b = DatabaseFingerprint.from_dict(info_b.database)
    if not store_a.same_store(store_b):
        raise ManifestRefused(
            f"{a} and {b} are marks of different stores "
            f"({store_a.describe()} vs {store_b.describe()})",
            b, "different_store",
        )


def diff(a: str, b: str, *, storage_options: StorageOptions = None) -> DiffResult:
    """Compare the marks ``a`` (older) and ``b`` (newer) of one store.

    ``new_candidate``: a candidate in B that was not one in A (or not in A at all);
    ``revived``: a candidate in A that B keeps; ``filtered_out``: a candidate in A that
    a ``gc filter`` predicate left out of B; ``disappeared``: in A, gone from B
    (swept, deleted or out of B's scope); ``appeared``: new in B and not a candidate.
    """
    info_a = read_info(a, storage_options)
    check_format(info_a, a)
    info_b = read_info(b, storage_options)
    check_format(info_b, b)
    _same_store(a, info_a, b, info_b)
    with duckdb_for(a, storage_options) as connection:
        register_filesystem(connection, b, storage_options)
        rows = connection.sql(_DIFF_SQL.format(
            a=manifest_relation(connection, a), b=manifest_relation(connection, b),
            filtered_out=PROTECT_FILTERED_OUT,
        )).to_arrow_table()
        connection.register("changes", rows)
        found = {
            change: {"versions": int(n), "bytes": None if nb is None else int(nb)}
            for change, n, nb in connection.execute(
                "SELECT change, count(*), sum(size_bytes)::BIGINT FROM changes GROUP BY change"
            ).fetchall()
        }
        by_kind = [
            {"change": c, "item_kind": k, "orphan_class": o, "items": int(n),
             "bytes": None if nb is None else int(nb)}
            for c, k, o, n, nb in connection.execute(
                "SELECT change, item_kind, orphan_class, count(*), sum(size_bytes)::BIGINT "
                "FROM changes GROUP BY ALL ORDER BY ALL").fetchall()
        ]
    totals: dict[str, dict[str, int | None]] = {
        change: found.get(change, {"versions": 0, "bytes": None})
        for change in DIFF_CATEGORIES
    }
    return DiffResult(a, b, info_a.mark_id, info_b.mark_id, totals, rows, by_kind)
