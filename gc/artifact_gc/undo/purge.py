"""``gc trash empty``: purge the undo data of sweeps whose window has passed.

For each manifest given (or each manifest of a manifests location), the sweeps its
undo area records that are past their window (or older than ``--older-than``) and
not purged yet are purged, one at a time, under the manifest's sweep lock:

1. ``purge_intent`` is journaled;
2. each store's :meth:`FileUndo.purge` deletes that sweep's trashed files for good;
3. the sweep's row segments are deleted;
4. ``purged`` is journaled.

Each step is idempotent, so a purge cut short at any point is finished by running
the command again. Until step 4 a restore still finds the sweep restorable; one that
runs after step 2 and before step 4 of a crashed purge cannot get the files back and
stops at them (StorageError), changing no row. The files go before the rows: never a
row restored whose file is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from artifact_gc.errors import StorageError
from artifact_gc.manifest import format as mf
from artifact_gc.metadb.engine import create_engine, redact
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.sweep.journal import Journal
from artifact_gc.undo.area import (
    EVENT_PURGE_INTENT,
    EVENT_PURGED,
    OP_PURGE,
    SweepUndo,
    UndoArea,
    UndoEvent,
    new_op_id,
)
from artifact_gc.undo.files import open_store_undo
from artifact_gc.zenml.stores import load_artifact_stores


@dataclass(frozen=True)
class PurgeOptions:
    #: Purge sweeps older than this even inside their window (None: the window decides).
    older_than: timedelta | None = None
    dry_run: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    journal: str | None = None
    db_url: str | None = None


@dataclass(frozen=True)
class DueSweep:
    manifest_url: str
    journal_url: str
    mark_id: str
    mark_started: datetime
    db_url: str
    record: SweepUndo
    overrides: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest_url, "sweep_id": self.record.sweep_id,
                "started_at": self.record.started_at.isoformat(),
                "expires_at": self.record.expires_at.isoformat(),
                "stores": {k: v.describe for k, v in self.record.files.items()},
                "database": redact(self.db_url)}


@dataclass
class PurgePlan:
    options: PurgeOptions
    due: list[DueSweep]
    #: Sweeps with undo data still inside their window.
    waiting: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.options.dry_run, "due": [d.as_dict() for d in self.due],
                "waiting": self.waiting}


@dataclass
class PurgeReport:
    purge_id: str
    dry_run: bool
    sweeps: int = 0
    objects: int = 0
    row_segments: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"purge_id": self.purge_id, "dry_run": self.dry_run, "sweeps": self.sweeps,
                "objects_purged": self.objects, "row_segments_deleted": self.row_segments}


def manifests_of(targets: list[str], storage_options: dict[str, Any]) -> list[str]:
    """Each target as manifests: a manifest itself, or every manifest in a folder."""
    from artifact_gc.review.history import list_manifests
    from artifact_gc.storage.urls import url_to_fs

    found: list[str] = []
    for target in targets:
        fs, path = url_to_fs(target, storage_options)
        found += list_manifests(target, storage_options) if fs.isdir(path) and not \
            path.endswith(".parquet") else [target]
    return found


def plan_purge(targets: list[str], options: PurgeOptions | None = None,
               now: datetime | None = None) -> PurgePlan:
    """The sweeps of ``targets`` (manifests or manifests locations) to purge."""
    from artifact_gc.sweep.plan import _database_url

    options = options or PurgeOptions()
    now = now or mf.utc_now()
    plan = PurgePlan(options, [])
    for manifest in manifests_of(targets, options.storage_options):
        info = mf.read_info(manifest, options.storage_options)
        journal = Journal.of(manifest, info, options.storage_options, options.journal)
        area = UndoArea(journal.url, options.storage_options)
        records = area.sweeps()
        if not records:
            continue
        purged = area.purged()
        url = _database_url(options.db_url, info)
        for record in sorted(records.values(), key=lambda r: r.started_at):
            if record.sweep_id in purged:
                continue
            old = options.older_than is not None and record.started_at <= now - options.older_than
            if record.expires_at <= now or old:
                plan.due.append(DueSweep(manifest, journal.url, info.mark_id, info.started, url,
                                         record, dict(info.parameters.get("store_roots") or {})))
            else:
                plan.waiting += 1
    return plan


def execute_purge(plan: PurgePlan, *, progress: Progress | None = None) -> PurgeReport:
    """Purge every due sweep of ``plan`` (see the module doc)."""
    progress = progress or NullProgress()
    report = PurgeReport(new_op_id(), plan.options.dry_run)
    if plan.options.dry_run:
        report.sweeps = len(plan.due)
        return report
    progress.stage("emptying the trash", total=len(plan.due), unit="sweeps")
    try:
        for due in plan.due:
            _purge(due, plan.options, report)
            report.sweeps += 1
            progress.advance(1)
    finally:
        progress.close()
    return report


def _purge(due: DueSweep, options: PurgeOptions, report: PurgeReport) -> None:
    storage = options.storage_options
    journal = Journal(due.manifest_url, storage, url=due.journal_url, mark_id=due.mark_id,
                      mark_started=due.mark_started)
    area = UndoArea(due.journal_url, storage)
    sweep_id = due.record.sweep_id
    with journal.locked():
        area.append(report.purge_id, OP_PURGE, [UndoEvent(sweep_id, None, None,
                                                          EVENT_PURGE_INTENT)])
        if due.record.files:
            engine = create_engine(due.db_url, readonly=True)
            try:
                stores = load_artifact_stores(engine, due.db_url, due.overrides, storage)
            finally:
                engine.dispose()
            for store_id, kept in due.record.files.items():
                store = stores.get(store_id)
                if store is None or store.root != kept.root:
                    raise StorageError(
                        f"artifact store {store_id} is gone or has moved since sweep "
                        f"{sweep_id[:8]} (root {kept.root}); its trash cannot be emptied "
                        "from here", path=kept.root)
                backend, undo = open_store_undo(store, kept.root)
                try:
                    report.objects += undo.purge(sweep_id)
                finally:
                    undo.close()
                    backend.close()
        report.row_segments += area.delete_rows(sweep_id)
        area.append(report.purge_id, OP_PURGE, [UndoEvent(sweep_id, None, None, EVENT_PURGED)])
