"""The S3 backend (s3fs): listing, bulk deletes at the API's limit, throttling, sizes.

Everything goes through the s3fs filesystem's own aiobotocore client (so it is
configured exactly as fsspec configured it: endpoint, credentials, region), but we
call ``ListObjectsV2`` and ``DeleteObjects`` ourselves, because s3fs

- silently ignores the per-key ``Errors`` of a ``DeleteObjects`` answered with 200,
- reads ``[``, ``*`` and ``?`` in a key as a glob and may skip the key,
- retries ``SlowDown`` with a fixed schedule that knows nothing of our rate limit.

How the keys of a batch are found (``STRATEGY_RANGE``, the default). An artifact
version is a *prefix* holding several objects. Listing each prefix costs one LIST
per version. Instead, the paths of a batch are turned into one key range
``[min(path), max(path) + "0")`` (``"0"`` sorts right after ``"/"``, so every key
``p`` or ``p/...`` of every path ``p`` of the batch lies inside it) and that range
is listed, 1,000 keys per request, right before the delete. The sweep hands us its
batches in URI order, so the ranges of successive batches are disjoint and the
whole sweep lists the part of the store its candidates span once: one LIST per
1,000 objects, the same as a listing of the whole store, without holding it in
memory and without a listing that goes stale while the sweep runs. The keys under
the batch's paths are then picked with a DuckDB hash join on "the key cut to the
path's depth" (storage/keys.py: no nested loop over keys x paths). A batch whose
paths are spread out (not URI-ordered) would make the range expensive: after as
many pages as the batch has paths, we give up on the range and list each path
instead, so a batch never costs more than about twice the cheaper of the two
strategies.

``STRATEGY_PREFIX`` lists each path on its own (one LIST per version at least);
the benchmark compares the two.

After the deletes the same range (or each path) is listed again: this proves the
deletes took (S3 is strongly consistent since 2020) and catches any object created
under a candidate's prefix after our listing; those are deleted in another round.
A path is reported deleted only when that re-listing finds nothing under it.

A caller that has just listed the paths itself and checked what it found (the orphan
sweep: its grace check, under the database lock) passes that listing as
:class:`ListedObjects`: exactly those keys are deleted, with no listing before or
after. An object written since is then left in place rather than deleted unchecked.

Every request waits for the rate limiter (storage/limits.py): one request is one
``ListObjectsV2`` or ``DeleteObjects`` call.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from artifact_gc.storage.backend import DeleteOutcome
from artifact_gc.storage.buckets import Scrubber, common_prefix, recorded_keys
from artifact_gc.storage.buckets import runs as cut_runs
from artifact_gc.storage.fence import PathOutsideRoot, fence
from artifact_gc.storage.keys import match_keys
from artifact_gc.storage.limits import STRATEGIES, STRATEGY_RANGE, RateLimiter, RequestLimits
from artifact_gc.storage.retry import RetryCounter, RetryPolicy
from artifact_gc.zenml.stores import ArtifactStore

#: ``DeleteObjects`` takes at most 1,000 keys; more fails with MalformedXML on S3.
MAX_DELETE_KEYS = 1000
#: ``ListObjectsV2`` returns at most 1,000 keys a page.
MAX_LIST_KEYS = 1000

#: Error codes (request level or per key) that a later identical request gets past.
THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException",
                            "RequestLimitExceeded", "TooManyRequests",
                            "TooManyRequestsException", "503"})
TRANSIENT_CODES = THROTTLE_CODES | frozenset({
    "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
    "OperationAborted", "500", "502", "504",
})
#: A key that is already gone counts as deleted (invariant 7).
GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion"})

#: How long throttling may go on before a request is given up (it never fails the
#: sweep before that: the rate limiter keeps slowing down).
THROTTLE_PATIENCE_SECONDS = 900.0


def is_s3(fs: Any) -> bool:
    """True for an s3fs filesystem (anything with the s3 protocol and an aiobotocore client)."""
    protocol = fs.protocol
    protocols = tuple(protocol) if isinstance(protocol, tuple | list) else (str(protocol),)
    return bool({"s3", "s3a"} & set(protocols)) and hasattr(fs, "get_s3")


def split_path(path: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` or ``bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bare = path.split("://", 1)[-1]
    bucket, _, key = bare.partition("/")
    return bucket, key.rstrip("/")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (or of the error it caused)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            if code:
                return str(code)
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status:
                return str(status)
        current = current.__cause__ or current.__context__
    return None


def is_throttle(exc: BaseException) -> bool:
    code = error_code(exc)
    if code is not None:
        return code in THROTTLE_CODES
    text = str(exc).lower()
    return "slowdown" in text or "slow down" in text or "reduce your request rate" in text


def is_transient_s3(exc: BaseException) -> bool:
    """Throttling, 5xx and the connection errors botocore gives up on."""
    code = error_code(exc)
    if code is not None:
        return code in TRANSIENT_CODES
    name = type(exc).__name__
    if name in ("EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                "ConnectTimeoutError", "ClientPayloadError", "ServerDisconnectedError",
                "ClientConnectorError", "ResponseParserError", "IncompleteReadError"):
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------


@dataclass
class RequestStats:
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


class S3Client:
    """``ListObjectsV2`` and ``DeleteObjects`` through an s3fs filesystem's client.

    Every request waits for the rate limiter and is retried, with jittered exponential
    backoff, on throttling (for up to ``THROTTLE_PATIENCE_SECONDS``) and on other
    transient errors (up to ``attempts`` times). Both calls are idempotent: listing
    changes nothing, and deleting a key twice deletes it once.
    """

    def __init__(self, fs: Any, *, limiter: RateLimiter | None = None, attempts: int = 8,
                 initial_wait: float = 0.05, max_wait: float = 10.0,
                 on_retry: Callable[[], None] | None = None,
                 scrub: Callable[[str], str] | None = None) -> None:
        self.fs = fs
        self.limiter = limiter or RateLimiter()
        self.attempts = attempts
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.on_retry = on_retry
        self.scrub = scrub or (lambda text: text)
        self.stats = RequestStats()
        self._session = False
        self._session_lock = threading.Lock()

    def _raw(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        from fsspec.asyn import sync

        async def call() -> dict[str, Any]:
            client = await self.fs.get_s3(kwargs.get("Bucket"))
            function = getattr(client, method)
            arguments = dict(kwargs)
            try:
                # RequestPayer and friends from s3_additional_kwargs, filtered to what
                # this method accepts (s3fs's own helper).
                arguments = self.fs._get_s3_method_kwargs(function, **kwargs)
            except Exception:  # noqa: BLE001 - fall back to the bare arguments
                pass
            result: dict[str, Any] = await function(**arguments)
            return result

        result: dict[str, Any] = sync(self.fs.loop, call)
        return result

    def call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

        started = time.monotonic()

        def stop(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None and is_throttle(exc):
                return time.monotonic() - started > THROTTLE_PATIENCE_SECONDS
            return state.attempt_number >= self.attempts

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.stats.add(retries=1)
            if exc is not None and is_throttle(exc):
                self.stats.add(throttled=1)
                self.limiter.throttled()
            if self.on_retry is not None:
                self.on_retry()

        if not self._session:
            from fsspec.asyn import sync

            # Connect before the first token is taken, so that the requests queued
            # behind the connection do not all go out at once when it is ready.
            with self._session_lock:
                sync(self.fs.loop, self.fs.set_session)
                self._session = True
        result: dict[str, Any] = {}
        for attempt in Retrying(
            retry=retry_if_exception(is_transient_s3),
            wait=wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait),
            stop=stop, before_sleep=before_sleep, reraise=True,
        ):
            with attempt:
                self.limiter.acquire()
                result = self._raw(method, kwargs)
        self.limiter.succeeded()
        return result

    # -- listing ------------------------------------------------------------

    def list_keys(self, bucket: str, prefix: str, *, start_after: str | None = None,
                  stop_at: str | None = None, max_pages: int | None = None
                  ) -> tuple[list[str], list[int], bool]:
        """Keys (and sizes) under ``prefix`` in order, from ``start_after`` (exclusive)
        up to ``stop_at`` (exclusive). Returns ``(keys, sizes, complete)``; complete is
        False when ``max_pages`` ran out first."""
        keys: list[str] = []
        sizes: list[int] = []
        token: str | None = None
        pages = 0
        while True:
            if max_pages is not None and pages >= max_pages:
                return keys, sizes, False
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix,
                                      "MaxKeys": MAX_LIST_KEYS}
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            page = self.call("list_objects_v2", **kwargs)
            pages += 1
            self.stats.add(lists=1)
            for entry in page.get("Contents") or []:
                key = str(entry["Key"])
                if stop_at is not None and key >= stop_at:
                    return keys, sizes, True
                keys.append(key)
                sizes.append(int(entry.get("Size") or 0))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys, sizes, True

    # -- deleting -----------------------------------------------------------

    def delete_keys(self, bucket: str, keys: Sequence[str], *, key_attempts: int = 8
                    ) -> dict[str, str]:
        """Delete at most 1,000 keys with one ``DeleteObjects`` (plus retries of the keys
        that came back with a transient per-key error); return the keys that failed
        for good, with their error. A key reported ``NoSuchKey`` is gone: deleted."""
        if len(keys) > MAX_DELETE_KEYS:
            raise ValueError(f"DeleteObjects takes at most {MAX_DELETE_KEYS} keys, "
                             f"got {len(keys)}")
        pending = list(dict.fromkeys(keys))
        failed: dict[str, str] = {}
        started = time.monotonic()
        attempt = 0
        while pending:
            response = self.call("delete_objects", Bucket=bucket, Delete={
                "Objects": [{"Key": k} for k in pending], "Quiet": True})
            self.stats.add(deletes=1)
            # Quiet mode lists only the errors; every key not in Errors is deleted.
            # (moto ignores Quiet and lists Deleted too: harmless.)
            retry: list[str] = []
            throttled = False
            for error in response.get("Errors") or []:
                key, code = str(error.get("Key")), str(error.get("Code") or "")
                if code in GONE_CODES:
                    continue
                if code in TRANSIENT_CODES:
                    retry.append(key)
                    throttled = throttled or code in THROTTLE_CODES
                else:
                    failed[key] = self.scrub(f"{code}: {error.get('Message') or ''}".strip())
            self.stats.add(keys_deleted=len(pending) - len(retry) - len(
                [k for k in pending if k in failed]))
            if not retry:
                break
            attempt += 1
            patience_left = time.monotonic() - started < THROTTLE_PATIENCE_SECONDS
            if attempt >= key_attempts and not (throttled and patience_left):
                for key in retry:
                    failed[key] = "per-key error persisted after retries (" + ", ".join(
                        sorted({str(e.get("Code")) for e in response.get("Errors") or []
                                if str(e.get("Key")) in set(retry)})) + ")"
                break
            self.stats.add(retries=1)
            if throttled:
                self.stats.add(throttled=1)
                self.limiter.throttled()
            if self.on_retry is not None:
                self.on_retry()
            time.sleep(random.uniform(0, min(self.max_wait, self.initial_wait * 2 ** attempt)))
            pending = retry
        return failed


# ---------------------------------------------------------------------------
# Deleting the paths of a batch
# ---------------------------------------------------------------------------


class S3Backend:
    """Deletes whole paths (prefixes and single objects) of one bucket, fenced to a root.

    Every request goes through one :class:`S3Client`, so ``--max-requests-per-second``
    (``limits``) and the backoff on throttling hold for the listings and the deletes.
    """

    def __init__(self, store: ArtifactStore, root: str, fs: Any, *, workers: int,
                 retries: RetryCounter, limits: RequestLimits, retry: RetryPolicy,
                 rounds: int = 3) -> None:
        if limits.s3_strategy not in STRATEGIES:
            raise ValueError(f"unknown S3 listing strategy {limits.s3_strategy!r}")
        import duckdb

        self.root = root
        self.client = S3Client(
            fs, limiter=RateLimiter(limits.max_requests_per_second),
            attempts=retry.attempts, initial_wait=retry.initial, max_wait=retry.maximum,
            on_retry=retries.add, scrub=Scrubber(store.storage_options))
        self.bucket, self.root_key = split_path(root)
        self.workers = max(1, workers)
        self.strategy = limits.s3_strategy
        self.list_workers = limits.list_workers
        self.rounds = rounds
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 1")
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gc-s3")

    @classmethod
    def accepts(cls, fs: Any) -> bool:
        """s3fs only: another implementation of the protocol gets the generic backend."""
        return is_s3(fs)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.con.close()

    def list_objects(self) -> Iterator[pa.RecordBatch]:
        from artifact_gc.storage.listing import list_s3

        def call(method: str, **kwargs: Any) -> dict[str, Any]:
            self.client.stats.add(lists=1)
            return self.client.call(method, **kwargs)

        return list_s3(call, self.root, streams=self.list_workers)

    def remove_empty_dirs(self, dirs: Sequence[str]) -> int:
        """S3 has no directories: a prefix is gone with its last key."""
        return 0

    def _inside_root(self, key: str) -> bool:
        return bool(self.root_key) and key.startswith(self.root_key + "/") \
            and len(key) > len(self.root_key) + 1

    def delete(self, paths: Sequence[str], on_chunk: Callable[[int], None] | None = None,
               known: Mapping[str, Sequence[str]] | None = None) -> DeleteOutcome:
        """Delete every object under each path (``s3://bucket/key``).

        ``known``: path -> the object URLs gc mark listed under it. Those are deleted
        without a listing first; a key that does not lie under its path (or inside
        the root) is ignored. Every path is listed after the deletes all the same.

        ``on_chunk(0)`` follows every ``DeleteObjects`` request, ``on_chunk(n)`` the end.
        """
        # The last fence before data goes away: whatever the manifest and the database
        # say, nothing outside the store root is listed or deleted. Every key is
        # checked again before it is sent (_delete_found).
        inside, refused = fence(paths, self.root)
        outcome = DeleteOutcome(failed=refused)
        if not inside:
            return outcome
        by_key: dict[str, str] = {}
        for path in inside:
            bucket, key = split_path(path)
            if bucket != self.bucket or not self._inside_root(key):
                outcome.failed[path] = f"{path} is not strictly inside the store root"
            else:
                by_key[key] = path
        if isinstance(known, ListedObjects):
            self._delete_listed(by_key, outcome, on_chunk, known)
        else:
            self._delete_keys_under(by_key, outcome, on_chunk, known)
        for path in by_key.values():
            if path not in outcome.failed:
                outcome.deleted.add(path)
        if on_chunk is not None:
            on_chunk(len(outcome.deleted))
        return outcome

    def _delete_listed(self, by_key: dict[str, str], outcome: DeleteOutcome,
                       on_chunk: Callable[[int], None] | None, listed: ListedObjects) -> None:
        """Delete exactly the objects ``listed`` names under each path: no listing before
        (the caller's listing is the one its checks were made on) and none after (an
        object written under a path since that listing was never checked, so it is not
        deleted; it stays for a later mark to find). A path the listing does not cover
        is refused: it could not be told deleted."""
        for path_key, path in list(by_key.items()):
            if path not in listed:
                outcome.failed[path] = f"{path} was not listed before its delete"
                del by_key[path_key]
        # Only keys under their own path and inside the root (recorded_keys' fence).
        found, _ = recorded_keys(by_key, listed, split_path, self.bucket, self._inside_root)
        if not found.num_rows:
            return
        failed_keys = self._delete_found(found, on_chunk)
        for key, path_key in zip(found.column("key").to_pylist(),
                                 found.column("path").to_pylist(), strict=True):
            if key in failed_keys and by_key[path_key] not in outcome.failed:
                outcome.failed[by_key[path_key]] = \
                    f"s3://{self.bucket}/{key}: {failed_keys[key]}"

    def objects_under(self, path_keys: Sequence[str]) -> dict[str, dict[str, int]]:
        """Path key -> ``{key: LastModified in microseconds}`` of every object equal to
        or under it, by one ranged listing of the paths (storage/listing.py
        ``newest_s3``: about one LIST per 1,000 objects where the paths lie close
        together, at most one per path where they are spread out) through this
        backend's client, so its rate limit and retries hold. The listing is complete
        or raises: a failed LIST fails the whole call (never a partial answer)."""
        from artifact_gc.storage.listing import _entry_mtime_us, newest_s3

        found: dict[str, dict[str, int]] = {key: {} for key in path_keys}

        def call(method: str, **kwargs: Any) -> dict[str, Any]:
            self.client.stats.add(lists=1)
            page = self.client.call(method, **kwargs)
            for entry in page.get("Contents") or []:
                key = str(entry["Key"])
                mtime = _entry_mtime_us(entry)
                # The key counts for itself and for every path it lies under; a
                # sibling (``path-x/...``) is no path's.
                probe = key
                while True:
                    if probe in found:
                        found[probe][key] = mtime
                    cut = probe.rfind("/")
                    if cut <= 0:
                        break
                    probe = probe[:cut]
            return page

        newest_s3(call, self.bucket, list(found))
        return found

    def _delete_keys_under(self, by_key: dict[str, str], outcome: DeleteOutcome,
                           on_chunk: Callable[[int], None] | None,
                           known: Mapping[str, Sequence[str]] | None = None) -> None:
        """Delete, in rounds, every object under the paths ``by_key`` maps to; the paths
        that keep objects go to ``outcome.failed``.

        The recorded objects (``known``, see ``buckets.recorded_keys``) are the first round's
        deletes, unlisted; only the paths without a record are listed first. Every
        round ends with a listing of every path left, so a path is reported deleted
        only once a listing made after its deletes found nothing under it."""
        todo = sorted(by_key)
        recorded, with_record = recorded_keys(by_key, known, split_path, self.bucket,
                                              self._inside_root)
        unrecorded = [k for k in todo if k not in with_record]
        found = self._find(unrecorded) if unrecorded else _EMPTY
        if with_record:
            found = pa.concat_tables([recorded, found])
            if not found.num_rows:
                # Nothing to delete under any path: the proof listing is all there is.
                found = self._find(todo, verifying=True)
        rounds = 0
        while found.num_rows:
            if rounds == self.rounds:
                # Still there after every round: report them, never claim them deleted.
                for path_key in sorted(set(found.column("path").to_pylist())):
                    outcome.failed[by_key[path_key]] = (
                        f"objects still present under s3://{self.bucket}/{path_key} after "
                        f"{self.rounds} rounds of deletes")
                break
            rounds += 1
            failed_keys = self._delete_found(found, on_chunk)
            failed_paths: dict[str, str] = {}
            for key, path in zip(found.column("key").to_pylist(),
                                 found.column("path").to_pylist(), strict=True):
                if key in failed_keys and path not in failed_paths:
                    failed_paths[path] = f"s3://{self.bucket}/{key}: {failed_keys[key]}"
            for path_key, error in failed_paths.items():
                outcome.failed[by_key[path_key]] = error
            todo = [k for k in todo if k not in failed_paths]
            # Verify: list again what is left under the other paths. This proves the
            # deletes took, and finds objects written under a path after our listing
            # (or after the mark's, for recorded keys); a path counts as deleted only
            # once this finds nothing under it.
            found = self._find(todo, verifying=True) if todo else _EMPTY

    # -- finding --------------------------------------------------------------

    def _find(self, path_keys: list[str], verifying: bool = False) -> pa.Table:
        """``(key, size, path)`` of every object under ``path_keys`` (sorted).

        ``verifying``: the listing that follows the deletes, which expects to find
        little; its runs are longer (VERIFY_RUN_PATHS), since a run costs one LIST
        even when its range is empty."""
        if self.strategy != STRATEGY_RANGE:
            return self._list_each(path_keys)
        # The batch's range is cut into runs of consecutive paths, each listed on its
        # own, in parallel: a range is listed page after page, so one range per batch
        # is one request at a time; and each run's common prefix is longer than the
        # batch's (a server that filters a listing by prefix touches fewer keys).
        runs = cut_runs(path_keys, VERIFY_RUN_PATHS if verifying else RUN_PATHS)
        listed = list(self._pool.map(self._list_range, runs)) if len(runs) > 1 \
            else [self._list_range(runs[0])]
        parts = [
            # DuckDB's connection is used from this thread only.
            (match_keys(self.con, keys, run) if keys is not None else self._list_each(run))
            .select(["key", "size", "path"]).cast(_EMPTY.schema)
            for run, keys in zip(runs, listed, strict=True)
        ]
        return pa.concat_tables(parts)

    def _list_range(self, path_keys: list[str]) -> pa.Table | None:
        low, high = path_keys[0], path_keys[-1] + "0"
        prefix = common_prefix(low, path_keys[-1])
        # StartAfter is exclusive; anything between it and ``low`` is filtered out by
        # the join, so a slightly lower start is merely one more key, never a miss.
        start_after = low[:-1] if low[:-1] >= prefix else None
        keys, sizes, complete = self.client.list_keys(
            self.bucket, prefix, start_after=start_after, stop_at=high,
            max_pages=max(2, len(path_keys)))
        if not complete:
            return None
        return pa.table({"key": pa.array(keys, pa.string()), "size": pa.array(sizes, pa.int64())})

    def _list_each(self, path_keys: list[str]) -> pa.Table:
        def one(path_key: str) -> tuple[list[str], list[int]]:
            # The path as a directory, then as an object of its own (a file footprint):
            # a listing with the bare key as prefix would also return siblings like
            # ``path_key2/...``, so it is checked for equality.
            keys, sizes, _ = self.client.list_keys(self.bucket, path_key + "/")
            more, more_sizes, _ = self.client.list_keys(
                self.bucket, path_key, stop_at=path_key + "\x00") if not keys else ([], [], True)
            exact = [(k, s) for k, s in zip(more, more_sizes, strict=True) if k == path_key]
            return keys + [k for k, _ in exact], sizes + [s for _, s in exact]

        out_keys: list[str] = []
        out_sizes: list[int] = []
        out_paths: list[str] = []
        for path_key, (keys, sizes) in zip(path_keys, self._pool.map(one, path_keys),
                                           strict=True):
            out_keys += keys
            out_sizes += sizes
            out_paths += [path_key] * len(keys)
        return pa.table({"key": pa.array(out_keys, pa.string()),
                         "size": pa.array(out_sizes, pa.int64()),
                         "path": pa.array(out_paths, pa.string())})

    # -- deleting -------------------------------------------------------------

    def _delete_found(self, found: pa.Table, on_chunk: Callable[[int], None] | None
                      ) -> dict[str, str]:
        keys = sorted(set(found.column("key").to_pylist()))
        # The last fence: every key sent lies strictly under the store root (it was
        # matched under a path that was itself checked, so this never trips).
        outside = [k for k in keys if not self._inside_root(k)]
        if outside:
            raise PathOutsideRoot(f"refusing to delete {outside[0]!r}: outside the store root")
        chunks = [keys[i:i + MAX_DELETE_KEYS] for i in range(0, len(keys), MAX_DELETE_KEYS)]
        failed: dict[str, str] = {}

        def run(chunk: list[str]) -> dict[str, str]:
            try:
                return self.client.delete_keys(self.bucket, chunk)
            except Exception as exc:  # noqa: BLE001 - reported per key, the sweep goes on
                cause = self.client.scrub(f"{type(exc).__name__}: {exc}")
                return dict.fromkeys(chunk, cause)

        for chunk_failed in self._pool.map(run, chunks):
            failed.update(chunk_failed)
            if on_chunk is not None:
                on_chunk(0)
        return failed


class ListedObjects(dict[str, list[str]]):
    """Path URL -> the object URLs (``s3://bucket/key``) that a listing made right before
    the delete found under it: given to :meth:`S3Backend.delete` as ``known``, exactly
    these are deleted, with no listing before or after (``_delete_listed``). The orphan
    sweep hands it the listing on which it checked the grace period under the
    database lock, so only objects seen old enough can go."""


_EMPTY = pa.table({"key": pa.array([], pa.string()), "size": pa.array([], pa.int64()),
                   "path": pa.array([], pa.string())})


#: Paths per run of a ranged listing (about one page of objects at three a version).
RUN_PATHS = 300
#: Paths per run of the listing that proves deleted paths empty: it finds only what
#: lies between them (live versions' objects, late writes), so one page per run is
#: the rule, and a run of 1,000 versions costs one LIST for about 3,000 objects.
VERIFY_RUN_PATHS = 1000


# ---------------------------------------------------------------------------
# Sizes for gc mark --sizes
# ---------------------------------------------------------------------------


def list_root(client: S3Client, root: str, *, streams: int) -> pa.Table:
    """``(key, size)`` of every object under the store root, by the listing of
    ``gc mark --orphan-files`` (storage/listing.py ``s3_pages``): ``streams`` paginated
    listings over contiguous key ranges, at most the bare paginated listing's LIST
    count plus one per range split off (one LIST per 1,000 objects, whatever the
    layout)."""
    from artifact_gc.storage.listing import s3_pages

    bucket, root_key = split_path(root)
    base = root_key + "/" if root_key else ""

    def call(method: str, **kwargs: Any) -> dict[str, Any]:
        client.stats.add(lists=1)
        return client.call(method, **kwargs)

    def convert(entries: list[dict[str, Any]]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(
            [pa.array([str(e["Key"]) for e in entries], pa.string()),
             pa.array([int(e.get("Size") or 0) for e in entries], pa.int64())],
            schema=_ROOT_LISTING)

    return pa.Table.from_batches(
        list(s3_pages(call, root, bucket, base, streams=streams, page_keys=MAX_LIST_KEYS,
                      convert=convert)), schema=_ROOT_LISTING)


_ROOT_LISTING = pa.schema([pa.field("key", pa.string()), pa.field("size", pa.int64())])
