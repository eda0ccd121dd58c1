"""Limits on the requests sent to artifact stores, passed down as a value, and the
rate limiter that enforces them."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: How the S3 backend finds the keys of a batch (see storage/s3.py): one ranged
#: listing per run of consecutive paths (the default), or one listing per path.
STRATEGY_RANGE = "range"
STRATEGY_PREFIX = "prefix"
STRATEGIES = (STRATEGY_RANGE, STRATEGY_PREFIX)
#: Listing streams of one S3 root (``--list-workers``). One: measured on moto (14,425
#: objects), 4 and 8 streams were no faster than one (its server renders every page
#: under one interpreter lock) and sent 4 more LISTs than the bare listing's 15. Where
#: each LIST waits on a round trip (S3 itself), more streams overlap those waits.
DEFAULT_LIST_WORKERS = 1


@dataclass(frozen=True)
class RequestLimits:
    """``--max-requests-per-second`` and how S3 keys are found.

    Given explicitly to every backend and listing that talks to an artifact store; no
    module keeps a default of its own. What counts as one request is the backend's
    to say: an HTTP request on S3, one path deleted on the others.
    """

    max_requests_per_second: float | None = None
    s3_strategy: str = STRATEGY_RANGE
    #: ``--list-workers``: paginated listings of one S3 root at a time, over contiguous
    #: key ranges (storage/listing.py ``s3_pages``); 1 lists it page after page.
    list_workers: int = DEFAULT_LIST_WORKERS


class RateLimiter:
    """Spaces requests ``1/rate`` apart (a token bucket that holds one token), and adapts.

    ``max_per_second`` is the user's ceiling (``--max-requests-per-second``), None for
    none. Throttling halves the allowed rate (at most once per ``cut_interval``, so
    that the answers of the requests already in flight count once); every success
    raises it by about 2% until it is back at the ceiling, or, without a ceiling, until
    it is so high that it no longer limits anything. Any window of one second holds at
    most ``floor(rate) + 1`` requests.
    """

    MIN_RATE = 1.0
    UNLIMITED_ABOVE = 20_000.0

    def __init__(self, max_per_second: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 cut_interval: float = 0.5) -> None:
        if max_per_second is not None and max_per_second <= 0:
            raise ValueError("max_per_second must be positive")
        self.limit = max_per_second
        self.rate = max_per_second
        self.clock = clock
        self.sleep = sleep
        self.cut_interval = cut_interval
        self.throttled_count = 0
        self._next = 0.0
        self._last_cut = -1e9
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self.clock()
            self._recent.append(now)
            while self._recent and self._recent[0] < now - 1.0:
                self._recent.popleft()
            if self.rate is None:
                return
            at = max(now, self._next)
            self._next = at + 1.0 / self.rate
        if at > now:
            self.sleep(at - now)

    def throttled(self) -> None:
        with self._lock:
            self.throttled_count += 1
            now = self.clock()
            if now - self._last_cut < self.cut_interval:
                return
            self._last_cut = now
            current = self.rate if self.rate is not None else float(max(len(self._recent), 2))
            self.rate = max(self.MIN_RATE, current / 2)

    def succeeded(self) -> None:
        with self._lock:
            if self.rate is None or (self.limit is not None and self.rate >= self.limit):
                return
            raised = self.rate * 1.02 + 0.1
            if self.limit is not None:
                self.rate = min(self.limit, raised)
            else:
                self.rate = None if raised > self.UNLIMITED_ABOVE else raised
