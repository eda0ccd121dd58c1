"""S3 test and benchmark support: upload a synthetic store's files, a faulting client.

``upload_store_objects`` writes, for every artifact version of a ZenML store whose
store root is on S3, two files in the version's directory plus its visualization
(the ``artifact_visualization.uri``), and a few objects that no version names
(``logs/``, ``code_uploads/``), with many threads through boto3.

``FaultyS3FileSystem`` is the real s3fs filesystem whose real aiobotocore client is
wrapped: it records every request (method, time, number of keys) and, on demand,
answers ``SlowDown`` (503) to the first requests or adds per-key ``Errors`` to a
``DeleteObjects`` response after really deleting the other keys. Nothing of ours is
mocked; moto never throttles and ignores Quiet, so these faults have to be injected.

Faults at a rate (``Faults.rate``, ``Faults.key_rate``, seeded): a request fails with
what botocore/aiobotocore really raise once their own retries are spent (``ClientError``
InternalError 500, SlowDown 503, ServiceUnavailable 503; ``ReadTimeoutError``,
``ConnectionClosedError``, ``asyncio.TimeoutError``); a ``DeleteObjects`` may also
lose its answer *after* the keys were deleted (a read timeout), and single keys of a
``DeleteObjects`` may come back in ``Errors`` (InternalError, SlowDown) undeleted, as
S3 does under load. Keys under a ``denied`` prefix come back ``AccessDenied`` for good,
as a bucket policy denying ``s3:DeleteObject`` on a prefix answers. Every fault raised
is counted by kind in ``Faults.raised``; ``register_faulty_s3`` installs the wrapper
as fsspec's ``s3`` protocol for a ``gc`` subprocess (tests/faulty_gc.py).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import s3fs
import sqlalchemy as sa
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

DATA_FILES = (("artifact.bin", b"0123456789" * 10), ("metadata.json", b'{"n": 1}\n'))
VIS_BODY = b'{"synthetic": true}\n'
UNMANAGED = ("logs/pipelines/run-1.log", "logs/steps/step-1.log",
             "code_uploads/abc123.tar.gz", "notebook_code/cell.py")


def object_plan(db_url: str, bucket: str) -> list[tuple[str, bytes]]:
    """Every (key, body) to upload for the store at ``db_url`` (bucket-relative keys)."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            uris = [str(r[0]) for r in connection.execute(
                sa.text("SELECT uri FROM artifact_version"))]
            vis = [str(r[0]) for r in connection.execute(
                sa.text("SELECT uri FROM artifact_visualization"))]
    finally:
        engine.dispose()
    prefix = f"s3://{bucket}/"
    plan: list[tuple[str, bytes]] = []
    for uri in uris:
        if uri.startswith(prefix):
            base = uri[len(prefix):].rstrip("/")
            plan += [(f"{base}/{name}", body) for name, body in DATA_FILES]
    plan += [(v[len(prefix):], VIS_BODY) for v in vis if v.startswith(prefix)]
    return plan


def upload(client: Any, bucket: str, objects: Iterable[tuple[str, bytes]],
           threads: int = 32) -> int:
    items = list(objects)

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=bucket, Key=item[0], Body=item[1])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(put, items))
    return len(items)


def upload_store_objects(client: Any, bucket: str, db_url: str, root_key: str,
                         threads: int = 32) -> dict[str, int]:
    """Upload every version's objects and the unmanaged ones; return {key: size}."""
    plan = object_plan(db_url, bucket)
    plan += [(f"{root_key}/{k}", b"keep me\n") for k in UNMANAGED]
    upload(client, bucket, plan, threads)
    return {k: len(b) for k, b in plan}


