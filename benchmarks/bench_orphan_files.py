"""gc mark --orphan-files and the sweep of orphan files, against the bare limits.

    python benchmarks/bench_orphan_files.py [--versions N] [--base DIR] [--readme]

A synthetic ZenML-schema SQLite store (ZenML's own migrations, bulk rows) with every
version's files on local disk; then the rows of the unreferenced versions (about 30%
of them) are deleted with SQL, as ``delete_artifact_version``'s default or
``zenml artifact prune --only-metadata`` delete them, leaving their files, and one log
file per ten versions is written with no ``logs`` row, as ``delete_pipeline_run``
leaves them. Side by side, in one run, each in its own process (wall time, peak RSS):

- a bare listing of the root: ``find -printf`` (size, mtime, path) and Python
  ``os.walk`` + ``lstat``;
- ``gc mark`` without and with ``--orphan-files`` (the difference is what listing and
  classifying the files cost), and ``gc mark --inventory`` from a Parquet listing;
- ``gc sweep`` of the orphan files against a bare ``shutil.rmtree`` of the same paths
  (on a hard-linked copy of the same tree).

Prints every figure with the load average; ``--readme`` writes the section
``orphan-files`` of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Measured, gc, markdown_table, python, run, write_section  # noqa: E402
from stores import sqlite_store  # noqa: E402

README = Path(__file__).with_name("README.md")


def leak(store_dir: Path, db: Path, root: Path) -> dict[str, int]:
    """Delete the rows of the unreferenced versions (files stay) and write log files with
    no row. Returns what was leaked."""
    orphans = (store_dir / "ids" / "orphans.txt").read_text().split()
    con = sqlite3.connect(db)
    con.execute("CREATE TEMP TABLE gone (id TEXT PRIMARY KEY)")
    con.executemany("INSERT INTO gone VALUES (?)", [(i,) for i in orphans])
    for sql in (
        "DELETE FROM artifact_visualization WHERE artifact_version_id IN (SELECT id FROM gone)",
        "DELETE FROM run_metadata_resource WHERE resource_type = 'artifact_version' "
        "AND resource_id IN (SELECT id FROM gone)",
        "DELETE FROM tag_resource WHERE resource_type = 'artifact_version' "
        "AND resource_id IN (SELECT id FROM gone)",
        "DELETE FROM artifact_version WHERE id IN (SELECT id FROM gone)",
    ):
        con.execute(sql)
    con.commit()
    versions = con.execute("SELECT count(*) FROM artifact_version").fetchone()[0]
    con.close()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    count = (versions + len(orphans)) // 10
    for _ in range(count):
        (logs / f"{uuid.uuid4()}.log").write_bytes(b"l" * 2048)
    # Everything is old: the grace period is not what the benchmark measures.
    subprocess.run(["find", str(root), "-exec", "touch", "-h", "-d", "30 days ago", "{}",
                    "+"], check=True)
    return {"versions_left": int(versions), "versions_deleted": len(orphans),
            "log_files": count}


def tree_stats(root: Path) -> tuple[int, int]:
    objects = nbytes = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            objects += 1
            nbytes += os.lstat(os.path.join(directory, name)).st_size
    return objects, nbytes


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=500_000)
    parser.add_argument("--base", type=Path, default=Path("/tmp/artifact-gc-bench"))
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args(argv)

    store = sqlite_store(args.base, args.versions, files=True, orphan_share=0.3)
    work = args.base / f"orphans-{args.versions}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    db, root = work / "zenml.db", work / "root"
    shutil.copy(Path(store.url.removeprefix("sqlite:///")), db)
    print(f"[bench] copying the store's files (hard links) to {root}", flush=True)
    subprocess.run(["cp", "-al", store.root, str(root)], check=True)
    # The copy's rows name the copy's files, and its store's root is the copy's: the
    # cached store is never listed (nor swept).
    store_id = sqlite3.connect(db).execute(
        "SELECT artifact_store_id FROM artifact_version LIMIT 1").fetchone()[0]
    config = base64.b64encode(json.dumps({"path": str(root)}).encode())
    with sqlite3.connect(db) as con:
        con.execute("UPDATE stack_component SET configuration = ? WHERE id = ?",
                    (config, store_id))
        for table in ("artifact_version", "artifact_visualization"):
            con.execute(f"UPDATE {table} SET uri = ? || substr(uri, ?) WHERE uri LIKE ?",
                        (str(root), len(store.root) + 1, store.root + "/%"))
    leaked = leak(store.directory, db, root)
    objects, nbytes = tree_stats(root)
    url = f"sqlite:///{db}"
    roots: list[str] = []
    print(f"[bench] {objects:,} objects, {nbytes:,} bytes; {leaked}; load {load_average()}",
          flush=True)

    results: dict[str, Measured] = {}
    results["find"] = run("find -printf", ["sh", "-c",
                          f"find {root} -printf '%s %T@ %p\\n' > /dev/null"])
    results["os.walk"] = python("os.walk + lstat", (
        "import os\n"
        f"for d, ds, fs in os.walk({str(root)!r}):\n"
        "    for n in fs: os.lstat(os.path.join(d, n))\n"))
    results["mark"] = gc("gc mark", "mark", "--db", url, "--out", str(work / "plain.parquet"),
                         "--older-than", "1d", *roots, "--json")
    results["mark_orphans"] = gc("gc mark --orphan-files", "mark", "--db", url, "--out",
                                 str(work / "orphans.parquet"), "--older-than", "1d",
                                 "--orphan-files", *roots, "--json")
    inventory = work / "inventory.parquet"
    python("write inventory", (
        "import os, pyarrow as pa, pyarrow.parquet as pq, datetime as dt\n"
        "p, s, m = [], [], []\n"
        f"for d, ds, fs in os.walk({str(root)!r}):\n"
        "    for n in fs:\n"
        "        f = os.path.join(d, n); st = os.lstat(f)\n"
        "        p.append(f); s.append(st.st_size)\n"
        "        m.append(dt.datetime.utcfromtimestamp(st.st_mtime))\n"
        f"pq.write_table(pa.table({{'path': p, 'size': s, 'last_modified': m}}), "
        f"{str(inventory)!r})\n"))
    results["mark_inventory"] = gc("gc mark --inventory", "mark", "--db", url, "--out",
                                   str(work / "inventory-mark.parquet"), "--older-than",
                                   "1d", "--inventory", str(inventory), *roots, "--json")
    summary = json.loads(results["mark_orphans"].stdout)["orphan_files"]
    candidates = [
        r[0] for r in __import__("duckdb").sql(
            f"SELECT item_id FROM '{work / 'orphans.parquet'}' "
            "WHERE item_kind = 'orphan_file' AND status = 'candidate'").fetchall()]
    candidate_bytes = sum(x["bytes"] for x in summary["by_class"] if x["status"] == "candidate")

    backup = work / "root.links"
    subprocess.run(["cp", "-al", str(root), str(backup)], check=True)
    results["sweep"] = gc("gc sweep (orphan files)", "sweep", str(work / "orphans.parquet"),
                          "--db", url, "--yes", "--json")
    shutil.rmtree(root)
    backup.rename(root)
    paths = work / "paths.txt"
    paths.write_text("\n".join(candidates))
    results["rmtree"] = python("bare rmtree/unlink", (
        "import os, shutil\n"
        f"for p in open({str(paths)!r}).read().split():\n"
        "    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)\n"))

    load = load_average()
    rows = []
    for m in results.values():
        rows.append([m.label, f"{m.seconds:.2f}", f"{m.cpu_seconds:.2f}",
                     f"{m.peak_rss_mb:.0f}"])
    table = markdown_table(["side", "wall s", "cpu s", "peak RSS MB"], rows)
    listing = results["find"].seconds
    extra = results["mark_orphans"].seconds - results["mark"].seconds
    ratios = [
        f"- store: {objects:,} objects, {nbytes:,} bytes; candidates "
        f"{len(candidates):,} paths, {candidate_bytes:,} bytes "
        f"({100 * candidate_bytes / max(1, nbytes):.0f}% of the bytes); "
        f"{leaked['versions_left']:,} versions left",
        f"- `gc mark --orphan-files` minus `gc mark`: {extra:.2f} s = "
        f"{extra / listing:.2f}x the bare `find` listing ({listing:.2f} s), "
        f"{extra / results['os.walk'].seconds:.2f}x `os.walk`+`lstat`",
        f"- `gc mark --orphan-files` whole: {results['mark_orphans'].seconds / listing:.2f}x "
        "the bare listing",
        f"- `gc mark --inventory` whole: {results['mark_inventory'].seconds:.2f} s for "
        f"{objects:,} objects",
        f"- sweep of orphan files: {len(candidates) / results['sweep'].seconds:,.0f} paths/s, "
        f"bare rmtree {len(candidates) / results['rmtree'].seconds:,.0f} paths/s "
        f"({100 * results['rmtree'].seconds / results['sweep'].seconds:.0f}% of bare)",
        f"- load average (1, 5, 15 min) at the end: {load}",
    ]
    body = "\n".join([f"### Orphan files: {args.versions:,} synthetic versions, local disk",
                      "", table, "", *ratios])
    print(body)
    if args.readme:
        write_section(README, "orphan-files", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
