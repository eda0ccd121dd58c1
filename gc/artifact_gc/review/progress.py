"""How far the sweep of a manifest got, from its journal: ``gc show``, ``gc history``
and ``gc report`` show it."""

from __future__ import annotations

from dataclasses import dataclass

from artifact_gc.manifest.reasons import STATUS_CANDIDATE
from artifact_gc.review.session import Review
from artifact_gc.sweep.journal import EVENT_FAILED, FINAL_EVENTS

SWEEP_NONE = "none"
SWEEP_PARTIAL = "partial"
SWEEP_DONE = "done"
SWEEP_FAILED = "failed"


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

