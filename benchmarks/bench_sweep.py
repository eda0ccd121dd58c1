"""gc sweep beside `zenml artifact prune -y` and beside the bare limit, in one run.

    .venv/bin/python benchmarks/bench_sweep.py vs-zenml [--orphans 1000,10000]
    .venv/bin/python benchmarks/bench_sweep.py raw [--orphans 100000] [--batch-sizes default]
                                                   [--no-undo] [--prepare-only]

Both cases use SQLite stores whose schema ZenML's own migrations created, with real
files in a local artifact store; every side works on its own identical copy.

vs-zenml: ``zenml artifact prune -y`` against ``gc mark --older-than 0s`` followed
by ``gc sweep --yes``, each including process start-up. Afterwards it counts the
versions each side deleted that were still in use (linked to a model, named in a
step configuration, ...): what `zenml artifact prune` should not have deleted. Both
sides start from compiled bytecode, as after ``pip install`` (see _compile_gc), and
each row carries the 1-minute load average right after each side ran.

raw: ``gc sweep --yes`` of a ready manifest against the bare loop over the same
orphans: ``shutil.rmtree`` of each directory and one bulk ``DELETE`` per table with
foreign keys off. The sweep keeps its undo window (its default: the rows saved, the
files renamed into the store's trash) unless ``--no-undo``; the bare loop keeps nothing.
Its stores have 2.5 versions per orphan, and files for the orphans alone: neither side
reads or deletes a live version's files.

raw --prepare-only builds the stores and the gc side's copy of each, untimed, so that a
run under the benchmark lock measures rather than copies (a 1M-orphan store is 2.5M
versions and 4M files and directories). The next raw run of that size uses them once:
the gc side its copy (made by the same ``sqlite_copy``), the bare side the store itself,
which is then no longer cached; it renames the copies to ``*.spent-PID``. Delete the
spent trees and the consumed store afterwards. With ``--mark`` the gc side is marked
then too, and the row's ``gc mark s`` says ``before``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import gc, markdown_table, run, write_section  # noqa: E402
from stores import BenchStore, sqlite_copy, sqlite_store  # noqa: E402

BASE = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
README = Path(__file__).with_name("README.md")

BARE_LOOP = r"""
import shutil, sqlite3, sys
db, ids_file = sys.argv[1], sys.argv[2]
ids = [line.strip() for line in open(ids_file) if line.strip()]
con = sqlite3.connect(db, isolation_level=None)
uris = dict(con.execute("SELECT id, uri FROM artifact_version"))
for i in ids:
    shutil.rmtree(uris[i], ignore_errors=True)
con.execute("PRAGMA foreign_keys=OFF")
con.execute("CREATE TEMP TABLE gone (id CHAR(32) PRIMARY KEY)")
con.executemany("INSERT INTO gone VALUES (?)", [(i,) for i in ids])
con.execute("BEGIN")
con.execute("DELETE FROM curated_visualization WHERE artifact_visualization_id IN "
            "(SELECT id FROM artifact_visualization WHERE artifact_version_id IN "
            "(SELECT id FROM gone))")
con.execute("DELETE FROM artifact_visualization WHERE artifact_version_id IN (SELECT id FROM gone)")
con.execute("DELETE FROM run_metadata_resource WHERE resource_type = 'artifact_version' "
            "AND resource_id IN (SELECT id FROM gone)")
con.execute("DELETE FROM tag_resource WHERE resource_type = 'artifact_version' "
            "AND resource_id IN (SELECT id FROM gone)")
