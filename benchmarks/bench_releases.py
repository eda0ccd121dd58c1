"""Mark and sweep on the oldest supported ZenML schema (0.70.0) against the same on 0.98.0.

Both stores hold the same rows. The 0.98 store is the benchmarks' usual one (ZenML 0.98's
migrations, then bulk inserts: ``stores.sqlite_store``). The 0.70 store's schema is made
by ZenML 0.70.0's own migrations (its cached venv, as the release fixtures use), and the
0.98 rows are then bulk-copied into it the way 0.70 lays them out (``release_store``):
workspaces for projects, ``pipeline_deployment`` for snapshots with every step's
configuration in its ``step_configurations`` JSON, ``run_metadata`` naming its resource
itself. Each side runs ``gc mark --older-than 0s`` then ``gc sweep --yes`` on its own
copy, in its own process; the table says what the old layout costs.

    .venv/bin/python benchmarks/bench_releases.py [--versions 100000] [--repeat 2]

The claim it checks: an old schema costs at most 1.5 times as much.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import duckdb
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from build_release_fixtures import release_python  # noqa: E402
from harness import Measured, gc, markdown_table, write_section  # noqa: E402
from release_store import old_release_store  # noqa: E402
from stores import sqlite_copy, sqlite_store  # noqa: E402

README = Path(__file__).with_name("README.md")
OLDEST = "0.70.0"


def _cycle(label: str, url: str, work: Path) -> tuple[Measured, Measured, tuple[int, int]]:
    manifest = str(work / f"{label}.parquet")
    mark_run = gc(f"mark {label}", "mark", "--db", url, "--older-than", "0s", "--out", manifest)
    sweep_run = gc(f"sweep {label}", "sweep", manifest, "--db", url, "--yes")
    for run in (mark_run, sweep_run):
        if run.returncode != 0:
            raise SystemExit(f"{run.label} failed:\n{run.stderr[-3000:]}")
    # Both layouts hold the same rows: the caller checks they give the same candidates
    # and leave the same versions.
    found = duckdb.execute(f"SELECT count(*) FROM read_parquet('{manifest}') "
                           "WHERE status = 'candidate'").fetchall()[0][0]
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        left = connection.execute(sa.text("SELECT count(*) FROM artifact_version")).scalar_one()
    engine.dispose()
    return mark_run, sweep_run, (int(found), int(left))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    base = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
    new = sqlite_store(base, args.versions)
    old = old_release_store(new, base / f"sqlite-{args.versions}-zenml-{OLDEST}",
                            str(release_python(OLDEST)))
    # An untimed mark of each store first: whichever side ran first paid for a cold page
    # cache and cold module imports (a 2x swing at this machine's load).
    with tempfile.TemporaryDirectory(prefix="bench-releases-warm-", dir=base) as tmp:
        for label, store in (("0.98.0", new), (OLDEST, old)):
            gc(f"warm {label}", "mark", "--db", store.url, "--older-than", "0s",
               "--out", str(Path(tmp) / f"{label}.parquet"))
    rows: list[list[str]] = []
    worst = 0.0
    for attempt in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-releases-", dir=base) as tmp:
            work = Path(tmp)
            times: dict[str, tuple[Measured, Measured, tuple[int, int]]] = {}
            # Alternate which side goes first: the machine's load drifts.
            order = [("0.98.0", new), (OLDEST, old)]
            for label, store in order if attempt % 2 == 0 else order[::-1]:
                copy = sqlite_copy(store, work / label)
                times[label] = _cycle(label, copy.url, work)
            load = os.getloadavg()[0]
            (new_mark, new_sweep, new_left), (old_mark, old_sweep, old_left) = (
                times["0.98.0"], times[OLDEST])
            if new_left != old_left:
                raise SystemExit(f"(candidates, versions left): {new_left} on 0.98, "
                                 f"{old_left} on {OLDEST}")
            # CPU seconds decide: on shared cores other processes' load inflates wall
            # time far more (both are shown).
            mark_ratio = old_mark.cpu_seconds / new_mark.cpu_seconds
            sweep_ratio = old_sweep.cpu_seconds / new_sweep.cpu_seconds
            worst = max(worst, mark_ratio, sweep_ratio)
            rows.append([
                f"{args.versions:,}", f"{new_left[0]:,}",
                f"{new_mark.seconds:.1f} / {old_mark.seconds:.1f}",
                f"{new_mark.cpu_seconds:.1f} / {old_mark.cpu_seconds:.1f}", f"{mark_ratio:.2f}",
                f"{new_sweep.seconds:.1f} / {old_sweep.seconds:.1f}",
                f"{new_sweep.cpu_seconds:.1f} / {old_sweep.cpu_seconds:.1f}",
                f"{sweep_ratio:.2f}",
                f"{new_mark.peak_rss_mb:.0f} / {old_mark.peak_rss_mb:.0f}", f"{load:.2f}",
            ])
            print(rows[-1], flush=True)
    table = markdown_table(
        ["versions", "candidates", f"mark wall s 0.98 / {OLDEST}",
         f"mark CPU s 0.98 / {OLDEST}", "mark CPU old/new",
         f"sweep wall s 0.98 / {OLDEST}", f"sweep CPU s 0.98 / {OLDEST}",
         "sweep CPU old/new", "mark peak RSS MB new / old", "load avg (1 min)"], rows)
    print(table)
    write_section(README, "releases", table)
    print(f"worst old/new CPU ratio: {worst:.2f} (limit 1.5)")
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
