"""What a sweep did (or, in a dry run, would do): :class:`SweepReport`, counted once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from artifact_gc.errors import ItemFailure
from artifact_gc.sweep.verify import BatchItem


@dataclass
class SweepReport:
    """What a sweep did (or, in a dry run, would do)."""

    sweep_id: str
    manifest_url: str
    mode: str
    dry_run: bool
    deleted: list[str] = field(default_factory=list)
    #: Versions gone before this sweep came to them (rows deleted by someone else, no
    #: file left): not counted as deleted, and no bytes freed.
    already_gone: list[str] = field(default_factory=list)
    revived: dict[str, str] = field(default_factory=dict)
    protected: dict[str, str] = field(default_factory=dict)
    failures: list[ItemFailure] = field(default_factory=list)
    bytes_freed: int = 0
    bytes_unknown: int = 0
    files_deleted: int = 0
    paths_deleted: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    batches: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.deleted) / self.elapsed if self.elapsed > 0 else 0.0

    def count_deleted(self, item: BatchItem, with_files: bool) -> int:
        """Count ``item`` as deleted (its files too, if ``with_files``); return the bytes
        that freed (0 when unknown)."""
        self.deleted.append(item.artifact_version_id)
        if not with_files:
            return 0
        self.paths_deleted += len(item.footprint)
        self.files_deleted += item.file_count or 0
        if item.size_bytes is None:
            self.bytes_unknown += 1
            return 0
        self.bytes_freed += item.size_bytes
        return item.size_bytes

    def count_rows(self, rows: dict[str, int]) -> None:
        for table, count in rows.items():
            self.rows_deleted[table] = self.rows_deleted.get(table, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id,
            "manifest": self.manifest_url,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "deleted": len(self.deleted),
            "already_gone": len(self.already_gone),
            "revived": len(self.revived),
            "protected": len(self.protected),
            "failed": len(self.failures),
            "bytes_freed": self.bytes_freed,
            "bytes_unknown_versions": self.bytes_unknown,
            "files_deleted": self.files_deleted,
            "paths_deleted": self.paths_deleted,
            "rows_deleted": dict(self.rows_deleted),
            "retries": self.retries,
            "batches": self.batches,
            "elapsed_seconds": round(self.elapsed, 3),
            "versions_per_second": round(self.rate, 1),
            "revived_versions": dict(self.revived),
            "protected_versions": dict(self.protected),
            "failures": [asdict(f) for f in self.failures],
        }
