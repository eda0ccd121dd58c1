"""Which object keys lie under which paths: one DuckDB join, for the S3 sweep and for
``gc mark --sizes``.

A key is under path ``p`` (d segments) when its first d segments are ``p``'s: that is
the key ``p`` itself, or any ``p/...`` (including a ``p/`` directory marker). Each
key is cut to every depth a path has, once, so that the match is an equi-join (a
hash join on depth and the cut key). Written inline in the join condition, DuckDB
planned it as a nested loop over keys x paths (129 s for 33k keys and 10k versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

_KEYS_UNDER_PATHS_SQL = """
WITH p AS (
    SELECT *, len(string_split(path, '/')) AS depth FROM {paths}
), d AS (SELECT DISTINCT depth FROM p),
cut AS (
    SELECT k.key, k.size, d.depth,
           array_to_string(string_split(k.key, '/')[1:d.depth], '/') AS head
    FROM {keys} k CROSS JOIN d
)
SELECT cut.key, cut.size, p.* EXCLUDE (depth)
FROM cut JOIN p ON p.depth = cut.depth AND p.path = cut.head
"""


def keys_under_paths(keys: str, paths: str) -> str:
    """SQL for the rows ``(key, size, path, <the other columns of paths>)``: every key of
    the relation ``keys`` (``key``, ``size``) under a ``path`` of the relation ``paths``
    (bucket-relative, no trailing ``/``), once for every row of ``paths`` it lies under."""
    return _KEYS_UNDER_PATHS_SQL.format(keys=keys, paths=paths)


def match_keys(con: Any, keys: pa.Table, paths: Sequence[str]) -> pa.Table:
    """Rows ``(key, size, path)``: every key of ``keys`` that lies under one of ``paths``
    (distinct, bucket-relative, without a trailing ``/``)."""
    path_table = pa.table({"path": pa.array(list(paths), pa.string())})
    con.register("gc_keys", keys)
    con.register("gc_paths", path_table)
    try:
        result: pa.Table = con.sql(keys_under_paths("gc_keys", "gc_paths")).to_arrow_table()
    finally:
        con.unregister("gc_keys")
        con.unregister("gc_paths")
    return result
