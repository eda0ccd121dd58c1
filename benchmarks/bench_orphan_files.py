"""gc mark --orphan-files and the sweep of orphan files against the bare limits, on local
disk and on S3 (moto), side by side in one run.

    python benchmarks/bench_orphan_files.py [--versions 500000] [--orphan-share 0.4]
        [--leak-share 0.5] [--s3-versions 5000] [--inventory-rows 1000000]
        [--base DIR] [--skip-local] [--prepare-only] [--mark-only] [--readme]
        [--reuse-store] [--inventory-only [--classification-only]]
        [--inventory-baseline SRC]

Each store is a synthetic ZenML-schema SQLite store (ZenML's own migrations, bulk
rows). Of its unreferenced versions, ``--leak-share`` lose their rows only (SQL, as
``delete_artifact_version``'s default or ``zenml artifact prune --only-metadata``
leave them: their files stay) and the rest are gone entirely (rows and files, as a
sweep leaves them). Then (EXTRAS, counts per 1,000 versions) files of every orphan
class are written with no row: log files and log folders of deleted runs
(``logs/<id>.log``, ``logs/<id>/``), ``custom_artifacts/<name>/<uuid>``,
``external_artifacts/external_<uuid>``, hook outputs ``<run>/<hook>/<output>``, step
outputs of deleted versions (their step run finished), of failed steps and of deleted
runs, empty directories (local only); beside them, files that must outlive every
sweep: log files of live runs (a ``logs`` row names each), and unknown paths
(``code_uploads/``, an integration's ``mlflow/``, a user's ``datasets/``). With the
defaults about 30% of the bytes are in orphan files, and the local store holds about
988,000 objects; each side prints the bytes by class as ``gc mark`` found them, and
after the sweep checks that every live log file and unknown path is still there.
Sides, each its own process (wall, CPU, peak RSS, the load average before and after):

- local disk: a bare listing of the root (``find -printf`` of size, mtime, path, and
  Python ``os.walk`` + ``lstat``); ``gc mark`` without and with ``--orphan-files``;
  ``gc sweep`` of the orphan files against a bare ``shutil.rmtree``/``unlink`` of the
  same paths (on a hard-linked copy of the same tree);
- S3 (a moto server on 127.0.0.1, its own process, buckets filled into its backend):
  a bare paginated ``list_objects_v2`` of the root; ``gc mark`` without and with
  ``--orphan-files``; ``gc sweep`` against a bare boto3 ``delete_objects`` loop of the
  same keys (1,000 a request, 16 threads), with the requests moto served;
- an inventory of at least ``--inventory-rows`` objects (the local listing, padded
  with stale rows of log files), classified on its own: ``mark_orphan_files`` from
  the inventory, timed in a process of its own after the database is open.

``--mark-only`` runs the listing sides alone (bare listings, ``gc mark`` without and with
``--orphan-files``): no inventory, no sweep. ``--prepare-only`` builds the local store
and stops; ``--reuse-store`` (or ``--mark-only``) then measures that tree, unswept,
instead of building it again. ``--readme`` writes the section ``orphan-files`` of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import harness  # noqa: E402
from harness import Measured, markdown_table, write_section  # noqa: E402
from stores import sqlite_store  # noqa: E402

README = Path(__file__).with_name("README.md")
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}

BARE_S3_LIST = r"""
import sys, boto3
endpoint, bucket, prefix = sys.argv[1:4]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
n = size = 0
for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for entry in page.get("Contents") or []:
        n += 1
        size += entry["Size"]
