"""How to sweep: the modes and :class:`SweepOptions`, passed down as a value."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from artifact_gc.errors import UsageError
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.sweep.journal import EVENT_DELETED, EVENT_FILES_DELETED, EVENT_ROWS_DELETED

MODE_ALL = "all"
MODE_ONLY_ARTIFACT = "only-artifact"
MODE_ONLY_METADATA = "only-metadata"
MODES = (MODE_ALL, MODE_ONLY_ARTIFACT, MODE_ONLY_METADATA)

DEFAULT_WORKERS = 16
DEFAULT_MAX_AGE = timedelta(days=7)
#: How long a sweep can be undone (``gc restore``) before ``gc trash empty`` purges it.
DEFAULT_UNDO_WINDOW = timedelta(days=7)

#: The event that ends an item, per mode (besides revived and protected).
DONE_EVENT = {
    MODE_ALL: EVENT_DELETED,
    MODE_ONLY_ARTIFACT: EVENT_FILES_DELETED,
    MODE_ONLY_METADATA: EVENT_ROWS_DELETED,
}


@dataclass(frozen=True)
class SweepOptions:
    """How to sweep, passed explicitly from the CLI down to every call that uses it."""

    mode: str = MODE_ALL
    dry_run: bool = False
    batch_size: int | None = None
    workers: int = DEFAULT_WORKERS
    ignore_errors: bool = False
    max_manifest_age: timedelta | None = DEFAULT_MAX_AGE
    #: ``--storage-option`` values: for remote artifact stores, and for the manifest and
    #: its journal when they are remote. Never written anywhere.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    limits: RequestLimits = field(default_factory=RequestLimits)
    #: ``--accept-schema``: the ZenML schema version (alembic revision) of a store that
    #: no schema profile covers, which the user accepts to sweep on reflection alone.
    accept_schema: str | None = None
    #: ``--journal``: where the journal lives (any fsspec URL) instead of beside the
    #: manifest, e.g. when the manifest's folder is read-only.
    journal: str | None = None
    #: ``--undo-window``: how long this sweep stays restorable (its rows are kept in
    #: undo segments beside the journal, its files in the store's trash or soft delete);
    #: None (``--no-undo``, or a zero window) deletes for good at once, as before.
    undo_window: timedelta | None = DEFAULT_UNDO_WINDOW

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown sweep mode {self.mode!r}; use one of {', '.join(MODES)}")
        if (self.batch_size is not None and self.batch_size < 1) or self.workers < 1:
            raise UsageError("--batch-size and --workers must be at least 1")

    @property
    def undo(self) -> bool:
        """Whether this sweep keeps what it deletes restorable."""
        return self.undo_window is not None and self.undo_window > timedelta(0)

    @property
    def done_event(self) -> str:
        """The journal event that ends an item in this mode."""
        return DONE_EVENT[self.mode]

    @property
    def deletes_rows(self) -> bool:
        return self.mode != MODE_ONLY_ARTIFACT

    @property
    def deletes_files(self) -> bool:
        return self.mode != MODE_ONLY_METADATA
