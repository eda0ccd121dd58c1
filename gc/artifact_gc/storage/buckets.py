"""Object stores with a bulk delete API of their own (GCS, Azure Blob): one batch loop.

An artifact version is a *prefix* holding a few objects. The backend of such a store
(storage/gcs.py, storage/azure.py) gives an :class:`ObjectClient`: a listing of the
keys in a key range, and a bulk delete of at most ``max_delete`` keys that answers
for every key on its own. :class:`ObjectStoreBackend` does the rest, the same way
for both:

- **Finding the keys of a batch.** The sweep hands its batches over in URI order.
  Their paths are cut into runs of consecutive paths (:func:`runs`), and each run's
  key range ``[min(path), max(path) + "0")`` is listed once (``"0"`` sorts right
  after ``"/"``, so every key ``p`` or ``p/...`` of every path ``p`` of the run lies
  inside it). The keys under each path are then picked with one DuckDB hash join
  (storage/keys.py). A run whose range holds far more keys than its paths can own
  (paths spread out, not URI-ordered) is given up after as many pages as it has
  paths and listed path by path instead.
- **Deleting.** The keys found go out in bulk requests of at most ``max_delete``
  keys, several in flight. Each key's own answer counts: deleted, already gone
  (counted as deleted, invariant 7), transient (429, 5xx: sent again, with backoff)
  or failed for good (reported with its cause, scrubbed of credentials).
- **Recorded keys.** Where ``gc mark --sizes`` recorded a path's objects (the
  manifest's ``object_keys``), those are deleted without a listing first, and the
  runs of those paths are listed once afterwards, which proves them empty and finds
  any object written under them since the mark (deleted in turn): about one LIST per
  1,000 objects where the listing would have cost one per page of objects found.
- **Proof.** A path is reported deleted only when every object the listing found
  under it was answered "deleted" or "gone" by the store itself. Both stores are
  strongly consistent for object deletes and listings, so such an answer is final.
  The listing is not repeated to prove it: that would double the LIST requests, and
  the requests per 1,000 objects are the budget that matters here (a second LIST
  per 1,000 objects is as much again as the whole overhead allowed over a bare bulk
  delete loop). What this gives up is the sight of an object written under a
  candidate's path *after* the listing: the candidate's rows are already gone then
  and it is older than the grace period, so nothing of ZenML's writes there; such
  an object would be leaked (left behind), never a live file lost.

Every request (a LIST page, a bulk delete) waits for the rate limiter
(``--max-requests-per-second``); throttling (429, 503) halves its rate, and is
retried for up to ``THROTTLE_PATIENCE_SECONDS``, other transient errors up to
``attempts`` times, with jittered exponential backoff. Listing and deleting are
idempotent, so every retry is safe.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from artifact_gc.storage.backend import DeleteOutcome
from artifact_gc.storage.fence import PathOutsideRoot, fence
from artifact_gc.storage.flat_listing import FlatPage
from artifact_gc.storage.keys import match_keys
from artifact_gc.storage.limits import RateLimiter, RequestLimits
from artifact_gc.storage.retry import RetryCounter, RetryPolicy
from artifact_gc.zenml.stores import ArtifactStore

#: How long throttling may go on before a request is given up (the rate limiter
#: keeps slowing down meanwhile).
THROTTLE_PATIENCE_SECONDS = 900.0
#: Paths per run of a ranged listing (a few pages of objects at three a version: each
#: run costs a partly filled page at its end, so runs are long).
RUN_PATHS = 1000


class TransientError(Exception):
    """A request the store answered with a status that a later identical request gets
    past (``throttle``: 429 or 503, which also slows the rate limiter down)."""

    def __init__(self, message: str, *, throttle: bool = False) -> None:
        super().__init__(message)
        self.throttle = throttle


@dataclass(frozen=True)
class KeyAnswer:
    """The store's answer for one key of a bulk delete."""

    key: str
    outcome: str  # "deleted", "gone", "transient", "throttled" or "failed"
    detail: str = ""


