"""``gc history``: the marks found in a manifests location, and how far each was swept."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from artifact_gc.errors import ManifestRefused, UsageError
from artifact_gc.manifest.reasons import STATUS_CANDIDATE, STATUS_PROTECTED, STATUS_REACHABLE
from artifact_gc.review.progress import SWEEP_NONE, sweep_progress
from artifact_gc.review.session import StorageOptions, open_review
from artifact_gc.storage.urls import is_remote, url_to_fs


@dataclass
class HistoryEntry:
    """One manifest found in a manifests location."""

    url: str
    mark_id: str | None = None
    started_at: str | None = None
    store_id: str | None = None
    database: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    bytes: dict[str, Any] = field(default_factory=dict)
    derived: bool = False
    sweep: str = SWEEP_NONE
    swept: int = 0
    #: Each sweep with an undo window: its id, window, end and state (restorable,
    #: expired: still restorable until gc trash empty, purged).
    undo: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe_database(fingerprint: dict[str, Any]) -> str:
    dialect = fingerprint.get("dialect") or "?"
    where = fingerprint.get("host") or ""
    if fingerprint.get("port"):
        where += f":{fingerprint['port']}"
    database = fingerprint.get("database") or ""
    return f"{dialect}://{where}/{database}" if where else f"{dialect}:{database}"


def list_manifests(location: str, storage_options: StorageOptions = None) -> list[str]:
    """The URLs of the ``*.parquet`` files directly in ``location``."""
    fs, path = url_to_fs(location, storage_options)
    if not fs.exists(path):
        raise UsageError(f"{location} does not exist")
    if not fs.isdir(path):
        raise UsageError(f"{location} is not a directory")
    found = sorted(fs.glob(path.rstrip("/") + "/*" + ".parquet"))
    if is_remote(location):
        return [fs.unstrip_protocol(p) for p in found]
    return [str(p) for p in found]


def history(location: str, *, storage_options: StorageOptions = None) -> list[HistoryEntry]:
    """The marks and sweeps found in a manifests location, oldest first. A file that
    is not a readable manifest is listed with its error, never skipped silently."""
    entries: list[HistoryEntry] = []
    for url in list_manifests(location, storage_options):
        entry = HistoryEntry(url=url)
        try:
            with open_review(url, storage_options) as review:
                info = review.info
                entry.mark_id = info.mark_id
                entry.started_at = info.started_at
                entry.store_id = info.database.get("store_id")
                entry.database = _describe_database(info.database)
                entry.counts = {k: info.counts.get(k) for k in (
                    STATUS_REACHABLE, STATUS_PROTECTED, STATUS_CANDIDATE)}
                entry.bytes = dict(info.bytes)
                entry.derived = bool(info.lineage)
                progress = sweep_progress(review)
                entry.sweep = progress.state
                entry.swept = progress.by_state.get("deleted", 0)
                entry.undo = undo_windows(url, info, storage_options)
        except ManifestRefused as exc:
            entry.error = exc.message
        entries.append(entry)
    entries.sort(key=lambda e: (e.started_at or "", e.url))
    return entries


def undo_windows(url: str, info: Any, storage_options: StorageOptions = None
                 ) -> list[dict[str, Any]]:
    """The undo window of each sweep of the manifest at ``url``, oldest first."""
    from artifact_gc.durations import format_duration
    from artifact_gc.sweep.journal import Journal
    from artifact_gc.undo.area import UndoArea, sweep_state

    journal = Journal.of(url, info, storage_options)
    area = UndoArea(journal.url, storage_options)
    records = area.sweeps()
    if not records:
        return []
    purged = area.purged()
    return [{"sweep_id": r.sweep_id, "started_at": r.started_at.isoformat(),
             "window": format_duration(r.window), "expires_at": r.expires_at.isoformat(),
             "state": sweep_state(r, purged),
             "files": {k: v.describe for k, v in r.files.items()}}
            for r in sorted(records.values(), key=lambda r: r.started_at)]
