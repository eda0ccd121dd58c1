"""A mark's summary: counts and bytes by status and reason, the largest candidates."""

from __future__ import annotations

from typing import Any

from artifact_gc.manifest.reasons import STATUS_CANDIDATE, STATUS_PROTECTED, STATUS_REACHABLE


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
            f"WHERE status = '{STATUS_CANDIDATE}' GROUP BY ALL "
            f"ORDER BY sum(size_bytes) DESC NULLS LAST, count(*) DESC, 1 LIMIT {top}"
        ).fetchall()
    ]
    counts = {status: by_status.get(status, {}).get("versions", 0) for status in (
        STATUS_REACHABLE, STATUS_CANDIDATE, STATUS_PROTECTED)}
    sizes = {status: by_status.get(status, {}).get("bytes") for status in counts}
    return {"counts": counts, "bytes": sizes, "by_reason": by_reason,
            "largest_candidates": largest}