@dataclass
class RequestStats:
    """Requests sent, by kind; what the request-count tests and benchmarks read."""

    lists: int = 0
    deletes: int = 0
    keys_deleted: int = 0
    retries: int = 0
    throttled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class ObjectClient(Protocol):
    """One bucket or container of an object store, as the batch loop needs it."""

    #: The most keys one bulk delete request may carry.
    max_delete: int

    def list_page(self, prefix: str, start: str, stop: str, token: str | None
                  ) -> tuple[list[str], list[int], str | None]:
        """One LIST request: the keys (and sizes) under ``prefix`` in ``[start, stop)``
        (a store that cannot bound a listing returns more; they are filtered here),
        sorted, and the token of the next page (None at the end)."""
        ...

    def list_flat_page(self, prefix: str, token: str | None) -> FlatPage:
        """One LIST request of the flat listing of ``prefix`` (no delimiter), from
        ``token`` on: keys in name order with sizes and last-modified times."""
        ...

    def delete_batch(self, keys: Sequence[str]) -> list[KeyAnswer]:
        """One bulk delete request of at most ``max_delete`` keys: an answer per key.
        Raises :class:`TransientError` when the request as a whole may be retried."""
        ...

    def is_transient(self, exc: BaseException) -> bool:
        """Whether an exception of the client's own stack may be retried."""
        ...


class Scrubber:
    """Removes secret values (keys, secrets, tokens, connection strings) from text."""

    _SECRET_NAMES = re.compile(r"(key|secret|token|password|credential|connection|sas)", re.I)

    def __init__(self, options: dict[str, Any] | None) -> None:
        values = {v for v in self._values(options or {}) if len(v) >= 4}
        # A connection string's parts are secrets of their own (AccountKey=...).
        for value in list(values):
            for part in value.split(";"):
                _, _, secret = part.partition("=")
                if len(secret) >= 8:
                    values.add(secret)
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _values(self, options: Any, name: str = "") -> Iterable[str]:
        if isinstance(options, dict):
            for key, value in options.items():
                yield from self._values(value, str(key))
        elif isinstance(options, list | tuple):
            for value in options:
                yield from self._values(value, name)
        elif isinstance(options, str) and self._SECRET_NAMES.search(name):
            yield options


