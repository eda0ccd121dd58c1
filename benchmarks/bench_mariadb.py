"""gc mark and gc sweep on MariaDB, beside the raw limits, in one run.

    .venv/bin/python benchmarks/bench_mariadb.py [--mark-sizes 10000,100000,1000000]
        [--sweep-sizes 10000,100000] [--connectorx-python /path/to/python]
        [--database-prefix gcbench_sweep]

Stores are made once (ZenML's own migrations create the schema, then bulk inserts)
and cached: databases ``gcbench_*`` on 127.0.0.1:3306, files under
$ARTIFACT_GC_BENCH_DIR (default /tmp/artifact-gc-bench). Each side runs in its own
process (harness.py: wall time and peak RSS of that process), one after the other.

- **mark** at each size: ``gc mark --older-than 0s`` against the raw limit, one
  pushed-down ``NOT IN`` count in MariaDB (as bench_mark.py).
- **sweep** of N orphans (MariaDB + local files): ``gc sweep --yes`` against a bare
  loop, ``shutil.rmtree`` of every candidate's directories and one bulk ``DELETE``
  per table. Both sides start from identical copies (the database cloned from a
  pristine one, the tree restored as hard links at the same path).
- For every case, the longest InnoDB transaction the measured process held, from
  ``information_schema.innodb_trx`` polled every 120 ms (InnoDB refreshes that table
  only when it has not been read for 100 ms); for the sweep also the longest
  *locking* one (seen holding a lock or a changed row at least once:
  ``trx_rows_locked``, ``trx_lock_structs`` or ``trx_rows_modified`` above 0), which
  is what a live ZenML server can wait for, apart from read-only ones.
- With ``--connectorx-python`` (an interpreter with connectorx installed), the
  versions table at the largest mark size read by pymysql's server-side cursor (our
  path) against connectorx's Arrow reader.

The tables go into benchmarks/README.md (section ``mariadb``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import sqlalchemy as sa  # noqa: E402

from bench_mark import RAW_COUNT  # noqa: E402
from harness import (  # noqa: E402
    BARE_ROW_DELETE,
    Measured,
    gc,
    markdown_table,
    python,
    run,
    write_section,
)
from stores import (  # noqa: E402
    MARIADB_ADMIN,
    MARIADB_USER,
    BenchStore,
    mariadb_store,
)

README = Path(__file__).with_name("README.md")

#: Locking transactions of the sweep observed for at least this long are counted: the
#: target is under 1 s with a margin.
LOCKING_WATCH = 0.7


#: The bare sweep: every candidate's directories with shutil.rmtree in one thread, then
#: one bulk DELETE per table (the candidates' ids in a temporary table), each its own
#: transaction, children before parents.
BARE_SWEEP = """
import json, shutil, sys, sqlalchemy as sa
ids, paths = json.load(open({plan!r}))
for path in paths:
    shutil.rmtree(path, ignore_errors=True)
engine = sa.create_engine({url!r})
""" + BARE_ROW_DELETE + """print(len(ids))
"""

VERSIONS_SQL = (
    "SELECT CAST(id AS CHAR), CAST(artifact_id AS CHAR), CAST(version AS CHAR), "
    "CAST(version_number AS CHAR), CAST(uri AS CHAR), CAST(save_type AS CHAR), "
    "CAST(artifact_store_id AS CHAR), CAST(project_id AS CHAR), CAST(created AS CHAR) "
    "FROM artifact_version"
)

#: Our read path: reader.load_table (pymysql server-side cursor, chunks into Arrow,
#: into DuckDB), as gc mark runs it for the versions table.
READ_OURS = """
import duckdb, sqlalchemy as sa, time
from artifact_gc.metadb import reader
engine = sa.create_engine({url!r})
con = duckdb.connect()
cols = [(f"c{{i}}", "VARCHAR") for i in range(9)]
reader.load_table(con, "v", engine, {url!r}, {sql!r}, cols)
print(con.execute("SELECT count(*) FROM v").fetchone()[0])
"""

#: connectorx, as a stream of record batches (the only way its memory can stay flat),
#: and as one Arrow table.
READ_CONNECTORX = """
import connectorx as cx, sys
url = {url!r}.replace("mysql+pymysql://", "mysql://")
if {stream!r}:
    reader = cx.read_sql(url, {sql!r}, return_type="arrow_stream", batch_size=50000)
    print(sum(batch.num_rows for batch in reader))
