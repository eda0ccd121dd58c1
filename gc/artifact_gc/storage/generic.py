"""Any fsspec filesystem (GCS, Azure, memory, ...): bulk ``rm`` in threads, retried, verified.

A batch's paths are cut into chunks spread over ``workers`` threads, and each chunk
is deleted with one ``rm(list)`` (backends that have a bulk API use it). Then every
path is checked to be gone, because "no exception" proves nothing: s3fs, for one,
silently ignores the per-key errors of a bulk delete. A chunk that fails is sorted
out path by path, so the other paths are still deleted and the culprit is named.

With ``--max-requests-per-second`` every path deleted counts as one request: each
delete then names a single path and waits for its turn at the rate limiter.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from artifact_gc.storage.backend import DeleteOutcome
from artifact_gc.storage.fence import fence
from artifact_gc.storage.limits import RateLimiter, RequestLimits
from artifact_gc.storage.retry import (
    LeftBehind,
    RetryCounter,
    RetryPolicy,
    is_transient,
    retry_transient,
)
from artifact_gc.zenml.stores import ArtifactStore

#: Characters that fsspec backends may read as a glob in ``rm``/``expand_path``.
GLOB_CHARS = frozenset("*?[")
#: Paths per ``rm`` call at most.
MAX_CHUNK = 1000


class GenericBackend:
    """Deletes through the filesystem's own ``rm``; the base of :class:`LocalBackend`."""

    def __init__(self, store: ArtifactStore, root: str, fs: Any, *, workers: int,
                 retries: RetryCounter, limits: RequestLimits, retry: RetryPolicy) -> None:
        self.store = store
        self.root = root
        self.fs = fs
        self.workers = workers
        self.retries = retries
        self.retry = retry
        self.limiter = (RateLimiter(limits.max_requests_per_second)
                        if limits.max_requests_per_second is not None else None)
        self._pool = ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix=f"gc-rm-{store.id[:6]}")

    @classmethod
    def accepts(cls, fs: Any) -> bool:
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def list_objects(self) -> Iterator[pa.RecordBatch]:
        from artifact_gc.storage.listing import list_fsspec

        return list_fsspec(self.fs, self.root)

    def remove_empty_dirs(self, dirs: Sequence[str]) -> int:
        """Object stores behind fsspec have no directories of their own to leave."""
        return 0

    def delete(self, paths: Sequence[str], on_chunk: Callable[[int], None] | None = None
               ) -> DeleteOutcome:
        # The last fence before data goes away: whatever the manifest and the
        # database say, nothing outside the store root is ever passed to rm.
        todo, refused = fence(paths, self.root)
        outcome = DeleteOutcome(failed=refused)
        if not todo:
            return outcome
        # Under a rate limit a delete names one path (one request each).
        size = 1 if self.limiter is not None else \
            max(1, min(MAX_CHUNK, -(-len(todo) // self.workers)))
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
        stripped = [str(self.fs._strip_protocol(p)) for p in paths]
        self._remove_many(stripped)
        self._verify_gone(stripped)

    def _single_rm(self, path: str) -> None:
        stripped = str(self.fs._strip_protocol(path))
        if not self._exists(stripped):
            return
        self._remove_one(stripped)
        self._verify_gone([stripped])

    # -- the filesystem calls (LocalBackend has its own) ------------------------

    def _throttle(self, paths: int) -> None:
        """Wait for the rate limiter: one request per path about to be deleted."""
        if self.limiter is not None:
            for _ in range(paths):
                self.limiter.acquire()

    def _remove_many(self, paths: list[str]) -> None:
        # Remote backends skip missing keys themselves, and a HEAD per path first
        # would double the requests.
        self._throttle(len(paths))
        try:
            self.fs.rm(paths, recursive=True)
        except FileNotFoundError:
            # Something else removed one of them meanwhile: already gone counts as
            # deleted. The check that follows finds any leftover.
            pass

    def _remove_one(self, path: str) -> None:
        if GLOB_CHARS & set(path):
            # Never let a backend expand a glob: delete exactly the files found under
            # the path, one key at a time.
            found = self.fs.find(path, withdirs=False) if self.fs.isdir(path) else [path]
            for one in found:
                self._throttle(1)
                self.fs.rm_file(one)
            return
        self._throttle(1)
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def _exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def _forget_listings(self) -> None:
        self.fs.invalidate_cache()

    def _verify_gone(self, paths: list[str]) -> None:
        self._forget_listings()
        left = [p for p in paths if self._exists(p)]
        if left:
            raise LeftBehind(errno.EAGAIN, f"still present after delete: {left[0]}"
                             + (f" (and {len(left) - 1} more)" if len(left) > 1 else ""))