def list_bucket(client: Any, bucket: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents") or []:
            out[entry["Key"]] = entry["Size"]
    return out


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


def slow_down(operation: str) -> ClientError:
    """The error botocore raises for S3's throttling answer."""
    return ClientError({"Error": {"Code": "SlowDown",
                                  "Message": "Please reduce your request rate."},
                        "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)


def client_error(code: str, status: int, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


#: Request-level transient faults, in turn: (kind, factory(operation, endpoint)).
TRANSIENT_REQUEST_FAULTS: tuple[tuple[str, Any], ...] = (
    ("InternalError 500", lambda op, _ep: client_error(
        "InternalError", 500, "We encountered an internal error. Please try again.", op)),
    ("SlowDown 503", lambda op, _ep: slow_down(op)),
    ("ServiceUnavailable 503", lambda op, _ep: client_error(
        "ServiceUnavailable", 503, "Service is unable to handle request.", op)),
    ("ReadTimeoutError", lambda _op, ep: ReadTimeoutError(endpoint_url=ep)),
    ("ConnectionClosedError", lambda _op, ep: ConnectionClosedError(endpoint_url=ep)),
    # asyncio.TimeoutError (what aiohttp raises on a stalled read) is TimeoutError.
    ("asyncio.TimeoutError", lambda _op, _ep: TimeoutError()),
)
#: Per-key transient errors in a DeleteObjects answer.
TRANSIENT_KEY_CODES = ("InternalError", "SlowDown")


@dataclass
class Request:
    method: str
    at: float
    keys: int = 0


@dataclass
class Faults:
    #: Answer SlowDown to this many requests (of any kind) before letting them through.
    slow_down_first: int = 0
    #: Per-key errors: key -> list of codes to answer on its successive deletes
    #: (the key is really deleted once the list is used up).
    key_errors: dict[str, list[str]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    slow_downs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Probability that a request (list or delete) fails transiently, per attempt.
    rate: float = 0.0
    #: Probability that one key of a DeleteObjects comes back with a transient error.
    key_rate: float = 0.0
    seed: int = 0
    #: Key prefixes (bucket-relative) whose deletes answer AccessDenied, for good.
    denied: tuple[str, ...] = ()
    #: Faults actually raised or answered, by kind.
    raised: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)

    def total(self, *, permanent: bool | None = None) -> int:
        return sum(n for kind, n in self.raised.items()
                   if permanent is None or kind.startswith("AccessDenied") == permanent)

    def draw(self, signature: str) -> float:
        """A number in [0, 1) for this attempt at ``signature``: the same for the same
        (seed, request, attempt number), whatever order the threads run in."""
        with self.lock:
            self.attempts[signature] += 1
            n = self.attempts[signature]
        return random.Random(f"{self.seed}|{signature}|{n}").random()

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.raised[kind] += n

    def as_spec(self) -> dict[str, Any]:
        """The injected plan as JSON-able data (for a subprocess)."""
        return {"rate": self.rate, "key_rate": self.key_rate, "seed": self.seed,
                "denied": list(self.denied)}


class _ClientProxy:
    def __init__(self, client: Any, faults: Faults) -> None:
        self._client = client
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _record(self, method: str, keys: int = 0) -> bool:
        faults = self._faults
        with faults.lock:
            faults.requests.append(Request(method, time.monotonic(), keys))
            if faults.slow_downs < faults.slow_down_first:
                faults.slow_downs += 1
                return True
        return False

    def _transient(self, operation: str, signature: str) -> tuple[Exception, bool] | None:
        """The transient fault of this attempt, if any, and whether it strikes after the
        request was carried out (its answer lost)."""
        faults = self._faults
        if not faults.rate:
            return None
        draw = faults.draw(signature)
        if draw >= faults.rate:
            return None
        kinds = TRANSIENT_REQUEST_FAULTS
        kind, make = kinds[int(draw / faults.rate * 2 * len(kinds)) % len(kinds)]
        after = operation == "DeleteObjects" and draw >= faults.rate / 2
        if after:
            # The keys were deleted and the answer never came back.
            kind, make = "ReadTimeoutError", TRANSIENT_REQUEST_FAULTS[3][1]
        faults.count(f"{operation} {kind}{' after delete' if after else ''}")
        endpoint = str(getattr(getattr(self._client, "meta", None), "endpoint_url", "s3"))
        return make(operation, endpoint), after

    async def list_objects_v2(self, **kwargs: Any) -> Any:
        if self._record("list_objects_v2"):
            raise slow_down("ListObjectsV2")
        fault = self._transient("ListObjectsV2", "list " + json.dumps(
            [kwargs.get("Prefix"), kwargs.get("StartAfter"), kwargs.get("ContinuationToken")]))
        if fault is not None:
            raise fault[0]
        return await self._client.list_objects_v2(**kwargs)

    async def delete_objects(self, **kwargs: Any) -> Any:
        objects = kwargs["Delete"]["Objects"]
        if self._record("delete_objects", len(objects)):
            raise slow_down("DeleteObjects")
        keys = [str(entry["Key"]) for entry in objects]
        fault = self._transient("DeleteObjects", "delete " + json.dumps(keys))
        if fault is not None and not fault[1]:
            raise fault[0]
        faults = self._faults
        errors = []
        with faults.lock:
            for entry in objects:
                codes = faults.key_errors.get(entry["Key"])
                if codes:
                    errors.append({"Key": entry["Key"], "Code": codes.pop(0),
                                   "Message": "injected per-key error"})
        # Counted only if the answer reaches the client (a fault after the delete
        # loses it, and the keys it names were simply not deleted).
        answered: Counter[str] = Counter()
        for key in keys:
            if any(key.startswith(prefix) for prefix in faults.denied):
                answered["AccessDenied 403 (per key)"] += 1
                errors.append({"Key": key, "Code": "AccessDenied", "Message": "Access Denied"})
            elif faults.key_rate and (draw := faults.draw("key " + key)) < faults.key_rate:
                code = TRANSIENT_KEY_CODES[int(draw / faults.key_rate * len(TRANSIENT_KEY_CODES))]
                answered[f"DeleteObjects per-key {code}"] += 1
                errors.append({"Key": key, "Code": code,
                               "Message": "We encountered an internal error. Please try again."
                               if code == "InternalError" else "Please reduce your request rate."})
        failing = {e["Key"] for e in errors}
        rest = [o for o in objects if o["Key"] not in failing]
        response: dict[str, Any] = {"Deleted": [], "Errors": []}
        if rest:
            # moto accepts more than 1,000 keys; real S3 does not, so pass the request
            # on unchanged and let the test assert the cap from the records.
            response = await self._client.delete_objects(
                **{**kwargs, "Delete": {**kwargs["Delete"], "Objects": rest}})
        response.setdefault("Errors", [])
        response["Errors"] = list(response["Errors"]) + errors
        if fault is not None:
            raise fault[0]
        for kind, n in answered.items():
            faults.count(kind, n)
        return response


class FaultyS3FileSystem(s3fs.S3FileSystem):  # type: ignore[misc]
    """The real s3fs filesystem; its real client wrapped by ``_ClientProxy``."""

    cachable = False

    def __init__(self, faults: Faults, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.faults = faults

    async def get_s3(self, bucket: str | None = None) -> Any:
        client = await super().get_s3(bucket)
        return _ClientProxy(client, self.faults)


def register_faulty_s3(faults: Faults) -> type[FaultyS3FileSystem]:
    """Make :class:`FaultyS3FileSystem` (with ``faults``) fsspec's ``s3`` filesystem, so
    that ``fsspec.url_to_fs("s3://...")`` anywhere in this process goes through it."""
    import fsspec

    def __init__(self: FaultyS3FileSystem, **kwargs: Any) -> None:
        FaultyS3FileSystem.__init__(self, faults, **kwargs)

    bound = type("BoundFaultyS3FileSystem", (FaultyS3FileSystem,), {"__init__": __init__})
    fsspec.register_implementation("s3", bound, clobber=True)
    return bound
