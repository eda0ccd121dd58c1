"""Start-up cost, guarded by what a command loads, not by how long it takes.

On a small store most of a ``gc mark`` or ``gc sweep`` is start-up: imports and the
set-up of engines and DuckDB databases. These tests run each command in its own
process and check, deterministically, that a local SQLite mark and sweep load none of
what only other paths need (cloud filesystems, ZenML, the report's charts, Arrow's
compute kernels), that a sweep starts one DuckDB database, not one per read, and
that its engines pool their SQLite connections, not one per statement.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from artifact_gc.demo.synthetic.demo_store import build_demo_store

#: Runs ``gc`` with the arguments after ``-c``, then prints (stderr, last line) the
#: modules it loaded and how many DuckDB databases it started.
PROBE = """
import json, sqlite3, sys
import duckdb
started = []
connect = duckdb.connect
def counting(*args, **kwargs):
    started.append(1)
    return connect(*args, **kwargs)
duckdb.connect = counting
opened = []
sqlite_connect = sqlite3.connect
def sqlite_counting(*args, **kwargs):
    opened.append(1)
    return sqlite_connect(*args, **kwargs)
sqlite3.connect = sqlite_counting
from artifact_gc.cli import main
sys.argv = ["gc", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exit:
    code = exit.code or 0
print(json.dumps({"code": code, "modules": sorted(sys.modules), "duckdb": len(started),
                  "sqlite": len(opened)}), file=sys.stderr)
"""

#: Never needed by a local SQLite mark or sweep.
ELSEWHERE = ("s3fs", "gcsfs", "adlfs", "boto3", "botocore", "zenml", "pygal", "pandas",
             "pyarrow.compute", "artifact_gc.storage.s3", "artifact_gc.review.report")


@dataclass(frozen=True)
class Started:
    """What one ``gc`` process loaded and opened."""

    modules: set[str]
    #: DuckDB databases started (``duckdb.connect``).
    duckdb: int
    #: SQLite connections opened (``sqlite3.connect``), each of which parses the
    #: whole schema again at its first statement.
    sqlite: int


def _run(*args: str) -> Started:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, timeout=300)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result["code"] == 0, done.stdout + done.stderr
    return Started(set(result["modules"]), int(result["duckdb"]), int(result["sqlite"]))


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Started]:
    store = build_demo_store(tmp_path_factory.mktemp("startup"), versions=200)
    manifest = str(Path(store.store_root).parents[2] / "mark.parquet")
    started = _run("mark", "--db", store.url, "--older-than", "0s", "--out", manifest)
    return store.url, manifest, started


def test_a_local_mark_loads_no_filesystem_library(
        marked: tuple[str, str, Started]) -> None:
    _, _, started = marked
    # The manifest is a local file: written and checked with os calls, not fsspec.
    unneeded = started.modules & {*ELSEWHERE, "fsspec"}
    assert not unneeded, sorted(unneeded)
    assert started.duckdb == 1
    # Everything the mark reads, schema included, goes through its snapshot's one
    # connection.
    assert started.sqlite == 1


def test_a_first_local_sweep_starts_one_duckdb_database(
        marked: tuple[str, str, Started]) -> None:
    url, manifest, _ = marked
    started = _run("sweep", manifest, "--db", url, "--yes")
    unneeded = started.modules & set(ELSEWHERE)
    assert not unneeded, sorted(unneeded)
    # The checksum, the plan, the state under the lock and the journal all read
    # through cursors of one database; an empty journal needs none for its numbers.
    assert started.duckdb == 1
    # One connection for the plan's read-only engine, one for the sweep's own: both
    # engines pool. Without a pool the plan opened one per statement, 62 in all
    # (its reflection alone one per table), each parsing the schema again.
    assert started.sqlite <= 2, started.sqlite
