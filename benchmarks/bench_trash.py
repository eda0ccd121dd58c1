"""Deletes with the undo window (storage/trash*.py) beside plain deletes, at 10k objects.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_trash.py [--objects 10000]
                                                                      [--no-readme]

The same layout everywhere: ``objects / 2`` versions of two files each under
``<root>/step/out/vNNNNNN/``, deleted in calls of 1,000 paths (the sweep's batches):

- local disk (a tmp dir): ``LocalBackend.delete`` against ``LocalTrash.delete`` (one
  rename per version into ``<root>/.artifact-gc-trash/<sweep>/``);
- S3 on a moto server in its own process (benchmarks/bench_s3.py's, buckets filled
  straight into its backend): the S3 backend's plain delete, the undo on a versioned
  bucket (delete markers) and on an unversioned one (CopyObject into the trash
  prefix, then the delete).

Printed per case: objects/s (wall), CPU seconds of this process, and the requests per
1,000 objects as moto served them (a CopyObject is a PUT on the wire) beside the
requests the backend and the undo counted by kind. Then each undo is restored, to
check that every object came back.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from artifact_gc.storage.backend import open_backend  # noqa: E402
from artifact_gc.storage.limits import RequestLimits  # noqa: E402
from artifact_gc.storage.retry import RetryCounter  # noqa: E402
from artifact_gc.storage.trash import open_file_undo  # noqa: E402
from artifact_gc.zenml.stores import ArtifactStore  # noqa: E402
from bench_s3 import AWS_ENV, Moto  # noqa: E402
from harness import markdown_table, write_section  # noqa: E402

README = Path(__file__).with_name("README.md")
BATCH = 1000
WORKERS = 16
NOTE = ("\n\nThe moto column is what the server served: a CopyObject is a PUT on the wire, "
        "and its LIST also counts the bucket-level GETs (GetBucketLocation, "
        "GetBucketVersioning). Each undo was restored afterwards, and every version came "
        "back.")
FILES = (("artifact.bin", b"0123456789" * 10), ("metadata.json", b'{"n": 1}\n'))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load() -> str:
    return uptime().rsplit("load average:", 1)[-1].strip()


def layout(objects: int) -> list[tuple[str, bytes]]:
    return [(f"step/out/v{i:06d}/{name}", body)
            for i in range(objects // len(FILES)) for name, body in FILES]


def versions(objects: int) -> list[str]:
    return [f"step/out/v{i:06d}" for i in range(objects // len(FILES))]


def timed(delete: Callable[[list[str]], Any], paths: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, paths reported deleted) of deleting ``paths`` in batches."""
    deleted = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(paths), BATCH):
        deleted += len(delete(paths[start:start + BATCH]).deleted)
    return time.perf_counter() - wall, time.process_time() - cpu, deleted


def open_pair(root: str, fs: Any) -> tuple[Any, Any]:
    store = ArtifactStore(id="c" * 32, name="bench", flavor="bench", root=root,
                          root_source="bench")
    backend = open_backend(store, root, fs, workers=WORKERS, retries=RetryCounter(),
                           limits=RequestLimits())
    return backend, open_file_undo(store, root, fs, backend)


def row(case: str, objects: int, wall: float, cpu: float, wire: str, counted: str,
        loadavg: str) -> list[str]:
    return [case, f"{objects / wall:,.0f}", f"{wall:.2f}", f"{cpu:.2f}", wire, counted, loadavg]


def per_1000(counts: dict[str, int], objects: int) -> str:
    return ", ".join(f"{k} {v * 1000 / objects:.2f}" for k, v in sorted(counts.items()) if v) \
        or "0"


