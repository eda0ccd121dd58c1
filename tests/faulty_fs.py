"""Hostile fsspec filesystems: the real local one, with calls that fail on purpose.

Both are real ``AbstractFileSystem`` implementations (fsspec's ``LocalFileSystem``
underneath, nothing mocked):

- :class:`FaultyFileSystem`: ``rm`` fails transiently on the first ``fail_first``
  calls of every path it sees (a connection reset, or S3's ``SlowDown``), and any
  path containing one of ``permanent`` fails for good with a permission error.
- :class:`FlakyFileSystem`: driven by a :class:`LocalFaults` plan. Every path an
  ``rm`` removes fails transiently with probability ``rate`` (the ``OSError`` kinds a
  network or FUSE mount really raises: EBUSY, ETIMEDOUT, EAGAIN, ECONNRESET, EINTR),
  half of them *before* the path is removed and half *after* it (the delete took,
  the answer was lost), one path at a time, so a fault in the middle of a list leaves
  the paths before it deleted. Paths containing a ``denied`` marker fail for good
  with EACCES. The draw for a path depends only on (seed, path, attempt number), so
  a run is reproducible whatever the threads do. Every fault raised is counted by
  kind in ``LocalFaults.raised``.

``register_flaky_local(faults)`` installs :class:`FlakyFileSystem` as fsspec's
``file`` protocol, for a ``gc`` subprocess (tests/faulty_gc.py). Only ``rm`` is ever
faulted, and only under ``LocalFaults.scope``, so the manifest and journal (which
never ``rm``) keep working.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fsspec.implementations.local import LocalFileSystem


class SlowDown(OSError):
    """What S3 answers when it throttles (the message is what classifiers look at)."""


class FaultyFileSystem(LocalFileSystem):  # type: ignore[misc]
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


#: The transient errnos injected, in turn. ``OSError(code, ...)`` builds the subclass
#: Python itself would raise (TimeoutError, BlockingIOError, ConnectionResetError,
#: InterruptedError), exactly as a failing system call does.
TRANSIENT_ERRNOS = ("EBUSY", "ETIMEDOUT", "EAGAIN", "ECONNRESET", "EINTR")


@dataclass
class LocalFaults:
    """What :class:`FlakyFileSystem` injects, and what it raised."""

    #: Probability that the removal of one path fails transiently (per attempt).
    rate: float = 0.0
    seed: int = 0
    #: Paths containing one of these fail for good (EACCES), on every attempt.
    denied: tuple[str, ...] = ()
    #: Only paths under this prefix are faulted (None: every path).
    scope: str | None = None
    #: Faults actually raised, by kind ("EBUSY before rm", "EACCES", ...).
    raised: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def total(self, *, permanent: bool | None = None) -> int:
        return sum(n for kind, n in self.raised.items()
                   if permanent is None or (kind == "EACCES") == permanent)

    def fault(self, path: str) -> tuple[OSError, bool] | None:
        """The error to raise for this attempt at ``path`` (and whether it comes after
        the path was removed), or None to let the call through."""
        if self.scope is not None and not path.startswith(self.scope.rstrip("/") + "/"):
            return None
        with self.lock:
            if any(marker in path for marker in self.denied):
                self.raised["EACCES"] += 1
                return PermissionError(errno.EACCES, "Permission denied (injected)", path), False
            self.attempts[path] += 1
            draw = random.Random(f"{self.seed}|{path}|{self.attempts[path]}").random()
            if draw >= self.rate:
                return None
            name = TRANSIENT_ERRNOS[int(draw / self.rate * 2 * len(TRANSIENT_ERRNOS))
                                    % len(TRANSIENT_ERRNOS)]
            after = draw >= self.rate / 2
            self.raised[f"{name} {'after' if after else 'before'} rm"] += 1
        code = getattr(errno, name)
        return OSError(code, f"{os.strerror(code)} (injected)", path), after


class FlakyFileSystem(LocalFileSystem):  # type: ignore[misc]
    """fsspec's local filesystem whose ``rm`` fails as ``faults`` says."""

    protocol = ("flaky", "file")
    cachable = False
    #: The plan used when none is passed (set by :func:`register_flaky_local`).
    default_faults: LocalFaults | None = None

    def __init__(self, faults: LocalFaults | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.faults = faults or self.default_faults or LocalFaults()

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        for one in path if isinstance(path, list) else [path]:
            stripped = self._strip_protocol(one)
            fault = self.faults.fault(stripped)
            if fault is not None and not fault[1]:
                raise fault[0]
            super().rm(stripped, recursive=recursive, maxdepth=maxdepth)
            if fault is not None:
                raise fault[0]

    def rm_file(self, path: Any) -> None:
        self.rm(path)


def register_flaky_local(faults: LocalFaults) -> type[FlakyFileSystem]:
    """Make :class:`FlakyFileSystem` (with ``faults``) fsspec's ``file`` filesystem."""
    import fsspec

    bound = type("BoundFlakyFileSystem", (FlakyFileSystem,), {"default_faults": faults})
    fsspec.register_implementation("file", bound, clobber=True)
    return bound