class Requests:
    """Sends one client's requests: rate limit, retries with backoff, counts."""

    def __init__(self, client: ObjectClient, *, limiter: RateLimiter, policy: RetryPolicy,
                 on_retry: Callable[[], None] | None, scrub: Callable[[str], str]) -> None:
        self.client = client
        self.limiter = limiter
        self.policy = policy
        self.on_retry = on_retry
        self.scrub = scrub
        self.stats = RequestStats()

    def _backoff(self, attempt: int, throttled: bool) -> None:
        self.stats.add(retries=1)
        if throttled:
            self.stats.add(throttled=1)
            self.limiter.throttled()
        if self.on_retry is not None:
            self.on_retry()
        time.sleep(random.uniform(0, min(self.policy.maximum,
                                         self.policy.initial * 2 ** attempt)))

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` after the rate limiter, retried while transient."""
        started = time.monotonic()
        attempt = 0
        while True:
            self.limiter.acquire()
            try:
                result = function(*args)
            except Exception as exc:
                throttle = isinstance(exc, TransientError) and exc.throttle
                transient = isinstance(exc, TransientError) or self.client.is_transient(exc)
                attempt += 1
                patient = throttle and time.monotonic() - started < THROTTLE_PATIENCE_SECONDS
                if not transient or (attempt >= self.policy.attempts and not patient):
                    raise
                self._backoff(attempt, throttle)
                continue
            self.limiter.succeeded()
            return result

    def list_keys(self, prefix: str, start: str, stop: str, max_pages: int | None = None
                  ) -> tuple[list[str], list[int], bool]:
        """Every key under ``prefix`` in ``[start, stop)`` with its size; False as the
        third value when ``max_pages`` pages did not reach the end of the range."""
        keys: list[str] = []
        sizes: list[int] = []
        token: str | None = None
        pages = 0
        while True:
            page_keys, page_sizes, token = self.call(
                self.client.list_page, prefix, start, stop, token)
            self.stats.add(lists=1)
            pages += 1
            for key, size in zip(page_keys, page_sizes, strict=True):
                if start <= key < stop and key.startswith(prefix):
                    keys.append(key)
                    sizes.append(size)
            past = bool(page_keys) and page_keys[-1] >= stop
            if token is None or past:
                return keys, sizes, True
            if max_pages is not None and pages >= max_pages:
                return keys, sizes, False

    def delete_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """Delete at most ``max_delete`` keys with one request (and retries of the keys
        answered with a transient error); return the keys that failed for good."""
        if len(keys) > self.client.max_delete:
            raise ValueError(f"a bulk delete takes at most {self.client.max_delete} keys, "
                             f"got {len(keys)}")
        pending = list(dict.fromkeys(keys))
        failed: dict[str, str] = {}
        started = time.monotonic()
        attempt = 0
        while pending:
            try:
                answers = self.call(self.client.delete_batch, pending)
            except Exception as exc:  # noqa: BLE001 - reported per key, the sweep goes on
                cause = self.scrub(f"{type(exc).__name__}: {exc}")
                failed.update(dict.fromkeys(pending, cause))
                break
            self.stats.add(deletes=1)
            answered = {a.key: a for a in answers}
            retry: list[str] = []
            throttled = False
            for key in pending:
                answer = answered.get(key)
                if answer is None:
                    # No answer for a key we sent: ask again, never assume it went.
                    retry.append(key)
                elif answer.outcome in ("deleted", "gone"):
                    self.stats.add(keys_deleted=1)
                elif answer.outcome in ("transient", "throttled"):
                    retry.append(key)
                    throttled = throttled or answer.outcome == "throttled"
                else:
                    failed[key] = self.scrub(answer.detail or "failed")
            if not retry:
                break
            attempt += 1
            patient = throttled and time.monotonic() - started < THROTTLE_PATIENCE_SECONDS
            if attempt >= self.policy.attempts and not patient:
                for key in retry:
                    detail = answered[key].detail if key in answered else "no answer"
                    failed[key] = self.scrub(f"per-key error persisted after retries ({detail})")
                break
            self._backoff(attempt, throttled)
            pending = retry
        return failed


class ObjectStoreBackend:
    """Deletes whole paths (prefixes and single objects) of one bucket or container,
    fenced to the store root. Subclasses say how a URI splits and give the client."""

    def __init__(self, store: ArtifactStore, root: str, fs: Any, *, workers: int,
                 retries: RetryCounter, limits: RequestLimits, retry: RetryPolicy) -> None:
        import duckdb

        self.root = root
        self.fs = fs
        self.bucket, self.root_key = self.split(root)
        self.scrub = Scrubber(store.storage_options)
        self.client = self.make_client(fs, self.bucket)
        self.requests = Requests(self.client, limiter=RateLimiter(limits.max_requests_per_second),
                                 policy=retry, on_retry=retries.add, scrub=self.scrub)
        self.workers = max(1, workers)
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 1")
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gc-obj")

    # -- what a subclass says ---------------------------------------------------

    @staticmethod
    def split(path: str) -> tuple[str, str]:
        """``scheme://bucket/a/b`` -> (``bucket``, ``a/b``)."""
        raise NotImplementedError

    def make_client(self, fs: Any, bucket: str) -> ObjectClient:
        raise NotImplementedError

    @property
    def stats(self) -> RequestStats:
        return self.requests.stats

    def list_objects(self) -> Iterator[pa.RecordBatch]:
        """Every object under the root (``gc mark --orphan-files``): one flat listing,
        a LIST per page of 1,000 (GCS) or 5,000 (Azure) keys with their times, streamed
        page by page (storage/flat_listing.py), under the rate limit and retries."""
        from artifact_gc.storage.flat_listing import list_flat

        def fetch(prefix: str, token: str | None) -> FlatPage:
            page: FlatPage = self.requests.call(self.client.list_flat_page, prefix, token)
            self.stats.add(lists=1)
            return page

        return list_flat(fetch, self.root, f"{self.scheme_of(self.root)}{self.bucket}/",
                         self.root_key)

    def remove_empty_dirs(self, dirs: Sequence[str]) -> int:
        """A bucket or container has no directories: a prefix is gone with its last
        object."""
        return 0

    # -- the Backend protocol ---------------------------------------------------

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.con.close()

    def _inside_root(self, key: str) -> bool:
        return bool(self.root_key) and key.startswith(self.root_key + "/") \
            and len(key) > len(self.root_key) + 1

    def delete(self, paths: Sequence[str], on_chunk: Callable[[int], None] | None = None,
               known: Mapping[str, Sequence[str]] | None = None) -> DeleteOutcome:
        """Delete every object under each path; ``on_chunk(0)`` follows every bulk
        delete request, ``on_chunk(n)`` the end.

        ``known``: path -> the object URLs gc mark listed under it. Those are deleted
        without a listing first (a URL outside its path or the root is ignored), and
        their paths are listed once afterwards (see the module's docstring)."""
        # The last fence before data goes away: whatever the manifest and the database
        # say, nothing outside the store root is listed or deleted; every key is
        # checked again right before it is sent (_delete_found).
        inside, refused = fence(paths, self.root)
        outcome = DeleteOutcome(failed=refused)
        by_key: dict[str, str] = {}
        for path in inside:
            bucket, key = self.split(path)
            if bucket != self.bucket or not self._inside_root(key):
                outcome.failed[path] = f"{path} is not strictly inside the store root"
            else:
                by_key[key] = path
        if by_key:
            recorded, with_record = recorded_keys(by_key, known, self.split, self.bucket,
                                                  self._inside_root)
            unrecorded = [k for k in sorted(by_key) if k not in with_record]
            found = self._find(unrecorded) if unrecorded else _EMPTY
            self._delete_and_report(pa.concat_tables([recorded, found]), by_key, outcome,
                                    on_chunk)
            # The recorded paths' proof: one listing of their runs after the deletes.
            # What it finds (written since the mark) is deleted, and the store's own
            # answer for each of those objects is final, as for a listed path.
            proven = [k for k in sorted(with_record) if by_key[k] not in outcome.failed]
            if proven:
                self._delete_and_report(self._find(proven), by_key, outcome, on_chunk)
        outcome.deleted = {p for p in by_key.values() if p not in outcome.failed}
        if on_chunk is not None:
            on_chunk(len(outcome.deleted))
        return outcome

    def _delete_and_report(self, found: pa.Table, by_key: dict[str, str],
                           outcome: DeleteOutcome, on_chunk: Callable[[int], None] | None
                           ) -> None:
        """Delete ``found``; a path with a key that failed goes to ``outcome.failed``."""
        if not found.num_rows:
            return
        failed_keys = self._delete_found(found, on_chunk)
        for key, path_key in zip(found.column("key").to_pylist(),
                                 found.column("path").to_pylist(), strict=True):
            if key in failed_keys and by_key[path_key] not in outcome.failed:
                outcome.failed[by_key[path_key]] = (
                    f"{self.scheme_of(self.root)}{self.bucket}/{key}: {failed_keys[key]}")

    def list_root(self) -> pa.Table:
        """``(key, size)`` of every object under the store root (``gc mark --sizes``):
        one sequential listing, a LIST per page."""
        if not self.root_key:
            raise ValueError(f"{self.root} is a whole bucket, not a folder in one")
        base = self.root_key + "/"
        keys, sizes, _ = self.requests.list_keys(base, base, self.root_key + "0")
        return pa.table({"key": pa.array(keys, pa.string()), "size": pa.array(sizes, pa.int64())})

    @staticmethod
    def scheme_of(url: str) -> str:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}{sep}" if sep else ""

    # -- finding ----------------------------------------------------------------

    def _find(self, path_keys: list[str]) -> pa.Table:
        """``(key, size, path)`` of every object under ``path_keys`` (sorted)."""
        chunks = runs(path_keys)
        listed = list(self._pool.map(self._list_run, chunks)) if len(chunks) > 1 \
            else [self._list_run(chunks[0])]
        parts = [
            # DuckDB's connection is used from this thread only.
            (match_keys(self.con, keys, run) if keys is not None else self._list_each(run))
            .select(["key", "size", "path"]).cast(_EMPTY.schema)
            for run, keys in zip(chunks, listed, strict=True)
        ]
        return pa.concat_tables(parts)

    def _list_run(self, path_keys: list[str]) -> pa.Table | None:
        low, high = path_keys[0], path_keys[-1] + "0"
        prefix = common_prefix(low, path_keys[-1])
        keys, sizes, complete = self.requests.list_keys(
            prefix, low, high, max_pages=max(2, len(path_keys)))
        if not complete:
            return None
        return pa.table({"key": pa.array(keys, pa.string()), "size": pa.array(sizes, pa.int64())})

    def _list_each(self, path_keys: list[str]) -> pa.Table:
        def one(path_key: str) -> tuple[list[str], list[int]]:
            # The path as a directory, then as an object of its own (a file footprint);
            # ``path_key + "0"`` is the first name after every ``path_key/...``.
            return self.requests.list_keys(path_key, path_key, path_key + "0")[:2]

        out: dict[str, list[Any]] = {"key": [], "size": [], "path": []}
        for path_key, (keys, sizes) in zip(path_keys, self._pool.map(one, path_keys),
                                           strict=True):
            picked = [(k, s) for k, s in zip(keys, sizes, strict=True)
                      if k == path_key or k.startswith(path_key + "/")]
            out["key"] += [k for k, _ in picked]
            out["size"] += [s for _, s in picked]
            out["path"] += [path_key] * len(picked)
        return pa.table({"key": pa.array(out["key"], pa.string()),
                         "size": pa.array(out["size"], pa.int64()),
                         "path": pa.array(out["path"], pa.string())})

    # -- deleting ---------------------------------------------------------------

    def _delete_found(self, found: pa.Table, on_chunk: Callable[[int], None] | None
                      ) -> dict[str, str]:
        keys = sorted(set(found.column("key").to_pylist()))
        # The last fence: every key sent lies strictly under the store root (it was
        # matched under a path that was itself checked, so this never trips).
        outside = [k for k in keys if not self._inside_root(k)]
        if outside:
            raise PathOutsideRoot(f"refusing to delete {outside[0]!r}: outside the store root")
        size = self.client.max_delete
        chunks = [keys[i:i + size] for i in range(0, len(keys), size)]
        failed: dict[str, str] = {}
        for chunk_failed in self._pool.map(self.requests.delete_keys, chunks):
            failed.update(chunk_failed)
            if on_chunk is not None:
                on_chunk(0)
        return failed


_EMPTY = pa.table({"key": pa.array([], pa.string()), "size": pa.array([], pa.int64()),
                   "path": pa.array([], pa.string())})


def recorded_keys(by_key: Mapping[str, str], known: Mapping[str, Sequence[str]] | None,
                  split: Callable[[str], tuple[str, str]], bucket: str,
                  inside_root: Callable[[str], bool]) -> tuple[pa.Table, set[str]]:
    """``(key, size, path)`` of the objects the mark recorded under the paths ``by_key``
    maps to (path key -> path URL), and the path keys that have a record (maybe empty).

    Only keys under their own path, in ``bucket`` and inside the root, are taken: the
    record comes from a file a user can edit, and a key it names is deleted unlisted."""
    keys: list[str] = []
    owners: list[str] = []
    recorded: set[str] = set()
    for path_key, path in by_key.items():
        urls = known.get(path) if known else None
        if urls is None:
            continue
        recorded.add(path_key)
        for url in urls:
            url_bucket, key = split(url)
            if url.endswith("/") and key:
                key += "/"  # a directory marker: split drops the slash of a path
            if url_bucket == bucket and inside_root(key) and (
                    key == path_key or key.startswith(path_key + "/")):
                keys.append(key)
                owners.append(path_key)
    return pa.table({"key": pa.array(keys, pa.string()),
                     "size": pa.array([0] * len(keys), pa.int64()),
                     "path": pa.array(owners, pa.string())}), recorded


def runs(path_keys: list[str], min_paths: int = RUN_PATHS) -> list[list[str]]:
    """Sorted ``path_keys`` cut into runs of consecutive paths, each of at least
    ``min_paths`` paths (but the last), cut only where the parent of the parent
    directory changes (``<step>/<output>/`` in ZenML's layout). Every path stays in
    exactly one run, and each run's range is listed whole, so nothing is missed."""
    out: list[list[str]] = []
    current: list[str] = []
    group: str | None = None
    for key in path_keys:
        head = key.rsplit("/", 2)[0] if key.count("/") >= 2 else ""
        if current and head != group and len(current) >= min_paths:
            out.append(current)
            current = []
        current.append(key)
        group = head
    if current:
        out.append(current)
    return out


def common_prefix(a: str, b: str) -> str:
    """The longest string both ``a`` and ``b`` start with: every key between them
    starts with it too."""
    return os.path.commonprefix([a, b])