def local_cases(objects: int) -> list[list[str]]:
    from fsspec.implementations.local import LocalFileSystem

    rows = []
    for case in ("plain delete", "undo: rename into the trash"):
        with tempfile.TemporaryDirectory(prefix="bench-trash-") as scratch:
            root = os.path.join(scratch, "store")
            for key, body in layout(objects):
                path = os.path.join(root, key)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as handle:
                    handle.write(body)
            backend, undo = open_pair(root, LocalFileSystem())
            paths = [os.path.join(root, v) for v in versions(objects)]
            loadavg = load()
            if case == "plain delete":
                wall, cpu, deleted = timed(backend.delete, paths)
            else:
                wall, cpu, deleted = timed(lambda p, u=undo: u.delete("bench", p), paths)
                restored = undo.restore("bench", paths)
                assert len(restored.restored) == len(paths), restored.failed
            assert deleted == len(paths)
            print(f"[local] {case}: {objects / wall:,.0f} objects/s, {wall:.2f} s wall, "
                  f"{cpu:.2f} s CPU (load {loadavg})", flush=True)
            rows.append(row(f"local, {case}", objects, wall, cpu, "0 (no requests)",
                            "1 rename a version" if "undo" in case else "-", loadavg))
            undo.close()
            backend.close()
    return rows


def s3_cases(objects: int) -> list[list[str]]:
    import s3fs

    os.environ.update(AWS_ENV)
    plan = layout(objects)
    buckets = {"plain": "bench-plain", "versioned": "bench-versioned",
               "unversioned": "bench-unversioned"}
    moto = Moto()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-trash-") as scratch:
        moto.start({b: [(f"store/{k}", v) for k, v in plan] for b in buckets.values()},
                   Path(scratch))
    try:
        moto.client().put_bucket_versioning(Bucket=buckets["versioned"],
                                            VersioningConfiguration={"Status": "Enabled"})
        for case, bucket in buckets.items():
            fs = s3fs.S3FileSystem(skip_instance_cache=True, key="bench", secret="bench",
                                   client_kwargs={"endpoint_url": moto.endpoint,
                                                  "region_name": "us-east-1"})
            root = f"s3://{bucket}/store"
            moto.requests()
            backend, undo = open_pair(root, fs)
            paths = [f"{root}/{v}" for v in versions(objects)]
            loadavg = load()
            if case == "plain":
                wall, cpu, deleted = timed(backend.delete, paths)
                label = "S3 plain delete"
            else:
                wall, cpu, deleted = timed(lambda p, u=undo: u.delete("bench", p), paths)
                label = f"S3 undo, {case} bucket ({undo.mode})"
            wire = moto.requests()
            assert deleted == len(paths)
            counted = {"LIST": backend.client.stats.lists,
                       "DeleteObjects": backend.client.stats.deletes}
            if case != "plain":
                mine = undo.ops.stats.as_dict()
                counted.update({"CopyObject": mine["copies"], "PUT": mine["writes"],
                                "GetBucketVersioning": mine["probes"]})
                restored = undo.restore("bench", paths)
                assert len(restored.restored) == len(paths), list(restored.failed.items())[:3]
            print(f"[s3] {label}: {objects / wall:,.0f} objects/s, {wall:.2f} s wall, "
                  f"{cpu:.2f} s CPU; wire/1k: {per_1000(wire, objects)}; "
                  f"counted: {json.dumps(counted)} (load {loadavg})", flush=True)
            rows.append(row(label, objects, wall, cpu, per_1000(wire, objects),
                            per_1000(counted, objects), loadavg))
            undo.close()
            backend.close()
    finally:
        moto.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    print(uptime(), flush=True)
    rows = local_cases(args.objects) + s3_cases(args.objects)
    print(uptime(), flush=True)
    table = markdown_table(
        ["case", "objects/s", "wall s", "CPU s (this process)", "requests / 1k objects (moto)",
         "requests / 1k objects (counted)", "load average"], rows)
    body = (f"### Deletes with the undo window, {args.objects:,} objects "
            f"({args.objects // 2:,} versions of 2 files, calls of {BATCH:,} paths)\n\n"
            "`flock /work/bench.lock .venv/bin/python benchmarks/bench_trash.py`\n\n" + table
            + NOTE)
    print(body)
    if not args.no_readme:
        write_section(README, "trash", body)


if __name__ == "__main__":
    main()
