"""Bulk deletes on S3 (moto), GCS (gcp-storage-emulator) and Azure (Azurite): the fsspec
clients, obstore, our backends and the bare bulk-delete loop, side by side.

For each store the same objects (``--versions`` prefixes of three objects each, under
one root, as an artifact store holds them) are uploaded again before every side, and
each side deletes them all:

- ``fsspec rm``: the filesystem's own ``rm(prefixes, recursive=True)`` (s3fs, gcsfs,
  adlfs), handed the prefixes;
- ``obstore``: ``obstore.list`` of the root, then ``obstore.delete(keys)``;
- ``artifact-gc``: the backend the sweep uses (storage/s3.py, gcs.py, azure.py),
  handed the prefixes, in one call;
- ``bare loop``: the bulk API handed the keys, no listing (boto3 ``delete_objects`` of
  1,000 keys; our GCS batch of 100 and Azure batch of 256).

Every request goes through a counting proxy (tests/emulators.py), so the counts are
what crossed the wire, SDK retries included; the proxy costs every side the same hop.
Run: ``python benchmarks/bench_cloud.py --versions 1000 [--write]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from artifact_gc.storage.backend import open_backend  # noqa: E402
from artifact_gc.storage.limits import RequestLimits  # noqa: E402
from artifact_gc.storage.retry import RetryCounter  # noqa: E402
from artifact_gc.zenml.stores import ArtifactStore  # noqa: E402
from emulators import (  # noqa: E402
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    Azurite,
    GCSEmulator,
    StorageProxy,
)
from harness import markdown_table, write_section  # noqa: E402

README = Path(__file__).with_name("README.md")


class S3:
    """moto's S3 server on loopback, with the upload/list/remove of the emulators."""

    scheme = "s3"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"})

    def client(self, endpoint: str | None = None) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint_url,
                            region_name="us-east-1")

    def stop(self) -> None:
        self.server.stop()

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def upload(self, bucket: str, objects: list[tuple[str, bytes]], threads: int = 16) -> None:
        from concurrent.futures import ThreadPoolExecutor

        client = self.client()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda o: client.put_object(Bucket=bucket, Key=o[0], Body=o[1]),
                          objects))

    def listing(self, bucket: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out.update({e["Key"]: e["Size"] for e in page.get("Contents") or []})
        return out

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        return {"key": "testing", "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint or self.endpoint_url,
                                  "region_name": "us-east-1"}}

    def filesystem(self, endpoint: str | None = None) -> Any:
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options(endpoint))

    def obstore(self, bucket: str, endpoint: str) -> Any:
        from obstore.store import S3Store

        return S3Store(bucket, endpoint=endpoint, access_key_id="testing",
                       secret_access_key="testing", region="us-east-1",
                       virtual_hosted_style_request=False, client_options={"allow_http": True})

    def bare(self, bucket: str, keys: list[str], endpoint: str) -> None:
        client = self.client(endpoint)
        for i in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})


def _obstore_gcs(bucket: str, endpoint: str) -> Any:
    import json

    from obstore.store import GCSStore

    key = json.dumps({"gcs_base_url": endpoint, "disable_oauth": True, "client_email": "",
                      "private_key": "", "private_key_id": ""})
    return GCSStore(bucket, service_account_key=key, client_options={"allow_http": True})


def _obstore_azure(container: str, endpoint: str) -> Any:
    from obstore.store import AzureStore

    return AzureStore(container, account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY,
                      endpoint=f"{endpoint}/{AZURITE_ACCOUNT}",
                      client_options={"allow_http": True})


def _bare_ours(store: Any, bucket: str, keys: list[str], endpoint: str) -> None:
    """The bulk API handed the keys: our clients' own batch call, nothing else."""
    from artifact_gc.storage.buckets import Requests
    from artifact_gc.storage.limits import RateLimiter
    from artifact_gc.storage.retry import RetryPolicy

    fs = store.filesystem(endpoint)
    if isinstance(store, GCSEmulator):
        from artifact_gc.storage.gcs import GCSClient
        client: Any = GCSClient(fs, bucket)
    else:
        from artifact_gc.storage.azure import AzureClient
        client = AzureClient(fs, bucket)
    requests = Requests(client, limiter=RateLimiter(), policy=RetryPolicy(), on_retry=None,
                        scrub=lambda text: text)
    cap = client.max_delete
    for i in range(0, len(keys), cap):
        failed = requests.delete_keys(keys[i:i + cap])
        assert not failed, list(failed.items())[:3]


