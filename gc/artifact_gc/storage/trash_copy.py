"""A trash prefix in a bucket: server-side copy in, then the normal delete.

For object stores without a soft delete of their own that the sweep can drive: S3
without bucket versioning (``CopyObject``), GCS (gcsfs's copy: ``objects.rewrite``)
and Azure Blob (adlfs's copy: ``Copy Blob``). Every object under a path is copied to
``<root>/.artifact-gc-trash/<sweep_id>/<path relative to the root>/...`` and only then
deleted by the store's backend, as a plain sweep deletes it. The cost is one copy
request per object on top of the plain delete; no byte goes through this machine.

Restore copies each trashed object back and then deletes the trash copy; purge
deletes the trash copies. All three are idempotent:

- a delete cut short leaves objects both in place and in the trash: the rerun finds
  the ones still in place, copies them again (the same bytes) and deletes them;
- a restore cut short leaves objects both back and in the trash: an object back in
  place that equals its trash copy (size, then bytes) is ours, and the rerun only
  drops the trash copy; any other object at a path's location is a conflict, and
  nothing of that path is touched.

**GCS soft delete and Azure blob soft delete.** Both stores can keep deleted objects
themselves for a retention period (GCS: a bucket's soft delete policy, 7 days by
default on new buckets, restored with ``objects.restore`` / ``gcloud storage restore``;
Azure: the account's blob soft delete, 1-365 days, restored with ``Undelete Blob``).
The emulators the tests run against (gcp-storage-emulator, Azurite) implement neither,
so the undo window does not rely on them and always keeps its own trash copy; that is
what ``gc restore`` brings back. On a real bucket or account with soft delete on:

- the sweep's delete of an original, and later the purge of its trash copy, are soft
  deletes too: the bytes stay (and are billed) for the store's retention period after
  each, so ``gc trash empty`` frees the space only once that period has passed;
- after a purge, the store's own restore still brings an object back within its
  retention (by hand, outside artifact-gc: the rows are not restored with it);
- the copy into the trash is a new object: storage is billed twice for the window
  (the trash copy, and the soft-deleted original). A store whose soft delete outlasts
  the undo window can sweep with ``--no-undo`` and rely on the store's own restore for
  the files.

What this does not see: an object written under a candidate's path after the listing
that precedes the copies (the sweep's proof listing deletes it without a trash copy;
its rows were already gone and it is older than nothing ZenML writes there), and a
write racing a restore's copy back between its check and its copy (the stores'
conditional copies are not used, so that every emulator serves this).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa

from artifact_gc.errors import StorageError
from artifact_gc.storage.backend import DeleteOutcome
from artifact_gc.storage.fence import fence
from artifact_gc.storage.trash import (
    TRASH_DIR,
    RestoreOutcome,
    check_sweep_id,
    in_trash,
    relative_key,
    report,
)

_EMPTY = pa.table({"key": pa.array([], pa.string()), "size": pa.array([], pa.int64()),
                   "path": pa.array([], pa.string())})


@dataclass
class TrashStats:
    """Requests the trash sends beyond its backend's own, by kind (the backend's
    listings and deletes are counted by the backend)."""

    copies: int = 0
    #: GetBucketVersioning (once, when an S3 store's undo opens)
    probes: int = 0
    reads: int = 0
    writes: int = 0
    lists: int = 0
    deletes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class BucketOps(Protocol):
    """What the trash needs of one bucket, through its backend (one adapter a store)."""

    bucket: str
    root_key: str
    scheme: str
    workers: int
    stats: TrashStats

    def split(self, url: str) -> tuple[str, str]:
        ...

    def scrub(self, text: str) -> str:
        """``text`` without the store's secrets (a copy's error may quote a signed URL)."""
        ...

    def find(self, path_keys: list[str]) -> pa.Table:
        """``(key, size, path)`` of every object under the (sorted) path keys."""
        ...

    def copy(self, source: str, target: str, size: int) -> None:
        """Server-side copy of one object, retried while transient."""
        ...

    def remove(self, found: pa.Table) -> dict[str, str]:
        """Delete exactly the keys of ``found``; the keys that failed, with why."""
        ...

    def delete_paths(self, paths: list[str], found: pa.Table,
                     on_chunk: Callable[[int], None] | None) -> DeleteOutcome:
        """The backend's own delete of ``paths`` whose objects are ``found``."""
        ...

    def read(self, key: str) -> bytes:
        ...

    def dated(self, prefix: str) -> list[tuple[str, datetime]]:
        """``(key, last modified)`` of every object under ``prefix``."""
        ...


