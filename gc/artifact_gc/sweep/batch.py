"""One batch of candidates: the fence before the database, the live database's verdict,
and the journal events of its outcome.

Every item of a batch is an artifact version (the plan sweeps no other kind), so its
events are keyed (``artifact_version``, its id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from artifact_gc.manifest.reasons import (
    ITEM_KIND_VERSION,
    PROTECT_NO_STORE,
    PROTECT_OUTSIDE_ROOT,
    PROTECT_ROOT_CHANGED,
)
from artifact_gc.mark.sizes import footprint_paths
from artifact_gc.storage.fence import RealDirs, strictly_inside
from artifact_gc.sweep.journal import (
    EVENT_ALREADY_GONE,
    EVENT_FAILED,
    EVENT_INTENT,
    EVENT_PROTECTED,
    EVENT_REVIVED,
    Event,
)
from artifact_gc.sweep.verify import BatchItem, Liveness
from artifact_gc.zenml.stores import ArtifactStore


def batch_item(row: dict[str, Any]) -> BatchItem:
    """A row of the plan's items as the sweep acts on it."""
    return BatchItem(
        artifact_version_id=row["artifact_version_id"],
        artifact_id=row["artifact_id"],
        footprint=tuple(footprint_paths(row["uri"], row["visualization_uris"])),
        size_bytes=row["size_bytes"],
        file_count=row["file_count"],
        store_id=row["artifact_store_id"],
        store_root=row["store_root"],
        object_keys=recorded_objects(row),
    )


def recorded_objects(row: dict[str, Any]) -> tuple[str, ...] | None:
    """A plan row's ``object_keys`` (None: nothing recorded, the sweep lists)."""
    keys = row.get("object_keys")
    return None if keys is None else tuple(keys)


def known_objects(item: BatchItem) -> dict[str, list[str]]:
    """The objects gc mark found under each footprint path of ``item`` (URLs), from the
    manifest's ``object_keys``; empty when none were recorded.

    An entry is kept only under the footprint path it lies in (the path itself or
    below it): whatever the manifest says, a recorded key never names an object
    outside the version's own paths. The backend deletes these without listing first,
    then lists the paths to prove them empty, so an object the mark did not see is
    still found."""
    if item.object_keys is None:
        return {}
    base = item.footprint[0] if item.footprint else ""
    known: dict[str, list[str]] = {path: [] for path in item.footprint}
    for entry in item.object_keys:
        url = entry if "://" in entry else f"{base}/{entry}"
        if "/../" in f"{url}/" or "/./" in f"{url}/":
            continue
        for path in item.footprint:
            if url == path or url.startswith(path + "/"):
                known[path].append(url)
                break
    return known


def fence(item: BatchItem, stores: Mapping[str, ArtifactStore], real_dirs: RealDirs
          ) -> str | None:
    """Why an item must not be touched before asking the database, if it must not."""
    store = stores.get(item.store_id or "")
    if store is None or store.root is None or not item.store_root:
        return PROTECT_NO_STORE
    if store.root != item.store_root:
        # The store was reconfigured since the mark: the manifest's paths may no
        # longer be where that store keeps its data.
        return PROTECT_ROOT_CHANGED
    # Symlinks are resolved here already, before the database step: a version whose
    # directory is a link out of the root must keep its rows, not lose them and then
    # fail at the files. Every storage backend repeats the check right before it deletes.
    if not all(strictly_inside(path, item.store_root, dirs=real_dirs)
               for path in item.footprint):
        return PROTECT_OUTSIDE_ROOT
    return None


def intent_events(items: Sequence[BatchItem]) -> list[Event]:
    return [Event(ITEM_KIND_VERSION, item.artifact_version_id, EVENT_INTENT) for item in items]


def protected_event(item: BatchItem, reason: str) -> Event:
    return Event(ITEM_KIND_VERSION, item.artifact_version_id, EVENT_PROTECTED, reason=reason)


def failed_events(items: Sequence[BatchItem], cause: str) -> list[Event]:
    return [Event(ITEM_KIND_VERSION, item.artifact_version_id, EVENT_FAILED, error=cause)
            for item in items]


@dataclass
class Verdict:
    """What the live database said about a batch, under its lock: the items that came
    back to life (a reference), those a path created since the mark protects, those
    already gone before this sweep (rows and files), and the rest, which go."""

    revived: dict[str, str] = field(default_factory=dict)
    protected: dict[str, str] = field(default_factory=dict)
    deletable: list[BatchItem] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)

    def set_gone(self, ids: set[str]) -> None:
        """Move the items ``ids`` from deletable to already gone: nothing of theirs is
        left to delete, so this sweep does not count them as deleted."""
        if not ids:
            return
        self.already_gone += [i.artifact_version_id for i in self.deletable
                              if i.artifact_version_id in ids]
        self.deletable = [i for i in self.deletable if i.artifact_version_id not in ids]

    def protect(self, ids: set[str], reason: str) -> None:
        """Move the items ``ids`` from deletable to protected with ``reason``."""
        if not ids:
            return
        self.protected.update((i.artifact_version_id, reason) for i in self.deletable
                              if i.artifact_version_id in ids)
        self.deletable = [i for i in self.deletable if i.artifact_version_id not in ids]

    @classmethod
    def of(cls, live: Liveness, items: Sequence[BatchItem]) -> Verdict:
        verdict = cls()
        for item in items:
            vid = item.artifact_version_id
            if vid in live.referenced:
                verdict.revived[vid] = live.referenced[vid]
            elif vid in live.uri_conflicts:
                verdict.protected[vid] = live.uri_conflicts[vid]
            else:
                verdict.deletable.append(item)
        return verdict

    def events(self, file_errors: Mapping[str, str], done_event: str) -> list[Event]:
        """One final event per item: kept (and why), failed at its files, or done."""
        events = [Event(ITEM_KIND_VERSION, vid, EVENT_REVIVED, reason=reason)
                  for vid, reason in self.revived.items()]
        events += [Event(ITEM_KIND_VERSION, vid, EVENT_PROTECTED, reason=reason)
                   for vid, reason in self.protected.items()]
        events += [Event(ITEM_KIND_VERSION, vid, EVENT_ALREADY_GONE)
                   for vid in self.already_gone]
        for item in self.deletable:
            vid = item.artifact_version_id
            error = file_errors.get(vid)
            events.append(
                Event(ITEM_KIND_VERSION, vid, EVENT_FAILED, error=error) if error else
                Event(ITEM_KIND_VERSION, vid, done_event, bytes=item.size_bytes,
                      files=item.file_count))
        return events
