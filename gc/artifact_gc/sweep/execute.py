"""Carry out a :class:`SweepPlan`: one batch loop, through an :class:`Effects`.

Why the order of a batch (mode ``all``) is safe:

1. ``intent`` is journaled, durably, before anything is deleted. A crash at any later
   point leaves an item whose last event is ``intent``; the next sweep re-runs it.
2. The database step re-verifies every candidate and deletes its rows in one locked
   transaction (effects.py). A crash before the commit rolls everything back.
3. The files are deleted only after the commit: from then on no row names them, so
   no reader can be handed a version whose files are gone. A crash between the commit
   and the end of the file deletes leaves ``intent`` as the last event; the re-run
   finds the rows gone, re-checks the URI guard and finishes the files (invariant 6).
4. ``deleted`` is journaled. Deleting a file twice is harmless (invariant 7).

An interrupt (Ctrl-C) is a crash that gets to clean up: the batch whose files are
being deleted finishes and is journaled, the sweep lock is let go, and the sweep
stops with :class:`Interrupted` (exit 130) saying what it finished. Whatever point
it came at, the journal is as a crash there would leave it, so the next sweep resumes.

In mode ``only-artifact`` the files go inside the locked transaction instead, and the
outcome is journaled before the lock is let go; ``only-metadata`` deletes no file.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from artifact_gc.errors import (
    DatabaseError,
    GCError,
    Interrupted,
    ItemFailure,
    StorageError,
    caused_by_interrupt,
)
from artifact_gc.manifest.reasons import PROTECT_ROWS_DELETED_ELSEWHERE
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.storage.fence import RealDirs
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.sweep import hooks as points
from artifact_gc.sweep.batch import (
    Verdict,
    batch_item,
    failed_events,
    fence,
    intent_events,
    protected_event,
)
from artifact_gc.sweep.effects import Effects, FilesystemFactory, open_effects
from artifact_gc.sweep.hooks import SweepHooks
from artifact_gc.sweep.journal import Event, journal_url, record_journal
from artifact_gc.sweep.options import MODE_ALL
from artifact_gc.sweep.orphan_files import OrphanSweep, orphan_grace, split_items
from artifact_gc.sweep.plan import SweepPlan, batch_slices
from artifact_gc.sweep.report import SweepReport
from artifact_gc.sweep.verify import BatchItem


def execute(
    plan: SweepPlan,
    *,
    progress: Progress | None = None,
    filesystem_factory: FilesystemFactory | None = None,
    hooks: SweepHooks | None = None,
) -> SweepReport:
    """Carry out ``plan``; return what was done. A dry run writes nothing at all.

    A sweep that stops raises its ``GCError`` with what it did until then in
    ``error.done`` (``SweepReport.as_dict()``); the journal has the same. ``hooks``:
    see hooks.py (tests and benchmarks only)."""
    progress = progress or NullProgress()
    sweep = _Sweep(plan, progress, hooks or SweepHooks())
    try:
        try:
            return sweep.run(filesystem_factory)
        except KeyboardInterrupt:
            report = sweep.report
            stopped = Interrupted(
                f"interrupted (Ctrl-C) after {report.batches:,} finished batch(es): "
                f"{_finished(report)}; each finished batch is journaled and the sweep "
                "lock is released")
            raise stopped from None
    except Interrupted as error:
        error.done = sweep.report.as_dict()
        raise
    except GCError as error:
        report = sweep.report
        # Only a sweep that got to its batches has something to show (a refused lock
        # or an unreachable database has not).
        if report.batches or report.failures or report.deleted:
            error.done = report.as_dict()
        raise
    finally:
        progress.close()


def _finished(report: SweepReport) -> str:
    done = "would delete" if report.dry_run else "deleted"
    return (f"{done} {len(report.deleted):,}, already gone {len(report.already_gone):,}, "
            f"revived {len(report.revived):,}, protected {len(report.protected):,}, "
            f"failed {len(report.failures):,}")


_T = TypeVar("_T")


@dataclass
class _Begun:
    """A batch whose database step is done and whose outcome is not yet journaled."""

    batch_no: int
    size: int
    verdict: Verdict
    file_errors: dict[str, str] = field(default_factory=dict)
    journaled: bool = False
    files_after_commit: bool = False


class _BatchFailed(Exception):
    def __init__(self, failure: ItemFailure, error: GCError) -> None:
        super().__init__(error.message)
        self.failure = failure
        self.error = error


class _Sweep:
    """One run of the batch loop over a plan."""

    def __init__(self, plan: SweepPlan, progress: Progress, hooks: SweepHooks) -> None:
        self.plan = plan
        self.options = plan.options
        self.progress = progress
        self.hooks = hooks
        self.report = SweepReport(uuid.uuid4().hex, plan.manifest_url, self.options.mode,
                                  self.options.dry_run)
        self.retries = RetryCounter()
        self.effects: Effects

    def run(self, filesystem_factory: FilesystemFactory | None) -> SweepReport:
        started = time.monotonic()
        if not self.options.dry_run and \
                self.plan.journal_url != journal_url(self.plan.manifest_url):
            # A journal away from its manifest: where gc status, report and history
            # look for it on this machine (best effort; --journal finds it anyway).
            record_journal(self.plan.info.mark_id, self.plan.manifest_url,
                           self.plan.journal_url)
        try:
            with open_effects(self.plan, sweep_id=self.report.sweep_id, hooks=self.hooks,
                              retries=self.retries,
                              filesystem_factory=filesystem_factory) as effects:
                self.effects = effects
                versions, orphans = split_items(effects.items)
                self._batches(versions, effects.first_batch)
                if orphans.num_rows and self.options.deletes_files:
                    # Orphan files have no rows: --only-metadata leaves them pending.
                    after = effects.first_batch + -(-versions.num_rows // self.plan.batch_size)
                    OrphanSweep(self.plan, effects, self.report, self.hooks, self.progress,
                                orphan_grace(self.plan.info)).run(orphans, after)
        finally:
            self.report.retries = self.retries.count
            self.report.elapsed = time.monotonic() - started
        return self.report

    def _batches(self, items: pa.Table, batch_no: int) -> None:
        total = items.num_rows
        self.progress.stage(self.effects.stage, total=total, unit="versions")
        size = self.plan.batch_size
        # In mode "all" a batch's files are deleted while the next batch goes through
        # the database. Each batch still follows intent -> commit -> files -> final
        # event, so a crash anywhere leaves at most two batches with an intent and no
        # final event, and the next sweep finishes both.
        in_flight: tuple[_Begun, Future[dict[str, str]]] | None = None
        # The next batch is read and fenced while this one is in the database: reads
        # only, see _prepare.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc-files") as files, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc-ahead") as ahead:
            try:
                # Batches of ``size``, a family of nested URIs never cut in two.
                slices = batch_slices(items, size)
                upcoming = ahead.submit(self._prepare, items, *slices[0]) if slices else None
                for n, _ in enumerate(slices):
                    assert upcoming is not None
                    batch, resumed, fenced = upcoming.result()
                    upcoming = (ahead.submit(self._prepare, items, *slices[n + 1])
                                if n + 1 < len(slices) else None)
                    begun = self._guarded(self._begin, batch_no, batch, resumed, fenced)
                    if in_flight is not None:
                        previous, in_flight = in_flight, None
                        self._guarded(self._finish, previous[0], previous[1].result())
                    if begun is not None:
                        if begun.files_after_commit:
                            in_flight = (begun, files.submit(self.effects.delete_files,
                                                             begun.verdict.deletable))
                        else:
                            self._guarded(self._finish, begun, begun.file_errors)
                    self.report.batches += 1
                    batch_no += 1
                if in_flight is not None:
                    last, in_flight = in_flight, None
                    self._guarded(self._finish, last[0], last[1].result())
            finally:
                if in_flight is not None:
                    # Only while an error propagates: let the files already being
                    # deleted finish and be journaled, work that a resume then need
                    # not redo.
                    begun, future = in_flight
                    try:
                        self._finish(begun, future.result())
                    except _BatchFailed as failed:
                        self.report.failures.append(failed.failure)

    def _guarded(self, step: Callable[..., _T], *args: Any) -> _T:
        try:
            return step(*args)
        except _BatchFailed as failed:
            self.report.failures.append(failed.failure)
            raise failed.error from failed

    def _prepare(self, items: pa.Table, start: int, length: int
                 ) -> tuple[list[BatchItem], set[str], list[str | None]]:
        """The batch of ``length`` items at ``start``: its items, the ids an earlier
        sweep of this mark began, and the root fence's verdict on each item (None:
        inside its root); the database's memory warmed for its rows (Effects.warm).

        Reads only, so it runs while the batch before is in the database. The fence
        here is the early check that keeps a path outside its root away from the
        database step; a verdict a few seconds old is as good as a fresh one for that,
        because every storage backend fences each path again right before it deletes
        (storage/fence.py), and that check is the one that guards the files."""
        rows = items.slice(start, length).to_pylist()
        batch = [batch_item(row) for row in rows]
        # Items an earlier sweep of this mark started: rows found gone are its own
        # work, finished now, not someone else's.
        resumed = {row["artifact_version_id"] for row in rows
                   if row["last_event"] is not None}
        real_dirs = RealDirs()  # symlinks resolved afresh for every batch
        reasons = [fence(item, self.plan.stores, real_dirs) for item in batch]
        # The rows the batch's locked transaction will need, read into the database's
        # memory while the batch before is in it (reads only, without locks).
        self.effects.warm([item for item, reason in zip(batch, reasons, strict=True)
                           if not reason])
        return batch, resumed, reasons

    def _begin(self, batch_no: int, items: list[BatchItem], resumed: set[str],
               reasons: list[str | None]) -> _Begun | None:
        """Journal the fence's refusals and the intent, and do the database step."""
        with self.hooks.phase(points.BATCH_BEGIN):
            ready: list[BatchItem] = []
            fenced: list[Event] = []
            for item, reason in zip(items, reasons, strict=True):
                if reason:
                    fenced.append(protected_event(item, reason))
                    self.report.protected[item.artifact_version_id] = reason
                else:
                    ready.append(item)
            self.effects.journal(batch_no, fenced)
            if not ready:
                self.progress.advance(len(items))
                return None
            # 1. Intent, durable before anything is deleted.
            self.effects.journal(batch_no, intent_events(ready))
            self.hooks.point(points.AFTER_INTENT)
            try:
                with self.hooks.phase(points.DATABASE):
                    outcome = self.effects.database_step(batch_no, ready)
            except Exception as exc:  # noqa: BLE001 - every cause is journaled and reported
                if caused_by_interrupt(exc):
                    # Ctrl-C inside the transaction, and cleaning up after it failed in
                    # turn (a connection it left invalid): an interrupt, not a failure.
                    # Committed or not, the intent makes the next sweep finish the batch.
                    raise KeyboardInterrupt from exc
                cause = f"{type(exc).__name__}: {exc}"
                self.effects.journal(batch_no, failed_events(ready, cause))
                self.progress.advance(len(items))
                self._fail([ItemFailure(i.artifact_version_id, "database", cause)
                            for i in ready], DatabaseError(
                    f"the database step of batch {batch_no} failed for good "
                    f"(first version {ready[0].artifact_version_id}, {len(ready)} in the "
                    f"batch): {cause}. Run gc sweep again to resume."))
                return None
            self.hooks.point(points.AFTER_COMMIT)
            self.report.count_rows(outcome.rows)
            verdict = Verdict.of(outcome.live, ready)
            if not outcome.journaled:
                self._gone_before(verdict, outcome.live.existing, resumed)
            self.report.revived.update(verdict.revived)
            self.report.protected.update(verdict.protected)
            self.report.already_gone += verdict.already_gone
            # 2. In mode "all" the files go once the rows are gone for good: from then
            # on no reference to these versions can be created.
            return _Begun(batch_no, len(items), verdict, outcome.file_errors,
                          journaled=outcome.journaled,
                          files_after_commit=(self.options.mode == MODE_ALL
                                              and bool(verdict.deletable)))

    def _gone_before(self, verdict: Verdict, existing: set[str], resumed: set[str]) -> None:
        """Set apart the versions that were gone before this sweep: rows deleted by
        someone else (not by an earlier run of this mark's sweep) and, where the mode
        deletes files, no file left. A version whose files are still there is kept
        (``rows_deleted_elsewhere``): the files belong to whoever deleted the rows."""
        gone = [item for item in verdict.deletable
                if item.artifact_version_id not in existing
                and item.artifact_version_id not in resumed]
        if not gone:
            return
        if not self.options.deletes_files:
            verdict.set_gone({item.artifact_version_id for item in gone})
            return
        absent = self.effects.absent(gone)
        verdict.set_gone(absent)
        # Another manifest's sweep interrupted after its commit owns these files: its
        # resume moves them into its own trash, where its restore finds them. Taking
        # them here would let that restore bring the rows back without their files.
        # Rows ZenML deleted leave the files as orphans, which `gc mark --orphan-files`
        # finds (class deleted_version_output); nothing is lost by waiting for it.
        verdict.protect({item.artifact_version_id for item in gone} - absent,
                        PROTECT_ROWS_DELETED_ELSEWHERE)

    def _finish(self, begun: _Begun, file_errors: dict[str, str]) -> None:
        """Count and journal the outcome of a batch whose database step is done."""
        with self.hooks.phase(points.BATCH_FINISH):
            failures: list[ItemFailure] = []
            freed = 0
            for item in begun.verdict.deletable:
                error = file_errors.get(item.artifact_version_id)
                if error:
                    failures.append(ItemFailure(item.artifact_version_id, "files", error))
                else:
                    freed += self.report.count_deleted(item,
                                                       with_files=self.options.deletes_files)
            self.hooks.point(points.BEFORE_FINAL)
            if not begun.journaled:
                self.effects.journal(begun.batch_no,
                                     begun.verdict.events(file_errors, self.options.done_event))
            self.progress.advance(begun.size, self.effects.freed(freed))
            if failures:
                first = failures[0]
                more = (f" (and {len(failures) - 1} more in batch {begun.batch_no})"
                        if len(failures) > 1 else "")
                self._fail(failures, StorageError(
                    f"could not delete the files of artifact version "
                    f"{first.artifact_version_id}: {first.cause}{more}. "
                    "Run gc sweep again to resume.", path=None))

    def _fail(self, failures: list[ItemFailure], error: GCError) -> None:
        if self.options.ignore_errors:
            self.report.failures.extend(failures)
            return
        self.report.failures.extend(failures[1:])
        raise _BatchFailed(failures[0], error)
