"""gc mark at 10k, 100k and 1M artifact versions, beside the raw limit, in one run.

    .venv/bin/python benchmarks/bench_mark.py [--sizes 10000,100000,1000000] [--mariadb]

Stores are made once (ZenML's own migrations create the schema, then bulk inserts)
and cached in $ARTIFACT_GC_BENCH_DIR (default /tmp/artifact-gc-bench). For each size
it measures, each in its own process:

- ``gc mark --older-than 0s`` (full classification, Parquet manifest written), and
- the raw limit: one pushed-down ``NOT IN`` count over the five reference tables in
  the database itself, which is the least work any reachability analysis can do.

It prints versions/s, peak RSS and the ratio to the raw limit, and writes the table
into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Measured, gc, markdown_table, python, write_section  # noqa: E402
from stores import mariadb_store, sqlite_store  # noqa: E402

RAW_COUNT = """
import sqlalchemy as sa, sys
engine = sa.create_engine(sys.argv[1] if len(sys.argv) > 1 else {url!r})
sql = '''SELECT count(*) FROM artifact_version WHERE
  id NOT IN (SELECT artifact_id FROM step_run_input_artifact) AND
  id NOT IN (SELECT artifact_id FROM step_run_output_artifact) AND
  id NOT IN (SELECT artifact_version_id FROM model_versions_artifacts) AND
  id NOT IN (SELECT artifact_id FROM pipeline_run_output) AND
  id NOT IN (SELECT artifact_version_id FROM hook_invocation_output_artifact)'''
with engine.connect() as c:
    print(c.execute(sa.text(sql)).scalar())
"""


def bench(url: str, versions: int, out: Path) -> tuple[Measured, Measured]:
    ours = gc(f"gc mark {versions:,}", "mark", "--db", url, "--older-than", "0s",
              "--out", str(out), "--json")
    raw = python(f"raw NOT IN {versions:,}", RAW_COUNT.format(url=url))
    return ours, raw


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--mariadb", action="store_true", help="also mark on MariaDB")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
    rows: list[list[str]] = []
    backends = ["sqlite"] + (["mariadb"] if args.mariadb else [])
    for backend in backends:
        for versions in sizes:
            store = (sqlite_store if backend == "sqlite" else mariadb_store)(base, versions)
            ours, raw = bench(store.url, versions, base / f"mark-{backend}-{versions}.parquet")
            rows.append([
                backend, f"{versions:,}", f"{ours.seconds:.2f}",
                f"{ours.rate(versions):,.0f}", f"{ours.cpu_seconds:.2f}",
                f"{ours.peak_rss_mb:,.0f}", f"{raw.seconds:.2f}", f"{raw.peak_rss_mb:,.0f}",
                f"{ours.seconds / raw.seconds:.2f}x", _load(),
            ])
            print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(
        ["backend", "versions", "gc mark s", "versions/s", "gc mark CPU s", "peak RSS MB",
         "raw NOT IN s", "raw RSS MB", "gc / raw", "load avg (1 min)"],
        rows,
    ) + ("\n\nCPU s: user + system seconds of the gc process (DuckDB uses both cores, so "
         "it can exceed the wall time). Load average: `os.getloadavg()` when the row was "
         "measured; the 2 cores are shared with other work, which inflates wall times "
         "whenever it is above 2.")
    print(table)
    write_section(Path(__file__).with_name("README.md"), "mark", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