else:
    print(cx.read_sql(url, {sql!r}, return_type="arrow").num_rows)
"""


# ---------------------------------------------------------------------------
# The transaction watcher
# ---------------------------------------------------------------------------


@dataclass
class Watcher:
    """The longest InnoDB transaction of ``user``'s sessions on ``database``."""

    user: str
    database: str
    interval: float = 0.12
    first_seen: dict[tuple[Any, ...], float] = field(default_factory=dict)
    last_seen: dict[tuple[Any, ...], float] = field(default_factory=dict)
    started_age: dict[tuple[Any, ...], float] = field(default_factory=dict)
    locking: set[tuple[Any, ...]] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
        previous: set[tuple[Any, ...]] = set()
        generation: dict[tuple[Any, ...], int] = {}
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(
                        "SELECT t.trx_mysql_thread_id, t.trx_id, t.trx_started,"
                        " t.trx_rows_locked + t.trx_lock_structs + t.trx_rows_modified,"
                        " TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1e6"
                        " FROM information_schema.innodb_trx t"
                        " JOIN information_schema.processlist p"
                        " ON p.id = t.trx_mysql_thread_id"
                        " WHERE p.user = %s AND p.db = %s", (self.user, self.database))
                    now = time.monotonic()
                    current = set()
                    for thread, trx, started, locks, age in cur.fetchall():
                        base = (thread, trx, started)
                        if base not in previous:
                            generation[base] = generation.get(base, 0) + 1
                        key = (*base, generation[base])
                        current.add(base)
                        self.first_seen.setdefault(key, now)
                        self.last_seen[key] = now
                        self.started_age[key] = float(age)
                        if locks:
                            self.locking.add(key)
                    previous = current
                    time.sleep(self.interval)
        finally:
            conn.close()

    def _observed(self, key: tuple[Any, ...]) -> float:
        return self.last_seen[key] - self.first_seen[key]

    def longest(self, locking: bool = False) -> tuple[float, float, bool] | None:
        """(observed seconds, NOW()-trx_started seconds, locking) of the longest one,
        or of the longest one seen holding a lock or a changed row (``locking``);
        None if none was seen.

        A transaction counts as locking for the whole of its observed life once it was
        seen locking at any poll, so the figure is an upper bound of how long it held
        its locks (to within a poll either side)."""
        keys = [k for k in self.first_seen if not locking or k in self.locking]
        if not keys:
            return None
        key = max(keys, key=self._observed)
        return self._observed(key), self.started_age[key], key in self.locking

    def locking_over(self, seconds: float) -> int:
        """How many locking transactions were observed for at least ``seconds``."""
        return sum(1 for k in self.locking if self._observed(k) >= seconds)


@contextmanager
def watching(database: str) -> Iterator[Watcher]:
    watcher = Watcher(MARIADB_USER, database)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        yield watcher
    finally:
        watcher.stop.set()
        thread.join(10)


def _held(watcher: Watcher, locking_only: bool = False) -> str:
    longest = watcher.longest(locking_only)
    if longest is None:
        return "< 0.12 (none seen)"
    observed, age, locking = longest
    return f"{observed:.2f} ({age:.1f}){' L' if locking else ''}"


# ---------------------------------------------------------------------------
# Stores for the sweep: pristine database + tree, and identical working copies
# ---------------------------------------------------------------------------


def _admin() -> sa.Engine:
    return sa.create_engine(MARIADB_ADMIN)


def _clone(source: str, target: str) -> None:
    """``target`` recreated as a copy of ``source`` (schema with its keys, and rows)."""
    engine = _admin()
    with engine.connect() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS `{target}`")
        c.exec_driver_sql(f"CREATE DATABASE `{target}`")
        tables = [r[0] for r in c.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :s "
            "AND table_type = 'BASE TABLE'"), {"s": source})]
        c.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        for table in tables:
            ddl = c.exec_driver_sql(f"SHOW CREATE TABLE `{source}`.`{table}`").one()[1]
            c.exec_driver_sql(f"USE `{target}`")
            c.exec_driver_sql(ddl)
        for table in tables:
            c.exec_driver_sql(f"INSERT INTO `{target}`.`{table}` SELECT * FROM "
                              f"`{source}`.`{table}`")
        c.exec_driver_sql("SET SESSION foreign_key_checks = 1")
        c.commit()
    engine.dispose()


