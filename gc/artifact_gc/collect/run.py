"""``collect()``: mark under a policy, check the brakes, then sweep, unattended.

Why this is safe to run from cron:

- Every mark runs on its own disjoint scope (scopes.py) with the ordinary mark, and
  every sweep is the ordinary sweep: re-verified against the live store in journaled
  batches. Nothing here deletes by itself.
- The sweep runs only when the policy says ``sweep = true``; otherwise the collection
  stops after the marks and leaves the manifests for a person.
- The brakes are checked after all the marks and before the first sweep: a brake that
  fires leaves the store exactly as it was.
- Each run writes a collection record beside its manifests, whatever its outcome,
  so the next run can judge a jump and carry the metrics' counters on.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from artifact_gc.collect.brakes import Totals, check_brakes
from artifact_gc.collect.policy import Policy, PolicyError
from artifact_gc.collect.records import previous_record, record_name, write_record
from artifact_gc.collect.report import (
    OUTCOME_BRAKED,
    OUTCOME_MARKED,
    OUTCOME_SWEPT,
    CollectReport,
    MarkedScope,
    SweepTotals,
)
from artifact_gc.collect.scopes import MarkScope, mark_scopes
from artifact_gc.errors import BrakeFired, DatabaseError, GCError, SweepIncomplete
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.locations import check_writable, resolve_output
from artifact_gc.manifest.reasons import STATUS_CANDIDATE
from artifact_gc.metadb.engine import create_engine, redact
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.zenml.config import resolve_database_url

#: The counters a collection record carries forward (metrics' ``*_total``).
COUNTERS = ("versions_deleted", "bytes_deleted", "versions_revived", "versions_failed",
            "collections", "brakes_fired")


def collect(policy: Policy, *, progress: Progress | None = None,
            db_url: str | None = None) -> CollectReport:
    """Run one collection under ``policy`` and return what it did.

    Raises only for what stops it before any mark (a policy that does not fit the
    store, an unreachable database). After that, the returned report carries the
    outcome, and the ``GCError`` that ended it early in ``report.error`` (a brake is
    :class:`BrakeFired`, exit 10); ``report.raise_for_outcome()`` raises it.
    ``db_url``, when given, is used instead of resolving ``policy.db``."""
    progress = progress or NullProgress()
    url = db_url or resolve_database_url(policy.db)
    started = mf.utc_now()
    clock = time.monotonic()
    collection_id = mf.new_mark_id()
    report = CollectReport(collection_id=collection_id, policy=policy.source,
                           database=redact(url), started_at=started.isoformat(),
                           sweep_enabled=policy.sweep)
    scopes = mark_scopes(policy, _projects_for(policy, url))
    location = policy.manifests.rstrip("/")
    storage = policy.storage_options
    try:
        _mark_all(report, scopes, url, location, storage, progress)
        _judge(report, policy, location, storage)
        if report.error is None:
            if policy.sweep:
                _sweep_all(report, policy, url, progress)
            else:
                report.outcome = OUTCOME_MARKED
    except GCError as error:
        report.error = error
    report.finished_at = mf.utc_now().isoformat()
    report.duration_seconds = time.monotonic() - clock
    _carry_forward(report)
    if report.database_fingerprint is not None:
        try:
            report.record = location + "/" + record_name(collection_id, started)
            write_record(location, record_name(collection_id, started), report.as_dict(),
                         storage)
        except GCError as error:
            report.record = None
            report.error = report.error or error
    return report


def _projects_for(policy: Policy, url: str) -> list[str] | None:
    """The store's project names, when a rule names a project (a rule naming a project
    the store does not have is a typo that would silently decide nothing)."""
    named = [r for r in policy.rules if r.project is not None]
    if not named:
        return None
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url, readonly=True)
    try:
        tables = set(inspect(engine).get_table_names())
        table = "project" if "project" in tables else "workspace"
        with engine.connect() as connection:
            projects = [str(r[0]) for r in connection.execute(text(f"SELECT name FROM {table}"))]
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the projects of {redact(url)}: "
                            f"{type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()
    for rule in named:
        if rule.project not in projects:
            raise PolicyError(policy.source, rule.line, f"{rule.name}.project",
                              f"no project named {rule.project!r} in the store; it has: "
                              + (", ".join(sorted(projects)) or "none"))
    return projects


def _mark_all(report: CollectReport, scopes: list[MarkScope], url: str, location: str,
              storage: dict[str, Any], progress: Progress) -> None:
    from artifact_gc.mark.run import mark

    for scope in scopes:
        mark_id = mf.new_mark_id()
        target = resolve_output(location + "/", mark_id, mf.utc_now(), storage)
        check_writable(target, storage_options=storage)
        progress.note(f"marking {scope.rule.name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = mark(url, target, scope.options, progress=progress, mark_id=mark_id)
        counts = result.info.counts
        candidates = int(counts.get(STATUS_CANDIDATE) or 0)
        size = result.info.bytes.get(STATUS_CANDIDATE)
        report.database_fingerprint = result.info.database
        report.marks.append(MarkedScope(
            rule=scope.rule.name, scope=scope.describe(), manifest=result.url,
            mark_id=result.info.mark_id,
            versions_in_scope=int(counts.get("versions_in_scope") or 0),
            candidates=candidates,
            # No candidate weighs nothing, measured or not.
            candidate_bytes=0 if candidates == 0 else (None if size is None else int(size)),
        ))


def _judge(report: CollectReport, policy: Policy, location: str,
           storage: dict[str, Any]) -> None:
    sizes = [m.candidate_bytes for m in report.marks]
    report.totals = Totals(
        versions_in_scope=sum(m.versions_in_scope for m in report.marks),
        candidates=sum(m.candidates for m in report.marks),
        candidate_bytes=None if any(s is None for s in sizes) else sum(s or 0 for s in sizes),
    )
    assert report.database_fingerprint is not None
    previous = previous_record(location, report.database_fingerprint, storage)
    if previous is not None:
        report.previous = {
            "record": previous.get("record"),
            "collection_id": previous.get("collection_id"),
            "started_at": previous.get("started_at"),
            "candidates": previous["totals"]["candidates"],
            "counters": previous.get("counters") or {},
            "last_success_at": previous.get("last_success_at"),
        }
    report.brakes = check_brakes(
        policy.brakes, report.totals,
        None if report.previous is None else int(report.previous["candidates"]))
    fired = report.fired
    # Without sweep = true there is no sweep to refuse: the verdicts are reported (the
    # summary, the metrics) and the collection marks and stops as it would anyway.
    if fired and policy.sweep:
        report.outcome = OUTCOME_BRAKED
        manifests = " ".join(m.manifest for m in report.marks)
        # The manifests stay where the marks wrote them: a person reviews them and may
        # sweep them by hand (gc sweep MANIFEST) if the brake was wrong.
        report.error = BrakeFired(
            "brake " + "; brake ".join(f"{b.name}: {b.message}" for b in fired)
            + f". Nothing was swept; review the manifests: {manifests}",
            brakes=tuple(b.name for b in fired))


def _sweep_all(report: CollectReport, policy: Policy, url: str, progress: Progress) -> None:
    from artifact_gc.sweep.execute import execute
    from artifact_gc.sweep.options import SweepOptions
    from artifact_gc.sweep.plan import plan_sweep

    totals = report.sweep = SweepTotals()
    options = SweepOptions(workers=policy.workers, storage_options=policy.storage_options,
                           undo_window=policy.undo_window)
    for marked in report.marks:
        if not marked.candidates:
            continue
        plan = plan_sweep(marked.manifest, url, options)
        try:
            swept = execute(plan, progress=progress)
        except GCError as error:
            if error.done is not None:
                totals.add(error.done)
            raise
        totals.add(swept.as_dict())
    if totals.failed:
        raise SweepIncomplete(f"{totals.failed} artifact version(s) failed; see gc status "
                              "for each manifest", failed=totals.failed)
    report.outcome = OUTCOME_SWEPT


def _carry_forward(report: CollectReport) -> None:
    """The running counters and the last success, from the previous record onwards."""
    before = (report.previous or {}).get("counters") or {}
    counters = {name: int(before.get(name, 0)) for name in COUNTERS}
    counters["collections"] += 1
    counters["brakes_fired"] += 1 if report.fired else 0
    if report.sweep is not None:
        counters["versions_deleted"] += report.sweep.deleted
        counters["bytes_deleted"] += report.sweep.bytes_freed
        counters["versions_revived"] += report.sweep.revived
        counters["versions_failed"] += report.sweep.failed
    report.counters = counters
    report.last_success_at = report.finished_at if report.succeeded else \
        (report.previous or {}).get("last_success_at")
