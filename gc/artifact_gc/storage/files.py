"""Deleting candidates' files through fsspec: bulk, threaded, retried, and fenced.

Every delete goes through one :class:`StoreFiles` per artifact store. It

- refuses any path that is not strictly inside the store's root (checked again here,
  right before the call, whatever the manifest says);
- deletes many paths per ``rm`` call (s3fs turns a list into DeleteObjects requests of
  1,000 keys), spread over ``workers`` threads;
- retries transient errors (throttling, timeouts, dropped connections) with jittered
  exponential backoff. Deleting a path twice is harmless, so every call is safe to
  repeat;
- counts a path that is already gone as deleted (invariant 7);
- checks afterwards that every path is really gone: s3fs silently ignores the
  per-key errors of a DeleteObjects response, so "no exception" proves nothing.

S3 stores (s3fs) take another road, in s3.py: the keys of a batch are found with
one ranged listing (one LIST per 1,000 objects, not one per version), deleted with
our own ``DeleteObjects`` calls (1,000 keys at most, per-key errors checked,
throttling backed off adaptively and rate limited) and verified by listing again.
``--max-requests-per-second`` reaches it as the ``limits`` value each store is built with.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from artifact_gc.storage import s3
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.urls import protocols
from artifact_gc.zenml.stores import ArtifactStore

#: Characters that fsspec backends may read as a glob in ``rm``/``expand_path``.
GLOB_CHARS = frozenset("*?[")

_TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED,
    errno.ECONNREFUSED, errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINTR,
})
_TRANSIENT_MARKERS = (
    "slowdown", "slow down", "throttl", "too many requests", "requesttimeout",
    "request timeout", "serviceunavailable", "service unavailable", "internalerror",
    "internal error", "503", "500 ", "429", "timed out", "connection reset",
    "connection aborted", "temporarily",
)


class PathOutsideRoot(ValueError):
    """A path that is not strictly inside its store's root; never deleted."""


class LeftBehind(OSError):
    """A bulk delete returned without error but the path still exists."""


def is_transient(exc: BaseException) -> bool:
    """True for errors that a later identical call can be expected to get past."""
    if isinstance(exc, FileNotFoundError | PermissionError | PathOutsideRoot):
        return False
    if isinstance(exc, LeftBehind | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _TRANSIENT_MARKERS)


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


class RealDirs:
    """``os.path.realpath`` of directories, with the grandparents of paths memoized.

    A version's path is ``<root>/<step>/<output>/<uuid>/<hash>``: its parent is its
    own, but its grandparent is shared by thousands of versions, and ``realpath``
    costs one ``lstat`` per path component. The memo holds only those grandparents;
    the parent itself is checked with an ``lstat`` every time, so a parent (or the
    path, see :func:`strictly_inside`) swapped for a symlink is still seen. Keep one
    per batch: the memo is never invalidated.
    """

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def parent(self, path: str) -> str:
        """``os.path.realpath(os.path.dirname(path))``, cheaply."""
        parent = os.path.dirname(path)
        grandparent, name = os.path.split(parent)
        if not name or name in (".", "..") or grandparent == parent:
            return os.path.realpath(parent)
        real = self._memo.get(grandparent)
        if real is None:
            real = self._memo[grandparent] = os.path.realpath(grandparent)
        # realpath(parent) == realpath(realpath(grandparent)/name), and a joined path
        # whose last component is no symlink is already its own realpath.
        joined = os.path.join(real, name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined


def strictly_inside(path: str, root: str, *, resolve: bool = True,
                    dirs: RealDirs | None = None) -> bool:
    """True when ``path`` lies strictly below ``root`` (never the root itself).

    No ``..`` or ``.`` segment is accepted, so a URI cannot climb out of the root
    by spelling; local paths are also compared after resolving symlinks, so a link
    inside the root that points elsewhere is not followed out of it.
    """
    if not path or not root:
        return False
    path_s = path.rstrip("/")
    root_s = root.rstrip("/") or "/"
    segments = path_s.split("://", 1)[-1].split("/")
    if any(s in (".", "..") for s in segments):
        return False
    prefix = root_s if root_s.endswith("/") else root_s + "/"
    if not path_s.startswith(prefix) or len(path_s) <= len(prefix):
        return False
    if resolve and "://" not in root_s:
        real_root = _real_root(root_s)
        real_parent = (dirs.parent(path_s) if dirs is not None
                       else os.path.realpath(os.path.dirname(path_s)))
        if os.path.islink(path_s):
            return False
        if real_parent != real_root and not real_parent.startswith(real_root.rstrip("/") + "/"):
            return False
    return True


@dataclass
class DeleteOutcome:
    """What happened to the paths of one call to :meth:`StoreFiles.delete`."""

    deleted: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


class RetryCounter:
    """Thread-safe count of retried calls, for the summary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n


def retry_transient(
    is_transient_error: Callable[[BaseException], bool],
    counter: RetryCounter,
    *,
    attempts: int,
    initial: float,
    maximum: float,
) -> Any:
    """A tenacity ``Retrying`` for idempotent calls: transient errors only, jittered
    exponential backoff, every retry counted for the summary, the last error raised."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    return Retrying(
        retry=retry_if_exception(is_transient_error),
        wait=wait_random_exponential(multiplier=initial, max=maximum),
        stop=stop_after_attempt(attempts),
        before_sleep=lambda _state: counter.add(),
        reraise=True,
    )


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    initial: float = 0.05
    maximum: float = 10.0


