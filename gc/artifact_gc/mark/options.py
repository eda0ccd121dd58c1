"""What to mark: :class:`MarkOptions`, passed down as a value from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from artifact_gc.durations import format_duration
from artifact_gc.metadb.snapshot import DEFAULT_LOCK_TIMEOUT
from artifact_gc.storage.limits import RequestLimits

#: The grace period: versions younger than this are never candidates (invariant 4).
DEFAULT_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class MarkOptions:
    """What to mark, and which policies keep versions that nothing refers to."""

    older_than: timedelta = DEFAULT_GRACE
    keep_latest: int | None = None
    projects: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    exclude_artifacts: tuple[str, ...] = ()
    sizes: bool = False
    store_roots: dict[str, str] = field(default_factory=dict)
    workers: int = 16
    #: ``--storage-option`` values for remote artifact stores and a remote manifest.
    #: Never written to the manifest (they may hold credentials).
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    limits: RequestLimits = field(default_factory=RequestLimits)
    #: ``--keep-tag``: versions carrying one of these tags, or whose artifact does, are
    #: protected (``tag:<name>``). The sweep re-verifies them from the manifest's
    #: parameters.
    keep_tags: tuple[str, ...] = ()
    #: ``--release-unreachable-snapshots``: a step configuration's reference stops
    #: keeping a version once nothing can run its snapshot again (zenml.snapshots).
    release_unreachable_snapshots: bool = False
    #: ``--orphan-files``: also list every store and classify what no row names.
    orphan_files: bool = False
    #: ``--orphan-code-uploads``: a code archive (``code_uploads/<sha1>.tar.gz``) that no
    #: snapshot names becomes a candidate (``unreferenced_code_upload``); without it,
    #: every code archive is unknown and never deleted.
    orphan_code_uploads: bool = False
    #: ``--inventory URL``: classify orphan files from this listing instead of LIST.
    inventory: str | None = None
    #: ``--max-inventory-age``: refuse an inventory taken longer ago than this.
    max_inventory_age: timedelta | None = None
    #: How long the mark waits for a locked store (``--lock-timeout``), retries
    #: included, before it fails with exit 3.
    lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT

    def as_dict(self) -> dict[str, Any]:
        return {
            "older_than": format_duration(self.older_than),
            "older_than_seconds": int(self.older_than.total_seconds()),
            "keep_latest": self.keep_latest,
            "projects": list(self.projects),
            "artifacts": list(self.artifacts),
            "exclude_artifacts": list(self.exclude_artifacts),
            "sizes": self.sizes,
            "store_roots": dict(self.store_roots),
            "keep_tags": list(self.keep_tags),
            "release_unreachable_snapshots": self.release_unreachable_snapshots,
            "orphan_files": self.orphan_files,
            "orphan_code_uploads": self.orphan_code_uploads,
            "inventory": self.inventory,
        }