class CopyTrash:
    """The :class:`~artifact_gc.storage.trash.FileUndo` of a bucket without versioning."""

    mode = "trash"

    def __init__(self, ops: BucketOps, root: str, cost: str) -> None:
        self.ops = ops
        self.root = root
        self.cost = cost
        self.trash_key = f"{ops.root_key}/{TRASH_DIR}"
        self._pool = ThreadPoolExecutor(max_workers=max(1, ops.workers),
                                        thread_name_prefix="gc-trash")

    def describe(self) -> str:
        return (f"files are copied to {self.ops.scheme}{self.ops.bucket}/{self.trash_key}/"
                f"<sweep>/ server-side, then deleted: {self.cost}")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- where things go -----------------------------------------------------------

    def _sweep_key(self, sweep_id: str) -> str:
        return f"{self.trash_key}/{check_sweep_id(sweep_id)}"

    def _keys(self, sweep_id: str, paths: Sequence[str]
              ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """``path key -> path``, ``path key -> its trash key``, and the refused paths."""
        sweep_key = self._sweep_key(sweep_id)
        by_key, refused = fence_keys(self.ops, self.root, paths)
        trash_of = {key: f"{sweep_key}/{relative_key(key, self.ops.root_key)}" for key in by_key}
        return by_key, trash_of, refused

    def _find(self, path_keys: Sequence[str]) -> pa.Table:
        return self.ops.find(sorted(path_keys)) if path_keys else _EMPTY

    def _copy_all(self, pairs: list[tuple[str, str, int]]) -> dict[str, str]:
        """Copy ``(source, target, size)`` each; the sources whose copy failed."""
        def one(pair: tuple[str, str, int]) -> tuple[str, str | None]:
            try:
                self.ops.copy(*pair)
                return pair[0], None
            except Exception as exc:  # noqa: BLE001 - reported per path
                return pair[0], self.ops.scrub(f"{type(exc).__name__}: {exc}")

        return {source: why for source, why in self._pool.map(one, pairs) if why is not None}

    # -- the protocol ----------------------------------------------------------------

    def delete(self, sweep_id: str, paths: Sequence[str], *,
               on_chunk: Callable[[int], None] | None = None,
               known: Mapping[str, Sequence[str]] | None = None) -> DeleteOutcome:
        by_key, trash_of, refused = self._keys(sweep_id, paths)
        outcome = DeleteOutcome(failed=refused)
        found = self._find(list(by_key))
        found = _only_listed(found, known, f"{self.ops.scheme}{self.ops.bucket}/")
        keys = found.column("key").to_pylist()
        owners = found.column("path").to_pylist()
        sizes = found.column("size").to_pylist()
        # The copy comes first: an original is deleted only once its trash copy exists,
        # so a crash anywhere leaves every object in place, in the trash, or both.
        failed = self._copy_all([(k, trash_of[p] + k[len(p):], s)
                                 for k, p, s in zip(keys, owners, sizes, strict=True)])
        for key, owner in zip(keys, owners, strict=True):
            if key in failed and by_key[owner] not in outcome.failed:
                outcome.failed[by_key[owner]] = f"copy into the trash failed: {failed[key]}"
        ready = [p for p in by_key.values() if p not in outcome.failed]
        keep = pa.array([by_key[o] not in outcome.failed for o in owners], pa.bool_())
        done = self.ops.delete_paths(ready, found.filter(keep), on_chunk) if ready \
            else DeleteOutcome()
        outcome.deleted |= done.deleted
        outcome.failed.update(done.failed)
        return outcome

    def _state(self, sweep_id: str, paths: Sequence[str]) -> _RestoreState:
        by_key, trash_of, refused = self._keys(sweep_id, paths)
        key_of_trash = {t: k for k, t in trash_of.items()}
        trashed = self._find(list(key_of_trash))
        present = self._find(list(by_key))
        state = _RestoreState(by_key=by_key, refused=refused)
        for key, owner, size in zip(trashed.column("key").to_pylist(),
                                    trashed.column("path").to_pylist(),
                                    trashed.column("size").to_pylist(), strict=True):
            path_key = key_of_trash[owner]
            state.trash[path_key][path_key + key[len(owner):]] = (key, size)
        for key, owner, size in zip(present.column("key").to_pylist(),
                                    present.column("path").to_pylist(),
                                    present.column("size").to_pylist(), strict=True):
            state.present[owner][key] = size
        for path_key in by_key:
            why = self._conflict(path_key, state)
            if why is not None:
                state.conflicts[by_key[path_key]] = why
        return state

    def _conflict(self, path_key: str, state: _RestoreState) -> str | None:
        """Why ``path_key``'s location is not ours to restore into, or None. An object
        there is ours only when it equals its trash copy: a restore cut short."""
        trash = state.trash[path_key]
        if not trash:
            return None
        for key, size in state.present[path_key].items():
            copy = trash.get(key)
            if copy is None or copy[1] != size or \
                    self.ops.read(key) != self.ops.read(copy[0]):
                return (f"{self.ops.scheme}{self.ops.bucket}/{key} exists again (reused since "
                        "the sweep); it is not the trashed copy")
        return None

    def conflicts(self, sweep_id: str, paths: Sequence[str]) -> dict[str, str]:
        return self._state(sweep_id, paths).conflicts

    def restore(self, sweep_id: str, paths: Sequence[str], *,
                on_chunk: Callable[[int], None] | None = None) -> RestoreOutcome:
        state = self._state(sweep_id, paths)
        outcome = RestoreOutcome(failed=dict(state.refused), conflicts=dict(state.conflicts))
        todo = [k for k, p in state.by_key.items() if p not in state.conflicts]
        copies = [(trash_key, key, size) for k in todo
                  for key, (trash_key, size) in state.trash[k].items()
                  if key not in state.present[k]]
        # Back first, then the trash copy goes: a crash in between leaves two equal
        # copies, which the rerun recognises as ours.
        failed = self._copy_all(copies)
        failed_paths: dict[str, str] = {}
        for trash_key, key, _ in copies:
            if trash_key in failed:
                path_key = next(k for k in todo if key == k or key.startswith(k + "/"))
                failed_paths.setdefault(path_key, f"copy back failed: {failed[trash_key]}")
        drop = [(trash_key, size, k) for k in todo if k not in failed_paths
                for trash_key, size in state.trash[k].values()]
        dropped = self.ops.remove(pa.table({
            "key": pa.array([d[0] for d in drop], pa.string()),
            "size": pa.array([d[1] for d in drop], pa.int64()),
            "path": pa.array([d[2] for d in drop], pa.string())})) if drop else {}
        for trash_key, _, k in drop:
            if trash_key in dropped:
                # Back in place all the same; the leftover trash copy goes at purge.
                failed_paths.setdefault(k, f"restored, but its trash copy stays: "
                                           f"{dropped[trash_key]}")
        for k in todo:
            path = state.by_key[k]
            if k in failed_paths and not failed_paths[k].startswith("restored"):
                outcome.failed[path] = failed_paths[k]
            elif any(key not in state.present[k] for key in state.trash[k]):
                outcome.restored.add(path)
            elif state.trash[k] or state.present[k]:
                outcome.already.add(path)
            else:
                outcome.absent.add(path)
        report(on_chunk, outcome.settled())
        return outcome

    def purge(self, sweep_id: str, paths: Sequence[str] | None = None) -> int:
        if paths is None:
            targets = [self._sweep_key(sweep_id)]
        else:
            _, trash_of, _ = self._keys(sweep_id, paths)
            targets = list(trash_of.values())
        found = self._find(targets)
        failed = self.ops.remove(found) if found.num_rows else {}
        if failed:
            first = next(iter(failed.items()))
            raise StorageError(f"{len(failed)} trash object(s) of sweep {sweep_id} could not be "
                               f"purged (first: {first[0]}: {first[1]})")
        return int(found.num_rows)

    def trashed_sweeps(self) -> dict[str, datetime]:
        return dated_sweeps(self.ops, self.trash_key)


def _only_listed(found: pa.Table, known: Mapping[str, Sequence[str]] | None,
                 prefix: str) -> pa.Table:
    """``found`` cut to the objects ``known`` names, where ``known`` is the listing the
    caller checked them on (``ListedObjects``: the orphan sweep's grace check). An
    object written under a path since was never checked against the grace period:
    it is neither copied nor deleted, as the store's own delete leaves it
    (``S3Backend._delete_listed``). Otherwise ``found`` as it is."""
    from artifact_gc.storage.s3 import ListedObjects

    if not isinstance(known, ListedObjects):
        return found
    listed = {url[len(prefix):] for urls in known.values() for url in urls
              if url.startswith(prefix)}
    return found.filter(pa.array([key in listed for key in found.column("key").to_pylist()],
                                 pa.bool_()))


def delete_copied(backend: Any, paths: list[str], found: pa.Table,
                  on_chunk: Callable[[int], None] | None,
                  split: Callable[[str], tuple[str, str]], url: Callable[[str], str]
                  ) -> DeleteOutcome:
    """Delete exactly the keys ``found`` (those just copied into the trash), and no
    other: an object written under a path after that listing has no trash copy, so it
    stays where it is rather than being deleted for good (the backend's own delete
    would list again and take it too)."""
    failed: dict[str, str] = backend._delete_found(found, on_chunk)
    by_key = {split(p)[1]: p for p in paths}
    outcome = DeleteOutcome()
    for key, owner in zip(found.column("key").to_pylist(),
                          found.column("path").to_pylist(), strict=True):
        if key in failed and by_key[owner] not in outcome.failed:
            outcome.failed[by_key[owner]] = f"{url(key)}: {failed[key]}"
    outcome.deleted = {p for p in paths if p not in outcome.failed}
    if on_chunk is not None:
        on_chunk(len(outcome.deleted))
    return outcome


def fence_keys(ops: BucketOps, root: str, paths: Sequence[str]
               ) -> tuple[dict[str, str], dict[str, str]]:
    """``path key -> path`` of the paths strictly inside the root and outside its
    trash, and the refused paths with why."""
    inside, refused = fence(paths, root)
    by_key: dict[str, str] = {}
    for path in inside:
        bucket, key = ops.split(path)
        if bucket != ops.bucket or not key.startswith(ops.root_key + "/"):
            refused[path] = f"{path} is not strictly inside the store root {root}"
        elif in_trash(relative_key(key, ops.root_key)):
            refused[path] = f"{path} lies in the trash ({TRASH_DIR}): it is purged, not swept"
        else:
            by_key[key] = path
    return by_key, refused


def dated_sweeps(ops: BucketOps, trash_key: str) -> dict[str, datetime]:
    """Each sweep prefix under ``trash_key``, dated by its newest object (a date later
    than the sweep's never purges early)."""
    out: dict[str, datetime] = {}
    base = trash_key + "/"
    for key, when in ops.dated(base):
        sweep_id = key[len(base):].split("/", 1)[0]
        if sweep_id and (sweep_id not in out or when > out[sweep_id]):
            out[sweep_id] = when
    return out


@dataclass
class _RestoreState:
    by_key: dict[str, str]
    refused: dict[str, str]
    #: path key -> original key -> (trash key, size)
    trash: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    #: path key -> original key -> size, for what is at the location now
    present: dict[str, dict[str, int]] = field(default_factory=dict)
    conflicts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.by_key:
            self.trash.setdefault(key, {})
            self.present.setdefault(key, {})


# ---------------------------------------------------------------------------
# GCS and Azure Blob: the buckets.py backends, copies through fsspec
# ---------------------------------------------------------------------------


class FsspecBucketOps:
    """A GCS or Azure bucket through its :class:`ObjectStoreBackend`; copies, reads and
    dated listings through the fsspec filesystem (gcsfs: ``objects.rewrite``, adlfs:
    ``Copy Blob``), with the backend's rate limit and retries."""

    def __init__(self, backend: Any, fs: Any) -> None:
        self.backend = backend
        self.fs = fs
        self.bucket: str = backend.bucket
        self.root_key: str = backend.root_key
        self.scheme: str = backend.scheme_of(backend.root)
        self.workers: int = backend.workers
        self.stats = TrashStats()

    def split(self, url: str) -> tuple[str, str]:
        bucket, key = self.backend.split(url)
        return str(bucket), str(key)

    def scrub(self, text: str) -> str:
        return str(self.backend.scrub(text))

    def _url(self, key: str) -> str:
        return f"{self.scheme}{self.bucket}/{key}"

    def find(self, path_keys: list[str]) -> pa.Table:
        found: pa.Table = self.backend._find(path_keys)
        return found

    def copy(self, source: str, target: str, size: int) -> None:
        self.backend.requests.call(self.fs.cp_file, self._url(source), self._url(target))
        self.stats.add(copies=1)

    def remove(self, found: pa.Table) -> dict[str, str]:
        failed: dict[str, str] = self.backend._delete_found(found, None)
        return failed

    def delete_paths(self, paths: list[str], found: pa.Table,
                     on_chunk: Callable[[int], None] | None) -> DeleteOutcome:
        return delete_copied(self.backend, paths, found, on_chunk, self.split, self._url)

    def read(self, key: str) -> bytes:
        data: bytes = self.backend.requests.call(self.fs.cat_file, self._url(key))
        self.stats.add(reads=1)
        return data

    def dated(self, prefix: str) -> list[tuple[str, datetime]]:
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self._url(prefix), detail=True)
        except FileNotFoundError:
            return []
        self.stats.add(lists=1)
        out: list[tuple[str, datetime]] = []
        for name, info in found.items():
            key = self.split(str(name))[1] if "://" in str(name) else str(name).partition("/")[2]
            out.append((key, _when(info)))
        return out


def _when(info: Mapping[str, Any]) -> datetime:
    """An object's last modification time, from an fsspec ``info`` of GCS or Azure."""
    from datetime import UTC

    for name in ("updated", "last_modified", "mtime", "LastModified"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def open_bucket_trash(store: Any, root: str, fs: Any, backend: Any) -> CopyTrash:
    """The copy trash of a GCS or Azure store (the factory ``open_file_undo`` calls)."""
    return CopyTrash(FsspecBucketOps(backend, fs), root,
                     "+1 server-side copy per object (no soft delete of the store is used)")
