"""Stores on this machine's disks (fsspec's ``file`` protocol).

fsspec's own ``LocalFileSystem`` is deleted with plain os calls: one ``lstat`` per
path, then ``rmtree`` or ``unlink``, which is what its ``rm`` does minus the
per-path ``isdir``/``islink``/``abspath``/``getcwd`` calls. Any other implementation
of the protocol, a subclass included (a wrapper that injects faults, a mount with
its own rules), goes through its own ``rm``: only the missing paths are skipped
first, because ``LocalFileSystem.rm`` stops at the first one.

Existence is ``os.path.lexists``: a dangling symlink is still there, and a symlink
is removed itself, never its target.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from artifact_gc.storage.generic import GenericBackend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter, RetryPolicy
from artifact_gc.zenml.stores import ArtifactStore


class LocalBackend(GenericBackend):
    """The chunking, retries, fence and checks of :class:`GenericBackend`, with os calls."""

    def __init__(self, store: ArtifactStore, root: str, fs: Any, *, workers: int,
                 retries: RetryCounter, limits: RequestLimits, retry: RetryPolicy) -> None:
        super().__init__(store, root, fs, workers=workers, retries=retries, limits=limits,
                         retry=retry)
        from fsspec.implementations.local import LocalFileSystem

        self._plain = type(fs) is LocalFileSystem

    def _remove_many(self, paths: list[str]) -> None:
        if self._plain:
            for path in paths:
                self._throttle(1)
                _remove(path)
            return
        # LocalFileSystem.rm stops at the first missing path: skip those first.
        existing = [p for p in paths if os.path.lexists(p)]
        if existing:
            super()._remove_many(existing)

    def _remove_one(self, path: str) -> None:
        # LocalFileSystem.rm never reads a glob, so a path is deleted as it is spelled.
        self._throttle(1)
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def list_objects(self) -> Iterator[pa.RecordBatch]:
        from artifact_gc.storage.listing import list_fsspec, list_local

        if self._plain:
            return list_local(self.root, workers=self.workers)
        return list_fsspec(self.fs, self.root)

    def remove_empty_dirs(self, dirs: Sequence[str]) -> int:
        from artifact_gc.storage.fence import RealDirs, strictly_inside
        from artifact_gc.storage.listing import remove_empty_local_dirs

        # Never the root, never outside it (symlinks resolved; the grandparents, shared
        # by the batch's folders, once per call, as the fence does before a delete).
        real = RealDirs()
        return remove_empty_local_dirs([d for d in dirs
                                        if strictly_inside(d, self.root, dirs=real)])

    def _exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def _forget_listings(self) -> None:
        """A local filesystem caches no listings."""


def _remove(path: str) -> None:
    """Remove ``path``: a directory with ``rmtree`` (which never follows a symlink),
    anything else, a symlink included, with ``unlink``. Already gone counts as deleted."""
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
        # Removed by someone else meanwhile; the check that follows finds anything left.
        pass
