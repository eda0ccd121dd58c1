"""What a sweep with an undo window does besides deleting: record itself, keep the
rows of each batch, and say how each store keeps its files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from artifact_gc.errors import StorageError
from artifact_gc.manifest.format import utc_now
from artifact_gc.undo.area import StoreUndo, SweepUndo, UndoArea
from artifact_gc.undo.files import open_store_undo
from artifact_gc.undo.rows import RowCapture
from artifact_gc.zenml.schema import ZenMLSchema
from artifact_gc.zenml.stores import ArtifactStore


def describe_stores(stores: Mapping[str, ArtifactStore], roots: Iterable[tuple[str, str]]
                    ) -> dict[str, StoreUndo]:
    """How each (store id, root) keeps a sweep's files; ``StorageError`` naming
    ``--no-undo`` when one cannot keep them."""
    described: dict[str, StoreUndo] = {}
    for store_id, root in sorted(set(roots)):
        store = stores.get(store_id)
        if store is None or store_id in described:
            continue  # the sweep's fence protects its items: nothing of it is deleted
        try:
            backend, undo = open_store_undo(store, root)
        except StorageError as exc:
            raise StorageError(f"{exc.message}; or sweep with --no-undo to delete for good",
                               path=root) from exc
        try:
            described[store_id] = StoreUndo(root=root, mode=undo.mode, describe=undo.describe())
        finally:
            undo.close()
            backend.close()
    return described


class SweepUndoWriter:
    """The undo side of one live sweep: its record, then one row segment per batch."""

    def __init__(self, area: UndoArea, schema: ZenMLSchema, sweep_id: str) -> None:
        self.area = area
        self.schema = schema
        self.sweep_id = sweep_id
        self._attempts: dict[int, int] = {}

    def begin(self, mark_id: str, window: timedelta, files: Mapping[str, StoreUndo]) -> None:
        """Record the sweep, durably, before it deletes anything."""
        self.area.record_sweep(SweepUndo(self.sweep_id, mark_id, utc_now(), window,
                                         dict(files)))

    def capture(self, batch: int) -> RowCapture:
        """A fresh capture for one attempt of ``batch``'s transaction."""
        self._attempts[batch] = self._attempts.get(batch, 0) + 1
        return RowCapture(self.schema)

    def keep(self, batch: int, capture: RowCapture) -> None:
        """Write the rows ``capture`` saw, durably; called before the commit."""
        if capture.rows:
            self.area.write_rows(self.sweep_id, batch, self._attempts[batch],
                                 capture.to_table(self.sweep_id, batch, self._attempts[batch]))
