"""The orphan-file listing of a GCS or Azure root: fsspec ``walk`` against the flat listing.

A root of ``--objects`` objects in ``--folders`` folders of ZenML's step-output layout
(``<step>/<output>/<uuid>/...``) is uploaded once per store (gcp-storage-emulator,
Azurite, on loopback), then listed by both sides through a counting proxy
(tests/emulators.py): ``walk`` (storage/listing.py ``list_fsspec``, the listing before)
and ``flat`` (the backend's ``list_objects``, storage/flat_listing.py). Each side's
rows are checked equal; LISTs are counted on the wire.
Run: ``python benchmarks/bench_flat_listing.py --objects 20000 --folders 10000``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from artifact_gc.storage.backend import open_backend  # noqa: E402
from artifact_gc.storage.limits import RequestLimits  # noqa: E402
from artifact_gc.storage.listing import list_fsspec  # noqa: E402
from artifact_gc.storage.retry import RetryCounter  # noqa: E402
from artifact_gc.zenml.stores import ArtifactStore  # noqa: E402
from emulators import Azurite, Emulator, GCSEmulator, StorageProxy  # noqa: E402


def _keys(objects: int, folders: int) -> list[str]:
    per = max(1, objects // folders)
    return [f"store/trainer/output/{uuid.UUID(int=i + 1, version=4)}/f{j}.bin"
            for i in range(folders) for j in range(per)][:objects]


def _side(emulator: Emulator, bucket: str, side: str) -> tuple[float, int, int]:
    proxy = StorageProxy(emulator.endpoint_url).start()
    try:
        root = f"{emulator.scheme}://{bucket}/store"
        fs = emulator.filesystem(proxy.endpoint_url)
        store = ArtifactStore(id="a" * 32, name="bench", flavor="bench", root=root,
                              root_source="bench",
                              storage_options=emulator.options(proxy.endpoint_url))
        backend = open_backend(store, root, fs, workers=2, retries=RetryCounter(),
                               limits=RequestLimits())
        started = time.perf_counter()
        batches = backend.list_objects() if side == "flat" else list_fsspec(fs, root)
        rows = sum(batch.num_rows for batch in batches)
        seconds = time.perf_counter() - started
        backend.close()
        return seconds, rows, proxy.counts()["list"]
    finally:
        proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--stores", default="gcs,azure")
    args = parser.parse_args()
    keys = _keys(args.objects, args.folders)
    print("| store | listing | objects | folders | LISTs | seconds | objects/s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.stores.split(","):
        emulator: Emulator = GCSEmulator.start() if name == "gcs" else Azurite.start()
        try:
            bucket = f"bench-{uuid.uuid4().hex[:10]}"
            emulator.create_bucket(bucket)
            emulator.upload(bucket, [(k, b"x" * 16) for k in keys], threads=16)
            seen: dict[str, int] = {}
            for side in ("walk", "flat"):
                seconds, rows, lists = _side(emulator, bucket, side)
                seen[side] = rows
                print(f"| {name} | {side} | {rows:,} | {args.folders:,} | {lists:,} | "
                      f"{seconds:.2f} | {rows / seconds:,.0f} |", flush=True)
            assert seen["walk"] == seen["flat"] == len(keys), seen
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