print(n, size)
"""

INVENTORY_CLASSIFY = r"""
import json, sys, time
from datetime import timedelta
import sqlalchemy as sa
from artifact_gc.manifest.format import utc_now
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.orphans.run import mark_orphan_files
from artifact_gc.mark.run import _duckdb_connection
from artifact_gc.progress import NullProgress
from artifact_gc.zenml.schema import discover
from artifact_gc.zenml.stores import load_artifact_stores
url, inventory = sys.argv[1:3]
engine = sa.create_engine(url)
schema = discover(engine)
stores = load_artifact_stores(engine, url, {}, {})
engine.dispose()
con = _duckdb_connection()  # gc mark's own: its memory limit, spilling to disk
options = MarkOptions(orphan_files=True, inventory=inventory, older_than=timedelta(days=1))
wall, cpu = time.perf_counter(), time.process_time()
summary = mark_orphan_files(con, url, schema, stores, options, utc_now(), NullProgress())
print(json.dumps({"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "objects": summary.objects}))
"""


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


#: The load average just before each side started, taken by run/gc/python below and
#: printed beside the one after it by ``measure``.
_LOAD_BEFORE: list[str] = []


def run(label: str, argv: list[str], env: dict[str, str] | None = None) -> Measured:
    _LOAD_BEFORE.append(load_average())
    return harness.run(label, argv, env=env)


def gc(label: str, *args: str, env: dict[str, str] | None = None) -> Measured:
    _LOAD_BEFORE.append(load_average())
    return harness.gc(label, *args, env=env)


def python(label: str, code: str, env: dict[str, str] | None = None) -> Measured:
    _LOAD_BEFORE.append(load_average())
    return harness.python(label, code, env=env)


def leak_rows(store_dir: Path, db: Path, leak_share: float) -> tuple[list[str], list[str]]:
    """Delete the rows of the first ``leak_share`` of the unreferenced versions (their
    files stay) and of the rest; returns (leaked URIs, fully removed URIs)."""
    orphans = (store_dir / "ids" / "orphans.txt").read_text().split()
    cut = int(len(orphans) * leak_share)
    con = sqlite3.connect(db)
    con.execute("CREATE TEMP TABLE gone (id TEXT PRIMARY KEY, leaked INTEGER)")
    con.executemany("INSERT INTO gone VALUES (?, ?)",
                    [(i, int(n < cut)) for n, i in enumerate(orphans)])
    uris: dict[int, list[str]] = {0: [], 1: []}
    for uri, leaked in con.execute(
            "SELECT v.uri, g.leaked FROM artifact_version v JOIN gone g ON g.id = v.id"):
        uris[int(leaked)].append(str(uri))
    for uri, leaked in con.execute(
            "SELECT a.uri, g.leaked FROM artifact_visualization a "
            "JOIN gone g ON g.id = a.artifact_version_id"):
        uris[int(leaked)].append(str(uri))
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
    con.close()
    return uris[1], uris[0]


#: Bytes of a version's files in the synthetic store (a visualization and a data
#: file: 84 bytes a version on local disk, 129 on S3), the scale the others follow.
UNIT_FILES = (("artifact.bin", 64), ("metadata.json", 20))
#: Per 1,000 versions: (label, units, files of a unit as (name, bytes); no file is an
#: empty directory). Log files are larger than the synthetic versions' files, as they
#: are in real stores; code archives larger still. With ``--orphan-share 0.4
#: --leak-share 0.5`` this puts about 30% of the store's bytes in orphan files.
EXTRAS: tuple[tuple[str, float, tuple[tuple[str, int], ...]], ...] = (
    ("live_logs", 140, (("", 1024),)),
    ("deleted_run_logs", 60, (("", 1024),)),
    ("deleted_run_logs_folder", 10, (("step.log", 512), ("hook.log", 512))),
    ("custom_artifact", 16, UNIT_FILES),
    ("external_artifact", 8, UNIT_FILES),
    ("hook_output", 16, UNIT_FILES),
    ("deleted_version_output", 10, UNIT_FILES),
    ("deleted_run_output", 10, UNIT_FILES),
    ("failed_step_output", 10, UNIT_FILES),
    ("empty_step_directory", 10, ()),
    ("empty_custom_directory", 1, ()),
    ("empty_hook_directory", 1, ()),
    ("unknown_code_upload", 5, (("", 4096),)),
    ("unknown_integration", 10, (("", 256),)),
    ("unknown_user_file", 1, (("", 2048),)),
)


@dataclass
class Extras:
    """What the orphan store adds beside the versions' files: objects as root-relative
    (key, size), empty directories (a filesystem's only), the rows that make some of
    them live or give them their class, and the keys that must outlive any sweep."""

    objects: list[tuple[str, int]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    #: ``logs`` rows (id, root-relative key) of live runs' log files.
    live_logs: list[tuple[str, str]] = field(default_factory=list)
    #: ``step_run`` rows (id as 32 hex, status) of steps whose output directories stay
    #: with no version row: finished (the version was deleted) or failed.
    step_runs: list[tuple[str, str]] = field(default_factory=list)
    #: Keys no sweep may delete: live log files and every unknown path written.
    keep: list[str] = field(default_factory=list)


def extras(versions: int, seed: int = 12) -> Extras:
    """The orphan store's extra objects for ``versions`` versions (EXTRAS)."""
    rng = random.Random(seed)

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def suffix() -> str:
        return f"{rng.getrandbits(32):08x}"

    out = Extras()
    for label, per_1000, files in EXTRAS:
        for k in range(max(1, round(versions * per_1000 / 1000))):
            if label == "live_logs":
                logs_id = uid()
                out.live_logs.append((logs_id.replace("-", ""), f"logs/{logs_id}.log"))
                unit = f"logs/{logs_id}.log"
            elif label == "deleted_run_logs":
                unit = f"logs/{uid()}.log"
            elif label == "deleted_run_logs_folder":
                unit = f"logs/{uid()}"
            elif label == "custom_artifact":
                unit = f"custom_artifacts/abandoned_model/{uid()}"
            elif label == "external_artifact":
                unit = f"external_artifacts/external_{uid()}"
            elif label == "hook_output":
                unit = f"{uid()}/{uid()}/output"
            elif label in ("deleted_version_output", "failed_step_output"):
                step_run = uid()
                status = "completed" if label == "deleted_version_output" else "failed"
                out.step_runs.append((step_run.replace("-", ""), status))
                unit = f"{status}_step/output/{step_run}/{suffix()}"
            elif label == "deleted_run_output":
                unit = f"deleted_step/output/{uid()}/{suffix()}"
            elif label == "empty_step_directory":
                unit = f"killed_step/output/{uid()}"
            elif label == "empty_custom_directory":
                unit = f"custom_artifacts/emptied_{k}"
            elif label == "empty_hook_directory":
                unit = f"{uid()}/{uid()}"
            elif label == "unknown_code_upload":
                unit = f"code_uploads/{hashlib.sha1(uid().encode()).hexdigest()}.tar.gz"
            elif label == "unknown_integration":
                unit = f"mlflow/{k % 50}/{uid().replace('-', '')}/artifacts/model.pkl"
            elif label == "unknown_user_file":
                unit = f"datasets/raw/part-{k:05d}.csv"
            else:
                raise AssertionError(label)
            keys = [(f"{unit}/{name}" if name else unit, size) for name, size in files]
            out.objects += keys
            if not files:
                out.empty.append(unit)
            if label == "live_logs" or label.startswith("unknown_"):
                out.keep += [key for key, _ in keys]
    return out


def seed_rows(db: Path, root: str, extra: Extras) -> None:
    """Add the rows ``extra`` needs: a ``logs`` row naming each live log file (under
    ``root``, as the rows spell the store's root), and the ``step_run`` of each step
    output directory whose step run is still there (copies of a step run of the store,
    finished or failed)."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    template = dict(con.execute("SELECT * FROM step_run LIMIT 1").fetchone())
    store_id = con.execute(
        "SELECT artifact_store_id FROM artifact_version LIMIT 1").fetchone()[0]
    columns = list(template)
    rows = []
    for n, (step_run, status) in enumerate(extra.step_runs):
        rows.append(tuple({**template, "id": step_run, "name": f"{status}_step_{n}",
                           "status": status}[c] for c in columns))
    con.executemany(f"INSERT INTO step_run ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})", rows)
    con.executemany(
        "INSERT INTO logs (id, created, updated, uri, source, project_id, user_id, "
        "pipeline_run_id, step_run_id, artifact_store_id) VALUES (?, ?, ?, ?, 'step', ?, ?, ?, "
        "?, ?)",
        [(logs_id, template["created"], template["updated"], f"{root}/{key}",
          template["project_id"], template["user_id"], template["pipeline_run_id"],
          template["id"], store_id) for logs_id, key in extra.live_logs])
    con.commit()
    con.close()


def body(size: int, cache: dict[int, bytes] = {}) -> bytes:  # noqa: B006 - a memo
    return cache.setdefault(size, b"o" * size)


def doomed_keys(candidates: list[str] | set[str], keys: list[str]) -> list[str]:
    """The keys equal to or under one of ``candidates``."""
    units = set(candidates)
    out = []
    for key in keys:
        probe = key
        while probe:
            if probe in units:
                out.append(key)
                break
            probe = probe.rsplit("/", 1)[0] if "/" in probe else ""
    return out


def orphan_candidates(manifest: Path) -> list[str]:
    import duckdb

    return [str(r[0]) for r in duckdb.sql(
        f"SELECT item_id FROM '{manifest}' WHERE item_kind = 'orphan_file' "
        "AND status = 'candidate' ORDER BY item_id").fetchall()]


def candidate_bytes(mark: Measured) -> int:
    summary = json.loads(mark.stdout)["orphan_files"]
    return sum(int(x["bytes"]) for x in summary["by_class"] if x["status"] == "candidate")


def by_class(mark: Measured) -> str:
    summary = json.loads(mark.stdout)["orphan_files"]
    return ", ".join(f"{x['orphan_class']} {x['paths']:,}" for x in summary["by_class"]
                     if x["status"] == "candidate")


def bytes_table(mark: Measured, manifest: Path) -> tuple[str, float]:
    """The store's bytes as ``gc mark --orphan-files`` classified them (live, each
    candidate class, protected, unknown), as a markdown table; and the orphan-file
    candidates' share of the bytes."""
    summary = json.loads(mark.stdout)["orphan_files"]
    total = max(1, int(summary["bytes"]))
    rows: list[tuple[str, int, int]] = [
        ("live (a row names it)", summary["live"]["objects"], summary["live"]["bytes"])]
    candidates = [x for x in summary["by_class"] if x["status"] == "candidate"]
    rows += [(f"orphan: {x['orphan_class']} ({x['paths']:,} paths)", x["objects"],
              x["bytes"]) for x in candidates]
    rows += [(f"protected: {x['orphan_class']} ({x['paths']:,} paths)", x["objects"],
              x["bytes"]) for x in summary["by_class"]
             if x["status"] == "protected" and x["orphan_class"] not in ("unknown",
                                                                         "undo_trash")]
    rows.append(("unknown (never deleted)", summary["unknown"]["objects"],
                 summary["unknown"]["bytes"]))
    rows += [(f"- unknown: {path.rsplit('/', 1)[-1]}/", objects, nbytes)
             for path, objects, nbytes in unknown_folders(manifest)]
    if summary["undo_trash"]["objects"]:
        rows.append(("undo trash", summary["undo_trash"]["objects"],
                     summary["undo_trash"]["bytes"]))
    orphan = sum(int(x["bytes"]) for x in candidates)
    rows.append(("orphan files, all classes", sum(int(x["objects"]) for x in candidates),
                 orphan))
    rows.append(("store", summary["objects"], summary["bytes"]))
    table = markdown_table(["class", "objects", "bytes", "% of store bytes"], [
        [label, f"{int(n):,}", f"{int(b):,}", f"{100 * int(b) / total:.1f}"]
        for label, n, b in rows])
    return table, orphan / total


def unknown_folders(manifest: Path) -> list[tuple[str, int, int]]:
    """The unknown rows of ``manifest`` (one per top-level folder): path, objects, bytes."""
    import duckdb

    return [(str(p), int(n), int(b)) for p, n, b in duckdb.sql(
        f"SELECT item_id, file_count, size_bytes FROM '{manifest}' "
        "WHERE item_kind = 'orphan_file' AND orphan_class = 'unknown' "
        "ORDER BY size_bytes DESC").fetchall()]


def check_kept(exists: Callable[[str], bool], keep: list[str]) -> str:
    """Every live log file and unknown path written must outlive the sweep."""
    lost = [key for key in keep if not exists(key)]
    if lost:
        raise SystemExit(f"the sweep deleted {len(lost):,} kept paths, e.g. {lost[:3]}")
    return f"- kept: all {len(keep):,} live log files and unknown paths are still there"


def row(m: Measured, load: str) -> list[str]:
    before = _LOAD_BEFORE.pop() if _LOAD_BEFORE else ""
    return [m.label, f"{m.seconds:.2f}", f"{m.cpu_seconds:.2f}", f"{m.peak_rss_mb:.0f}",
            before, load]


def measure(results: list[list[str]], measured: Measured) -> Measured:
    """Keep ``measured`` with the load average just after it, and print it."""
    results.append(row(measured, load_average()))
    print(" | ".join(results[-1]), flush=True)
    return measured


# ---------------------------------------------------------------------------
# Local disk
# ---------------------------------------------------------------------------


def prepare_local(args: argparse.Namespace, work: Path, db: Path, root: Path) -> None:
    """The local store of the run in ``work``: rows leaked, orphans of every class
    written, everything back-dated."""
    store = sqlite_store(args.base, args.versions, files=True, orphan_share=args.orphan_share)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copy(Path(store.url.removeprefix("sqlite:///")), db)
    print(f"[local] copying the store's files (hard links) to {root}", flush=True)
    subprocess.run(["cp", "-al", store.root, str(root)], check=True)
    store_id = sqlite3.connect(db).execute(
        "SELECT artifact_store_id FROM artifact_version LIMIT 1").fetchone()[0]
    config = base64.b64encode(json.dumps({"path": str(root)}).encode())
    with sqlite3.connect(db) as con:
        con.execute("UPDATE stack_component SET configuration = ? WHERE id = ?",
                    (config, store_id))
        for table in ("artifact_version", "artifact_visualization"):
            con.execute(f"UPDATE {table} SET uri = ? || substr(uri, ?) WHERE uri LIKE ?",
                        (str(root), len(store.root) + 1, store.root + "/%"))
    _leaked, removed = leak_rows(store.directory, db, args.leak_share)
    for uri in removed:
        if os.path.isdir(uri):
            shutil.rmtree(uri)
        elif os.path.lexists(uri):
            os.unlink(uri)
    extra = extras(args.versions)
    seed_rows(db, str(root), extra)
    for key, size in extra.objects:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body(size))
    for key in extra.empty:
        (root / key).mkdir(parents=True, exist_ok=True)
    (work / "keep.txt").write_text("\n".join(extra.keep))
    # Everything is old: the grace period is not what the benchmark measures.
    subprocess.run(["find", str(root), "-exec", "touch", "-h", "-d", "30 days ago", "{}",
                    "+"], check=True)


def local_store(args: argparse.Namespace) -> tuple[Path, str, Path, int, int]:
    """The local store of ``--versions`` versions with orphan files of every class,
    everything back-dated: (work directory, database URL, root, objects, bytes).

    A mark changes nothing: the listing sides alone (``--mark-only``) and the inventory
    side alone (``--inventory-only --reuse-store``) can measure a tree prepared before
    (``--prepare-only``, or an earlier run that swept nothing), outside the bench lock."""
    work = args.base / f"orphans-{args.versions}"
    db, root = work / "zenml.db", work / "root"
    prepared = work / "prepared.json"
    key = json.dumps({"orphan_share": args.orphan_share, "leak_share": args.leak_share,
                      "extras": EXTRAS})
    if not ((args.mark_only or args.reuse_store) and prepared.exists()
            and json.loads(prepared.read_text())["key"] == key):
        prepare_local(args, work, db, root)
        count, nbytes = tree_stats(root)
        prepared.write_text(json.dumps({"key": key, "objects": count, "bytes": nbytes}))
    tree = json.loads(prepared.read_text())
    return work, f"sqlite:///{db}", root, int(tree["objects"]), int(tree["bytes"])


def inventory_side(args: argparse.Namespace, work: Path, url: str, root: Path,
                   results: list[list[str]]) -> list[str]:
    """The inventory of ``root`` padded to ``--inventory-rows``, classified by this
    tree's code and, with ``--inventory-baseline SRC``, by the package under SRC (the
    code before a change), each side its own process: ``mark_orphan_files`` timed
    inside after start-up, and the whole ``gc mark --orphan-files --inventory``."""
    inventory = work / f"inventory-{args.inventory_rows}.parquet"
    if not (args.reuse_store and inventory.exists()):
        write_inventory(root, inventory, args.inventory_rows)
    sides = [("", None)]
    if args.inventory_baseline:
        sides.insert(0, ("baseline: ", {"PYTHONPATH": str(args.inventory_baseline)}))
    notes = []
    for prefix, env in sides:
        inv = run("inventory classification", [sys.executable, "-c", INVENTORY_CLASSIFY, url,
                                               str(inventory)], env=env)
        timed = json.loads(inv.stdout.strip().splitlines()[-1])
        results.append([f"{prefix}inventory classification ({timed['objects']:,} objects; "
                        "timed inside, after start-up)", f"{timed['seconds']:.2f}",
                        f"{timed['cpu']:.2f}", f"{inv.peak_rss_mb:.0f}",
                        _LOAD_BEFORE.pop(), load_average()])
        print(" | ".join(results[-1]), flush=True)
        if args.classification_only:
            notes.append(f"- {prefix}inventory: {timed['objects']:,} objects classified in "
                         f"{timed['seconds']:.2f} s ({timed['cpu']:.2f} s CPU), peak RSS "
                         f"{inv.peak_rss_mb:.0f} MB")
            continue
        out = work / f"inventory-mark{len(notes)}.parquet"
        out.unlink(missing_ok=True)
        whole = measure(results, gc(f"{prefix}gc mark --orphan-files --inventory (whole)",
                                    "mark", "--db", url, "--out", str(out),
                                    "--older-than",
                                    "1d", "--orphan-files", "--inventory", str(inventory),
                                    "--json", env=env))
        listed = None
        if args.inventory_only:
            out = work / f"listing-mark{len(notes)}.parquet"
            out.unlink(missing_ok=True)
            listed = measure(results, gc(f"{prefix}gc mark --orphan-files (listing the root)",
                                         "mark", "--db", url, "--out", str(out),
                                         "--older-than", "1d", "--orphan-files", "--json",
                                         env=env))
        notes.append(
            f"- {prefix}inventory: {timed['objects']:,} objects classified in "
            f"{timed['seconds']:.2f} s ({timed['cpu']:.2f} s CPU), peak RSS "
            f"{inv.peak_rss_mb:.0f} MB; whole `gc mark --orphan-files --inventory` "
            f"{whole.seconds:.2f} s ({whole.cpu_seconds:.2f} s CPU), peak RSS "
            f"{whole.peak_rss_mb:.0f} MB" + (
                "" if listed is None else
                f"; `gc mark --orphan-files` listing the root {listed.seconds:.2f} s "
                f"({listed.cpu_seconds:.2f} s CPU), peak RSS {listed.peak_rss_mb:.0f} MB"))
    return notes


def local_side(args: argparse.Namespace) -> tuple[list[str], list[list[str]], Path, str]:
    work, url, root, count, nbytes = local_store(args)
    if args.prepare_only:
        return [], [], work, ""
    print(f"[local] {count:,} objects, {nbytes:,} bytes; load {load_average()}", flush=True)

    results: list[list[str]] = []
    # Warm the page cache first (the tree's inodes, the database), so that no side
    # pays for reading them from disk and the others not.
    subprocess.run(["sh", "-c", f"find {root} > /dev/null; cat {work / 'zenml.db'} > /dev/null"],
                   check=True)
    find = measure(results, run("find -printf", ["sh", "-c",
                                f"find {root} -printf '%s %T@ %p\\n' > /dev/null"]))
    walk = measure(results, python("os.walk + lstat", (
        "import os\n"
        f"for d, ds, fs in os.walk({str(root)!r}):\n"
        "    for n in fs: os.lstat(os.path.join(d, n))\n")))
    plain = measure(results, gc("gc mark", "mark", "--db", url, "--out",
                                str(work / "plain.parquet"), "--older-than", "1d", "--json"))
    manifest = work / "orphans.parquet"
    # No --orphan-code-uploads: code archives stay unknown, never deleted.
    orphans = measure(results, gc("gc mark --orphan-files", "mark", "--db", url, "--out",
                                  str(manifest), "--older-than", "1d", "--orphan-files",
                                  "--json"))
    candidates = orphan_candidates(manifest)
    reclaim = candidate_bytes(orphans)
    table, share = bytes_table(orphans, manifest)
    print(table, flush=True)
    notes = [
        f"- local store: {count:,} objects, {nbytes:,} bytes; orphan-file candidates "
        f"{len(candidates):,} paths, {reclaim:,} bytes ({100 * share:.1f}% of the bytes): "
        f"{by_class(orphans)}",
        *listing_notes(find, walk, plain, orphans),
        "", "The store's bytes as `gc mark --orphan-files` classified them:", "", table, "",
    ]
    if args.mark_only:
        return notes, results, work, url
    inventory_notes = inventory_side(args, work, url, root, results)
    (work / "prepared.json").unlink()  # the sweep below changes the store
    backup = work / "root.links"
    subprocess.run(["cp", "-al", str(root), str(backup)], check=True)
    sweep = measure(results, gc("gc sweep (orphan files)", "sweep", str(manifest), "--db",
                                url, "--yes", "--json"))
    kept = check_kept(lambda key: os.path.lexists(root / key),
                      (work / "keep.txt").read_text().split())
    shutil.rmtree(root)
    backup.rename(root)
    paths = work / "paths.txt"
    paths.write_text("\n".join(candidates))
    bare = measure(results, python("bare rmtree/unlink", (
        "import os, shutil\n"
        f"for p in open({str(paths)!r}).read().split():\n"
        "    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)\n"
    )))
    notes += [
        f"- sweep of the orphan files: {len(candidates) / sweep.seconds:,.0f} paths/s, bare "
        f"{len(candidates) / bare.seconds:,.0f} paths/s "
        f"({100 * bare.seconds / sweep.seconds:.0f}% of bare)",
        kept,
        *inventory_notes,
    ]
    return notes, results, work, url


def listing_notes(find: Measured, walk: Measured, plain: Measured,
                  orphans: Measured) -> list[str]:
    """``gc mark --orphan-files`` against the bare listings, whole and its own part."""
    extra = orphans.seconds - plain.seconds
    extra_cpu = orphans.cpu_seconds - plain.cpu_seconds
    return [
        f"- `gc mark --orphan-files` whole: {orphans.seconds / find.seconds:.2f}x `find` "
        f"wall ({orphans.cpu_seconds / max(0.01, find.cpu_seconds):.2f}x CPU), "
        f"{orphans.seconds / walk.seconds:.2f}x `os.walk` wall "
        f"({orphans.cpu_seconds / max(0.01, walk.cpu_seconds):.2f}x CPU)",
        f"- its orphan-file part (`--orphan-files` minus plain `gc mark`): {extra:.2f} s = "
        f"{extra / find.seconds:.2f}x `find`, {extra / walk.seconds:.2f}x `os.walk` (wall); "
        f"CPU {extra_cpu:.2f} s = {extra_cpu / max(0.01, find.cpu_seconds):.2f}x `find`, "
        f"{extra_cpu / max(0.01, walk.cpu_seconds):.2f}x `os.walk`",
    ]


def tree_stats(root: Path) -> tuple[int, int]:
    objects = nbytes = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            objects += 1
            nbytes += os.lstat(os.path.join(directory, name)).st_size
    return objects, nbytes


def write_inventory(root: Path, out: Path, rows: int) -> None:
    """A plain inventory (path, size, last_modified) of ``root``, padded with stale rows
    (log files listed once and gone since) to ``rows``."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    paths, sizes, times = [], [], []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            paths.append(full)
            sizes.append(info.st_size)
            times.append(dt.datetime.fromtimestamp(info.st_mtime, dt.UTC).replace(tzinfo=None))
    old = dt.datetime(2026, 1, 1)
    rng = random.Random(5)
    while len(paths) < rows:
        paths.append(f"{root}/logs/{uuid.UUID(int=rng.getrandbits(128), version=4)}.log")
        sizes.append(2048)
        times.append(old)
    pq.write_table(pa.table({"path": paths, "size": sizes, "last_modified": times}), out)


# ---------------------------------------------------------------------------
# S3 (moto)
# ---------------------------------------------------------------------------


def s3_side(versions: int, args: argparse.Namespace) -> tuple[list[str], list[list[str]]]:
    from artifact_gc.demo.synthetic import SyntheticSpec, populate
    from bench_s3 import Moto, retarget
    from generate_store import create_schema_with_zenml
    from s3_support import list_bucket, object_plan

    os.environ.update(AWS_ENV)  # this process's own boto3 client (the checks) too
    directory = args.base / f"orphans-s3-{versions}"
    pristine = directory / "pristine.db"
    if not (directory / "done").exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        url = f"sqlite:///{pristine}"
        create_schema_with_zenml(url, sys.executable)
        populate(url, SyntheticSpec(versions=versions, store_root="s3://pristine/store",
                                    orphan_share=args.orphan_share, recent_share=0.0,
                                    ids_dir=directory / "ids"))
        (directory / "done").write_text("1")
    work = directory / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    db = work / "zenml.db"
    shutil.copy(pristine, db)
    plan = object_plan(f"sqlite:///{db}", "pristine")
    _leaked, removed = leak_rows(directory, db, args.leak_share)
    gone = {u.split("://", 1)[1].split("/", 1)[1] for u in removed}
    removed_keys = set(doomed_keys(gone, [k for k, _ in plan]))
    plan = [(k, b) for k, b in plan if k not in removed_keys]
    extra = extras(versions)  # S3 has no empty directories: extra.empty is not written
    seed_rows(db, "s3://gc-side/store", extra)
    plan += [(f"store/{k}", body(size)) for k, size in extra.objects]
    nbytes = sum(len(b) for _, b in plan)
    moto = Moto()
    moto.start({"gc-side": plan, "bare-side": plan}, work)
    results: list[list[str]] = []
    try:
        url = retarget(db, "gc-side", moto.endpoint)
        env = dict(AWS_ENV)
        print(f"[s3 {versions:,}] {len(plan):,} objects, {nbytes:,} bytes; moto RSS "
              f"{moto.rss_mb():,.0f} MB; load {load_average()}", flush=True)
        moto.requests()
        bare_list = measure(results, run("bare list_objects_v2", [
            sys.executable, "-c", BARE_S3_LIST, moto.endpoint, "gc-side", "store/"], env=env))
        bare_list_requests = moto.requests()
        plain = measure(results, gc("gc mark", "mark", "--db", url, "--out",
                                    str(work / "plain.parquet"), "--older-than", "0s",
                                    "--json", env=env))
        manifest = work / "orphans.parquet"
        moto.requests()
        streams = ([] if args.s3_list_workers is None
                   else ["--list-workers", str(args.s3_list_workers)])
        orphans = measure(results, gc(
            "gc mark --orphan-files" + (f" --list-workers {args.s3_list_workers}"
                                        if streams else ""),
            "mark", "--db", url, "--out", str(manifest), "--older-than", "0s",
            "--orphan-files", *streams, "--json", env=env))
        mark_requests = moto.requests()
        candidates = orphan_candidates(manifest)
        keys = [k for k, _ in plan]
        doomed = doomed_keys([c.split("://", 1)[1].split("/", 1)[1] for c in candidates], keys)
        reclaim = candidate_bytes(orphans)
        table, share = bytes_table(orphans, manifest)
        print(table, flush=True)
        extra_s = orphans.seconds - plain.seconds
        notes = [
            f"- S3 store ({versions:,} versions): {len(plan):,} objects, {nbytes:,} bytes; "
            f"orphan-file candidates {len(candidates):,} paths, {len(doomed):,} objects, "
            f"{reclaim:,} bytes ({100 * share:.1f}% of the bytes): {by_class(orphans)}",
            f"- S3 `gc mark --orphan-files` whole: {orphans.seconds / bare_list.seconds:.2f}x "
            f"the bare paginated listing (wall), "
            f"{orphans.cpu_seconds / bare_list.cpu_seconds:.2f}x (CPU); its orphan-file part: "
            f"{extra_s / bare_list.seconds:.2f}x (wall). LIST requests: bare "
            f"{bare_list_requests.get('LIST', 0):,}, mark {mark_requests.get('LIST', 0):,}",
            "", "The store's bytes as `gc mark --orphan-files` classified them:", "", table,
            "",
        ]
        if args.mark_only:
            return notes, results
        keys_file = work / "keys.txt"
        keys_file.write_text("\n".join(doomed) + "\n")
        # --no-undo: the plain deletes, beside the bare loop's (the undo's copies are
        # bench_undo.py's).
        sweep_args = ("sweep", str(manifest), "--db", url, "--yes", "--no-undo", "--json")
        if args.s3_sweep_profile is not None:
            # Under cProfile (slower): its figures are for the profile, not the table.
            sweep = measure(results, run("gc sweep (orphan files), profiled", [
                sys.executable, "-m", "cProfile", "-o", str(args.s3_sweep_profile),
                "-m", "artifact_gc.cli", *sweep_args], env=env))
        else:
            sweep = measure(results, gc("gc sweep (orphan files)", *sweep_args, env=env))
        sweep_requests = moto.requests()
        from bench_s3 import BARE_LOOP

        bare = measure(results, run("bare boto3 delete_objects", [
            sys.executable, "-c", BARE_LOOP, moto.endpoint, "bare-side", str(keys_file)],
            env=env))
        bare_requests = moto.requests()
        client = moto.client()
        left = set(list_bucket(client, "gc-side"))
        assert not left & set(doomed) and left == set(list_bucket(client, "bare-side"))
        kept = check_kept(lambda key: f"store/{key}" in left, extra.keep)
    finally:
        moto.stop()
    notes += [
        f"- S3 sweep of the orphan files: {len(doomed) / sweep.seconds:,.0f} objects/s, bare "
        f"delete_objects {len(doomed) / bare.seconds:,.0f} objects/s "
        f"({100 * bare.seconds / sweep.seconds:.0f}% of bare); requests: sweep "
        f"{dict(sorted(sweep_requests.items()))}, bare {dict(sorted(bare_requests.items()))}",
        kept,
    ]
    return notes, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=500_000)
    parser.add_argument("--orphan-share", type=float, default=0.4)
    parser.add_argument("--leak-share", type=float, default=0.5)
    parser.add_argument("--s3-versions", default="5000")
    parser.add_argument("--s3-list-workers", type=int, default=None,
                        help="gc mark --list-workers on S3 (default: gc's own default)")
    parser.add_argument("--s3-sweep-profile", type=Path, default=None,
                        help="run the S3 sweep under cProfile, writing its stats here")
    parser.add_argument("--inventory-rows", type=int, default=1_000_000)
    parser.add_argument("--base", type=Path, default=Path("/tmp/artifact-gc-bench"))
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--prepare-only", action="store_true",
                        help="prepare the local store and stop (then --mark-only or "
                             "--reuse-store reuses it)")
    parser.add_argument("--mark-only", action="store_true",
                        help="only the listing sides: no inventory, no sweep")
    parser.add_argument("--inventory-only", action="store_true",
                        help="only the local store's inventory classification")
    parser.add_argument("--classification-only", action="store_true",
                        help="with --inventory-only: only the timed classification of "
                             "each side, no whole gc mark")
    parser.add_argument("--reuse-store", action="store_true",
                        help="the local store (and inventory) that --prepare-only or an "
                             "earlier run that swept nothing prepared, if there is one")
    parser.add_argument("--inventory-baseline", type=Path, default=None,
                        help="a source root (holding artifact_gc/) to classify the "
                             "inventory with too, side by side: the code before a change")
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args(argv)

    headers = ["side", "wall s", "cpu s", "peak RSS MB", "load avg (1, 5, 15 min) before",
               "after"]
    # A reused store is one no sweep has run on: its prepared.json goes before a sweep.
    if args.inventory_only:
        work, url, root, count, nbytes = local_store(args)
        results: list[list[str]] = []
        notes = inventory_side(args, work, url, root, results)
        print(f"[local] {count:,} objects, {nbytes:,} bytes")
        print(markdown_table(headers, results))
        print("\n".join(notes))
        return 0
    parts: list[str] = []
    if not args.skip_local:
        notes, results, _, _ = local_side(args)
        if args.prepare_only:
            return 0
        parts += [f"#### Local disk: {args.versions:,} synthetic versions", "",
                  markdown_table(headers, results), "", *notes, ""]
    for versions in [int(v) for v in args.s3_versions.split(",") if v]:
        notes, results = s3_side(versions, args)
        parts += [f"#### S3 (moto): {versions:,} synthetic versions", "",
                  markdown_table(headers, results), "", *notes, ""]
    body = "\n".join(parts).rstrip()
    print(body)
    if args.readme:
        write_section(README, "orphan-files", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
