"""Retrying idempotent storage and database calls: which errors are transient, and how.

Only transient errors are retried (throttling, timeouts, dropped connections), with
jittered exponential backoff (tenacity), and every retry is counted for the summary.
Deleting a path twice is harmless, so every delete is safe to repeat.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from artifact_gc.storage.fence import PathOutsideRoot

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


class LeftBehind(OSError):
    """A delete returned without error but the path still exists (worth another try)."""


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


class RetryCounter:
    """Thread-safe count of retried calls, for the summary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    initial: float = 0.05
    maximum: float = 10.0


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
