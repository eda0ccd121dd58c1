"""gc mark on MariaDB against a raw pushed-down NOT IN count, optionally beside the
mark of another code tree, in one run.

    .venv/bin/python benchmarks/bench_mariadb_mark.py [--sizes 1000000] [--runs 2]
        [--baseline-pythonpath /path/to/old/gc] [--database-prefix gcbench]

Stores are made once (ZenML's own migrations, then bulk inserts; stores.py) and cached:
databases ``<prefix>_<versions>`` on 127.0.0.1:3306. For each size and run, each in its
own process and one after the other: ``gc mark --older-than 0s`` of this tree, the same
command with ``PYTHONPATH`` set to the baseline tree (when given), and the raw limit
(bench_mark.RAW_COUNT). The mark reads one consistent snapshot, so its longest InnoDB
transaction (bench_mariadb.Watcher) is the time it holds that snapshot open.

The table goes into benchmarks/README.md (section ``mariadb-mark-ranges``), each row
with the load average measured right after it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_mariadb import (  # noqa: E402
    READ_CONNECTORX,
    READ_OURS,
    VERSIONS_SQL,
    _held,
    watching,
)
from bench_mark import RAW_COUNT  # noqa: E402
from harness import Measured, gc, markdown_table, python, write_section  # noqa: E402
from stores import mariadb_store  # noqa: E402

README = Path(__file__).with_name("README.md")

#: The versions table read as gc mark reads it: in key ranges, each range one value
#: (metadb/pages.py), on one connection.
READ_RANGES = """
import duckdb
from artifact_gc.metadb import reader
from artifact_gc.metadb.engine import create_engine
from artifact_gc.metadb.pages import KeyRanges
engine = create_engine({url!r})
con = duckdb.connect()
names = ["id", "artifact_id", "version", "version_number", "uri", "save_type",
         "artifact_store_id", "project_id", "created"]
ranges = KeyRanges("artifact_version", "id", ", ".join(f"CAST({{c}} AS CHAR)" for c in names))
reader.load_table(con, "v", engine, {url!r}, ranges.sql(),
                  [(f"c{{i}}", "VARCHAR") for i in range(9)], ranges=ranges)
print(con.execute("SELECT count(*) FROM v").fetchone()[0])
"""


def _mark(label: str, url: str, out: Path, database: str, pythonpath: str | None
          ) -> tuple[Measured, str]:
    env = {"PYTHONPATH": pythonpath} if pythonpath else None
    with watching(database) as watcher:
        measured = gc(label, "mark", "--db", url, "--older-than", "0s", "--out", str(out),
                      "--json", env=env)
    return measured, _held(watcher)


def bench_readers(url: str, versions: int, baseline: str | None, baseline_label: str,
                  connectorx_path: str | None) -> list[list[str]]:
    """The versions table alone, read into DuckDB by this tree's reader, the
    baseline's, and connectorx (for comparison: it opens connections of its own)."""
    sides: list[tuple[str, str, dict[str, str] | None]] = [
        ("key ranges, one value each (this tree)", READ_RANGES.format(url=url), None),
        ("reader.load_table row by row, this tree",
         READ_OURS.format(url=url, sql=VERSIONS_SQL), None)]
    if baseline:
        sides.append((f"reader.load_table, {baseline_label}",
                      READ_OURS.format(url=url, sql=VERSIONS_SQL), {"PYTHONPATH": baseline}))
    if connectorx_path:
        sides.append(("connectorx arrow_stream (own connections)", READ_CONNECTORX.format(
            url=url, sql=VERSIONS_SQL, stream=True), {"PYTHONPATH": connectorx_path}))
    rows = []
    for label, code, env in sides:
        measured = python(label, code, env=env)
        assert int(measured.stdout.split()[-1]) == versions, measured.stdout
        rows.append([label, f"{versions:,}", f"{measured.seconds:.2f}",
                     f"{measured.cpu_seconds:.2f}", f"{measured.peak_rss_mb:,.0f}",
                     f"{os.getloadavg()[0]:.1f}"])
        print("read | " + " | ".join(rows[-1]), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--baseline-pythonpath", help="the gc/ folder of the code to "
                        "compare with (e.g. an export of an older commit)")
    parser.add_argument("--baseline-label", default="baseline")
    parser.add_argument("--database-prefix", default="gcbench")
    parser.add_argument("--readers", action="store_true",
                        help="also read the versions table alone with each reader")
    parser.add_argument("--connectorx-path", help="a PYTHONPATH holding connectorx")
    args = parser.parse_args()
    base = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
    rows: list[list[str]] = []
    for versions in [int(s) for s in args.sizes.split(",") if s]:
        database = f"{args.database_prefix}_{versions}"
        store = mariadb_store(base, versions, database=database)
        for run in range(1, args.runs + 1):
            sides: list[tuple[str, str | None]] = [("this tree", None)]
            if args.baseline_pythonpath:
                sides.append((args.baseline_label, args.baseline_pythonpath))
            for label, pythonpath in sides:
                out = base / f"mark-mariadb-{versions}-{run}.parquet"
                ours, held = _mark(f"gc mark {label} {versions:,}", store.url, out,
                                   database, pythonpath)
                raw = python(f"raw NOT IN {versions:,}", RAW_COUNT.format(url=store.url))
                rows.append([
                    str(run), label, f"{versions:,}", f"{ours.seconds:.2f}",
                    f"{ours.cpu_seconds:.2f}", f"{ours.peak_rss_mb:,.0f}", held,
                    f"{raw.seconds:.2f}", f"{ours.seconds / raw.seconds:.2f}x",
                    f"{os.getloadavg()[0]:.1f}",
                ])
                print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(
        ["run", "code", "versions", "gc mark s", "gc mark CPU s", "peak RSS MB",
         "snapshot held s", "raw NOT IN s", "gc / raw", "load avg (1 min)"], rows)
    if args.readers:
        table += "\n\n" + markdown_table(
            ["reader (versions table, 9 text columns)", "rows", "s", "CPU s", "peak RSS MB",
             "load avg (1 min)"],
            bench_readers(store.url, versions, args.baseline_pythonpath, args.baseline_label,
                          args.connectorx_path))
    print(table)
    write_section(README, "mariadb-mark-ranges", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