class StoreFiles:
    """The files of one artifact store, as the sweep deletes them."""

    def __init__(
        self,
        store: ArtifactStore,
        root: str,
        fs: Any,
        *,
        workers: int = 16,
        retry: RetryPolicy | None = None,
        retries: RetryCounter | None = None,
        limits: RequestLimits,
    ) -> None:
        self.store = store
        self.root = root
        self.fs = fs
        self.workers = max(1, workers)
        self.retry = retry or RetryPolicy()
        self.retries = retries or RetryCounter()
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                        thread_name_prefix=f"gc-rm-{store.id[:6]}")
        # fsspec's own local filesystem is deleted with os calls (below); any other
        # implementation, including subclasses of it, goes through its ``rm``.
        self._plain_local = type(fs) is _local_filesystem_class()
        self.s3: s3.S3Deleter | None = None
        if s3.is_s3(fs):
            client = s3.S3Client(
                fs, limiter=s3.RateLimiter(self.limits.max_requests_per_second),
                attempts=self.retry.attempts, initial_wait=self.retry.initial,
                max_wait=self.retry.maximum, on_retry=self.retries.add,
                scrub=s3.Scrubber(store.storage_options),
            )
            self.s3 = s3.S3Deleter(client, root, workers=self.workers,
                                   strategy=self.limits.s3_strategy)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.s3 is not None:
            self.s3.close()

    def _strip(self, path: str) -> str:
        return str(self.fs._strip_protocol(path))

    def delete(self, paths: Sequence[str], on_chunk: Callable[[int], None] | None = None
               ) -> DeleteOutcome:
        """Delete every path (recursively); report which are gone and which failed."""
        outcome = DeleteOutcome()
        todo: list[str] = []
        # A fresh memo per call: a directory swapped for a symlink is seen by the next
        # batch at the latest, the same window as between this check and the rm.
        dirs = RealDirs()
        for path in dict.fromkeys(paths):
            # The last fence before data goes away: whatever the manifest and the
            # database say, nothing outside the store root is ever passed to rm.
            if not strictly_inside(path, self.root, dirs=dirs):
                outcome.failed[path] = f"{path} is not strictly inside the store root {self.root}"
            else:
                todo.append(path)
        if not todo:
            return outcome
        if self.s3 is not None:
            def request_done() -> None:
                if on_chunk is not None:
                    on_chunk(0)

            result = self.s3.delete(todo, on_request=request_done)
            outcome.deleted |= result.deleted
            outcome.failed.update(result.failed)
            if on_chunk is not None:
                on_chunk(len(result.deleted))
            return outcome
        size = max(1, min(1000, -(-len(todo) // self.workers)))
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        for chunk_outcome in self._pool.map(self._delete_chunk, chunks):
            outcome.deleted |= chunk_outcome.deleted
            outcome.failed.update(chunk_outcome.failed)
            if on_chunk is not None:
                on_chunk(len(chunk_outcome.deleted))
        return outcome

    def _delete_chunk(self, chunk: list[str]) -> DeleteOutcome:
        outcome = DeleteOutcome()
        plain = [p for p in chunk if not (GLOB_CHARS & set(p))]
        globby = [p for p in chunk if GLOB_CHARS & set(p)]
        if plain:
            try:
                self._retrying(self._bulk_rm, plain)
                outcome.deleted.update(plain)
            except Exception:
                # One bad path fails the whole bulk call; sort it out path by path so
                # that the others are still deleted and the culprit is named.
                for path in plain:
                    self._one(path, outcome)
        for path in globby:
            self._one(path, outcome)
        return outcome

    def _one(self, path: str, outcome: DeleteOutcome) -> None:
        try:
            self._retrying(self._single_rm, path)
            outcome.deleted.add(path)
        except Exception as exc:
            outcome.failed[path] = f"{type(exc).__name__}: {exc}"

    def _retrying(self, function: Callable[[Any], None], argument: Any) -> None:
        for attempt in retry_transient(is_transient, self.retries, attempts=self.retry.attempts,
                                       initial=self.retry.initial, maximum=self.retry.maximum):
            with attempt:
                function(argument)

    def _bulk_rm(self, paths: list[str]) -> None:
        stripped = [self._strip(p) for p in paths]
        if self._plain_local:
            # What LocalFileSystem.rm does, minus its per-path isdir/islink/abspath/
            # getcwd calls: one lstat, then rmtree (which never follows a symlink)
            # for a directory, unlink for anything else (a link is removed itself,
            # never its target). Already gone counts as deleted.
            for path in stripped:
                _remove_local(path)
            self._verify_gone(stripped)
            return
        # LocalFileSystem.rm stops at the first missing path, so skip those (a stat
        # each); remote backends skip missing keys themselves, and a HEAD per path
        # would double the requests.
        local = "file" in protocols(self.fs)
        existing = [p for p in stripped if self._exists(p)] if local else stripped
        if existing:
            try:
                self.fs.rm(existing, recursive=True)
            except FileNotFoundError:
                # Something else removed one of them between our check and the call:
                # already gone counts as deleted. The check below finds any leftover.
                pass
        self._verify_gone(stripped)

    def _single_rm(self, path: str) -> None:
        stripped = self._strip(path)
        if not self._exists(stripped):
            return
        if GLOB_CHARS & set(stripped) and "file" not in protocols(self.fs):
            # Never let a backend expand a glob: delete exactly the files found under
            # the path, one key at a time.
            if self.fs.isdir(stripped):
                for found in self.fs.find(stripped, withdirs=False):
                    self.fs.rm_file(found)
            else:
                self.fs.rm_file(stripped)
        else:
            try:
                self.fs.rm(stripped, recursive=True)
            except FileNotFoundError:
                pass
        self._verify_gone([stripped])

    def _exists(self, path: str) -> bool:
        if "file" in protocols(self.fs):
            return os.path.lexists(path)
        return bool(self.fs.exists(path))

    def _verify_gone(self, paths: list[str]) -> None:
        if "file" not in protocols(self.fs):
            self.fs.invalidate_cache()
        left = [p for p in paths if self._exists(p)]
        if left:
            raise LeftBehind(errno.EAGAIN, f"still present after delete: {left[0]}"
                             + (f" (and {len(left) - 1} more)" if len(left) > 1 else ""))


def _remove_local(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        # Removed by someone else meanwhile; _verify_gone finds anything left over.
        pass


@functools.lru_cache(maxsize=1)
def _local_filesystem_class() -> type:
    from fsspec.implementations.local import LocalFileSystem

    cls: type = LocalFileSystem
    return cls


def default_filesystem(store: ArtifactStore) -> Any:
    """The fsspec filesystem of ``store``, through fsspec's registry."""
    import fsspec

    if store.root is None:
        raise ValueError(f"artifact store {store.id} has no root")
    fs, _ = fsspec.url_to_fs(store.root, **store.storage_options)
    return fs
