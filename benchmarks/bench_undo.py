"""gc sweep with the undo window on (the default) beside --no-undo, in one run.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_undo.py local [--orphans 100000]
    flock /work/bench.lock .venv/bin/python benchmarks/bench_undo.py s3 [--orphans 10000]

local: a SQLite store whose schema ZenML's own migrations created (cached, as
bench_sweep.py builds it), with real files in a local artifact store; two identical
copies, each marked, then swept once with ``--undo-window 7d`` (rows kept in undo
segments before each commit, files renamed into the store's trash) and once with
``--no-undo``. The target: undo on costs at most 1.3 times off.

s3: the same on an S3 store (a moto server on 127.0.0.1, as bench_s3.py runs it):
the undo side's bucket has versioning enabled (deletes only add delete markers); the
requests each sweep sends are counted by the server, per operation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from harness import gc, markdown_table, write_section  # noqa: E402
from stores import sqlite_copy, sqlite_store  # noqa: E402

BASE = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
README = Path(__file__).with_name("README.md")
SIDES = (("undo on (7d)", ["--undo-window", "7d"]), ("--no-undo", ["--no-undo"]))


def local(orphans: int) -> str:
    versions = int(orphans / 0.4)
    store = sqlite_store(BASE, versions, files=True, orphan_share=0.4)
    rows: list[list[str]] = []
    measured: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gc-bench-undo-") as scratch_dir:
        scratch = Path(scratch_dir)
        for name, flags in SIDES:
            copy = sqlite_copy(store, scratch / name.split()[0].strip("-"))
            manifest = str(scratch / f"{name.split()[0].strip('-')}.parquet")
            gc("gc mark", "mark", "--db", copy.url, "--older-than", "0s", "--out", manifest,
               "--json")
            load = os.getloadavg()[0]
            sweep = gc(f"gc sweep {name}", "sweep", manifest, "--db", copy.url, "--yes",
                       "--json", *flags)
            summary = json.loads(sweep.stdout)["summary"]
            assert summary["failed"] == 0, summary
            undo_dir = Path(manifest + ".journal") / "undo" / "rows"
            kept = sum(p.stat().st_size for p in undo_dir.glob("*.parquet")) \
                if undo_dir.exists() else 0
            measured[name] = (sweep.seconds, sweep.cpu_seconds)
            rows.append([name, f"{summary['deleted']:,}", f"{sweep.seconds:.1f}",
                         f"{summary['deleted'] / sweep.seconds:,.0f}",
                         f"{sweep.cpu_seconds:.1f}", f"{sweep.peak_rss_mb:,.0f}",
                         f"{kept / 1e6:,.1f}", f"{load:.1f} / {os.getloadavg()[0]:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
    on, off = measured[SIDES[0][0]], measured[SIDES[1][0]]
    ratio = (f"\n\nundo on / off: {on[0] / off[0]:.2f}x wall, {on[1] / off[1]:.2f}x CPU "
             f"({orphans:,} orphans of {versions:,} versions; target at most 1.3x).")
    print(ratio.strip())
    return markdown_table(["sweep", "deleted", "s", "versions/s", "CPU s", "peak RSS MB",
                           "undo segments MB", "load avg before / after"], rows) + ratio


def s3(orphans: int) -> str:
    import shutil

    from bench_s3 import AWS_ENV, Moto, candidates, retarget, sqlite_s3_store
    from s3_support import object_plan

    os.environ.update(AWS_ENV)  # dummy credentials for moto, for this process and its children
    pristine, versions = sqlite_s3_store(orphans)
    rows: list[list[str]] = []
    counted: dict[str, dict[str, int]] = {}
    moto = Moto()
    with tempfile.TemporaryDirectory(prefix="gc-bench-undo-s3-") as scratch_dir:
        scratch = Path(scratch_dir)
        urls: dict[str, str] = {}
        plans = {}
        for bucket in ("undo-on", "undo-off"):
            db = scratch / f"{bucket}.db"
            shutil.copy(pristine, db)
            urls[bucket] = retarget(db, bucket, moto.endpoint)
            plans[bucket] = object_plan(urls[bucket], bucket)
        moto.start(plans, scratch)
        try:
            client = moto.client()
            client.put_bucket_versioning(Bucket="undo-on",
                                         VersioningConfiguration={"Status": "Enabled"})
            env = dict(AWS_ENV)
            for (name, flags), bucket in zip(SIDES, ("undo-on", "undo-off"), strict=True):
                manifest = str(scratch / f"{bucket}.parquet")
                gc("gc mark --sizes", "mark", "--db", urls[bucket], "--older-than", "0s",
                   "--sizes", "--out", manifest, "--json", env=env)
                n = len(candidates(manifest))
                moto.requests()  # the mark's listing is not the sweep's
                load = os.getloadavg()[0]
                sweep = gc(f"gc sweep {name}", "sweep", manifest, "--db", urls[bucket],
                           "--yes", "--json", *flags, env=env)
                requests = moto.requests()
                counted[name] = requests
                summary = json.loads(sweep.stdout)["summary"]
                assert summary["deleted"] == n and summary["failed"] == 0, summary
                objects = summary["files_deleted"] or summary["paths_deleted"]
                rows.append([f"{name} ({bucket})", f"{n:,}", f"{sweep.seconds:.1f}",
                             f"{sweep.cpu_seconds:.1f}",
                             ", ".join(f"{k} {v:,}" for k, v in sorted(requests.items())),
                             f"{sum(requests.values()):,}", f"{objects:,}",
                             f"{load:.1f} / {os.getloadavg()[0]:.1f}"])
                print(" | ".join(rows[-1]), flush=True)
        finally:
            moto.stop()
    on, off = (sum(counted[s[0]].values()) for s in SIDES)
    extra = {k: counted[SIDES[0][0]].get(k, 0) - counted[SIDES[1][0]].get(k, 0)
             for k in set(counted[SIDES[0][0]]) | set(counted[SIDES[1][0]])}
    note = (f"\n\nExtra requests of undo on a versioned bucket: {on - off:+,} in all ("
            + ", ".join(f"{k} {v:+,}" for k, v in sorted(extra.items()) if v) + f"), for "
            f"{orphans:,} orphan versions of {versions:,}.")
    print(note.strip())
    return markdown_table(["sweep", "deleted", "s", "CPU s", "requests by operation",
                           "requests", "objects", "load avg before / after"], rows) + note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["local", "s3"])
    parser.add_argument("--orphans", type=int)
    args = parser.parse_args()
    if args.case == "local":
        table = local(args.orphans or 100_000)
    else:
        table = s3(args.orphans or 10_000)
    print(table)
    write_section(README, f"undo-{args.case}", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
