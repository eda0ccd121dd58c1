"""A hostile fsspec filesystem: the real local one, with calls that fail on purpose.

It is a real ``AbstractFileSystem`` implementation (fsspec's ``LocalFileSystem``
underneath, nothing mocked): ``rm`` fails transiently on the first ``fail_first``
calls of every path it sees (a connection reset, or S3's ``SlowDown``), and any path
containing one of ``permanent`` fails for good with a permission error.
"""

from __future__ import annotations

import threading
from typing import Any

from fsspec.implementations.local import LocalFileSystem


class SlowDown(OSError):
    """What S3 answers when it throttles (the message is what classifiers look at)."""


class FaultyFileSystem(LocalFileSystem):
    protocol = ("faulty", "file")
    cachable = False

    def __init__(self, fail_first: int = 2, permanent: tuple[str, ...] = (),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_first = fail_first
        self.permanent = permanent
        self.calls: dict[str, int] = {}
        self.transient_raised = 0
        self._lock = threading.Lock()

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = path if isinstance(path, list) else [path]
        with self._lock:
            for p in paths:
                if any(marker in p for marker in self.permanent):
                    raise PermissionError(13, "Permission denied (injected)", p)
            key = paths[0]
            seen = self.calls.get(key, 0)
            self.calls[key] = seen + 1
            if seen < self.fail_first:
                self.transient_raised += 1
                if seen % 2 == 0:
                    raise ConnectionResetError(104, "Connection reset by peer (injected)")
                raise SlowDown("SlowDown: Please reduce your request rate (injected)")
        super().rm(paths, recursive=recursive, maxdepth=maxdepth)
