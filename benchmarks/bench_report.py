"""gc report on a large manifest: the page's size and how long headless Chromium takes
to open it, beside the old plotly page when asked.

    .venv/bin/python benchmarks/bench_report.py [--versions 1000000] [--max-rows 2000]

The store (ZenML 0.98.0's schema snapshot, then bulk inserts over 40 projects; no
files) and its mark are made once and cached in $ARTIFACT_GC_BENCH_DIR (default
/tmp/artifact-gc-bench). It prints the report's size, the time ``gc report`` took, and
Chromium's load time: ``performance.now()`` at the page's load event, and the wall time
of a whole ``chromium --headless --dump-dom`` run (browser start-up included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from artifact_gc.manifest.format import read_info
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.review.report import build_report

LOADED = "GC_REPORT_LOADED_MS"


def _manifest(base: Path, versions: int) -> Path:
    directory = base / f"report-{versions}"
    manifest = directory / "mark.parquet"
    if manifest.exists():
        return manifest
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    print(f"[report] creating a store of {versions:,} versions", flush=True)
    url = create_sqlite_store(directory / "zenml.db")
    populate(url, SyntheticSpec(versions=versions, store_root=str(directory / "root"),
                                projects=[f"project_{i}" for i in range(40)],
                                ids_dir=directory / "ids"))
    mark(url, str(manifest), MarkOptions(older_than=timedelta(0)))
    return manifest


def _chromium_load(page: Path) -> tuple[int | None, float]:
    """(ms from navigation to the load event, wall seconds of the whole browser run)."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / page.name
        probe.write_text(page.read_text() + (
            "<script>addEventListener('load', function () { setTimeout(function () {"
            f"console.log('{LOADED} ' + Math.round(performance.now())); }}, 0); }});"
            "</script>"))
        start = time.perf_counter()
        done = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={scratch}/profile",
             "--enable-logging=stderr", "--v=0", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=300, check=False)
        wall = time.perf_counter() - start
    found = [line.split(LOADED, 1)[1].split()[0] for line in done.stderr.splitlines()
             if LOADED in line]
    return (int(found[0].strip("\"'),")) if found else None), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1_000_000)
    parser.add_argument("--max-rows", type=int, default=2000)
    parser.add_argument("--manifest", help="Use this manifest instead of building one.")
    args = parser.parse_args()
    base = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
    manifest = Path(args.manifest) if args.manifest else _manifest(base, args.versions)
    page = manifest.with_suffix(".html")
    start = time.perf_counter()
    result = build_report(str(manifest), str(page), max_rows=args.max_rows)
    took = time.perf_counter() - start
    loaded, wall = _chromium_load(page)
    load = os.getloadavg()[0]
    counts = read_info(str(manifest)).counts
    rows = sum(counts.get(k, 0) for k in ("reachable", "protected", "candidate"))
    print("| manifest rows | candidates listed | report MB | gc report s | "
          "Chromium load event ms | Chromium run s | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {rows:,} | {result.candidates_shown:,} of {result.candidates_total:,} | "
          f"{page.stat().st_size / 1e6:.2f} | {took:.1f} | {loaded} | {wall:.1f} | "
          f"{load:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
