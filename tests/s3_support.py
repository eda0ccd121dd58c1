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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import s3fs
import sqlalchemy as sa
from botocore.exceptions import ClientError

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

    async def list_objects_v2(self, **kwargs: Any) -> Any:
        if self._record("list_objects_v2"):
            raise slow_down("ListObjectsV2")
        return await self._client.list_objects_v2(**kwargs)

    async def delete_objects(self, **kwargs: Any) -> Any:
        objects = kwargs["Delete"]["Objects"]
        if self._record("delete_objects", len(objects)):
            raise slow_down("DeleteObjects")
        errors = []
        with self._faults.lock:
            for entry in objects:
                codes = self._faults.key_errors.get(entry["Key"])
                if codes:
                    errors.append({"Key": entry["Key"], "Code": codes.pop(0),
                                   "Message": "injected per-key error"})
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