def measure(store: Any, versions: int) -> list[list[str]]:
    rows: list[list[str]] = []
    objects = [(f"root/step/output/{uuid.UUID(int=v * 7919 + 1)}/{name}", b"x" * 64)
               for v in range(versions) for name in ("a.bin", "b.json", "vis.html")]
    keys = sorted(k for k, _ in objects)
    prefixes = sorted({k.rsplit("/", 1)[0] for k in keys})
    scheme = store.scheme
    sides: list[tuple[str, Callable[[str, str], None]]] = []

    def fsspec_rm(bucket: str, endpoint: str) -> None:
        fs = store.filesystem(endpoint)
        fs.rm([f"{bucket}/{p}" for p in prefixes], recursive=True)

    def obstore_side(bucket: str, endpoint: str) -> None:
        import obstore

        ob = (store.obstore(bucket, endpoint) if isinstance(store, S3)
              else _obstore_gcs(bucket, endpoint) if isinstance(store, GCSEmulator)
              else _obstore_azure(bucket, endpoint))
        found = [m["path"] for batch in obstore.list(ob, prefix="root/") for m in batch]
        obstore.delete(ob, found)

    def ours(bucket: str, endpoint: str) -> None:
        root = f"{scheme}://{bucket}/root"
        files = open_backend(ArtifactStore(id="b" * 32, name="bench", flavor="bench", root=root,
                                           root_source="bench"),
                             root, store.filesystem(endpoint), workers=4,
                             retries=RetryCounter(), limits=RequestLimits())
        try:
            outcome = files.delete([f"{scheme}://{bucket}/{p}" for p in prefixes])
        finally:
            files.close()
        assert not outcome.failed, list(outcome.failed.items())[:3]

    def bare(bucket: str, endpoint: str) -> None:
        if isinstance(store, S3):
            store.bare(bucket, keys, endpoint)
        else:
            _bare_ours(store, bucket, keys, endpoint)

    sides = [("fsspec rm", fsspec_rm), ("obstore", obstore_side), ("artifact-gc", ours),
             ("bare loop", bare)]
    bare_rate = None
    results = []
    for label, side in sides:
        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        store.create_bucket(bucket)
        store.upload(bucket, objects)
        proxy = StorageProxy(store.endpoint_url).start()
        started = time.perf_counter()
        error = ""
        try:
            side(bucket, proxy.endpoint_url)
        except Exception as exc:  # noqa: BLE001 - a side that fails is reported as such
            error = f"{type(exc).__name__}: {str(exc)[:80]}"
        seconds = time.perf_counter() - started
        proxy.stop()
        left = len(store.listing(bucket))
        counts = proxy.counts()
        rate = len(objects) / seconds
        if label == "bare loop":
            bare_rate = rate
        results.append((label, seconds, rate, counts, left, error))
    n = len(objects)
    for label, seconds, rate, counts, left, error in results:
        per = 1000 / n
        rows.append([scheme, label, f"{n:,}", f"{seconds:.2f}", f"{rate:,.0f}",
                     f"{rate / bare_rate:.2f}" if bare_rate else "-",
                     f"{counts['list'] * per:.2f}", f"{counts['batch'] * per:.2f}",
                     f"{counts['other'] * per:.2f}", str(counts["max_calls"]), str(left),
                     error or "ok"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--only", choices=("s3", "gcs", "azure"), action="append")
    parser.add_argument("--write", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows: list[list[str]] = []
    for name, factory in (("s3", S3), ("gcs", GCSEmulator.start), ("azure", Azurite.start)):
        if args.only and name not in args.only:
            continue
        store = factory()
        try:
            rows += measure(store, args.versions)
        finally:
            store.stop()
        print(f"{name} done", flush=True)
    load_after = os.getloadavg()
    table = markdown_table(
        ["store", "side", "objects", "seconds", "objects/s", "x bare", "LIST /1k",
         "bulk /1k", "other /1k", "max per bulk", "left", "result"], rows)
    load = (f"load average before {load_before[0]:.2f} {load_before[1]:.2f} "
            f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
            f"{load_after[2]:.2f} (2 cores)")
    print(table)
    print(load)
    if args.write:
        write_section(README, "bench-cloud", f"{table}\n\n{load}; "
                      f"`python benchmarks/bench_cloud.py --versions {args.versions}`.")
    bare_per = {"s3": 1000, "gcs": 100, "azure": 256}
    for row in rows:
        if row[1] == "bare loop":
            expected = math.ceil(int(row[2].replace(",", "")) / bare_per[
                {"s3": "s3", "gs": "gcs", "az": "azure"}[row[0]]])
            print(f"{row[0]} bare loop: {expected} bulk requests expected")


if __name__ == "__main__":
    main()
