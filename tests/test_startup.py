"""Start-up cost, guarded by what a command loads, not by how long it takes.

On a small store most of a ``gc mark`` or ``gc sweep`` is start-up: imports and the
set-up of engines and DuckDB databases. These tests run each command in its own
process and check, deterministically, that a local SQLite mark and sweep load none of
what only other paths need (cloud filesystems, ZenML, the report's charts, Arrow's
compute kernels), and that a sweep starts one DuckDB database, not one per read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from artifact_gc.demo.synthetic.demo_store import build_demo_store

#: Runs ``gc`` with the arguments after ``-c``, then prints (stderr, last line) the
#: modules it loaded and how many DuckDB databases it started.
PROBE = """
import json, sys
import duckdb
started = []
connect = duckdb.connect
def counting(*args, **kwargs):
    started.append(1)
    return connect(*args, **kwargs)
duckdb.connect = counting
from artifact_gc.cli import main
sys.argv = ["gc", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exit:
    code = exit.code or 0
print(json.dumps({"code": code, "modules": sorted(sys.modules), "duckdb": len(started)}),
      file=sys.stderr)
"""

#: Never needed by a local SQLite mark or sweep.
ELSEWHERE = ("s3fs", "gcsfs", "adlfs", "boto3", "botocore", "zenml", "pygal", "pandas",
             "pyarrow.compute", "artifact_gc.storage.s3", "artifact_gc.review.report")


def _run(*args: str) -> tuple[set[str], int]:
    """(the modules ``gc ARGS`` loaded, the DuckDB databases it started)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, timeout=300)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result["code"] == 0, done.stdout + done.stderr
    return set(result["modules"]), int(result["duckdb"])


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, set[str], int]:
    store = build_demo_store(tmp_path_factory.mktemp("startup"), versions=200)
    manifest = str(Path(store.store_root).parents[2] / "mark.parquet")
    modules, databases = _run("mark", "--db", store.url, "--older-than", "0s",
                              "--out", manifest)
    return store.url, manifest, modules, databases


def test_a_local_mark_loads_no_filesystem_library(
        marked: tuple[str, str, set[str], int]) -> None:
    _, _, modules, databases = marked
    # The manifest is a local file: written and checked with os calls, not fsspec.
    unneeded = modules & {*ELSEWHERE, "fsspec"}
    assert not unneeded, sorted(unneeded)
    assert databases == 1


def test_a_first_local_sweep_starts_one_duckdb_database(
        marked: tuple[str, str, set[str], int]) -> None:
    url, manifest, _, _ = marked
    modules, databases = _run("sweep", manifest, "--db", url, "--yes")
    unneeded = modules & set(ELSEWHERE)
    assert not unneeded, sorted(unneeded)
    # The checksum, the plan, the state under the lock and the journal all read
    # through cursors of one database; an empty journal needs none for its numbers.
    assert databases == 1
