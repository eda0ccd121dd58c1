"""The files of the undo window: each store's :class:`FileUndo` (storage/trash.py),
opened the one way the sweep, the restore and the purge all use."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from artifact_gc.storage.backend import Backend, DeleteOutcome, default_filesystem, open_backend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.storage.trash import FileUndo, open_file_undo
from artifact_gc.zenml.stores import ArtifactStore


def open_store_undo(store: ArtifactStore, root: str, *, fs: Any | None = None,
                    workers: int = 16, retries: RetryCounter | None = None,
                    limits: RequestLimits | None = None) -> tuple[Backend, FileUndo]:
    """The backend of ``store`` and the undo beside it (``StorageError`` when the store
    cannot offer one)."""
    fs = fs if fs is not None else default_filesystem(store)
    backend = open_backend(store, root, fs, workers=workers,
                           retries=retries or RetryCounter(),
                           limits=limits or RequestLimits())
    try:
        return backend, open_file_undo(store, root, fs, backend)
    except BaseException:
        backend.close()
        raise


class TrashingFiles:
    """A store's files as the sweep deletes them with an undo window: the ``Backend``
    interface, whose ``delete`` goes to :meth:`FileUndo.delete` under the sweep's id
    (restorable until purged) and whose other calls go to the backend."""

    def __init__(self, backend: Backend, undo: FileUndo, sweep_id: str) -> None:
        self.backend = backend
        self.undo = undo
        self.sweep_id = sweep_id

    @property
    def takes_parents(self) -> bool:
        """Whether :meth:`delete` takes ``parents`` (local trash: see LocalTrash.delete)."""
        return bool(getattr(self.undo, "takes_parents", False))

    def delete(self, paths: Sequence[str], on_chunk: Callable[[int], None] | None = None,
               known: Mapping[str, Sequence[str]] | None = None,
               parents: Collection[str] = ()) -> DeleteOutcome:
        extra: dict[str, Any] = {"parents": parents} if parents and self.takes_parents else {}
        return self.undo.delete(self.sweep_id, paths, on_chunk=on_chunk, known=known, **extra)

    def remove_empty_dirs(self, dirs: Sequence[str]) -> int:
        return self.backend.remove_empty_dirs(dirs)

    def list_objects(self) -> Iterator[Any]:
        return self.backend.list_objects()

    def close(self) -> None:
        try:
            self.undo.close()
        finally:
            self.backend.close()
