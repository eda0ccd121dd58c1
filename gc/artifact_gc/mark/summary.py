"""A mark's summary: counts and bytes by status and reason, the largest candidates,
and the words that explain each status and reason to someone reading it once."""

from __future__ import annotations

from typing import Any

from artifact_gc.manifest.reasons import (
    PROTECT_FILTERED_OUT,
    PROTECT_GRACE,
    PROTECT_KEEP_LATEST,
    PROTECT_NO_STORE,
    PROTECT_OUTSIDE_ROOT,
    PROTECT_OVERLAP,
    PROTECT_OVERLAP_SINCE_MARK,
    PROTECT_PREEXISTING,
    PROTECT_ROOT_CHANGED,
    REASON_CONFIG,
    REASON_FOREIGN_KEY_PREFIX,
    STATUS_CANDIDATE,
    STATUS_PROTECTED,
    STATUS_REACHABLE,
)

#: What a status means, in a user's words.
STATUS_MEANINGS = {
    STATUS_REACHABLE: "something in the store refers to it: kept",
    STATUS_PROTECTED: "nothing refers to it, but a safety rule keeps it",
    STATUS_CANDIDATE: "nothing keeps it: gc sweep deletes it",
}

#: Rules that protect a version (the other reasons are references).
PROTECTIONS = (PROTECT_PREEXISTING, PROTECT_NO_STORE, PROTECT_OUTSIDE_ROOT, PROTECT_GRACE,
               PROTECT_KEEP_LATEST, PROTECT_OVERLAP, PROTECT_ROOT_CHANGED,
               PROTECT_OVERLAP_SINCE_MARK, PROTECT_FILTERED_OUT)

_REASON_MEANINGS = {
    "step_input": "a step run took it as input",
    "step_output": "a step run that still exists produced it",
    "model_link": "linked to a model version",
    "run_output": "an output of a pipeline run",
    "hook_output": "an output of a hook",
    REASON_CONFIG: "a step configuration names it (external artifact)",
    PROTECT_PREEXISTING: "the user's own files, registered in place",
    PROTECT_NO_STORE: "it belongs to no artifact store",
    PROTECT_OUTSIDE_ROOT: "its files lie outside its artifact store's root",
    PROTECT_GRACE: "younger than the grace period (--older-than)",
    PROTECT_KEEP_LATEST: "one of its artifact's newest versions (--keep-latest)",
    PROTECT_OVERLAP: "its files overlap a kept version's files",
    PROTECT_ROOT_CHANGED: "its artifact store's root changed since the mark",
    PROTECT_OVERLAP_SINCE_MARK: "a version created since the mark overlaps its files",
    PROTECT_FILTERED_OUT: "left out by gc filter --where",
}


def reason_meaning(reason: str) -> str:
    """A reason in a user's words (an unknown one is shown as it is named)."""
    if reason in _REASON_MEANINGS:
        return _REASON_MEANINGS[reason]
    if reason.startswith(REASON_FOREIGN_KEY_PREFIX):
        return f"a row of table {reason[len(REASON_FOREIGN_KEY_PREFIX):]} refers to it"
    if reason.startswith("tag:"):
        return f"it carries the tag {reason[4:]} (--keep-tag)"
    return reason


def decides(status: str, reason: str | None) -> bool:
    """Whether ``reason`` is why a version of ``status`` is kept. A reachable version
    also carries the rules that would protect it (a young one: grace_period), but the
    reference keeps it whatever they say."""
    return not (status == STATUS_REACHABLE and reason in PROTECTIONS)


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
        {"status": s, "reason": r, "versions": int(n), "bytes": None if b is None else int(b),
         "decides": decides(s, r)}
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