@dataclass(frozen=True)
class SweepStore:
    database: str
    url: str
    root: Path
    orphans: int

    def reset(self) -> None:
        """The working database and tree, as the pristine ones."""
        _clone(self.database + "_pristine", self.database)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["cp", "-al", f"{self.root}.pristine", str(self.root)], check=True)


def sweep_store(base: Path, orphans: int, prefix: str = "gcbench_sweep") -> SweepStore:
    """A cached store of ``orphans`` orphans (70% of its versions) with their files,
    in the databases ``<prefix>_<orphans>`` (working copy) and ``..._pristine``."""
    versions = int(orphans / 0.7)
    pristine: BenchStore = mariadb_store(base, versions, orphan_share=0.7, files=True,
                                         database=f"{prefix}_{orphans}_pristine")
    root = Path(pristine.root)
    if not Path(f"{root}.pristine").exists():
        shutil.move(str(root), f"{root}.pristine")
    database = f"{prefix}_{orphans}"
    url = pristine.url.rsplit("/", 1)[0] + "/" + database
    return SweepStore(database, url, root, pristine.orphans)


def _candidates(manifest: Path) -> tuple[list[str], list[str]]:
    import duckdb

    rows = duckdb.sql(
        f"SELECT artifact_version_id, uri, coalesce(visualization_uris, []::VARCHAR[]) "
        f"FROM read_parquet('{manifest}') WHERE status = 'candidate'").fetchall()
    ids = [str(r[0]) for r in rows]
    paths = sorted({p for r in rows for p in [r[1], *r[2]]})
    return ids, paths


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------


def bench_mark(base: Path, sizes: list[int]) -> list[list[str]]:
    rows: list[list[str]] = []
    for versions in sizes:
        store = mariadb_store(base, versions)
        database = store.url.rsplit("/", 1)[1]
        out = base / f"mark-mariadb-{versions}.parquet"
        with watching(database) as watcher:
            ours = gc(f"gc mark {versions:,}", "mark", "--db", store.url, "--older-than",
                      "0s", "--out", str(out), "--json")
        raw = python(f"raw NOT IN {versions:,}", RAW_COUNT.format(url=store.url))
        rows.append([
            f"{versions:,}", f"{ours.seconds:.2f}", f"{ours.rate(versions):,.0f}",
            f"{ours.cpu_seconds:.2f}", f"{ours.peak_rss_mb:,.0f}", f"{raw.seconds:.2f}",
            f"{ours.seconds / raw.seconds:.2f}x", _held(watcher),
            f"{os.getloadavg()[0]:.1f}",
        ])
        print("mark | " + " | ".join(rows[-1]), flush=True)
    return rows


def bench_sweep(base: Path, sizes: list[int], prefix: str = "gcbench_sweep"
                ) -> list[list[str]]:
    rows: list[list[str]] = []
    for orphans in sizes:
        store = sweep_store(base, orphans, prefix)
        start_load = os.getloadavg()[0]
        work = base / f"sweep-mariadb-{orphans}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        # Bare loop first, on its own copy.
        store.reset()
        manifest = work / "mark.parquet"
        gc("mark", "mark", "--db", store.url, "--older-than", "0s", "--out", str(manifest))
        ids, paths = _candidates(manifest)
        plan = work / "bare.json"
        plan.write_text(json.dumps([ids, paths]))
        with watching(store.database) as bare_watch:
            bare = python(f"bare {orphans:,}", BARE_SWEEP.format(plan=str(plan), url=store.url))
        bare_load = os.getloadavg()[0]
        # Ours, on an identical copy (the manifest names the same database and paths).
        store.reset()
        with watching(store.database) as ours_watch:
            ours = gc(f"gc sweep {orphans:,}", "sweep", str(manifest), "--db", store.url,
                      "--yes", "--json")
        summary = json.loads(ours.stdout)["summary"]
        assert summary["deleted"] == len(ids), summary
        rate = len(ids) / ours.seconds
        rows.append([
            f"{len(ids):,}", f"{ours.seconds:.2f}", f"{rate:,.0f}", f"{ours.peak_rss_mb:,.0f}",
            _held(ours_watch), _held(ours_watch, locking_only=True),
            str(ours_watch.locking_over(LOCKING_WATCH)), str(summary["retries"]),
            f"{bare.seconds:.2f}", f"{len(ids) / bare.seconds:,.0f}", _held(bare_watch),
            f"{ours.seconds / bare.seconds:.2f}x",
            f"{start_load:.1f} / {bare_load:.1f} / {os.getloadavg()[0]:.1f}",
        ])
        print("sweep | " + " | ".join(rows[-1]), flush=True)
    return rows