con.execute("DELETE FROM artifact_version WHERE id IN (SELECT id FROM gone)")
con.execute("COMMIT")
print(len(ids))
"""


def _live_ids(store: BenchStore) -> set[str]:
    return {line.strip() for line in (store.directory / "ids" / "live.txt").open()
            if line.strip()}


def _remaining(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {row[0] for row in con.execute("SELECT id FROM artifact_version")}
    finally:
        con.close()


def _zenml_env(copy: BenchStore, config: Path) -> dict[str, str]:
    return {
        "ZENML_STORE_URL": copy.url, "ZENML_CONFIG_PATH": str(config),
        "ZENML_ANALYTICS_OPT_IN": "false", "ZENML_LOGGING_VERBOSITY": "ERROR",
        "ZENML_ENABLE_RICH_TRACEBACK": "false", "AUTO_OPEN_DASHBOARD": "false",
    }


def _compile_gc() -> None:
    """Compile the ``artifact_gc`` package that ``gc`` imports, as ``pip install`` does
    for a wheel (and as ZenML's installed package is). Without it, a source tree run
    under ``PYTHONDONTWRITEBYTECODE`` compiles every module again at each start
    (0.1 s of CPU per command), which no installed user pays."""
    where = "import artifact_gc, os; print(os.path.dirname(artifact_gc.__file__))"
    package = subprocess.run([sys.executable, "-c", where], check=True, capture_output=True,
                             text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)


def _load() -> float:
    """The 1-minute load average now (what ``uptime`` prints first)."""
    return os.getloadavg()[0]


def vs_zenml(orphan_counts: list[int]) -> str:
    _compile_gc()
    rows = []
    for orphans in orphan_counts:
        versions = int(orphans / 0.3)
        store = sqlite_store(BASE, versions, files=True)
        live = _live_ids(store)
        with tempfile.TemporaryDirectory(prefix="gc-bench-") as scratch_dir:
            scratch = Path(scratch_dir)
            zen = sqlite_copy(store, scratch / "zenml-side")
            ours = sqlite_copy(store, scratch / "gc-side")
            zenml_bin = str(Path(sys.executable).parent / "zenml")
            zen_run = run(f"zenml artifact prune -y ({orphans:,})",
                          [zenml_bin, "artifact", "prune", "-y"],
                          env=_zenml_env(zen, scratch / "zenml-config"))
            zen_load = _load()
            manifest = str(scratch / "mark.parquet")
            mark_run = gc("gc mark", "mark", "--db", ours.url, "--older-than", "0s",
                          "--out", manifest)
            sweep_run = gc("gc sweep", "sweep", manifest, "--db", ours.url, "--yes")
            our_load = _load()
            zen_left = _remaining(zen.directory / "zenml.db")
            our_left = _remaining(ours.directory / "zenml.db")
        zen_deleted = store.versions - len(zen_left)
        our_deleted = store.versions - len(our_left)
        ours_seconds = mark_run.seconds + sweep_run.seconds
        rows.append([
            f"{orphans:,}", f"{store.versions:,}",
            f"{zen_run.seconds:.1f}", f"{zen_deleted / zen_run.seconds:,.0f}",
            f"{ours_seconds:.2f} ({mark_run.seconds:.2f} + {sweep_run.seconds:.2f})",
            f"{our_deleted / ours_seconds:,.0f}",
            f"{zen_run.seconds / ours_seconds:,.0f}x",
            f"{zen_run.cpu_seconds:.1f} / {mark_run.cpu_seconds:.2f} + "
            f"{sweep_run.cpu_seconds:.2f}",
            f"{max(zen_run.peak_rss_mb, 0):,.0f} / "
            f"{max(mark_run.peak_rss_mb, sweep_run.peak_rss_mb):,.0f}",
            f"{len(live - zen_left):,}", f"{len(live - our_left):,}",
            f"{zen_load:.2f} / {our_load:.2f}",
        ])
        print(" | ".join(rows[-1]), flush=True)
    return markdown_table(
        ["orphans", "versions", "zenml prune s", "zenml versions/s",
         "gc mark+sweep s (mark + sweep)", "gc versions/s", "speed-up",
         "CPU s zenml / gc mark + sweep", "peak RSS MB zenml / gc",
         "live versions zenml deleted", "live versions gc deleted",
         "load avg (1 min) after zenml / gc"],
        rows,
    ) + ("\n\nWall seconds include process start-up. CPU s: user + system seconds of each "
         "process. Load average: `os.getloadavg()` (what `uptime` prints) right after each "
         "side finished; the 2 cores are shared with other work, which inflates wall times "
         "whenever it is above 2.")


def _raw_store(orphans: int) -> BenchStore:
    """The store of the raw case: 40% of its versions orphans, files for those alone
    (neither side touches a live version's files; all of them would make the 1M store
    9.6M inodes and 38 GB before the two sides' copies)."""
    return sqlite_store(BASE, int(orphans / 0.4), files=True, orphan_share=0.4,
                        orphan_files_only=True)


def _sides_dir(orphans: int) -> Path:
    """Where ``--prepare-only`` keeps both sides' copies of the raw store of ``orphans``
    (beside the pristine store, named after it)."""
    return BASE / f"sqlite-{int(orphans / 0.4)}-orphanfiles-40-sides"


def prepare(orphan_counts: list[int], *, mark: bool = False) -> None:
    """Build the store of each size and the gc side's copy, untimed; the bare side
    will consume the store itself."""
    for orphans in orphan_counts:
        sides = _sides_dir(orphans)
        if (sides / "ready").exists():
            continue
        store = _raw_store(orphans)
        shutil.rmtree(sides, ignore_errors=True)
        print(f"[stores] copying {store.directory.name} for both sides", flush=True)
        sqlite_copy(store, sides / "gc-side")
        # The bare side is the pristine store itself: a second copy of a 1M-orphan store
        # is 12 GB and a quarter of an hour of cp -al more. The bare loop deletes by the
        # URIs in its own database, which name the pristine tree.
        (sides / "bare-side").symlink_to(store.directory, target_is_directory=True)
        if mark:
            gc_side = sides / "gc-side"
            gc("gc mark", "mark", "--db", f"sqlite:///{gc_side / 'zenml.db'}",
               "--older-than", "0s", "--out", str(sides / "mark.parquet"), "--json")
        (sides / "ready").write_text("")


def _copies(orphans: int, scratch: Path) -> tuple[BenchStore, BenchStore, Path | None]:
    """Both sides' copies: prepared ones if ``--prepare-only`` made them, else fresh."""
    sides = _sides_dir(orphans)
    versions = int(orphans / 0.4)
    if (sides / "ready").exists():
        (sides / "ready").unlink()
        # The bare side consumes the pristine store: never taken for pristine again.
        ((sides / "bare-side") / "orphans.count").unlink(missing_ok=True)
        ours, bare = (BenchStore(f"sqlite:///{sides / side / 'zenml.db'}",
                                 str(sides / side / "root"), versions, orphans, sides / side)
                      for side in ("gc-side", "bare-side"))
        return ours, bare, sides
    store = _raw_store(orphans)
    return sqlite_copy(store, scratch / "gc-side"), sqlite_copy(store, scratch / "bare-side"), None


def raw(orphan_counts: list[int], batch_sizes: list[int | None], *, undo: bool = True) -> str:
    rows = []
    cases = [(orphans, size) for orphans in orphan_counts for size in batch_sizes]
    for orphans, batch_size in cases:
        batch = ["--batch-size", str(batch_size)] if batch_size else []
        if not undo:
            batch.append("--no-undo")
        with tempfile.TemporaryDirectory(prefix="gc-bench-") as scratch_dir:
            scratch = Path(scratch_dir)
            ours, bare, prepared = _copies(orphans, scratch)
            load_before = _load()
            manifest = str(scratch / "mark.parquet")
            marked = ours.directory.parent / "mark.parquet"
            if prepared is not None and marked.exists():
                # Marked by --prepare-only --mark, outside the lock: the row says so.
                manifest, mark_cell = str(marked), "before"
            else:
                mark_run = gc("gc mark", "mark", "--db", ours.url, "--older-than", "0s",
                              "--out", manifest, "--json")
                mark_cell = f"{mark_run.seconds:.1f}"
            sweep_run = gc("gc sweep", "sweep", manifest, "--db", ours.url, "--yes", "--json",
                           *batch)
            deleted = ours.versions - len(_remaining(ours.directory / "zenml.db"))
            candidates = _candidates(manifest)
            ids_file = scratch / "candidates.txt"
            ids_file.write_text("\n".join(sorted(candidates)))
            bare_run = run("bare rmtree + bulk DELETE",
                           [sys.executable, "-c", BARE_LOOP,
                            str(bare.directory / "zenml.db"), str(ids_file)])
            if prepared is not None:
                # Removing millions of entries would hold the lock for minutes: left
                # for later.
                prepared.rename(prepared.with_name(f"{prepared.name}.spent-{os.getpid()}"))
        rows.append([
            f"{deleted:,}", f"{ours.versions:,}", f"{batch_size or 'default'}",
            "yes" if undo else "no",
            f"{sweep_run.seconds:.1f}", f"{deleted / sweep_run.seconds:,.0f}",
            f"{sweep_run.peak_rss_mb:,.0f}",
            f"{bare_run.seconds:.1f}", f"{len(candidates) / bare_run.seconds:,.0f}",
            f"{bare_run.peak_rss_mb:,.0f}",
            f"{sweep_run.seconds / bare_run.seconds:.2f}x",
            f"{sweep_run.cpu_seconds:.1f}", mark_cell,
            f"{load_before:.1f} / {_load():.1f}",
        ])
        print(" | ".join(rows[-1]), flush=True)
    return markdown_table(
        ["deleted", "versions", "batch size", "undo window", "gc sweep s", "gc versions/s",
         "gc peak RSS MB",
         "bare loop s", "bare versions/s", "bare RSS MB", "gc / bare", "gc sweep CPU s",
         "gc mark s", "load avg (1 min) before / after"],
        rows,
    ) + ("\n\ngc sweep CPU s: user + system seconds of the sweep process. Load average: "
         "`os.getloadavg()` before and after the row was measured; the 2 cores are shared "
         "with other work, and deleting files also waits on the disk, so both sides slow "
         "down with it.")


def _candidates(manifest: str) -> set[str]:
    import duckdb

    with duckdb.connect() as con:
        return {row[0] for row in con.execute(
            f"SELECT artifact_version_id FROM '{manifest}' WHERE status = 'candidate'"
        ).fetchall()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["vs-zenml", "raw"])
    parser.add_argument("--orphans", help="comma-separated orphan counts")
    parser.add_argument("--batch-sizes", default="default",
                        help="raw: comma-separated gc sweep --batch-size values, each its "
                             "own row ('default': the sweep's own)")
    parser.add_argument("--no-undo", action="store_true",
                        help="raw: gc sweep --no-undo (files deleted, no trash, no saved rows)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="raw: build the stores and both sides' copies, time nothing")
    parser.add_argument("--mark", action="store_true",
                        help="raw --prepare-only: mark the gc side too (the run then times "
                             "the sweep and the bare loop only)")
    args = parser.parse_args()
    default = "1000,10000" if args.case == "vs-zenml" else "100000"
    counts = [int(n) for n in (args.orphans or default).split(",")]
    sizes = [None if b == "default" else int(b) for b in args.batch_sizes.split(",")]
    if args.prepare_only:
        if args.case != "raw":
            parser.error("--prepare-only is for raw")
        prepare(counts, mark=args.mark)
        return 0
    table = (vs_zenml(counts) if args.case == "vs-zenml"
             else raw(counts, sizes, undo=not args.no_undo))
    print(table)
    write_section(README, f"sweep-{args.case}", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
