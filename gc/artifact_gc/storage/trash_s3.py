"""The undo window on S3: bucket versioning where the bucket has it, a trash prefix where not.

The bucket's versioning is asked once (``GetBucketVersioning``) when the undo opens.

**Versioning enabled** (:class:`S3VersionedUndo`, mode ``bucket-versioning``). The
sweep deletes exactly as without an undo window: ``DeleteObjects`` on a versioned
bucket only adds a delete marker on top of each key, and the data stays as a
noncurrent version. Before each delete call one small record object is written,
``<root>/.artifact-gc-trash/<sweep_id>/versioned/<digest>.json`` (the call's paths):
it is how ``trashed_sweeps`` and ``purge(sweep_id)`` find the sweep, and its own
timestamp tells the sweep's markers (not older than it) from older history. A path
the sweep has no record of is refused by restore and left alone by purge.

- restore: the versions under each path are listed (``ListObjectVersions``, one
  ranged listing for consecutive paths); for every key whose latest version is a
  delete marker of the sweep (newer than its record), the sweep's markers on top of
  the data version directly under them are deleted (``DeleteObjects`` with
  ``VersionId``, 1,000 a request), which makes that version current again, byte for
  byte. A marker older than the sweep under them means the key was deleted before the
  sweep: nothing of it comes back. A key whose latest version is data *and* that holds
  one of the sweep's markers below it was written again since the sweep: its path is
  a conflict, and nothing of the path is touched.
- purge: for every key under the path whose latest version is one of the sweep's
  delete markers, every version of the key goes (the data the marker hides, any
  older version of the same key, the marker itself): leaving an older version would
  make it current again. Keys that are live again (restored, or reused), or whose
  latest marker is older than the sweep, are left alone.

Markers are told apart by time (newer than the sweep's record), so a key written
again and deleted by someone else after the sweep is not told from the sweep's own.

Cost: one PUT per delete call for the record, nothing per object. A lifecycle rule
(``NoncurrentVersionExpiration`` a few days past the undo window, and
``ExpiredObjectDeleteMarker``) lets S3 itself expire what purge would delete.

**No versioning (or suspended)**: :class:`~artifact_gc.storage.trash_copy.CopyTrash`
with ``CopyObject`` (objects over 5 GiB: s3fs's multipart copy), one more request per
object than a plain delete. ``describe`` says so and recommends versioning plus a
lifecycle rule instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from artifact_gc.errors import StorageError
from artifact_gc.storage.backend import DeleteOutcome
from artifact_gc.storage.buckets import common_prefix
from artifact_gc.storage.buckets import runs as cut_runs
from artifact_gc.storage.s3 import (
    GONE_CODES,
    MAX_DELETE_KEYS,
    MAX_LIST_KEYS,
    TRANSIENT_CODES,
    S3Backend,
    split_path,
)
from artifact_gc.storage.trash import (
    TRASH_DIR,
    RestoreOutcome,
    check_sweep_id,
    report,
)
from artifact_gc.storage.trash_copy import (
    CopyTrash,
    TrashStats,
    dated_sweeps,
    delete_copied,
    fence_keys,
)

#: CopyObject copies at most 5 GiB in one request.
MAX_SINGLE_COPY = 5 * 1024 ** 3
#: Attempts at the keys of a version delete that S3 answered with a transient error.
KEY_ATTEMPTS = 5
#: Paths per ranged version listing.
RUN_PATHS = 300

COPY_COST = ("no bucket versioning: +1 CopyObject per object; enable versioning and a "
             "lifecycle rule instead")


class S3BucketOps:
    """An S3 bucket through its :class:`S3Backend` and that backend's own client (rate
    limit, retries, counts), for :class:`CopyTrash`."""

    scheme = "s3://"

    def __init__(self, backend: S3Backend, fs: Any) -> None:
        self.backend = backend
        self.fs = fs
        self.client = backend.client
        self.bucket = backend.bucket
        self.root_key = backend.root_key
        self.workers = backend.workers
        self.stats = TrashStats()

    def split(self, url: str) -> tuple[str, str]:
        return split_path(url)

    def scrub(self, text: str) -> str:
        return self.client.scrub(text)

    def find(self, path_keys: list[str]) -> pa.Table:
        return self.backend._find(path_keys)

    def copy(self, source: str, target: str, size: int) -> None:
        if size > MAX_SINGLE_COPY:
            # s3fs copies a big object part by part (UploadPartCopy), server-side.
            self.fs.copy(f"{self.bucket}/{source}", f"{self.bucket}/{target}")
            self.stats.add(copies=1)
            return
        self.client.call("copy_object", Bucket=self.bucket, Key=target,
                         CopySource={"Bucket": self.bucket, "Key": source})
        self.stats.add(copies=1)

    def remove(self, found: pa.Table) -> dict[str, str]:
        return self.backend._delete_found(found, None)

    def delete_paths(self, paths: list[str], found: pa.Table,
                     on_chunk: Callable[[int], None] | None) -> DeleteOutcome:
        return delete_copied(self.backend, paths, found, on_chunk, split_path,
                             lambda key: f"s3://{self.bucket}/{key}")

    def read(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(f"{self.bucket}/{key}")
        self.stats.add(reads=1)
        return data

    def dated(self, prefix: str) -> list[tuple[str, datetime]]:
        out: list[tuple[str, datetime]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                      "MaxKeys": MAX_LIST_KEYS}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.client.call("list_objects_v2", **kwargs)
            self.stats.add(lists=1)
            out += [(str(e["Key"]), _aware(e["LastModified"])) for e in page.get("Contents") or []]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return out


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class Version:
    key: str
    version_id: str
    marker: bool
    latest: bool
    modified: datetime


class S3VersionedUndo:
    """Delete markers as the undo window (see the module docstring)."""

    mode = "bucket-versioning"

    def __init__(self, ops: S3BucketOps, root: str) -> None:
        self.ops = ops
        self.client = ops.client
        self.bucket = ops.bucket
        self.root = root
        self.trash_key = f"{ops.root_key}/{TRASH_DIR}"
        self.stats = ops.stats

    def describe(self) -> str:
        return ("S3 bucket versioning: deletes add delete markers (+1 PUT per delete call "
                "for the sweep's record, nothing per object)")

    def close(self) -> None:
        """The backend owns the client."""

    # -- paths and records ---------------------------------------------------------

    def _record_prefix(self, sweep_id: str) -> str:
        return f"{self.trash_key}/{check_sweep_id(sweep_id)}/versioned/"

    def _keys(self, paths: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
        return fence_keys(self.ops, self.root, paths)

    def _write_record(self, sweep_id: str, paths: list[str]) -> None:
        body = json.dumps({"sweep_id": sweep_id, "paths": sorted(paths)}).encode()
        # Named by its content: a rerun of the same call writes the same object again.
        name = hashlib.sha256(body).hexdigest()[:24]
        self.client.call("put_object", Bucket=self.bucket,
                         Key=f"{self._record_prefix(sweep_id)}{name}.json", Body=body)
        self.stats.add(writes=1)

    def _records(self, sweep_id: str) -> dict[str, datetime]:
        """path key -> the time of the oldest record that names it (every marker of
        the sweep on that path is at least as new)."""
        since: dict[str, datetime] = {}
        for key, when in self.ops.dated(self._record_prefix(sweep_id)):
            for path in json.loads(self.ops.read(key))["paths"]:
                path_key = split_path(path)[1]
                if path_key not in since or when < since[path_key]:
                    since[path_key] = when
        return since

    # -- versions ----------------------------------------------------------------

    def _versions(self, path_keys: list[str]) -> dict[str, dict[str, list[Version]]]:
        """path key -> key -> its versions, newest first, for every key under the paths."""
        from artifact_gc.storage.keys import match_keys

        out: dict[str, dict[str, list[Version]]] = {k: {} for k in path_keys}
        for run in cut_runs(sorted(path_keys), RUN_PATHS):
            low, high = run[0], run[-1] + "0"
            listed = self._list_versions(common_prefix(low, run[-1]), low, high)
            # The same hash join as the sweep's (storage/keys.py); "size" carries the
            # version's index in ``listed``.
            owned = match_keys(self.ops.backend.con, pa.table({
                "key": pa.array([v.key for v in listed], pa.string()),
                "size": pa.array(range(len(listed)), pa.int64())}), run)
            for index, owner in zip(owned.column("size").to_pylist(),
                                    owned.column("path").to_pylist(), strict=True):
                version = listed[index]
                out[owner].setdefault(version.key, []).append(version)
        for keys in out.values():
            for versions in keys.values():
                versions.sort(key=lambda v: (not v.latest, -v.modified.timestamp()))
        return out

    def _list_versions(self, prefix: str, low: str, high: str) -> list[Version]:
        found: list[Version] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                  "MaxKeys": MAX_LIST_KEYS}
        # No KeyMarker on the first page: given one without a VersionIdMarker, moto
        # drops the first version after it (real S3 does not), and a delete marker
        # missed here is a path a restore would call "already back" while it stays
        # deleted. Listing from the prefix costs only the keys under it before ``low``.
        while True:
            page = self.client.call("list_object_versions", **kwargs)
            self.stats.add(lists=1)
            entries = [(e, False) for e in page.get("Versions") or []] + \
                      [(e, True) for e in page.get("DeleteMarkers") or []]
            past = False
            for entry, marker in entries:
                key = str(entry["Key"])
                if key >= high:
                    past = True
                    continue
                if key < low:
                    continue
                found.append(Version(key, str(entry["VersionId"]), marker,
                                     bool(entry.get("IsLatest")), _aware(entry["LastModified"])))
            if past or not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def _delete_versions(self, versions: list[Version]) -> dict[str, str]:
        """Delete exactly these versions, 1,000 a request; ``key@version`` -> why, for
        those that failed. A version already gone counts as deleted."""
        failed: dict[str, str] = {}
        # A key under two of the paths (one inside the other) is listed for both.
        versions = list(dict.fromkeys(versions))
        for start in range(0, len(versions), MAX_DELETE_KEYS):
            pending = versions[start:start + MAX_DELETE_KEYS]
            for _ in range(KEY_ATTEMPTS):
                response = self.client.call("delete_objects", Bucket=self.bucket, Delete={
                    "Objects": [{"Key": v.key, "VersionId": v.version_id} for v in pending],
                    "Quiet": True})
                self.stats.add(deletes=1)
                errors = {(str(e.get("Key")), str(e.get("VersionId"))): str(e.get("Code"))
                          for e in response.get("Errors") or []}
                retry = [v for v in pending
                         if errors.get((v.key, v.version_id)) in TRANSIENT_CODES]
                for v in pending:
                    code = errors.get((v.key, v.version_id))
                    if code is not None and code not in GONE_CODES and code not in TRANSIENT_CODES:
                        failed[f"{v.key}@{v.version_id}"] = code
                pending = retry
                if not pending:
                    break
            for v in pending:
                failed[f"{v.key}@{v.version_id}"] = "per-key error persisted after retries"
        return failed

    @staticmethod
    def _ours(version: Version, since: datetime) -> bool:
        return version.marker and version.modified >= since.replace(microsecond=0)

    @classmethod
    def _sweeps_layer(cls, history: list[Version], since: datetime
                      ) -> tuple[list[Version], Version | None]:
        """The delete markers on top of a key's history that are the sweep's (newer
        than its record), and the data version directly under them, if that is what
        lies there. A marker older than the sweep under them means the key was already
        deleted before the sweep: the data below it is not the sweep's to bring back
        or to purge, and neither is any version further down (the bucket's own
        history, kept by its versioning)."""
        run: list[Version] = []
        for version in history:
            if not cls._ours(version, since):
                break
            run.append(version)
        below = history[len(run)] if len(run) < len(history) else None
        return run, below if below is not None and not below.marker else None

    # -- the protocol ----------------------------------------------------------------

    def delete(self, sweep_id: str, paths: Sequence[str], *,
               on_chunk: Callable[[int], None] | None = None,
               known: Mapping[str, Sequence[str]] | None = None) -> DeleteOutcome:
        by_key, refused = self._keys(paths)
        if not by_key:
            return DeleteOutcome(failed=refused)
        # The record goes first: a crash after the deletes still leaves the sweep
        # findable by trashed_sweeps and purge.
        self._write_record(sweep_id, list(by_key.values()))
        outcome = self.ops.backend.delete(list(by_key.values()), on_chunk=on_chunk, known=known)
        outcome.failed.update(refused)
        return outcome

    def _plan(self, sweep_id: str, paths: Sequence[str]
              ) -> tuple[dict[str, str], dict[str, str], dict[str, str],
                         dict[str, list[Version]], set[str]]:
        """``(by_key, refused, conflicts, path key -> markers to delete, path keys
        with a live key)``."""
        by_key, refused = self._keys(paths)
        since = self._records(sweep_id)
        for path_key, path in list(by_key.items()):
            if path_key not in since:
                # Without the sweep's record its markers cannot be told from older
                # ones: restoring could bring back files deleted long before.
                refused[path] = f"sweep {sweep_id} has no record of {path} in this bucket"
                del by_key[path_key]
        versions = self._versions(list(by_key)) if by_key else {}
        conflicts: dict[str, str] = {}
        markers: dict[str, list[Version]] = {}
        live: set[str] = set()
        for path_key, keys in versions.items():
            start = since[path_key]
            todo: list[Version] = []
            for key, history in keys.items():
                top = history[0]
                if not top.marker:
                    live.add(path_key)
                    if any(self._ours(v, start) for v in history[1:]):
                        conflicts[by_key[path_key]] = (
                            f"s3://{self.bucket}/{key} was written again after the sweep "
                            "deleted it")
                        break
                    continue
                ours, data = self._sweeps_layer(history, start)
                if ours and data is not None:
                    todo += ours
            markers[path_key] = todo
        return by_key, refused, conflicts, markers, live

    def conflicts(self, sweep_id: str, paths: Sequence[str]) -> dict[str, str]:
        return self._plan(sweep_id, paths)[2]

    def restore(self, sweep_id: str, paths: Sequence[str], *,
                on_chunk: Callable[[int], None] | None = None) -> RestoreOutcome:
        by_key, refused, conflicts, markers, live = self._plan(sweep_id, paths)
        outcome = RestoreOutcome(failed=refused, conflicts=conflicts)
        todo = [v for k, vs in markers.items() if by_key[k] not in conflicts for v in vs]
        failed = self._delete_versions(todo)
        for path_key, path in by_key.items():
            if path in conflicts:
                continue
            mine = [f"{v.key}@{v.version_id}" for v in markers.get(path_key, [])]
            bad = [m for m in mine if m in failed]
            if bad:
                outcome.failed[path] = f"s3://{self.bucket}/{bad[0]}: {failed[bad[0]]}"
            elif mine:
                outcome.restored.add(path)
            elif path_key in live:
                outcome.already.add(path)
            else:
                outcome.absent.add(path)
        report(on_chunk, outcome.settled())
        return outcome

    def purge(self, sweep_id: str, paths: Sequence[str] | None = None) -> int:
        since = self._records(sweep_id)
        # Only paths the sweep recorded: its markers are told from older ones by time.
        targets = [f"s3://{self.bucket}/{k}" for k in since] if paths is None else paths
        by_key, _ = self._keys(targets)
        by_key = {k: p for k, p in by_key.items() if k in since}
        doomed: list[Version] = []
        purged = 0
        for path_key, keys in (self._versions(list(by_key)) if by_key else {}).items():
            start = since[path_key]
            for history in keys.values():
                # Only keys the sweep's marker still hides: live keys (restored, or
                # written again) keep every version.
                if self._ours(history[0], start):
                    # Every version of the key: deleting only the sweep's markers and
                    # the version under them would make an older version current
                    # again, a file coming back after its purge. A key someone
                    # deleted before the sweep has an older marker on top, and stays.
                    doomed += history
                    purged += 1
        failed = self._delete_versions(doomed)
        if failed:
            first = next(iter(failed.items()))
            raise StorageError(f"{len(failed)} version(s) of sweep {sweep_id} could not be "
                               f"purged (first: {first[0]}: {first[1]})")
        if paths is None:
            # Every version of the records too (the bucket keeps those as well).
            prefix = self._record_prefix(sweep_id)
            self._delete_versions(self._list_versions(prefix, prefix, prefix + "\uffff"))
        return purged

    def trashed_sweeps(self) -> dict[str, datetime]:
        return dated_sweeps(self.ops, self.trash_key)


def bucket_versioned(ops: S3BucketOps) -> bool:
    """Whether the bucket's versioning is ``Enabled`` (suspended versioning deletes the
    null version for good, so it counts as none)."""
    answer = ops.client.call("get_bucket_versioning", Bucket=ops.bucket)
    ops.stats.add(probes=1)
    return answer.get("Status") == "Enabled"


def open_s3_undo(store: Any, root: str, fs: Any, backend: S3Backend
                 ) -> S3VersionedUndo | CopyTrash:
    """The factory ``open_file_undo`` calls for an S3 store."""
    ops = S3BucketOps(backend, fs)
    if bucket_versioned(ops):
        return S3VersionedUndo(ops, root)
    return CopyTrash(ops, root, COPY_COST)