def bench_readers(base: Path, versions: int, cx_python: str) -> list[list[str]]:
    store = mariadb_store(base, versions)
    sides: list[tuple[str, Measured]] = [
        ("pymysql server-side cursor -> Arrow -> DuckDB (ours)",
         python("ours", READ_OURS.format(url=store.url, sql=VERSIONS_SQL))),
        ("connectorx arrow_stream (50k-row batches)",
         run("cx stream", [cx_python, "-c", READ_CONNECTORX.format(
             url=store.url, sql=VERSIONS_SQL, stream=True)])),
        ("connectorx arrow (one table)",
         run("cx table", [cx_python, "-c", READ_CONNECTORX.format(
             url=store.url, sql=VERSIONS_SQL, stream=False)])),
    ]
    rows = []
    for label, measured in sides:
        assert int(measured.stdout.split()[-1]) == versions, measured.stdout
        rows.append([label, f"{versions:,}", f"{measured.seconds:.2f}",
                     f"{measured.rate(versions):,.0f}", f"{measured.peak_rss_mb:,.0f}"])
        print("read | " + " | ".join(rows[-1]), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mark-sizes", default="10000,100000,1000000")
    parser.add_argument("--sweep-sizes", default="10000,100000")
    parser.add_argument("--connectorx-python", help="an interpreter with connectorx")
    parser.add_argument("--database-prefix", default="gcbench_sweep",
                        help="names of the sweep's databases: PREFIX_<orphans> and "
                             "PREFIX_<orphans>_pristine (two runs side by side need two)")
    args = parser.parse_args()
    base = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
    mark_sizes = [int(s) for s in args.mark_sizes.split(",") if s]
    sweep_sizes = [int(s) for s in args.sweep_sizes.split(",") if s]
    sections = []
    if mark_sizes:
        # The mark has its own section, so that a sweep-only run keeps the mark's table.
        write_section(README, "mariadb-mark", (
            "**gc mark on MariaDB** (raw: one pushed-down `NOT IN` count)\n\n"
            + markdown_table(
                ["versions", "gc mark s", "versions/s", "gc mark CPU s", "peak RSS MB",
                 "raw NOT IN s", "gc / raw", "longest trx s", "load avg (1 min)"],
                bench_mark(base, mark_sizes))
            + "\n\nCPU s: user + system seconds of the gc process alone (the MariaDB "
            "server's work is not in it). Longest trx: as below."))
    if sweep_sizes:
        sections.append(
            "**gc sweep on MariaDB + local files** (bare: `shutil.rmtree` loop in one "
            "thread, then one bulk `DELETE` per table)\n\n" + markdown_table(
                ["orphans", "gc sweep s", "versions/s", "peak RSS MB", "longest trx s",
                 "longest locking trx s", f"locking trx >= {LOCKING_WATCH} s", "retries",
                 "bare s", "bare versions/s", "bare longest trx s", "gc / bare",
                 "load avg (1 min) start / after bare / after gc"],
                bench_sweep(base, sweep_sizes, args.database_prefix)))
    if args.connectorx_python and mark_sizes:
        sections.append(
            "**Reading the versions table** (9 text columns; each its own process)\n\n"
            + markdown_table(["reader", "rows", "s", "rows/s", "peak RSS MB"],
                             bench_readers(base, max(mark_sizes), args.connectorx_python)))
    note = ("Longest trx: the longest InnoDB transaction of the measured process, as "
            "observed by polling `information_schema.innodb_trx` every 120 ms (in "
            "parentheses: NOW() - trx_started, whole seconds, at most 1 s high; L: it "
            "held row locks or changed rows). Longest locking trx: the same, of the "
            "transactions seen holding a lock or a changed row at least once "
            "(`trx_rows_locked`, `trx_lock_structs` or `trx_rows_modified` above 0), "
            "timed over their whole observed life. 2 shared cores; each side in its own "
            "process, one at a time.")
    if sections:
        table = "\n\n".join([*sections, note])
        print(table)
        write_section(README, "mariadb", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
