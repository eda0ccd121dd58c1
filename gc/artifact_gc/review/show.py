"""``gc show``: a manifest's counts and bytes by one dimension, its largest candidate
artifacts, the candidates' age histogram, the mark's parameters and fingerprint."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from artifact_gc.errors import UsageError
from artifact_gc.review.progress import SweepProgress, sweep_progress
from artifact_gc.review.session import StorageOptions, checksum_ok, open_review

#: ``gc show --by`` dimension -> the review query that answers it.
DIMENSIONS: dict[str, str] = {
    "status": "by_status",
    "reason": "by_reason",
    "project": "by_project",
    "artifact": "by_artifact",
    "age": "by_age",
    "referrer": "by_referrer",
}


@dataclass
class ShowResult:
    """Everything ``gc show`` prints about one manifest."""

    url: str
    info: dict[str, Any]
    checksum_ok: bool
    by: str
    rows: list[dict[str, Any]]
    largest_candidates: list[dict[str, Any]]
    candidate_age: list[dict[str, Any]]
    sizes_measured: bool
    sweep: SweepProgress

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def show(
    url: str, *, by: str = "status", top: int = 10, storage_options: StorageOptions = None
) -> ShowResult:
    """Counts and bytes of a manifest by one dimension, its largest candidate artifacts,
    the candidates' age histogram, the mark's parameters and fingerprint."""
    if by not in DIMENSIONS:
        raise UsageError(f"--by must be one of {', '.join(DIMENSIONS)}, not {by!r}")
    if top < 1:
        raise UsageError("--top must be 1 or more")
    with open_review(url, storage_options) as review:
        as_of = review.info.started_at or None
        age_vars: dict[str, Any] = {"as_of": as_of} if as_of else {}
        rows = review.run(DIMENSIONS[by], top=top, **age_vars)
        for row in rows:
            row.pop("bucket_order", None)
        largest = review.run("largest_candidates", top=top)
        ages = review.run("candidate_age", **age_vars)
        for row in ages:
            row.pop("bucket_order", None)
        measured = bool(review.connection.execute(
            "SELECT count(size_bytes) > 0 FROM manifest"
        ).fetchall()[0][0])
        return ShowResult(
            url=url,
            info=review.info.as_dict(),
            checksum_ok=checksum_ok(review),
            by=by,
            rows=rows,
            largest_candidates=largest,
            candidate_age=ages,
            sizes_measured=measured or bool(review.info.parameters.get("sizes")),
            sweep=sweep_progress(review),
        )
